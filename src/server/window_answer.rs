//! How a windowed answer (a search's or a refine's) is written: the
//! object's mask at the scene's full size in the outputs asked for, and the
//! `window` member.

use super::api::{Outputs, SegmentResponse, SegmentResult, Timings};
use super::errors::ApiError;
use super::window_report::WindowReport;
use crate::geo::{self, Georef, MaskFeature, OutputCrs};
use crate::mask::polygons::outer_polygons;
use crate::mask::BinaryMask;
use crate::window::SceneCandidate;

/// How a windowed answer (a search's or a refine's) is written out.
pub struct SceneAnswer<'a> {
    pub image_id: &'a str,
    pub width: u32,
    pub height: u32,
    pub georef: &'a Georef,
    pub outputs: Outputs,
    pub crs: OutputCrs,
    pub text: Option<&'a str>,
}

impl SceneAnswer<'_> {
    /// The object's mask at full scene resolution as one result, in the
    /// outputs asked for; with no object an empty mask, IoU 0, no object.
    pub fn respond(
        &self,
        object: Option<&SceneCandidate>,
        result_id: String,
        cached: bool,
        window: WindowReport,
    ) -> Result<SegmentResponse, ApiError> {
        let (w, h) = (self.width, self.height);
        let mask = match object {
            Some(c) => c.piece.scene_mask(w, h),
            None => BinaryMask {
                width: w,
                height: h,
                data: vec![0; w as usize * h as usize],
            },
        };
        let o = self.outputs;
        let georef = self.georef;
        let result = SegmentResult {
            result_id,
            iou_prediction: object.map_or(0.0, |c| c.iou),
            object_score_logit: object.map_or(0.0, |c| c.object_score_logit),
            object_present: object.is_some_and(|c| c.object_present()),
            area: mask.area(),
            bbox: mask.bbox(),
            rle: o.rle.then(|| mask.to_rle()),
            png: o.png.then(|| mask.to_png()),
            logits: None,
            polygons: o.polygons.then(|| outer_polygons(&mask.data, w as usize, h as usize)),
            candidates: None,
            geotiff: match o.geotiff {
                true => Some(geo::mask_geotiff_bytes(&mask.data, w, h, georef)?),
                false => None,
            },
        };
        let geojson = match o.geojson {
            true => Some(self.geojson(&result, &mask)?),
            false => None,
        };
        Ok(SegmentResponse {
            image_id: self.image_id.to_string(),
            width: w,
            height: h,
            cached,
            georeferenced: georef.is_georeferenced(),
            results: vec![result],
            geojson,
            window: Some(window),
            timings_ms: Timings::default(),
        })
    }

    fn geojson(&self, r: &SegmentResult, mask: &BinaryMask) -> Result<serde_json::Value, ApiError> {
        let feature = MaskFeature {
            mask: &mask.data,
            width: mask.width,
            height: mask.height,
            text: self.text,
            result_id: Some(&r.result_id),
            iou_prediction: r.iou_prediction,
            object_score_logit: r.object_score_logit,
            object_present: r.object_present,
        };
        let collection = geo::feature_collection(&[feature], self.georef, self.crs)?;
        serde_json::to_value(&collection).map_err(|e| ApiError::internal(format!("GeoJSON: {e}")))
    }
}
