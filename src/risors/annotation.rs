//! One annotation of a RISORS annotation file as a [`Sample`], or the
//! reason it is left out.
//!
//! Like the official `MySegmentLoader`, annotations whose `area` is not
//! positive are skipped; unlike it, a broken annotation is skipped and
//! reported instead of stopping the run, because one bad file in a
//! 36k-sample benchmark should not cost the other results.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mask::rle::{self, Rle};
use crate::mask::BinaryMask;

/// Category used when an annotation has no `name`.
const UNKNOWN_CATEGORY: &str = "unknown";

/// An annotation's `id`: SA-1B uses integers, but any string is accepted so
/// that other exports can be scored too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnnotationId {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for AnnotationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnotationId::Int(i) => write!(f, "{i}"),
            AnnotationId::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// One referring sample: a sentence and the mask it describes.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: AnnotationId,
    pub category: String,
    pub sentence: String,
    /// Ground truth at the annotation's resolution (`segmentation.size`).
    pub gt: BinaryMask,
}

/// Why an annotation was skipped.
pub(super) struct SkipReason {
    pub(super) id: AnnotationId,
    pub(super) reason: String,
    pub(super) by_rule: bool,
}

/// A field-level problem: the reason, and whether it is the area-0 rule.
type FieldError = (String, bool);

fn broken(reason: impl Into<String>) -> FieldError {
    (reason.into(), false)
}

/// One annotation as a sample, or why it is left out.
pub(super) fn parse_annotation(
    value: &Value,
    index: usize,
    max_pixels: u64,
) -> std::result::Result<Sample, SkipReason> {
    let fallback_id = AnnotationId::Int(index as i64);
    let Some(obj) = value.as_object() else {
        return Err(SkipReason {
            id: fallback_id,
            reason: "annotation is not a JSON object".into(),
            by_rule: false,
        });
    };
    let id = match obj.get("id") {
        Some(Value::Number(n)) => n.as_i64().map_or(fallback_id, AnnotationId::Int),
        Some(Value::String(s)) => AnnotationId::Text(s.clone()),
        _ => fallback_id,
    };
    match parse_fields(obj, max_pixels) {
        Ok((category, sentence, gt)) => Ok(Sample {
            id,
            category,
            sentence,
            gt,
        }),
        Err((reason, by_rule)) => Err(SkipReason { id, reason, by_rule }),
    }
}

/// Category, sentence and ground truth of an annotation object.
fn parse_fields(
    obj: &Map<String, Value>,
    max_pixels: u64,
) -> std::result::Result<(String, String, BinaryMask), FieldError> {
    // The official multi-mask variant stores lists and keeps the mask with
    // the highest predicted IoU (first one on ties, like `np.argmax`).
    let pick = best_mask_index(obj);
    let field = |key: &str| -> Option<&Value> {
        let v = obj.get(key)?;
        match (pick, v) {
            (Some(i), Value::Array(items)) => items.get(i),
            _ => Some(v),
        }
    };
    if let Some(area) = field("area") {
        let area = area.as_f64().ok_or_else(|| broken("\"area\" is not a number"))?;
        // `area > 0` as the official loader tests it (NaN is not positive).
        if area.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err((
                format!("area {area} (not positive): skipped like the official loader"),
                true,
            ));
        }
    }
    let sentence = match obj.get("description") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(broken("empty description")),
        _ => return Err(broken("no \"description\" (referring sentence)")),
    };
    let category = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => UNKNOWN_CATEGORY.to_string(),
    };
    let segmentation = field("segmentation").ok_or_else(|| broken("no \"segmentation\""))?;
    let gt = decode_segmentation(segmentation, max_pixels).map_err(broken)?;
    if obj.get("area").is_none() && gt.area() == 0 {
        return Err((
            "empty mask and no \"area\": skipped like an area-0 annotation".into(),
            true,
        ));
    }
    Ok((category, sentence, gt))
}

/// Index of the highest `predicted_iou` when it is a list (multi-mask form).
fn best_mask_index(obj: &Map<String, Value>) -> Option<usize> {
    let ious = obj.get("predicted_iou")?.as_array()?;
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in ious.iter().enumerate() {
        let v = v.as_f64().unwrap_or(f64::NEG_INFINITY);
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// A `{"size": [h, w], "counts": ...}` segmentation as a row-major mask.
/// `counts` may be a compressed string (SA-1B, pycocotools) or a list of run
/// lengths (COCO's uncompressed form).
fn decode_segmentation(value: &Value, max_pixels: u64) -> std::result::Result<BinaryMask, String> {
    let obj = value
        .as_object()
        .ok_or("\"segmentation\" is not an RLE object (polygons are not supported)")?;
    let size = obj
        .get("size")
        .and_then(Value::as_array)
        .ok_or("segmentation has no \"size\"")?;
    let dims: Vec<u32> = size
        .iter()
        .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect();
    let [h, w] = dims[..] else {
        return Err(format!("segmentation size {size:?} is not [height, width]"));
    };
    if u64::from(h) * u64::from(w) > max_pixels {
        return Err(format!(
            "segmentation size {h}x{w} is over the limit of {max_pixels} pixels"
        ));
    }
    let data = match obj.get("counts") {
        Some(Value::String(counts)) => rle::decode(&Rle {
            size: [h, w],
            counts: counts.clone(),
        })
        .map_err(|e| format!("segmentation: {e}"))?,
        Some(Value::Array(runs)) => decode_uncompressed(runs, h as usize, w as usize)?,
        _ => return Err("segmentation has no \"counts\"".into()),
    };
    Ok(BinaryMask {
        width: w,
        height: h,
        data,
    })
}

/// COCO uncompressed RLE: run lengths over column-major pixels, starting
/// with background.
fn decode_uncompressed(runs: &[Value], h: usize, w: usize) -> std::result::Result<Vec<u8>, String> {
    let total = h * w;
    let mut mask = vec![0u8; total];
    let mut pos = 0usize;
    for (i, run) in runs.iter().enumerate() {
        let run = run
            .as_u64()
            .and_then(|r| usize::try_from(r).ok())
            .ok_or("segmentation counts hold a value that is not a run length")?;
        let end = pos
            .checked_add(run)
            .filter(|&e| e <= total)
            .ok_or_else(|| format!("segmentation runs exceed the {h}x{w} mask"))?;
        if i % 2 == 1 {
            for p in pos..end {
                mask[(p % h) * w + p / h] = 1;
            }
        }
        pos = end;
    }
    if pos != total {
        return Err(format!(
            "segmentation runs sum to {pos} pixels, but size {h}x{w} has {total}"
        ));
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncompressed_rle() {
        // 2x2, column-major 0,1,1,0 -> row-major [[0,1],[1,0]].
        let runs: Vec<Value> = [1, 2, 1].iter().map(|&r| Value::from(r)).collect();
        assert_eq!(decode_uncompressed(&runs, 2, 2).unwrap(), vec![0, 1, 1, 0]);
        let bad: Vec<Value> = [1, 9].iter().map(|&r| Value::from(r)).collect();
        assert!(decode_uncompressed(&bad, 2, 2).is_err());
    }

    #[test]
    fn multi_mask_form_picks_best() {
        let v: Value = serde_json::json!({"predicted_iou": [0.5, 0.9, 0.9]});
        assert_eq!(best_mask_index(v.as_object().unwrap()), Some(1));
    }
}
