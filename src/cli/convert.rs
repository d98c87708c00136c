//! `rsam convert`: an official RSAM training checkpoint, an official SAM 2 /
//! 2.1 checkpoint, or SAM 2 + BERT (the official pretrained start of RSAM
//! training) to a model directory.

use std::path::Path;

use anyhow::{bail, Context};

use super::args::ConvertArgs;
use super::output::print_json;
use crate::sam2::Sam2Config;

/// The RSAM config of `--config PATH` or `--preset NAME` (with `allow_name`,
/// `--config` may name a preset too, as `rsam train --config` does).
fn rsam_config(args: &ConvertArgs, allow_name: bool) -> anyhow::Result<crate::RsamConfig> {
    let preset = |name: &str| {
        crate::RsamConfig::preset(name).with_context(|| {
            format!(
                "unknown preset {name:?}: expected one of {}",
                crate::RsamConfig::PRESET_NAMES
            )
        })
    };
    match (&args.config, &args.preset) {
        (Some(path), _)
            if allow_name && !path.exists() && crate::RsamConfig::preset(&path.to_string_lossy()).is_some() =>
        {
            preset(&path.to_string_lossy())
        }
        (Some(path), _) => Ok(crate::RsamConfig::from_file(path)?),
        (None, Some(name)) => preset(name),
        (None, None) => bail!("give --config or --preset"),
    }
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let storage = crate::predictor::parse_dtype(&args.dtype)?;
    match (&args.checkpoint, &args.sam2, &args.bert) {
        (None, Some(sam2), None) => return convert_sam2(&args, sam2, storage),
        (None, Some(sam2), Some(bert)) => return convert_pretrained(&args, sam2, bert),
        _ => {}
    }
    let (Some(checkpoint), Some(tokenizer)) = (&args.checkpoint, &args.tokenizer) else {
        bail!("--checkpoint needs --tokenizer (tokenizer.json, vocab.txt or a folder holding one)");
    };
    let config = rsam_config(&args, false)?;
    let report = crate::convert::convert_checkpoint(checkpoint, &config, tokenizer, &args.out, storage)?;
    let summary = serde_json::json!({
        "out": args.out,
        "parameters": report.num_parameters,
        "ignored_keys": report.ignored_keys,
        "dtype": args.dtype,
    });
    print_json(&summary)
}

/// `rsam convert --sam2 CKPT --out DIR [--config SAM2_CONFIG]`.
fn convert_sam2(args: &ConvertArgs, checkpoint: &Path, storage: candle_core::DType) -> anyhow::Result<()> {
    if args.preset.is_some() || args.tokenizer.is_some() {
        bail!("--preset and --tokenizer are for RSAM models: a SAM 2 model directory has no text encoder");
    }
    let config = match &args.config {
        Some(path) => Some(Sam2Config::from_file(path)?),
        None => None,
    };
    let done = crate::sam2::convert::convert_sam2(checkpoint, config, &args.out, storage)?;
    let summary = serde_json::json!({
        "out": args.out,
        "kind": "sam2",
        "name": done.config.name,
        "size": done.size,
        "version": done.version,
        "parameters": done.report.num_parameters,
        "dropped_keys": done.dropped_keys.len(),
        "dtype": args.dtype,
    });
    print_json(&summary)
}

/// `rsam convert --sam2 CKPT --bert BERT --config CONFIG --out DIR`.
fn convert_pretrained(args: &ConvertArgs, sam2: &Path, bert: &Path) -> anyhow::Result<()> {
    if args.dtype != "f32" {
        bail!("the pretrained start is written in f32 (it is a training start): drop --dtype");
    }
    let report = crate::pretrained::build(&crate::pretrained::PretrainedStart {
        sam2_checkpoint: sam2.to_path_buf(),
        bert: bert.to_path_buf(),
        config: rsam_config(args, true)?,
        tokenizer: args.tokenizer.clone(),
        seed: args.seed,
        out: args.out.clone(),
    })?;
    print_json(&report)
}
