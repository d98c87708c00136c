//! `--dtype bf16` on the CPU, the way `torch.autocast("cpu",
//! dtype=torch.bfloat16)` runs a model: activations stay f32; the weights
//! of the matrix products (every linear layer, and the 1x1 convolutions of
//! the FPN neck and of `conv_s0` / `conv_s1`) are stored in bf16, half the
//! memory; each product rounds its f32 input to bf16 and accumulates in f32
//! ([`crate::kernels::bf16`]), and so does attention (QK^T and PV) in layers
//! whose projections are bf16. LayerNorm, softmax, GELU, additions and
//! biases stay f32, and so do the tensors that are not product weights:
//! norms, biases, embeddings (BERT's word embeddings are 94 MB of f32),
//! positional embeddings, the 7x7 patch embedding and the transposed
//! convolutions.
//!
//! Candle's CPU backend has no bf16 kernels worth running a model on, so
//! a bf16 network there is this mixed one. With `RSAM_GENERIC_KERNELS=1`
//! the whole network runs in bf16 through Candle's generic ops instead, as
//! it does on CUDA.
//!
//! The choice is made while the model is built: [`with_bf16_products`]
//! marks the build (on the building thread) and the layers that own product
//! weights ask [`product_weight_dtype`] which dtype to load them in.

use std::cell::Cell;
use std::collections::HashSet;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::config::RsamConfig;
use crate::models::rsam::RsamModel;
use crate::Result;

thread_local! {
    /// Set while a model with bf16 product weights is being built here.
    static BF16_PRODUCTS: Cell<bool> = const { Cell::new(false) };
}

/// Whether a model loaded for `dtype` on `device` keeps f32 activations
/// and bf16 product weights (bf16 on the CPU with the custom kernels on).
pub fn applies(dtype: DType, device: &Device) -> bool {
    dtype == DType::BF16 && device.is_cpu() && crate::kernels::choice::custom_kernels()
}

/// Runs `build` (a model constructor over an f32 `VarBuilder`) with the
/// weights of matrix products loaded in bf16.
pub fn with_bf16_products<T>(build: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BF16_PRODUCTS.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(BF16_PRODUCTS.with(|flag| flag.replace(true)));
    build()
}

/// The dtype a matrix product's weight is loaded in: bf16 inside
/// [`with_bf16_products`], the builder's dtype otherwise.
pub fn product_weight_dtype(vb: &VarBuilder) -> DType {
    if BF16_PRODUCTS.with(Cell::get) {
        DType::BF16
    } else {
        vb.dtype()
    }
}

/// A linear layer with a bf16 weight and an f32 bias, when the build asks
/// for bf16 product weights; `None` otherwise (then `candle_nn::linear`
/// builds it as before).
pub fn bf16_linear(in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Option<candle_core::Result<candle_nn::Linear>> {
    let dtype = product_weight_dtype(vb);
    if dtype == vb.dtype() {
        return None;
    }
    // The hints only matter to builders that create variables; a model is
    // never trained with bf16 product weights.
    let weight = vb.get_with_hints_dtype((out_dim, in_dim), "weight", candle_nn::Init::Const(0.0), dtype);
    let bias = vb.get(out_dim, "bias");
    Some(weight.and_then(|w| Ok(candle_nn::Linear::new(w, Some(bias?)))))
}

/// The names of the tensors a model of `config` stores in bf16 when
/// [`applies`]: learned by building it over a backend that records what is
/// asked for and hands out unallocated tensors. Reading a checkpoint
/// converts those tensors one at a time, so that no f32 copy of them is
/// ever whole in memory.
pub fn bf16_tensor_names(config: &RsamConfig) -> Result<HashSet<String>> {
    bf16_tensor_names_of(|vb| RsamModel::new(config, vb))
}

/// [`bf16_tensor_names`] for any network: `build` constructs it over the
/// given `VarBuilder`.
pub fn bf16_tensor_names_of<T>(build: impl FnOnce(VarBuilder) -> candle_core::Result<T>) -> Result<HashSet<String>> {
    let recorder = DtypeRecorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    with_bf16_products(|| build(vb))?;
    let names = recorder.bf16.lock().expect("dtype recorder lock").clone();
    Ok(names)
}

/// Records the names requested in bf16 (clones share the record).
#[derive(Default, Clone)]
struct DtypeRecorder {
    bf16: std::sync::Arc<std::sync::Mutex<HashSet<String>>>,
}

impl candle_nn::var_builder::SimpleBackend for DtypeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if dtype == DType::BF16 {
            self.bf16.lock().expect("dtype recorder lock").insert(name.to_string());
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("dtype recorder: {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny fixture's bf16 tensors are exactly the weights of its
    /// linear layers (2-D, with a bias: embeddings and tokens have none)
    /// and of the 1x1 convolutions of the neck and conv_s0 / conv_s1: no
    /// embedding, norm, bias or other convolution.
    #[test]
    fn product_weights_and_nothing_else_are_bf16() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
        let config = RsamConfig::from_file(&dir.join("config.json")).unwrap();
        let names = bf16_tensor_names(&config).unwrap();
        let shapes = crate::bench::parameter_shapes(&config).unwrap();
        let all: HashSet<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
        let mut expected = HashSet::new();
        for (name, shape) in &shapes {
            let Some(layer) = name.strip_suffix(".weight") else {
                continue;
            };
            let has_bias = all.contains(format!("{layer}.bias").as_str());
            let pointwise = shape.len() == 4
                && shape[2..] == [1, 1]
                && (layer.starts_with("image_encoder.neck.")
                    || layer.ends_with(".conv_s0")
                    || layer.ends_with(".conv_s1"));
            if has_bias && (shape.len() == 2 || pointwise) {
                expected.insert(name.clone());
            }
        }
        assert!(expected.len() > 20, "{expected:?}");
        let mut missing: Vec<_> = expected.difference(&names).collect();
        let mut extra: Vec<_> = names.difference(&expected).collect();
        missing.sort();
        extra.sort();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, extra {extra:?}"
        );
        // Outside the marked build nothing changes.
        assert_eq!(
            product_weight_dtype(&VarBuilder::zeros(DType::F32, &Device::Cpu)),
            DType::F32
        );
    }
}
