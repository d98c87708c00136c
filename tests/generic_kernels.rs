//! `RSAM_GENERIC_KERNELS=1`: no custom CPU kernel, Candle's generic ops
//! only, as on CUDA. The f32 network must still match the official outputs,
//! and f16 and bf16 run the whole network in that dtype (as CUDA does)
//! close to f32, with batches of prompts equal to one prompt at a time.
//! Every test of this binary sets the switch first (the choice is made once
//! per process).

mod bf16_support;

use bf16_support::*;
use candle_core::DType;

fn force_generic() {
    std::env::set_var("RSAM_GENERIC_KERNELS", "1");
    assert!(!rsam::kernels::choice::custom_kernels());
}

/// The square-image cases against the official logits, IoU and object
/// score, as `tests/parity.rs` checks them with the custom kernels.
#[test]
fn generic_f32_path_matches_official() {
    force_generic();
    let expected = expected();
    let square: Vec<_> = cases().into_iter().filter(|c| c["image"] == "square.png").collect();
    let predictions = square_predictions(&load_tiny_as(DType::F32));
    assert_eq!(predictions.len(), square.len());
    for (case, pred) in square.iter().zip(&predictions) {
        let i = case["index"].as_u64().unwrap();
        let want: Vec<f32> = expected[&format!("case{i}.low_res_logits")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let d = max_abs_diff_vec(&pred.low_res_logits, &want);
        assert!(d < 1e-4, "case {i}: logits differ by {d}");
        let want_iou = expected[&format!("case{i}.iou")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(
            (pred.iou - want_iou).abs() < 1e-4,
            "case {i}: iou {} vs {want_iou}",
            pred.iou
        );
    }
}

/// The whole network in f16 through the generic ops (what CUDA runs in
/// low precision) follows f32.
#[test]
fn generic_f16_network_follows_f32() {
    force_generic();
    let model = load_tiny_as(DType::F16);
    assert_eq!(model.dtype(), DType::F16, "the whole network in f16");
    let reference = square_predictions(&load_tiny_as(DType::F32));
    let worst = assert_close_to_f32(&reference, &square_predictions(&model), 0.99);
    eprintln!("f16 (generic, whole network): worst correlation {worst:.6}");
}

/// The whole network in bf16 through the generic ops, as CUDA runs it:
/// Candle's bf16 operations, products (convolutions included) of the bf16
/// operands accumulated in f32 ([`rsam::device::products`]).
#[test]
fn generic_bf16_network_follows_f32() {
    force_generic();
    let model = load_tiny_as(DType::BF16);
    assert_eq!(model.dtype(), DType::BF16, "the whole network in bf16");
    let reference = square_predictions(&load_tiny_as(DType::F32));
    let worst = assert_close_to_f32(&reference, &square_predictions(&model), 0.98);
    eprintln!("bf16 (generic, whole network): worst correlation {worst:.6}");
}

/// Every square-image case decoded as ONE batch (texts of different
/// lengths, clicks, boxes, mask prompts) through the generic path gives
/// what each gives alone, in f32, f16 and bf16. In debug builds every
/// matrix product of the generic path checks its operands against
/// cuBLAS's layout rules, so a batch of two or more prompts that would
/// fail on CUDA (row views handed to a product) fails here.
#[test]
fn generic_batched_decode_equals_one_at_a_time() {
    force_generic();
    for (dtype, tolerance) in [(DType::F32, 1e-4), (DType::F16, 0.05), (DType::BF16, 0.25)] {
        let model = load_tiny_as(dtype);
        let singles = square_predictions(&model);
        let batched = square_predictions_batched(&model);
        assert_eq!(batched.len(), singles.len());
        assert!(batched.len() >= 2);
        for (i, (one, all)) in singles.iter().zip(&batched).enumerate() {
            let d = max_abs_diff_vec(&one.low_res_logits, &all.low_res_logits);
            assert!(d <= tolerance, "{dtype:?} case {i}: batched logits differ by {d}");
            assert!((one.iou - all.iou).abs() <= tolerance, "{dtype:?} case {i}: iou");
        }
    }
}
