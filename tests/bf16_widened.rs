//! The bf16 path of CPUs without AVX512-BF16, forced here with
//! `RSAM_AVX512_BF16=0`: the same rounded operands through the f32 kernels.
//! Every test of this binary sets the switch first (the choice is made once
//! per process).

mod bf16_support;

use bf16_support::*;
use candle_core::DType;
use rsam::kernels::choice::{bf16_products, Bf16Products};

fn force_widened() {
    std::env::set_var("RSAM_AVX512_BF16", "0");
    assert_eq!(bf16_products(), Bf16Products::Widened);
}

#[test]
fn widened_bf16_logits_correlate_with_f32() {
    force_widened();
    let reference = square_predictions(&load_tiny_as(DType::F32));
    let worst = assert_close_to_f32(&reference, &square_predictions(&load_tiny_as(DType::BF16)), 0.999);
    eprintln!("bf16 (widened): worst correlation {worst:.6}");
}
