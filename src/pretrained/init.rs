//! How the official RSAM modules initialise the tensors that the pretrained
//! start does not copy (everything but `image_encoder.*` and
//! `text_encoder.*`): no RSAM module calls an `nn.init` function or an
//! `_init_weights` on them (`training/model/rsam.py`, `rsam/modeling/sam/*`,
//! `sam2_base.py`), so each keeps PyTorch's construction default:
//!
//! - `nn.Linear`, `nn.Conv2d`, `nn.ConvTranspose2d` weights: kaiming-uniform
//!   with a = sqrt(5), i.e. U(±1/sqrt(fan_in)); their biases U(±1/sqrt(fan_in))
//!   with the weight's fan_in (dim 1 times the kernel area, also for the
//!   transposed convolution, as torch computes it);
//! - `nn.Embedding` tables (point, not-a-point, no-mask, IoU, mask and
//!   object-score tokens, `description_pe`) and the prompt encoder's random
//!   Fourier matrix (`scale * randn`, scale 1): N(0, 1);
//! - `nn.LayerNorm` and SAM's `LayerNorm2d`: weight 1, bias 0.
//!
//! This differs from [`crate::train::init`] (training from scratch) only in
//! the biases of linear and convolution layers, which that one zeroes.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use crate::config::RsamConfig;
use crate::train::init::{self, Init};

/// The official rule for one parameter, given every parameter's shape (a
/// bias's rule depends on the weight beside it).
pub fn official_rule(name: &str, shapes: &HashMap<String, Vec<usize>>, config: &RsamConfig) -> Init {
    if let Some(stem) = name.strip_suffix("bias") {
        return match shapes.get(&format!("{stem}weight")) {
            Some(weight) if weight.len() >= 2 => Init::Uniform(1.0 / (fan_in(weight) as f64).sqrt()),
            // A norm's bias (its weight is 1-D).
            _ => Init::Zeros,
        };
    }
    init::rule(name, &shapes[name], config)
}

/// torch's `_calculate_fan_in_and_fan_out(weight)[0]`.
fn fan_in(shape: &[usize]) -> usize {
    shape[1..].iter().product::<usize>().max(1)
}

/// Fresh values for the named parameters of `config`, deterministic for
/// `seed` (one stream per tensor, as in [`crate::train::init`]).
pub fn official_weights(
    config: &RsamConfig,
    names: &[String],
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let shapes: HashMap<String, Vec<usize>> = crate::bench::parameter_shapes(config)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        .into_iter()
        .collect();
    names
        .iter()
        .map(|name| {
            let shape = &shapes[name];
            let values = init::values(official_rule(name, &shapes, config), shape.iter().product(), seed, name);
            Ok((name.clone(), Tensor::from_vec(values, shape.as_slice(), device)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> RsamConfig {
        RsamConfig::from_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/config.json"),
        )
        .unwrap()
    }

    fn shapes(config: &RsamConfig) -> HashMap<String, Vec<usize>> {
        crate::bench::parameter_shapes(config).unwrap().into_iter().collect()
    }

    #[test]
    fn rules_are_pytorch_construction_defaults() {
        let c = tiny();
        let s = shapes(&c);
        let rule = |name: &str| official_rule(name, &s, &c);
        // Linear 32 -> 32 (fan_in 32): weight and bias U(±1/sqrt(32)).
        let linear = "sam_mask_decoder.transformer.layers.0.self_attn.q_proj";
        assert_eq!(rule(&format!("{linear}.weight")), Init::Uniform(1.0 / 32f64.sqrt()));
        assert_eq!(rule(&format!("{linear}.bias")), Init::Uniform(1.0 / 32f64.sqrt()));
        // ConvTranspose2d 32 -> 8, kernel 2: torch's fan_in is 8 * 2 * 2.
        assert_eq!(
            rule("sam_mask_decoder.output_upscaling.0.bias"),
            Init::Uniform(1.0 / 32f64.sqrt())
        );
        assert_eq!(s["sam_mask_decoder.output_upscaling.0.weight"], vec![32, 8, 2, 2]);
        // Conv2d 1 -> 4, kernel 2: fan_in 4.
        assert_eq!(rule("sam_prompt_encoder.mask_downscaling.0.bias"), Init::Uniform(0.5));
        // LayerNorm2d inside nn.Sequential, and nn.LayerNorm.
        assert_eq!(rule("sam_prompt_encoder.mask_downscaling.1.weight"), Init::Ones);
        assert_eq!(rule("sam_prompt_encoder.mask_downscaling.1.bias"), Init::Zeros);
        assert_eq!(rule("description_transformer.layers.0.norm5.bias"), Init::Zeros);
        assert_eq!(rule("description_transformer.norm_final_attn.weight"), Init::Ones);
        // Embeddings and the Fourier matrix.
        for name in [
            "sam_mask_decoder.obj_score_token.weight",
            "sam_prompt_encoder.description_pe.weight",
            "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            "sam_prompt_encoder.point_embeddings.3.weight",
        ] {
            assert_eq!(rule(name), Init::Normal(1.0), "{name}");
        }
        // text_proj: BERT width 32 -> d 32.
        assert_eq!(s["text_proj.weight"], vec![32, 32]);
        assert_eq!(rule("text_proj.bias"), Init::Uniform(1.0 / 32f64.sqrt()));
    }
}
