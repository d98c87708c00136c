//! `rsam convert`: an official training checkpoint + config + tokenizer into
//! a model directory (`config.json`, `model.safetensors`, tokenizer files).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::config::RsamConfig;
use crate::models::rsam::RsamModel;
use crate::weights::{self, LoadReport, WeightsFormat};
use crate::{Result, RsamError};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RsamError + '_ {
    move |source| RsamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Validates the checkpoint against the config (every key, by name), then
/// writes the model directory. Training-only tensors are dropped; weights
/// are stored in `storage` dtype.
pub fn convert_checkpoint(
    checkpoint: &Path,
    config: &RsamConfig,
    tokenizer: &Path,
    out: &Path,
    storage: DType,
) -> Result<LoadReport> {
    config.validate().map_err(|reason| RsamError::Config {
        path: checkpoint.to_path_buf(),
        reason,
    })?;
    let format = match checkpoint.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => WeightsFormat::Safetensors,
        _ => WeightsFormat::TorchPickle,
    };
    let tensors = weights::read_tensors(checkpoint, format)?;
    // Validate by building the model on the CPU (shapes only matter here).
    let (_, report) = weights::build_checked(tensors.clone(), DType::F32, &Device::Cpu, |vb| {
        RsamModel::new(config, vb)
    })?;
    let kept: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(k, _)| !weights::is_training_only(k))
        .map(|(k, t)| Ok((k, t.to_dtype(storage)?)))
        .collect::<Result<_>>()?;

    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let config_path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(&config_path, json).map_err(io_error(&config_path))?;
    copy_tokenizer(tokenizer, out)?;
    let weights_path = out.join("model.safetensors");
    candle_core::safetensors::save(&kept, &weights_path).map_err(|e| RsamError::WeightsFile {
        path: weights_path.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    Ok(report)
}

/// Copies `tokenizer.json` and/or `vocab.txt` from a file or a folder.
pub(crate) fn copy_tokenizer(source: &Path, out: &Path) -> Result<()> {
    let candidates: Vec<std::path::PathBuf> = if source.is_dir() {
        ["tokenizer.json", "vocab.txt"]
            .iter()
            .map(|n| source.join(n))
            .filter(|p| p.is_file())
            .collect()
    } else if source.is_file() {
        vec![source.to_path_buf()]
    } else {
        vec![]
    };
    let mut copied = 0;
    for path in candidates {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let target = match name {
            n if n.ends_with(".json") => "tokenizer.json",
            n if n.ends_with(".txt") => "vocab.txt",
            _ => continue,
        };
        let dest = out.join(target);
        std::fs::copy(&path, &dest).map_err(io_error(&dest))?;
        copied += 1;
    }
    if copied == 0 {
        return Err(RsamError::Tokenizer {
            path: source.to_path_buf(),
            reason: "expected tokenizer.json, vocab.txt or a folder holding one".into(),
        });
    }
    // Fail now, not at load time, if the tokenizer does not parse.
    crate::tokenizer::TextTokenizer::from_dir(out, 512)?;
    Ok(())
}
