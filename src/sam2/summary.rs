//! A SAM 2 prediction as the JSON the command line prints (and the HTTP API
//! can answer): the fields of an RSAM result for the mask with the highest
//! predicted IoU, and with several masks a `candidates` list in the model's
//! order.

use serde_json::{json, Value};

use super::predictor::{Sam2Mask, Sam2Prediction};

/// `iou_prediction`, `area`, `bbox` (`[x, y, w, h]`) and `rle` of one mask at
/// the original image size.
pub fn mask_summary(mask: &Sam2Mask, width: u32, height: u32) -> Value {
    let binary = mask.mask(width, height);
    json!({
        "iou_prediction": mask.iou,
        "area": binary.area(),
        "bbox": binary.bbox(),
        "rle": binary.to_rle(),
    })
}

/// The summary of a prediction on a `width` x `height` image: `width`,
/// `height`, `object_score_logit`, `object_present` and the best mask's
/// fields; with more than one mask also `best_candidate` (its index) and
/// `candidates`.
pub fn prediction_summary(prediction: &Sam2Prediction, width: u32, height: u32) -> Value {
    let best = prediction.best_index();
    let candidates: Vec<Value> = prediction
        .masks
        .iter()
        .map(|m| mask_summary(m, width, height))
        .collect();
    let mut summary = json!({
        "width": width,
        "height": height,
        "object_score_logit": prediction.object_score_logit,
        "object_present": prediction.object_score_logit > 0.0,
    });
    let fields = summary.as_object_mut().expect("a JSON object");
    if let Value::Object(best_fields) = &candidates[best] {
        fields.extend(best_fields.clone());
    }
    if candidates.len() > 1 {
        fields.insert("best_candidate".into(), json!(best));
        fields.insert("candidates".into(), Value::Array(candidates));
    }
    summary
}
