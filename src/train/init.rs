//! Initial weights for training from scratch.
//!
//! The official model starts from SAM 2 and BERT checkpoints, so it never
//! initialises the network itself; these rules reproduce what the PyTorch
//! modules would do on construction, by parameter name:
//! - BERT (`text_encoder.*`): normal(0, `initializer_range`) for matrices and
//!   embeddings, as `BertPreTrainedModel._init_weights` does.
//! - `nn.Embedding` tables of SAM (point / not-a-point / no-mask embeddings,
//!   the decoder's IoU, mask and object-score tokens, `description_pe`) and
//!   the random-Fourier matrix of the prompt encoder: normal(0, 1).
//! - Hiera's absolute and window position embeddings: normal(0, 0.02) (SAM 2
//!   creates them as zeros and loads them; from scratch a small random start
//!   breaks the symmetry between positions).
//! - Every other matrix / convolution kernel (`nn.Linear`, `nn.Conv2d`,
//!   `nn.ConvTranspose2d`): PyTorch's default kaiming-uniform, i.e. uniform in
//!   ±1/sqrt(fan_in).
//! - Norm scales 1, biases 0.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::config::RsamConfig;

/// How one parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Normal(f64),
    /// Uniform in [-bound, bound].
    Uniform(f64),
}

/// SAM's `nn.Embedding` tables and the Fourier feature matrix: N(0, 1).
const UNIT_NORMAL_SUFFIXES: [&str; 7] = [
    "not_a_point_embed.weight",
    "no_mask_embed.weight",
    "iou_token.weight",
    "mask_tokens.weight",
    "obj_score_token.weight",
    "description_pe.weight",
    "positional_encoding_gaussian_matrix",
];

/// The rule for a parameter of the given name and shape.
pub fn rule(name: &str, shape: &[usize], config: &RsamConfig) -> Init {
    let is_norm = name.contains("norm") || name.contains("LayerNorm");
    if name.ends_with("bias") {
        return Init::Zeros;
    }
    if is_norm && name.ends_with("weight") {
        return Init::Ones;
    }
    if name.starts_with("text_encoder.") {
        return Init::Normal(config.bert.initializer_range);
    }
    if UNIT_NORMAL_SUFFIXES.iter().any(|s| name.ends_with(s))
        || (name.contains("point_embeddings.") && name.ends_with("weight"))
    {
        return Init::Normal(1.0);
    }
    if name.ends_with("pos_embed") || name.ends_with("pos_embed_window") {
        return Init::Normal(0.02);
    }
    if shape.len() < 2 {
        // Any remaining 1-D weight is a scale.
        return Init::Ones;
    }
    // PyTorch's default for Linear / Conv2d / ConvTranspose2d weights:
    // kaiming_uniform(a = sqrt(5)) = uniform(±1/sqrt(fan_in)), with fan_in
    // computed from dim 1 times the kernel area (as torch does, also for the
    // transposed convolution whose dim 1 is its output channels).
    let fan_in: usize = shape[1..].iter().product();
    Init::Uniform(1.0 / (fan_in.max(1) as f64).sqrt())
}

/// Fresh weights for every parameter of `config`, deterministic for `seed`
/// (each tensor draws from its own stream, seeded by the seed and its name,
/// so adding a parameter does not change the others).
pub fn initial_weights(config: &RsamConfig, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    let shapes = crate::bench::parameter_shapes(config).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let values = values(rule(&name, &shape, config), shape.iter().product(), seed, &name);
            let t = Tensor::from_vec(values, shape.as_slice(), device)?;
            Ok((name, t))
        })
        .collect()
}

pub(crate) fn values(init: Init, n: usize, seed: u64, name: &str) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
    match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal(std) => {
            let normal = Normal::new(0.0, std).expect("a positive standard deviation");
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        }
        Init::Uniform(bound) => (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect(),
    }
}

/// FNV-1a: a stable hash of a parameter name (std's hasher may change
/// between Rust versions, which would change the initial weights).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
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

    #[test]
    fn rules_follow_pytorch_defaults() {
        let c = tiny();
        assert_eq!(
            rule("sam_mask_decoder.iou_prediction_head.layers.0.bias", &[32], &c),
            Init::Zeros
        );
        assert_eq!(rule("image_encoder.trunk.blocks.0.norm1.weight", &[16], &c), Init::Ones);
        assert_eq!(rule("text_encoder.embeddings.LayerNorm.weight", &[32], &c), Init::Ones);
        assert_eq!(
            rule("text_encoder.embeddings.word_embeddings.weight", &[236, 32], &c),
            Init::Normal(0.02)
        );
        assert_eq!(
            rule("sam_mask_decoder.mask_tokens.weight", &[4, 32], &c),
            Init::Normal(1.0)
        );
        assert_eq!(
            rule("sam_prompt_encoder.point_embeddings.2.weight", &[1, 32], &c),
            Init::Normal(1.0)
        );
        assert_eq!(
            rule("image_encoder.trunk.pos_embed", &[1, 16, 4, 4], &c),
            Init::Normal(0.02)
        );
        // Conv 16 x 3 x 7 x 7: fan_in = 3 * 49.
        assert_eq!(
            rule("image_encoder.trunk.patch_embed.proj.weight", &[16, 3, 7, 7], &c),
            Init::Uniform(1.0 / (147f64).sqrt())
        );
        assert_eq!(rule("text_proj.weight", &[32, 64], &c), Init::Uniform(0.125));
    }

    #[test]
    fn weights_are_deterministic_and_cover_every_parameter() {
        let c = tiny();
        let a = initial_weights(&c, 7, &Device::Cpu).unwrap();
        let b = initial_weights(&c, 7, &Device::Cpu).unwrap();
        let other = initial_weights(&c, 8, &Device::Cpu).unwrap();
        let shapes = crate::bench::parameter_shapes(&c).unwrap();
        assert_eq!(a.len(), shapes.len());
        let name = "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight";
        let v = |m: &HashMap<String, Tensor>| m[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&other));
        // Uniform(±1/sqrt(32)): inside the bound, not constant.
        let w = v(&a);
        assert!(w.iter().all(|x| x.abs() <= 1.0 / 32f32.sqrt()));
        assert!(w.iter().any(|x| (x - w[0]).abs() > 1e-6));
        // A model builds from them.
        crate::Rsam::from_tensors(
            c.clone(),
            crate::tokenizer::TextTokenizer::from_dir(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny"),
                512,
            )
            .unwrap(),
            a,
            "init".into(),
            &crate::LoadOptions::default(),
        )
        .unwrap();
    }
}
