//! The official pretrained start (`rsam convert --sam2 CKPT --bert BERT
//! --config CONFIG`): `image_encoder.*` copied from SAM 2, `text_encoder.*`
//! from BERT (both file formats, the old `gamma` / `beta` names), every other
//! tensor initialised as the official modules initialise themselves; and
//! SAM 2 size recognition on checkpoints of the official shapes.

mod sam2_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rsam::config::{HieraSize, RsamConfig};
use rsam::sam2::convert::{detect_version, infer_size};
use rsam::sam2::network::Sam2Network;
use rsam::sam2::{Sam2Config, Sam2Version};
use rsam::train::init::Init;
use sam2_support::torch_zip::{write_torch_zip, NamedTensor};
use sam2_support::*;

fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(args)
        .output()
        .expect("rsam runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rsam_tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny")
}

/// The rsam-tiny configuration with the sam2-tiny fixture's Hiera and FPN
/// width: an RSAM whose image encoder the fixture checkpoint fills.
fn config() -> RsamConfig {
    let mut config = RsamConfig::from_file(&rsam_tiny_dir().join("config.json")).unwrap();
    config.hiera = Sam2Config::from_file(&sam2_dir().join("config.json")).unwrap().hiera;
    config.name = "rsam-from-sam2-tiny".into();
    config.validate().unwrap();
    config
}

fn write_config(dir: &Path, config: &RsamConfig) -> PathBuf {
    let path = dir.join(format!("{}.json", config.name));
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    path
}

/// A BERT of `config`'s sizes as Hugging Face's `bert-base-uncased` files
/// name it: `bert.` prefix, `gamma` / `beta` LayerNorms, plus the pooler and
/// the pre-training heads. Values are seeded noise.
fn hf_bert(config: &RsamConfig, hidden: usize, seed: u64) -> Vec<NamedTensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut config = config.clone();
    config.bert.hidden_size = hidden;
    let mut tensors: Vec<NamedTensor> = rsam::bench::parameter_shapes(&config)
        .unwrap()
        .into_iter()
        .filter_map(|(name, shape)| {
            let rest = name.strip_prefix("text_encoder.")?;
            let rest = rest
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            Some((format!("bert.{rest}"), shape))
        })
        .chain([
            ("bert.pooler.dense.weight".to_string(), vec![hidden, hidden]),
            ("bert.pooler.dense.bias".to_string(), vec![hidden]),
            ("cls.predictions.bias".to_string(), vec![config.bert.vocab_size]),
            ("cls.predictions.transform.LayerNorm.gamma".to_string(), vec![hidden]),
        ])
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let values = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            (name, shape, values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

fn write_safetensors(path: &Path, tensors: &[NamedTensor]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

/// A Hugging Face style BERT folder: weights in one format plus `vocab.txt`.
fn bert_folder(root: &Path, name: &str, tensors: &[NamedTensor], safetensors: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if safetensors {
        write_safetensors(&dir.join("model.safetensors"), tensors);
    } else {
        write_torch_zip(&dir.join("pytorch_model.bin"), tensors);
    }
    std::fs::copy(rsam_tiny_dir().join("vocab.txt"), dir.join("vocab.txt")).unwrap();
    dir
}

fn convert_pretrained(sam2: &Path, bert: &Path, config: &Path, out: &Path, seed: &str) -> Output {
    rsam(&[
        "convert",
        "--sam2",
        sam2.to_str().unwrap(),
        "--bert",
        bert.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ])
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Checks that `v` looks drawn by `init`: exact for constants; inside the
/// bound and spread over it for uniforms; mean and spread of a normal.
fn assert_drawn_like(name: &str, v: &[f32], init: Init) {
    assert!(v.iter().all(|x| x.is_finite()), "{name}: not finite");
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    match init {
        Init::Zeros => assert!(v.iter().all(|&x| x == 0.0), "{name}: not zeros"),
        Init::Ones => assert!(v.iter().all(|&x| x == 1.0), "{name}: not ones"),
        Init::Uniform(bound) => {
            let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
            assert!(max <= bound, "{name}: |{max}| beyond the bound {bound}");
            // Mean 0 and variance bound^2 / 3, within 5 standard errors.
            let se_mean = bound / (3.0 * n).sqrt();
            assert!(
                mean.abs() < 5.0 * se_mean + 1e-12,
                "{name}: mean {mean} (bound {bound}, n {n})"
            );
            if n >= 64.0 {
                let want = bound * bound / 3.0;
                assert!(
                    (var - want).abs() < 5.0 * want * (0.8 / n).sqrt(),
                    "{name}: variance {var} vs {want}"
                );
                assert!(
                    max > bound * (1.0 - 20.0 / n),
                    "{name}: max {max} far below the bound {bound}"
                );
            }
        }
        Init::Normal(std) => {
            assert!(mean.abs() < 5.0 * std / n.sqrt(), "{name}: mean {mean}, n {n}");
            if n >= 16.0 {
                let want = std * std;
                assert!(
                    (var - want).abs() < 5.0 * want * (2.0 / n).sqrt(),
                    "{name}: variance {var} vs {want}"
                );
            }
        }
    }
}

#[test]
fn pretrained_start_copies_sam2_and_bert_and_initialises_the_rest_officially() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let config_path = write_config(dir.path(), &config);
    let bert = hf_bert(&config, config.bert.hidden_size, 5);
    let sam2_checkpoint = sam2_dir().join("checkpoint.pt");
    let sam2: HashMap<String, Tensor> = rsam::sam2::convert::read_sam2_checkpoint(&sam2_checkpoint).unwrap();
    let shapes: HashMap<String, Vec<usize>> = rsam::bench::parameter_shapes(&config).unwrap().into_iter().collect();

    let mut outputs = Vec::new();
    for (name, safetensors) in [("bert-st", true), ("bert-pt", false)] {
        let folder = bert_folder(dir.path(), name, &bert, safetensors);
        let out_dir = dir.path().join(format!("out-{name}"));
        let out = convert_pretrained(&sam2_checkpoint, &folder, &config_path, &out_dir, "7");
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
        assert_eq!(
            report["bert_dropped"],
            serde_json::json!([
                "bert.pooler.dense.bias",
                "bert.pooler.dense.weight",
                "cls.predictions.bias",
                "cls.predictions.transform.LayerNorm.gamma"
            ])
        );
        for f in ["config.json", "model.safetensors", "vocab.txt"] {
            assert!(out_dir.join(f).is_file(), "{f}");
        }
        let written = load(&out_dir.join("model.safetensors"));
        assert_eq!(written.len(), shapes.len(), "every tensor of the config, nothing else");
        let (mut copied, mut fresh) = (0, 0);
        for (name, tensor) in &written {
            assert_eq!(tensor.dims(), shapes[name].as_slice(), "{name}");
            assert_eq!(tensor.dtype(), DType::F32);
            let v = values(tensor);
            if name.starts_with("image_encoder.") {
                assert_eq!(v, values(&sam2[name]), "{name}: not SAM 2's, bit for bit");
                copied += 1;
            } else if let Some(rest) = name.strip_prefix("text_encoder.") {
                let hf = rest
                    .replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta");
                let source = bert.iter().find(|(n, _, _)| *n == format!("bert.{hf}")).unwrap();
                assert_eq!(v, source.2, "{name}: not BERT's, bit for bit");
                copied += 1;
            } else {
                // Nothing else comes from SAM 2: the official kernel keeps no
                // prompt encoder or mask decoder tensor.
                if let Some(s) = sam2.get(name) {
                    assert_ne!(v, values(s), "{name} was copied from SAM 2");
                }
                let rule = rsam::pretrained::init::official_rule(name, &shapes, &config);
                assert_drawn_like(name, &v, rule);
                fresh += 1;
            }
        }
        assert_eq!(
            report["from_sam2"].as_u64().unwrap() + report["from_bert"].as_u64().unwrap(),
            copied
        );
        assert_eq!(report["initialised"], fresh);
        assert!(fresh > 50, "{fresh}");
        outputs.push(written);
    }
    // Both BERT formats give the same directory (same seed).
    let (a, b) = (&outputs[0], &outputs[1]);
    for (name, t) in a {
        assert_eq!(values(t), values(&b[name]), "{name}");
    }
    // The directory is a working RSAM model, and `rsam train --init` input.
    let model = rsam::Rsam::load(&dir.path().join("out-bert-st"), &rsam::LoadOptions::default()).unwrap();
    let image = rsam::preprocess::decode_image(&image_bytes("s256.png"), u64::MAX).unwrap();
    let feats = model.encode_image(&image).unwrap();
    let pred = model
        .predict(&feats, vec![rsam::Prompt::text("the storage tank")])
        .unwrap()
        .remove(0);
    assert!(pred.iou.is_finite() && pred.low_res_logits.iter().all(|v| v.is_finite()));
}

#[test]
fn the_seed_changes_only_the_fresh_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let config_path = write_config(dir.path(), &config);
    let folder = bert_folder(dir.path(), "bert", &hf_bert(&config, config.bert.hidden_size, 1), true);
    let sam2_checkpoint = sam2_dir().join("checkpoint.pt");
    let run = |seed: &str| {
        let out_dir = dir.path().join(format!("seed{seed}"));
        let out = convert_pretrained(&sam2_checkpoint, &folder, &config_path, &out_dir, seed);
        assert!(out.status.success(), "{}", stderr(&out));
        load(&out_dir.join("model.safetensors"))
    };
    let (a, again, b) = (run("1"), run("1"), run("2"));
    let shapes: HashMap<String, Vec<usize>> = rsam::bench::parameter_shapes(&config).unwrap().into_iter().collect();
    for (name, t) in &a {
        assert_eq!(values(t), values(&again[name]), "{name}: not deterministic");
        let copied = name.starts_with("image_encoder.") || name.starts_with("text_encoder.");
        let constant = matches!(
            rsam::pretrained::init::official_rule(name, &shapes, &config),
            Init::Zeros | Init::Ones
        );
        if copied || constant {
            assert_eq!(values(t), values(&b[name]), "{name}");
        } else {
            assert_ne!(values(t), values(&b[name]), "{name}: the seed did not change it");
        }
    }
}

#[test]
fn mismatched_or_broken_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let config_path = write_config(dir.path(), &config);
    let sam2_checkpoint = sam2_dir().join("checkpoint.pt");
    let good_bert = bert_folder(dir.path(), "good", &hf_bert(&config, config.bert.hidden_size, 2), true);
    let out_dir = dir.path().join("out");
    let fails = |sam2: &Path, bert: &Path, config: &Path| {
        let out = convert_pretrained(sam2, bert, config, &out_dir, "0");
        assert!(!out.status.success());
        stderr(&out)
    };

    // A BERT of another width: the tensor and both shapes.
    let wide = bert_folder(dir.path(), "wide", &hf_bert(&config, 48, 3), false);
    let err = fails(&sam2_checkpoint, &wide, &config_path);
    assert!(
        err.contains(
            "text_encoder.encoder.layer.0.attention.self.query.weight: the BERT checkpoint has [48, 48], the config's bert needs [32, 32]"
        ),
        "{err}"
    );
    assert!(err.contains("more"), "{err}");

    // A SAM 2 size that is not the config's Hiera.
    let other = write_config(
        dir.path(),
        &RsamConfig::from_file(&rsam_tiny_dir().join("config.json")).unwrap(),
    );
    assert_ne!(other, config_path);
    let err = fails(&sam2_checkpoint, &good_bert, &other);
    assert!(
        err.contains("image_encoder.trunk.patch_embed.proj.weight: the SAM 2 checkpoint has [8, 3, 7, 7], the config's hiera needs [16, 3, 7, 7]"),
        "{err}"
    );

    // The legacy torch.save format, a truncated BERT, something that is no BERT.
    let legacy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert-legacy/pytorch_model.bin");
    let err = fails(&sam2_checkpoint, &legacy, &config_path);
    assert!(
        err.contains("legacy (non-zip) torch.save file") && err.contains("model.safetensors"),
        "{err}"
    );
    let bytes = std::fs::read(good_bert.join("model.safetensors")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails(&sam2_checkpoint, &truncated, &config_path);
    assert!(
        err.contains("truncated.safetensors") && err.contains("not a valid safetensors file"),
        "{err}"
    );
    let err = fails(&sam2_checkpoint, &sam2_checkpoint, &config_path);
    assert!(err.contains("not a BERT checkpoint"), "{err}");
    let err = fails(&sam2_checkpoint, &dir.path().join("nowhere"), &config_path);
    assert!(err.contains("nowhere") && err.contains("no such file"), "{err}");

    // A SAM 2 checkpoint that is not one.
    let err = fails(&rsam_tiny_dir().join("checkpoint.pt"), &good_bert, &config_path);
    assert!(err.contains("an RSAM checkpoint, not a SAM 2 one"), "{err}");

    // A BERT folder without a tokenizer and no --tokenizer.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(good_bert.join("model.safetensors"), bare.join("model.safetensors")).unwrap();
    let err = fails(&sam2_checkpoint, &bare, &config_path);
    assert!(err.contains("give --tokenizer"), "{err}");
    assert!(!out_dir.join("model.safetensors").exists(), "nothing written on error");
}

/// Checkpoints with the official shapes (no values: zero-stride tensors) are
/// recognised as their size and release.
#[test]
fn official_sizes_and_releases_are_recognised() {
    for size in HieraSize::ALL {
        let config = Sam2Config::preset(size, Sam2Version::Sam2_1);
        let shapes = rsam::bench::shapes_in_build_order(|vb| Sam2Network::new(&config, vb)).unwrap();
        let mut tensors: HashMap<String, Tensor> = shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::zeros((), DType::F32, &Device::Cpu)
                    .unwrap()
                    .broadcast_as(shape)
                    .unwrap();
                (name, t)
            })
            .collect();
        assert_eq!(infer_size(&tensors), Ok(size));
        assert_eq!(detect_version(&tensors), Sam2Version::Sam2);
        let marker = Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap();
        tensors.insert("no_obj_embed_spatial".into(), marker.clone());
        assert_eq!(detect_version(&tensors), Sam2Version::Sam2_1);
        // One block more than the size has: named as the first misfit.
        let extra = format!(
            "image_encoder.trunk.blocks.{}.norm1.weight",
            config.hiera.stages.iter().sum::<usize>()
        );
        tensors.insert(extra.clone(), marker);
        let err = infer_size(&tensors).unwrap_err();
        assert!(err.contains(&extra), "{size:?}: {err}");
    }
}
