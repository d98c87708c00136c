//! Candidates as the CLI and the HTTP layer report them: window rectangle,
//! scores, bbox and polygons in scene pixels, and the polygons in map
//! coordinates when the scene is georeferenced.

use serde::Serialize;

use super::merge::SceneCandidate;
use crate::geo::{feature_collection, GeoResult, Georef, MaskFeature, OutputCrs, Window};
use crate::mask::pixel_polygons::{polygons, Ring};

/// One candidate, ready to serialise.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateReport {
    /// The best window that found it (scene pixels).
    pub window: Window,
    /// Every window that found it, best first (several when merged).
    pub windows: Vec<Window>,
    pub object_score_logit: f32,
    pub object_present: bool,
    pub iou_prediction: f32,
    pub area: u64,
    /// `[x, y, w, h]` in scene pixels.
    pub bbox: [f64; 4],
    /// The mask's polygons in scene pixel corners: per polygon its exterior
    /// ring then its holes, each ring `[[x, y], ...]` closed (first vertex
    /// repeated), as GeoJSON polygons are.
    pub polygon: Vec<Vec<Vec<[u32; 2]>>>,
    /// The polygons as a GeoJSON geometry in the raster's CRS, when the
    /// scene is georeferenced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<geojson::Geometry>,
}

/// Reports of `candidates`; `georef` adds map coordinates when it holds a
/// transform.
pub fn candidate_reports(candidates: &[SceneCandidate], georef: Option<&Georef>) -> GeoResult<Vec<CandidateReport>> {
    candidates
        .iter()
        .map(|c| {
            let geometry = match georef.filter(|g| g.is_georeferenced()) {
                Some(g) => map_geometry(c, g)?,
                None => None,
            };
            Ok(CandidateReport {
                window: c.window(),
                windows: c.windows.clone(),
                object_score_logit: c.object_score_logit,
                object_present: c.object_present(),
                iou_prediction: c.iou,
                area: c.piece.area(),
                bbox: c.piece.bbox(),
                polygon: pixel_polygon(c),
                geometry,
            })
        })
        .collect()
}

/// The candidate's polygons in scene pixel corners.
fn pixel_polygon(c: &SceneCandidate) -> Vec<Vec<Vec<[u32; 2]>>> {
    let p = &c.piece;
    let shift = |ring: &Ring| -> Vec<[u32; 2]> {
        let mut out: Vec<[u32; 2]> = ring.iter().map(|&(x, y)| [x + p.x, y + p.y]).collect();
        if let Some(&first) = out.first() {
            out.push(first);
        }
        out
    };
    polygons(&p.data, p.width as usize, p.height as usize)
        .iter()
        .map(|poly| std::iter::once(&poly.exterior).chain(&poly.holes).map(shift).collect())
        .collect()
}

/// The candidate's polygons mapped through the raster's transform: the
/// piece's own georeferencing is the scene's shifted to its corner.
fn map_geometry(c: &SceneCandidate, georef: &Georef) -> GeoResult<Option<geojson::Geometry>> {
    let p = &c.piece;
    let feature = MaskFeature {
        mask: &p.data,
        width: p.width,
        height: p.height,
        text: None,
        result_id: None,
        iou_prediction: c.iou,
        object_score_logit: c.object_score_logit,
        object_present: c.object_present(),
    };
    let collection = feature_collection(&[feature], &georef.window(p.x, p.y), OutputCrs::Raster)?;
    Ok(collection.features.into_iter().next().and_then(|f| f.geometry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::GeoTransform;
    use crate::window::MaskPiece;

    fn candidate() -> SceneCandidate {
        // A 3 x 3 ring (one hole) whose top-left pixel is scene (10, 20).
        let piece = MaskPiece {
            x: 10,
            y: 20,
            width: 3,
            height: 3,
            data: vec![1, 1, 1, 1, 0, 1, 1, 1, 1],
        };
        let window = Window {
            x: 0,
            y: 0,
            width: 64,
            height: 64,
        };
        SceneCandidate {
            window_indices: vec![0],
            windows: vec![window],
            object_score_logit: 1.5,
            iou: 0.8,
            piece,
            logits: vec![Vec::new()],
        }
    }

    #[test]
    fn polygons_are_in_scene_pixels_with_their_holes() {
        let reports = candidate_reports(&[candidate()], None).unwrap();
        let r = &reports[0];
        assert_eq!((r.area, r.bbox), (8, [10.0, 20.0, 3.0, 3.0]));
        assert!(r.object_present && r.geometry.is_none());
        assert_eq!(r.polygon.len(), 1);
        let rings = &r.polygon[0];
        assert_eq!(rings.len(), 2, "exterior and one hole");
        let corners = |ring: &Vec<[u32; 2]>| {
            let xs = ring.iter().map(|v| v[0]);
            let ys = ring.iter().map(|v| v[1]);
            (xs.clone().min(), xs.max(), ys.clone().min(), ys.max())
        };
        assert_eq!(corners(&rings[0]), (Some(10), Some(13), Some(20), Some(23)));
        assert_eq!(corners(&rings[1]), (Some(11), Some(12), Some(21), Some(22)));
        assert!(rings.iter().all(|r| r.first() == r.last()));
    }

    #[test]
    fn georeferenced_scenes_add_map_coordinates() {
        let georef = Georef {
            transform: Some(GeoTransform::new([500_000.0, 2.0, 0.0, 4_000_000.0, 0.0, -2.0]).unwrap()),
            ..Default::default()
        };
        let reports = candidate_reports(&[candidate()], Some(&georef)).unwrap();
        let geometry = reports[0].geometry.as_ref().expect("map coordinates");
        let json = serde_json::to_value(geometry).unwrap();
        let exterior = json["coordinates"][0].as_array().unwrap();
        let xs: Vec<f64> = exterior.iter().map(|v| v[0].as_f64().unwrap()).collect();
        let ys: Vec<f64> = exterior.iter().map(|v| v[1].as_f64().unwrap()).collect();
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Scene pixel corners 10..13 x 20..23 at 2 m a pixel.
        assert_eq!((min(&xs), max(&xs)), (500_020.0, 500_026.0));
        assert_eq!((min(&ys), max(&ys)), (3_999_954.0, 3_999_960.0));
    }
}
