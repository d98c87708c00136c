//! One prompt's result from the model.

use crate::mask::BinaryMask;

/// One prompt's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// S/4 x S/4 logits after object gating (-1024 where no object).
    pub low_res_logits: Vec<f32>,
    /// Side of `low_res_logits`.
    pub low_res_size: usize,
    /// Predicted IoU (sigmoid applied).
    pub iou: f32,
    /// Object-presence logit; the object is present when it is > 0.
    pub object_score_logit: f32,
}

impl Prediction {
    /// Whether the object-score head says the described object is present.
    pub fn object_present(&self) -> bool {
        self.object_score_logit > 0.0
    }

    /// The binary mask (logit > 0) at the original image size.
    pub fn mask(&self, width: u32, height: u32) -> BinaryMask {
        BinaryMask::from_low_res_logits(&self.low_res_logits, self.low_res_size, width, height)
    }
}
