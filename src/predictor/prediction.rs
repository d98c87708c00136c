//! One prompt's result from the model.

use std::borrow::Cow;

use crate::mask::BinaryMask;

/// One prompt's result. With several candidate masks (a SAM 2 model asked
/// for multimask), the fields describe the candidate with the highest
/// predicted IoU and `candidates` holds all of them in the model's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// S/4 x S/4 logits (RSAM: after object gating, -1024 where no object).
    pub low_res_logits: Vec<f32>,
    /// Side of `low_res_logits`.
    pub low_res_size: usize,
    /// Predicted IoU (sigmoid applied).
    pub iou: f32,
    /// Object-presence logit; the object is present when it is > 0.
    pub object_score_logit: f32,
    /// SAM 2's image predictor returns (and takes back) its logits clamped
    /// to +-32 but thresholds the unclamped ones: the bound, where there is one.
    pub logit_limit: Option<f32>,
    /// Every candidate with multimask, in the model's order; empty otherwise.
    pub candidates: Vec<Candidate>,
}

/// One candidate mask of a multimask prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub low_res_logits: Vec<f32>,
    pub iou: f32,
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

    /// The logits as the model's predictor returns them (what `--logits-out`
    /// writes and a later prompt takes back as its mask input).
    pub fn returned_logits(&self) -> Cow<'_, [f32]> {
        clamped(&self.low_res_logits, self.logit_limit)
    }

    /// A candidate's mask at the original image size.
    pub fn candidate_mask(&self, candidate: &Candidate, width: u32, height: u32) -> BinaryMask {
        BinaryMask::from_low_res_logits(&candidate.low_res_logits, self.low_res_size, width, height)
    }

    /// A candidate's logits as the predictor returns them.
    pub fn returned_candidate_logits<'a>(&self, candidate: &'a Candidate) -> Cow<'a, [f32]> {
        clamped(&candidate.low_res_logits, self.logit_limit)
    }
}

fn clamped(logits: &[f32], limit: Option<f32>) -> Cow<'_, [f32]> {
    match limit {
        Some(l) => Cow::Owned(logits.iter().map(|v| v.clamp(-l, l)).collect()),
        None => Cow::Borrowed(logits),
    }
}
