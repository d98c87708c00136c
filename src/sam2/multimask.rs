//! Which of the four mask tokens' outputs a prediction returns, as
//! `MaskDecoder.forward` chooses in eval mode: tokens 1..4 with multimask;
//! otherwise token 0, or, with `dynamic_multimask_via_stability`, the
//! multimask output of highest predicted IoU whenever token 0's mask is
//! unstable (`_dynamic_multimask_via_stability`, `_get_stability_scores`).

use crate::models::mask_decoder::NUM_MASK_TOKENS;

/// The stability rule of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicMultimask {
    /// Logits within ±delta of 0 make the mask unstable (0.05).
    pub delta: f32,
    /// Token 0 is kept when its stability is at least this (0.98).
    pub threshold: f32,
}

/// `area(logits > delta) / area(logits > -delta)`, 1 for an empty union. The
/// areas are counted exactly and divided in f32, as the official code does.
pub fn stability_score(logits: &[f32], delta: f32) -> f32 {
    let intersection = logits.iter().filter(|&&v| v > delta).count();
    let union = logits.iter().filter(|&&v| v > -delta).count();
    if union > 0 {
        intersection as f32 / union as f32
    } else {
        1.0
    }
}

/// The first index of the largest value, as `torch.argmax` picks among
/// finite values.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// The mask tokens a prediction returns, in order, from one prompt's four
/// token logits (each `plane` values, token-major) and four IoUs.
pub fn select_tokens(
    logits: &[f32],
    ious: &[f32; NUM_MASK_TOKENS],
    multimask: bool,
    dynamic: Option<DynamicMultimask>,
) -> Vec<usize> {
    if multimask {
        return vec![1, 2, 3];
    }
    let Some(rule) = dynamic else {
        return vec![0];
    };
    let plane = logits.len() / NUM_MASK_TOKENS;
    if stability_score(&logits[..plane], rule.delta) >= rule.threshold {
        vec![0]
    } else {
        vec![1 + argmax(&ious[1..])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: DynamicMultimask = DynamicMultimask {
        delta: 0.05,
        threshold: 0.98,
    };

    /// Four 10-value planes: token 0 from `first`, the others constant.
    fn planes(first: [f32; 10]) -> Vec<f32> {
        let mut v = first.to_vec();
        v.extend([1.0; 30]);
        v
    }

    #[test]
    fn stability_counts_pixels_beyond_delta() {
        assert_eq!(stability_score(&[1.0, 2.0, -1.0], 0.05), 1.0);
        // 0.01 is inside the union (> -0.05) but not the intersection (> 0.05).
        assert_eq!(stability_score(&[1.0, 0.01, -1.0, 0.04], 0.05), 1.0 / 3.0);
        // Nothing above -delta: an empty union counts as stable.
        assert_eq!(stability_score(&[-1.0, -0.5], 0.05), 1.0);
        // Exactly at delta is outside (strict comparisons).
        assert_eq!(stability_score(&[0.05, -0.05], 0.05), 0.0);
    }

    #[test]
    fn stable_single_mask_keeps_token_zero() {
        let logits = planes([3.0, 3.0, 3.0, 3.0, 3.0, -3.0, -3.0, -3.0, -3.0, -3.0]);
        assert_eq!(
            select_tokens(&logits, &[0.1, 0.9, 0.8, 0.7], false, Some(RULE)),
            vec![0]
        );
    }

    #[test]
    fn unstable_single_mask_falls_back_to_best_multimask() {
        let logits = planes([3.0, 0.0, 0.0, 0.0, 3.0, -3.0, -3.0, -3.0, -3.0, -3.0]);
        assert_eq!(
            select_tokens(&logits, &[0.9, 0.2, 0.8, 0.7], false, Some(RULE)),
            vec![2]
        );
        // Ties go to the first multimask token, as torch.argmax does.
        assert_eq!(
            select_tokens(&logits, &[0.9, 0.8, 0.8, 0.1], false, Some(RULE)),
            vec![1]
        );
        // Without the rule, token 0 whatever its stability.
        assert_eq!(select_tokens(&logits, &[0.9, 0.2, 0.8, 0.7], false, None), vec![0]);
    }

    #[test]
    fn multimask_returns_the_three_multimask_tokens_in_order() {
        let logits = planes([0.0; 10]);
        assert_eq!(
            select_tokens(&logits, &[0.9, 0.2, 0.8, 0.7], true, Some(RULE)),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[0.7]), 0);
    }
}
