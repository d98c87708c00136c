//! `--dtype bf16` on the CPU: f32 activations, bf16 weights for the matrix
//! products, bf16 operands with f32 accumulation (AVX512-BF16 where the CPU
//! has it). The tiny fixture must follow its f32 run closely, and the
//! demo model must segment held-out scenes as well as in f32.

mod bf16_support;

use bf16_support::*;
use candle_core::DType;
use rsam::kernel_choice::{bf16_products, cpu_has_avx512_bf16, Bf16Products};

#[test]
fn bf16_logits_correlate_with_f32_on_the_at_size_image() {
    let expected_path = if cpu_has_avx512_bf16() {
        Bf16Products::Avx512Bf16
    } else {
        Bf16Products::Widened
    };
    assert_eq!(bf16_products(), expected_path);
    let reference = square_predictions(&load_tiny_as(DType::F32));
    let worst = assert_close_to_f32(&reference, &square_predictions(&load_tiny_as(DType::BF16)), 0.999);
    eprintln!("bf16 ({expected_path:?}): worst correlation {worst:.6}");
}

/// The products' weights are bf16, everything the network computes with
/// stays f32, and the model reports f32 activations.
#[test]
fn bf16_stores_product_weights_in_bf16() {
    let model = load_tiny_as(DType::BF16);
    assert_eq!(model.model.text_proj.weight().dtype(), DType::BF16);
    assert_eq!(model.dtype(), DType::F32);
    assert_eq!(model.model.dense_pe().dtype(), DType::F32);
    let bytes = std::fs::read(tiny_dir().join("images/square.png")).unwrap();
    let features = model.encode_bytes(&bytes).unwrap();
    assert_eq!(features.embeddings.image_embed.dtype(), DType::F32);
    assert_eq!(features.embeddings.high_res_s0.dtype(), DType::F32);
}
