//! What the GPU path needs of the model, seen on the CPU: positional
//! encodings computed in f32 and cast once, whatever the network's dtype.

mod bf16_support;

use bf16_support::*;
use candle_core::{DType, Tensor};

fn as_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The prompt encoder's random Fourier matrix and Hiera's resampled
/// position embedding stay f32 in an f16 model: its dense positional
/// encoding and its trunk's position embedding are the f32 model's, cast
/// once to f16 (rounding the Fourier matrix first would move the encoding
/// by up to 0.04 in bf16).
#[test]
fn positional_encodings_are_f32_cast_once() {
    let exact = load_tiny_as(DType::F32);
    let half = load_tiny_as(DType::F16);
    assert_eq!(half.dtype(), DType::F16);
    let pairs = [
        (exact.model.dense_pe().clone(), half.model.dense_pe().clone()),
        (
            exact.model.image_encoder.trunk.pos_embed().unwrap(),
            half.model.image_encoder.trunk.pos_embed().unwrap(),
        ),
    ];
    for (name, (want, got)) in ["dense PE", "Hiera pos embed"].iter().zip(pairs) {
        assert_eq!(got.dtype(), DType::F16, "{name}");
        let cast_once = as_f32(&want.to_dtype(DType::F16).unwrap());
        assert_eq!(as_f32(&got), cast_once, "{name}: not the f32 values cast once");
    }
}
