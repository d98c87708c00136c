//! `rsam convert --sam2 CKPT --bert BERT --config CONFIG --out DIR`: the
//! official pretrained start of RSAM training, as an RSAM model directory
//! that `rsam train --init DIR` fine-tunes.
//!
//! The official training builds the RSAM model (every module initialising
//! itself) and then loads `CkptRsamInitKernel`'s selection of a SAM 2.1
//! checkpoint and a BERT checkpoint into it: `image_encoder.*` from SAM 2,
//! `text_encoder.*` from BERT ([`bert`]), nothing else (the SAM 2 prompt
//! encoder and mask decoder are not kept). So every other tensor starts as
//! the modules initialise it ([`init`]).

pub mod bert;
pub mod init;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::RsamConfig;
use crate::models::rsam::RsamModel;
use crate::sam2::convert::{infer_size, read_sam2_checkpoint};
use crate::tokenizer::TextTokenizer;
use crate::weights;
use crate::{Result, RsamError};

/// Where the image encoder's tensors come from.
const IMAGE_ENCODER_PREFIX: &str = "image_encoder.";
/// Mismatch lines listed before "and N more".
const LISTED_MISMATCHES: usize = 6;

/// What to build.
#[derive(Debug, Clone)]
pub struct PretrainedStart {
    pub sam2_checkpoint: PathBuf,
    /// A BERT weights file, or a Hugging Face folder holding one.
    pub bert: PathBuf,
    pub config: RsamConfig,
    /// `tokenizer.json` / `vocab.txt` (or a folder with one); default: the
    /// BERT folder's.
    pub tokenizer: Option<PathBuf>,
    pub seed: u64,
    pub out: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PretrainedReport {
    pub out: PathBuf,
    /// Tensors copied from the SAM 2 checkpoint (`image_encoder.*`).
    pub from_sam2: usize,
    /// Tensors copied from the BERT checkpoint (`text_encoder.*`).
    pub from_bert: usize,
    /// Tensors initialised as the official modules initialise them.
    pub initialised: usize,
    pub parameters: usize,
    /// BERT keys left out (pre-training heads, pooler).
    pub bert_dropped: Vec<String>,
    pub tokenizer: PathBuf,
    pub seed: u64,
}

/// Builds and writes the model directory.
pub fn build(start: &PretrainedStart) -> Result<PretrainedReport> {
    let config = &start.config;
    config.validate().map_err(|reason| RsamError::Config {
        path: start.out.join("config.json"),
        reason,
    })?;
    // In the order the model reads them, so that errors start with the first.
    let wanted = crate::bench::shapes_in_build_order(|vb| RsamModel::new(config, vb))?;

    let sam2 = read_sam2_checkpoint(&start.sam2_checkpoint)?;
    let size_hint = infer_size(&sam2)
        .map(|size| format!(" (the checkpoint is a SAM 2 {size:?} one: try a {size:?} preset)"))
        .unwrap_or_default();
    let image_encoder: HashMap<String, Tensor> = sam2
        .into_iter()
        .filter(|(k, _)| k.starts_with(IMAGE_ENCODER_PREFIX))
        .collect();
    check_part(
        &image_encoder,
        &wanted,
        IMAGE_ENCODER_PREFIX,
        "SAM 2 checkpoint",
        "hiera",
    )
    .map_err(|e| RsamError::WeightsMismatch(format!("{e}{size_hint}")))?;

    let (bert_path, bert_format) = bert::find_bert_weights(&start.bert)?;
    let (text_encoder, bert_dropped) = bert::read_bert(&bert_path, bert_format)?;
    check_part(
        &text_encoder,
        &wanted,
        bert::TEXT_ENCODER_PREFIX,
        "BERT checkpoint",
        "bert",
    )
    .map_err(RsamError::WeightsMismatch)?;

    let tokenizer = tokenizer_source(start, &bert_path)?;
    check_vocab(&tokenizer, config)?;

    let fresh_names: Vec<String> = wanted
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !k.starts_with(IMAGE_ENCODER_PREFIX) && !k.starts_with(bert::TEXT_ENCODER_PREFIX))
        .collect();
    let fresh = init::official_weights(config, &fresh_names, start.seed, &Device::Cpu)?;

    let (from_sam2, from_bert, initialised) = (image_encoder.len(), text_encoder.len(), fresh.len());
    let mut tensors = image_encoder;
    tensors.extend(text_encoder);
    tensors.extend(fresh);
    let (_, load) = weights::build_checked(tensors.clone(), DType::F32, &Device::Cpu, |vb| {
        RsamModel::new(config, vb)
    })?;
    write_model_dir(&start.out, config, &tensors, &tokenizer)?;
    Ok(PretrainedReport {
        out: start.out.clone(),
        from_sam2,
        from_bert,
        initialised,
        parameters: load.num_parameters,
        bert_dropped,
        tokenizer,
        seed: start.seed,
    })
}

/// Checks the tensors of one part against the config: every tensor the
/// model needs under `prefix` present with its shape, nothing else. The
/// error names each tensor with both shapes.
fn check_part(
    part: &HashMap<String, Tensor>,
    wanted: &[(String, Vec<usize>)],
    prefix: &str,
    source: &str,
    config_part: &str,
) -> std::result::Result<(), String> {
    let mut lines = Vec::new();
    for (name, shape) in wanted.iter().filter(|(k, _)| k.starts_with(prefix)) {
        match part.get(name) {
            None => lines.push(format!(
                "  {name}: missing from the {source} (the config needs {shape:?})"
            )),
            Some(t) if t.dims() != shape.as_slice() => lines.push(format!(
                "  {name}: the {source} has {:?}, the config's {config_part} needs {shape:?}",
                t.dims()
            )),
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = part.keys().filter(|k| !wanted.iter().any(|(w, _)| w == *k)).collect();
    extra.sort();
    for name in extra {
        lines.push(format!(
            "  {name}: in the {source} ({:?}) but not in a model of this config",
            part[name].dims()
        ));
    }
    if lines.is_empty() {
        return Ok(());
    }
    let more = lines.len().saturating_sub(LISTED_MISMATCHES);
    lines.truncate(LISTED_MISMATCHES);
    if more > 0 {
        lines.push(format!("  ... and {more} more"));
    }
    Err(lines.join("\n"))
}

/// `--tokenizer`, else the BERT folder's `tokenizer.json` or `vocab.txt`.
fn tokenizer_source(start: &PretrainedStart, bert_path: &Path) -> Result<PathBuf> {
    if let Some(t) = &start.tokenizer {
        return Ok(t.clone());
    }
    let folder = bert_path.parent().unwrap_or(Path::new("."));
    ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|n| folder.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| RsamError::Tokenizer {
            path: folder.to_path_buf(),
            reason: "no tokenizer.json or vocab.txt beside the BERT weights: give --tokenizer".into(),
        })
}

/// A tokenizer with more tokens than the embedding table would index past it.
fn check_vocab(tokenizer: &Path, config: &RsamConfig) -> Result<()> {
    let loaded = if tokenizer.is_dir() {
        TextTokenizer::from_dir(tokenizer, usize::MAX)?
    } else if tokenizer.extension().and_then(|e| e.to_str()) == Some("json") {
        TextTokenizer::from_tokenizer_json(tokenizer, usize::MAX)?
    } else {
        TextTokenizer::from_vocab(tokenizer, usize::MAX)?
    };
    if loaded.vocab_size() > config.bert.vocab_size {
        return Err(RsamError::Tokenizer {
            path: tokenizer.to_path_buf(),
            reason: format!(
                "{} tokens, more than the config's bert.vocab_size {}",
                loaded.vocab_size(),
                config.bert.vocab_size
            ),
        });
    }
    Ok(())
}

fn write_model_dir(out: &Path, config: &RsamConfig, tensors: &HashMap<String, Tensor>, tokenizer: &Path) -> Result<()> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RsamError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let config_path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(&config_path, json).map_err(io_error(&config_path))?;
    crate::convert::copy_tokenizer(tokenizer, out)?;
    let weights_path = out.join("model.safetensors");
    candle_core::safetensors::save(tensors, &weights_path).map_err(|e| RsamError::WeightsFile {
        path: weights_path.clone(),
        reason: format!("cannot write: {e}"),
    })
}
