//! Results as a GeoJSON FeatureCollection: one Feature per result, in order,
//! with the mask's polygons (vertices on pixel corners) mapped through the
//! raster's transform, in the raster's CRS (named by a `crs` member the way
//! GDAL reads it) or reprojected to WGS 84 (RFC 7946: lon / lat, no `crs`).
//! Exterior rings run counter-clockwise and holes clockwise in the output
//! coordinates, whatever the transform does to orientation.
//! Without georeferencing the coordinates are pixel corners.

use geojson::{Feature, FeatureCollection, Geometry, GeometryValue, JsonObject, Position};
use serde_json::json;

use super::error::{GeoError, GeoResult};
use super::georef::Georef;
use super::reproject::ToWgs84;
use crate::mask::pixel_polygons::{polygons, PixelPolygon, Ring};

/// The coordinates of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputCrs {
    /// The raster's own CRS (pixel corners without georeferencing).
    Raster,
    /// WGS 84 longitude / latitude in degrees.
    Wgs84,
}

/// One result: its mask at the raster's size and what the model said.
#[derive(Clone, Debug)]
pub struct MaskFeature<'a> {
    /// Row-major, `width * height`, nonzero is foreground.
    pub mask: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub text: Option<&'a str>,
    /// The server's result id (HTTP only).
    pub result_id: Option<&'a str>,
    pub iou_prediction: f32,
    pub object_score_logit: f32,
    pub object_present: bool,
}

/// The FeatureCollection of `features`.
///
/// # Errors
///
/// [`GeoError::MaskLength`] for a mask that is not `width * height` long;
/// [`GeoError::NotGeoreferenced`] for WGS 84 output of a raster without a
/// transform; [`GeoError::UnsupportedCrs`] when its CRS cannot be
/// reprojected; [`GeoError::Reprojection`] for a vertex the projection
/// rejects.
pub fn feature_collection(features: &[MaskFeature], georef: &Georef, crs: OutputCrs) -> GeoResult<FeatureCollection> {
    let to_wgs84 = match crs {
        OutputCrs::Wgs84 => {
            georef.require_transform("WGS 84 output")?;
            Some(ToWgs84::new(georef.crs)?)
        }
        OutputCrs::Raster => None,
    };
    let map = |col: u32, row: u32| -> GeoResult<(f64, f64)> {
        let (col, row) = (f64::from(col), f64::from(row));
        let (x, y) = georef.transform.map_or((col, row), |t| t.map_from_pixel(col, row));
        match &to_wgs84 {
            Some(t) => t.transform(x, y),
            None => Ok((x, y)),
        }
    };
    let features = features
        .iter()
        .map(|f| feature(f, georef, &map))
        .collect::<GeoResult<Vec<_>>>()?;
    let mut collection = FeatureCollection::new(features);
    if crs == OutputCrs::Raster && georef.is_georeferenced() {
        if let Some(code) = georef.epsg() {
            let mut members = JsonObject::new();
            members.insert(
                "crs".into(),
                json!({"type": "name", "properties": {"name": format!("urn:ogc:def:crs:EPSG::{code}")}}),
            );
            collection.foreign_members = Some(members);
        }
    }
    Ok(collection)
}

/// [`feature_collection`] serialised (compact JSON).
pub fn feature_collection_bytes(features: &[MaskFeature], georef: &Georef, crs: OutputCrs) -> GeoResult<Vec<u8>> {
    let collection = feature_collection(features, georef, crs)?;
    // Serialising plain numbers, strings and maps cannot fail.
    Ok(serde_json::to_vec(&collection).unwrap_or_default())
}

fn feature(f: &MaskFeature, georef: &Georef, map: &impl Fn(u32, u32) -> GeoResult<(f64, f64)>) -> GeoResult<Feature> {
    let expected = u64::from(f.width) * u64::from(f.height);
    if f.mask.len() as u64 != expected {
        return Err(GeoError::MaskLength {
            len: f.mask.len(),
            width: f.width,
            height: f.height,
            expected,
        });
    }
    let area_px = f.mask.iter().filter(|&&v| v != 0).count() as u64;
    let polygons = polygons(f.mask, f.width as usize, f.height as usize);
    let mut properties = JsonObject::new();
    properties.insert("text".into(), json!(f.text));
    if let Some(id) = f.result_id {
        properties.insert("result_id".into(), json!(id));
    }
    properties.insert("iou_prediction".into(), json!(f.iou_prediction));
    properties.insert("object_score_logit".into(), json!(f.object_score_logit));
    properties.insert("object_present".into(), json!(f.object_present));
    properties.insert("area_px".into(), json!(area_px));
    if let Some(area) = georef.area_of(area_px) {
        properties.insert("area".into(), json!(area));
    }
    Ok(Feature {
        geometry: geometry(&polygons, map)?,
        properties: Some(properties),
        ..Feature::default()
    })
}

fn geometry(
    polygons: &[PixelPolygon],
    map: &impl Fn(u32, u32) -> GeoResult<(f64, f64)>,
) -> GeoResult<Option<Geometry>> {
    let mut mapped = polygons
        .iter()
        .map(|p| {
            let mut rings = vec![ring(&p.exterior, map, true)?];
            for hole in &p.holes {
                rings.push(ring(hole, map, false)?);
            }
            Ok(rings)
        })
        .collect::<GeoResult<Vec<Vec<Vec<Position>>>>>()?;
    Ok(match mapped.len() {
        0 => None,
        1 => Some(Geometry::new(GeometryValue::new_polygon(mapped.remove(0)))),
        _ => Some(Geometry::new(GeometryValue::new_multi_polygon(mapped))),
    })
}

/// A closed ring (first position repeated) in output coordinates, turned
/// counter-clockwise for an exterior and clockwise for a hole.
fn ring(corners: &Ring, map: &impl Fn(u32, u32) -> GeoResult<(f64, f64)>, exterior: bool) -> GeoResult<Vec<Position>> {
    let mut points = corners
        .iter()
        .map(|&(x, y)| map(x, y))
        .collect::<GeoResult<Vec<(f64, f64)>>>()?;
    if (signed_area(&points) > 0.0) != exterior {
        points.reverse();
    }
    if let Some(&first) = points.first() {
        points.push(first);
    }
    Ok(points.into_iter().map(Position::from).collect())
}

/// Shoelace signed area: positive when counter-clockwise (x right, y up).
fn signed_area(points: &[(f64, f64)]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::geokeys::{Crs, CrsKind};
    use crate::geo::transform::GeoTransform;

    fn utm(transform: [f64; 6]) -> Georef {
        Georef {
            transform: Some(GeoTransform::new(transform).unwrap()),
            crs: Some(Crs {
                kind: CrsKind::Projected,
                epsg: Some(32633),
            }),
            geokeys: None,
        }
    }

    fn result(mask: &[u8], width: u32, height: u32) -> MaskFeature<'_> {
        MaskFeature {
            mask,
            width,
            height,
            text: Some("the pond"),
            result_id: None,
            iou_prediction: 0.75,
            object_score_logit: 2.5,
            object_present: true,
        }
    }

    #[test]
    fn projected_raster_gives_map_coordinates_crs_and_area() {
        let georef = utm([500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0]);
        // A 2x1 block at column 1, row 1 of a 4x3 mask.
        let mask = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0];
        let fc = feature_collection(&[result(&mask, 4, 3)], &georef, OutputCrs::Raster).unwrap();
        let json = serde_json::to_value(&fc).unwrap();
        assert_eq!(
            json["crs"],
            json!({"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}})
        );
        let f = &json["features"][0];
        assert_eq!(f["geometry"]["type"], "Polygon");
        // Counter-clockwise on the map (x east, y north), closed.
        assert_eq!(
            f["geometry"]["coordinates"][0],
            json!([
                [500_010.0, 3_999_980.0],
                [500_030.0, 3_999_980.0],
                [500_030.0, 3_999_990.0],
                [500_010.0, 3_999_990.0],
                [500_010.0, 3_999_980.0]
            ])
        );
        let p = &f["properties"];
        assert_eq!(p["text"], "the pond");
        assert_eq!(p["area_px"], 2);
        assert_eq!(p["area"], 200.0);
        assert_eq!(p["object_present"], true);
        assert_eq!(p["iou_prediction"], 0.75);
        assert!(p.get("result_id").is_none());
    }

    #[test]
    fn holes_run_clockwise_and_components_make_a_multipolygon() {
        let georef = utm([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
        #[rustfmt::skip]
        let mask = [
            1, 1, 1, 0, 1,
            1, 0, 1, 0, 0,
            1, 1, 1, 0, 0,
        ];
        let fc = feature_collection(&[result(&mask, 5, 3)], &georef, OutputCrs::Raster).unwrap();
        let json = serde_json::to_value(&fc).unwrap();
        let g = &json["features"][0]["geometry"];
        assert_eq!(g["type"], "MultiPolygon");
        let rings = g["coordinates"][0].as_array().unwrap();
        assert_eq!(rings.len(), 2);
        let pts = |r: &serde_json::Value| -> Vec<(f64, f64)> {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect()
        };
        assert!(signed_area(&pts(&rings[0])) > 0.0);
        assert!(signed_area(&pts(&rings[1])) < 0.0);
        assert_eq!(signed_area(&pts(&rings[0])), 9.0);
    }

    #[test]
    fn empty_mask_has_null_geometry_and_plain_images_keep_pixels() {
        let georef = Georef::default();
        let empty = [0u8; 4];
        let one = [0u8, 1, 0, 0];
        let mut second = result(&one, 2, 2);
        second.result_id = Some("r2");
        let bytes = feature_collection_bytes(&[result(&empty, 2, 2), second], &georef, OutputCrs::Raster).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(json.get("crs").is_none());
        assert_eq!(json["features"][0]["geometry"], serde_json::Value::Null);
        assert_eq!(json["features"][0]["properties"]["area_px"], 0);
        assert!(json["features"][0]["properties"].get("area").is_none());
        // Pixel corners, counter-clockwise in (x, y) taken as a plane.
        assert_eq!(
            json["features"][1]["geometry"]["coordinates"][0],
            json!([[1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
        );
        assert_eq!(json["features"][1]["properties"]["result_id"], "r2");
        let e = feature_collection(&[result(&one, 2, 2)], &georef, OutputCrs::Wgs84).unwrap_err();
        assert!(
            e.to_string()
                .contains("WGS 84 output: the raster has no georeferencing"),
            "{e}"
        );
    }

    #[test]
    fn wgs84_output_has_lon_lat_and_no_crs_member() {
        let georef = utm([500_000.0, 10.0, 0.0, 10.0, 0.0, -10.0]);
        let fc = feature_collection(&[result(&[1], 1, 1)], &georef, OutputCrs::Wgs84).unwrap();
        let json = serde_json::to_value(&fc).unwrap();
        assert!(json.get("crs").is_none());
        let first = &json["features"][0]["geometry"]["coordinates"][0][0];
        let (lon, lat) = (first[0].as_f64().unwrap(), first[1].as_f64().unwrap());
        assert!((lon - 15.0).abs() < 1e-3 && lat.abs() < 1e-3, "{lon} {lat}");
        // The projected area stays a property.
        assert_eq!(json["features"][0]["properties"]["area"], 100.0);
    }
}
