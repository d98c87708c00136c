//! What each result carries, built after the decode on the blocking pool:
//! the mask at the image's size and the outputs the request asked for (RLE,
//! PNG, logits, polygons, multimask candidates, GeoJSON, the mask GeoTIFF),
//! and the result stored for refine.

use std::sync::Arc;

use crate::geo::{self, MaskFeature, OutputCrs};
use crate::mask::polygons::outer_polygons;
use crate::mask::BinaryMask;
use crate::predictor::{CheckedPrompt, Prediction};

use super::api::{CandidateResult, Outputs, SegmentResult};
use super::cached_image::CachedImage;
use super::errors::ApiError;
use super::results::{ResultStore, StoredResult};

/// Everything the outputs of one request need, owned so that building them
/// can run on the blocking pool.
pub struct OutputBuilder {
    pub image: Arc<CachedImage>,
    pub results: Arc<ResultStore>,
    pub outputs: Outputs,
    pub crs: OutputCrs,
}

/// The results in order, and the GeoJSON of all of them when asked for.
pub struct Built {
    pub results: Vec<SegmentResult>,
    pub geojson: Option<serde_json::Value>,
}

impl OutputBuilder {
    pub fn run(self, prompts: Vec<CheckedPrompt>, predictions: Vec<Prediction>) -> Result<Built, ApiError> {
        let (w, h) = (self.image.width(), self.image.height());
        let masks: Vec<BinaryMask> = predictions.iter().map(|p| p.mask(w, h)).collect();
        let texts: Vec<Option<String>> = prompts.iter().map(|p| p.prompt().text.clone()).collect();
        let mut results = Vec::with_capacity(predictions.len());
        for (i, ((prompt, pred), mask)) in prompts.into_iter().zip(&predictions).zip(&masks).enumerate() {
            // The GeoTIFF answers `Accept: image/tiff` with the first result.
            let geotiff = self.outputs.geotiff && i == 0;
            results.push(self.one(prompt, pred, mask, geotiff)?);
        }
        let geojson = match self.outputs.geojson {
            true => Some(self.geojson(&results, &masks, &texts)?),
            false => None,
        };
        Ok(Built { results, geojson })
    }

    fn one(
        &self,
        prompt: CheckedPrompt,
        pred: &Prediction,
        mask: &BinaryMask,
        geotiff: bool,
    ) -> Result<SegmentResult, ApiError> {
        let (w, h) = (self.image.width(), self.image.height());
        let o = self.outputs;
        let side = pred.low_res_size;
        let returned = pred.returned_logits();
        let logits = o.logits.then(|| crate::npy::write_f32(&[side, side], &returned));
        let prompt = prompt.into_prompt();
        let result_id = self.results.insert(StoredResult {
            image_key: self.image.key.clone(),
            text: prompt.text,
            points: prompt.points,
            bbox: prompt.bbox,
            low_res_logits: returned.into_owned(),
        });
        let candidates = (!pred.candidates.is_empty()).then(|| {
            pred.candidates
                .iter()
                .map(|c| {
                    let m = pred.candidate_mask(c, w, h);
                    CandidateResult {
                        iou_prediction: c.iou,
                        area: m.area(),
                        bbox: m.bbox(),
                        rle: o.rle.then(|| m.to_rle()),
                        logits: o
                            .logits
                            .then(|| crate::npy::write_f32(&[side, side], &pred.returned_candidate_logits(c))),
                    }
                })
                .collect()
        });
        let geotiff = match geotiff {
            true => Some(geo::mask_geotiff_bytes(&mask.data, w, h, &self.image.georef)?),
            false => None,
        };
        Ok(SegmentResult {
            result_id,
            iou_prediction: pred.iou,
            object_score_logit: pred.object_score_logit,
            object_present: pred.object_present(),
            area: mask.area(),
            bbox: mask.bbox(),
            rle: o.rle.then(|| mask.to_rle()),
            png: o.png.then(|| mask.to_png()),
            logits,
            polygons: o.polygons.then(|| outer_polygons(&mask.data, w as usize, h as usize)),
            candidates,
            geotiff,
        })
    }

    /// One Feature per result, in the raster's CRS or WGS 84.
    fn geojson(
        &self,
        results: &[SegmentResult],
        masks: &[BinaryMask],
        texts: &[Option<String>],
    ) -> Result<serde_json::Value, ApiError> {
        let features: Vec<MaskFeature> = results
            .iter()
            .zip(masks)
            .zip(texts)
            .map(|((r, m), text)| MaskFeature {
                mask: &m.data,
                width: m.width,
                height: m.height,
                text: text.as_deref(),
                result_id: Some(&r.result_id),
                iou_prediction: r.iou_prediction,
                object_score_logit: r.object_score_logit,
                object_present: r.object_present,
            })
            .collect();
        let collection = geo::feature_collection(&features, &self.image.georef, self.crs)?;
        serde_json::to_value(&collection).map_err(|e| ApiError::internal(format!("GeoJSON: {e}")))
    }
}
