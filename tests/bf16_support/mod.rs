//! Shared by the bf16 tests: the tiny fixture's square-image cases run
//! with a given dtype, and how closely two runs agree.
#![allow(dead_code)]

use candle_core::DType;
use rsam::{LoadOptions, Prediction, Prompt, Rsam};

#[path = "../common/mod.rs"]
mod common;
pub use common::*;

/// The tiny fixture model loaded for `dtype` on the CPU.
pub fn load_tiny_as(dtype: DType) -> Rsam {
    let options = LoadOptions {
        dtype,
        ..Default::default()
    };
    Rsam::load(&tiny_dir(), &options).expect("tiny fixture model loads")
}

/// Every fixture case on the at-size image (`square.png`, 128 x 128: no
/// resizing), refinements fed the official earlier logits.
pub fn square_prompts() -> Vec<Prompt> {
    let expected = expected();
    cases()
        .iter()
        .filter(|c| c["image"] == "square.png")
        .map(|c| {
            let mut p = case_prompt(c);
            if let Some(src) = c.get("refine_of").and_then(|r| r.as_u64()) {
                let prev = &expected[&format!("case{src}.low_res_logits")];
                p.mask_input = Some(prev.flatten_all().unwrap().to_vec1().unwrap());
            }
            p
        })
        .collect()
}

/// The square-image cases through `model`, one prompt at a time, on the
/// official preprocessed input of the image.
pub fn square_predictions(model: &Rsam) -> Vec<Prediction> {
    let input = &expected()["input.square.png"];
    let features = rsam::EncodedImage {
        embeddings: model.model.encode(input).unwrap(),
        width: 128,
        height: 128,
    };
    square_prompts()
        .into_iter()
        .map(|p| model.predict(&features, vec![p]).unwrap().remove(0))
        .collect()
}

/// The square-image cases through `model` as one batch of prompts.
pub fn square_predictions_batched(model: &Rsam) -> Vec<Prediction> {
    let input = &expected()["input.square.png"];
    let features = rsam::EncodedImage {
        embeddings: model.model.encode(input).unwrap(),
        width: 128,
        height: 128,
    };
    model.predict(&features, square_prompts()).unwrap()
}

/// Pearson correlation of two equally long series.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let mean = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// Checks that `low` (a bf16 run) follows `reference` (f32) case by case:
/// logits correlating at least `min_correlation`, IoU and object score
/// close. Returns the worst correlation.
pub fn assert_close_to_f32(reference: &[Prediction], low: &[Prediction], min_correlation: f64) -> f64 {
    assert_eq!(reference.len(), low.len());
    let mut worst = 1f64;
    for (i, (a, b)) in reference.iter().zip(low).enumerate() {
        assert!(
            b.low_res_logits.iter().all(|v| v.is_finite()),
            "case {i}: non-finite logits"
        );
        let r = correlation(&a.low_res_logits, &b.low_res_logits);
        eprintln!(
            "case {i}: logits correlate {r:.6}, max diff {:.4}, iou {:.4} vs {:.4}, object {:.4} vs {:.4}",
            max_abs_diff_vec(&a.low_res_logits, &b.low_res_logits),
            b.iou,
            a.iou,
            b.object_score_logit,
            a.object_score_logit
        );
        assert!(r >= min_correlation, "case {i}: logits correlate only {r}");
        assert!((a.iou - b.iou).abs() < 0.02, "case {i}: iou {} vs {}", b.iou, a.iou);
        assert!(
            (a.object_score_logit - b.object_score_logit).abs() < 0.05,
            "case {i}: object score {} vs {}",
            b.object_score_logit,
            a.object_score_logit
        );
        worst = worst.min(r);
    }
    worst
}
