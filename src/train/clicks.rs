//! Training-time correction clicks: SAM 2's "uniform" sampler
//! (`sample_random_points_from_errors` in `sam2_utils.py`), which the
//! official interactive training uses.
//!
//! Every false-negative pixel (in the ground truth, not predicted) and
//! every false-positive pixel (predicted, not in the ground truth) is equally
//! likely; a false negative gives a positive click, a false positive a
//! negative one. When the prediction is already exact, a negative click is
//! drawn from the background, as the official code does. With probability
//! `from_gt` the click is drawn as if nothing had been predicted (a positive
//! click anywhere in the object), the official `prob_to_sample_from_gt`.
//!
//! The official code takes the arg-max of uniform noise over the two error
//! maps; an arg-max of i.i.d. uniforms is a uniform draw among the eligible
//! pixels, which is what this does directly.

use rand::Rng;

/// A click in model-input pixels, with SAM's label (1 positive, 0 negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainClick {
    pub x: f32,
    pub y: f32,
    pub label: i64,
}

/// Draws the next click for one sentence. `gt` and `pred` are S x S 0 / 1
/// masks (`pred` = upsampled logits > 0). `None` when there is no pixel to
/// click at all (an empty ground truth predicted exactly empty on an image
/// of zero size cannot happen, but a full-image object predicted exactly
/// has no background left).
pub fn sample_click<R: Rng>(gt: &[u8], pred: &[u8], side: usize, from_gt: f64, rng: &mut R) -> Option<TrainClick> {
    debug_assert_eq!(gt.len(), side * side);
    debug_assert_eq!(pred.len(), side * side);
    let ignore_prediction = from_gt > 0.0 && rng.random::<f64>() < from_gt;
    let predicted = |i: usize| !ignore_prediction && pred[i] != 0;
    let errors: Vec<usize> = (0..gt.len()).filter(|&i| (gt[i] != 0) != predicted(i)).collect();
    let (pool, exact) = if errors.is_empty() {
        ((0..gt.len()).filter(|&i| gt[i] == 0).collect::<Vec<_>>(), true)
    } else {
        (errors, false)
    };
    if pool.is_empty() {
        return None;
    }
    let i = pool[rng.random_range(0..pool.len())];
    let positive = !exact && gt[i] != 0;
    Some(TrainClick {
        x: (i % side) as f32,
        y: (i / side) as f32,
        label: i64::from(positive),
    })
}

/// The next correction click: with probability `center` the evaluation's
/// center click ([`crate::eval::clicks::next_click`], none when the
/// prediction is exact), otherwise [`sample_click`]'s uniform one.
pub fn correction_click<R: Rng>(
    gt: &[u8],
    pred: &[u8],
    side: usize,
    from_gt: f64,
    center: f64,
    rng: &mut R,
) -> Option<TrainClick> {
    if center > 0.0 && rng.random::<f64>() < center {
        return center_click(gt, pred, side);
    }
    sample_click(gt, pred, side, from_gt, rng)
}

/// The first click of a sentence trained without its text: a positive
/// click inside the object, at its center with probability `center` (where
/// users click first) and anywhere in it otherwise. `None` for an empty
/// ground truth, which has nowhere to click.
pub fn initial_click<R: Rng>(gt: &[u8], side: usize, center: f64, rng: &mut R) -> Option<TrainClick> {
    if !gt.iter().any(|&v| v != 0) {
        return None;
    }
    if center > 0.0 && rng.random::<f64>() < center {
        let nothing = vec![0u8; gt.len()];
        return center_click(gt, &nothing, side);
    }
    sample_click(gt, gt, side, 1.0, rng)
}

fn center_click(gt: &[u8], pred: &[u8], side: usize) -> Option<TrainClick> {
    crate::eval::clicks::next_click(pred, gt, side, side).map(|c| TrainClick {
        x: c.x as f32,
        y: c.y as f32,
        label: i64::from(c.positive),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn clicks_land_in_the_error_with_the_right_label() {
        // 4 x 4: GT = left half, prediction = top half.
        let side = 4;
        let gt: Vec<u8> = (0..16).map(|i| u8::from(i % 4 < 2)).collect();
        let pred: Vec<u8> = (0..16).map(|i| u8::from(i / 4 < 2)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut pos, mut neg) = (0, 0);
        for _ in 0..400 {
            let c = sample_click(&gt, &pred, side, 0.0, &mut rng).unwrap();
            let i = c.y as usize * side + c.x as usize;
            if c.label == 1 {
                // Missed object: bottom-left.
                assert!(gt[i] == 1 && pred[i] == 0);
                pos += 1;
            } else {
                // Spurious: top-right.
                assert!(gt[i] == 0 && pred[i] == 1);
                neg += 1;
            }
        }
        // Four pixels each: both kinds are drawn about equally.
        assert!(pos > 150 && neg > 150, "{pos} positive, {neg} negative");
    }

    #[test]
    fn exact_prediction_gives_a_background_negative_and_from_gt_a_positive() {
        let side = 3;
        let gt = vec![0, 0, 0, 0, 1, 0, 0, 0, 0];
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..50 {
            let c = sample_click(&gt, &gt, side, 0.0, &mut rng).unwrap();
            assert_eq!(c.label, 0);
            assert!(!(c.x == 1.0 && c.y == 1.0));
            // Ignoring the prediction: everything in the object is "missed".
            let c = sample_click(&gt, &gt, side, 1.0, &mut rng).unwrap();
            assert_eq!((c.x, c.y, c.label), (1.0, 1.0, 1));
        }
        // A full-image object predicted exactly: nowhere to click.
        let full = vec![1u8; 9];
        assert_eq!(sample_click(&full, &full, side, 0.0, &mut rng), None);
    }

    #[test]
    fn center_clicks_are_the_evaluations_and_initial_clicks_fall_in_the_object() {
        // 7 x 7: GT = a 5 x 5 square at (1..6, 1..6), nothing predicted.
        let side = 7;
        let gt: Vec<u8> = (0..49)
            .map(|i| u8::from((1..6).contains(&(i % 7)) && (1..6).contains(&(i / 7))))
            .collect();
        let none = vec![0u8; 49];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let centre = TrainClick {
            x: 3.0,
            y: 3.0,
            label: 1,
        };
        for _ in 0..20 {
            assert_eq!(correction_click(&gt, &none, side, 0.0, 1.0, &mut rng), Some(centre));
            assert_eq!(initial_click(&gt, side, 1.0, &mut rng), Some(centre));
            let c = initial_click(&gt, side, 0.0, &mut rng).unwrap();
            assert_eq!(c.label, 1);
            assert_eq!(gt[c.y as usize * side + c.x as usize], 1);
        }
        // Uniform clicks spread over the object.
        let spread: std::collections::BTreeSet<_> = (0..200)
            .map(|_| {
                let c = correction_click(&gt, &none, side, 0.0, 0.0, &mut rng).unwrap();
                (c.x as usize, c.y as usize)
            })
            .collect();
        assert!(spread.len() > 15, "{spread:?}");
        // Exact predictions: the center sampler has nothing to correct.
        assert_eq!(correction_click(&gt, &gt, side, 0.0, 1.0, &mut rng), None);
        // An empty object has no first click.
        assert_eq!(initial_click(&none, side, 0.5, &mut rng), None);
    }
}
