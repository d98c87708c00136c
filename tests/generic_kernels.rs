//! `RSAM_GENERIC_KERNELS=1`: no custom CPU kernel, Candle's generic ops
//! only, as on CUDA. The f32 network must still match the official outputs,
//! and f16 runs the whole network in f16 (as CUDA does) close to f32; bf16,
//! which Candle's CPU convolution cannot run, is refused with a clear error.
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

/// bf16 needs the custom kernels on the CPU: without them the load stops
/// with an error that says why and what to do.
#[test]
fn generic_bf16_on_the_cpu_is_refused_clearly() {
    force_generic();
    let options = rsam::LoadOptions {
        dtype: DType::BF16,
        ..Default::default()
    };
    let err = rsam::Rsam::load(&tiny_dir(), &options).unwrap_err().to_string();
    assert!(err.contains("RSAM_GENERIC_KERNELS") && err.contains("f16"), "{err}");
}
