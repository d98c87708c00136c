//! Checkpoints: the training output is a model directory that `rsam
//! segment`, `serve` and `eval` load as it is (`config.json`,
//! `model.safetensors`, the tokenizer), plus `train/` with what resuming
//! needs (optimizer moments, step, history, the flags).
//!
//! Every file is written to a temporary name and renamed into place, so an
//! interrupted save leaves the previous epoch's checkpoint intact.

use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::optim::AdamW;
use crate::cli::args::TrainArgs;
use crate::config::RsamConfig;

/// Optimizer state, relative to the output directory.
pub const OPTIMIZER_FILE: &str = "train/optimizer.safetensors";
/// Progress and history, relative to the output directory.
pub const STATE_FILE: &str = "train/state.json";

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Optimizer steps done after this epoch, in total.
    pub steps: usize,
    /// Mean per-step losses (total and unweighted terms).
    pub loss: f64,
    pub focal: f64,
    pub dice: f64,
    pub iou: f64,
    pub class: f64,
    pub seconds: f64,
    /// Validation mIoU / oIoU: text only, then after each correction click.
    #[serde(default)]
    pub val_miou: Vec<f64>,
    #[serde(default)]
    pub val_oiou: Vec<f64>,
}

impl EpochRecord {
    /// One log line.
    pub fn line(&self, epochs: usize) -> String {
        let mut s = format!(
            "epoch {}/{epochs}: loss {:.4} (focal {:.4}, dice {:.4}, iou {:.4}, class {:.4}) in {:.0} s",
            self.epoch, self.loss, self.focal, self.dice, self.iou, self.class, self.seconds
        );
        if !self.val_miou.is_empty() {
            let steps: Vec<String> = self.val_miou.iter().map(|m| format!("{:.3}", m)).collect();
            s.push_str(&format!(" | val mIoU {} (text, then per click)", steps.join(" / ")));
        }
        s
    }
}

/// `train/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub step: usize,
    pub args: TrainArgs,
    pub history: Vec<EpochRecord>,
}

impl TrainState {
    pub fn new(args: &TrainArgs) -> Self {
        Self {
            epochs_done: 0,
            step: 0,
            args: args.clone(),
            history: Vec::new(),
        }
    }
}

/// A new run must not silently replace an earlier one.
pub fn refuse_to_overwrite(out: &Path) -> Result<(), TrainError> {
    if out.join(STATE_FILE).exists() {
        return Err(TrainError::Usage(format!(
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(TrainError::Usage(format!(
            "--out {} exists and is not a directory",
            out.display()
        )));
    }
    Ok(())
}

pub fn read_state(out: &Path) -> Result<TrainState, TrainError> {
    let path = out.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        reason: format!("cannot resume: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        reason: format!("not a training state: {e}"),
    })
}

/// Writes the model directory and the training state.
pub fn save(
    out: &Path,
    config: &RsamConfig,
    tokenizer_source: &Path,
    varmap: &VarMap,
    optimizer: &AdamW,
    state: &TrainState,
) -> Result<(), TrainError> {
    let io = |path: &Path, e: std::io::Error| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out.join("train")).map_err(|e| io(out, e))?;

    let config_json = serde_json::to_string_pretty(config).expect("a config serialises") + "\n";
    write_atomic(&out.join("config.json"), config_json.as_bytes())?;

    let tokenizer_name = tokenizer_source.file_name().unwrap_or_default();
    let tokenizer_dest = out.join(tokenizer_name);
    if tokenizer_source != tokenizer_dest {
        let bytes = std::fs::read(tokenizer_source).map_err(|e| io(tokenizer_source, e))?;
        write_atomic(&tokenizer_dest, &bytes)?;
    }

    let tensors = current_weights(varmap);
    let model_path = out.join("model.safetensors");
    let tmp = temp_name(&model_path);
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &model_path).map_err(|e| io(&model_path, e))?;

    let opt_path = out.join(OPTIMIZER_FILE);
    let tmp = temp_name(&opt_path);
    optimizer.save(&tmp)?;
    std::fs::rename(&tmp, &opt_path).map_err(|e| io(&opt_path, e))?;

    let state_json = serde_json::to_string_pretty(state).expect("a state serialises") + "\n";
    write_atomic(&out.join(STATE_FILE), state_json.as_bytes())
}

/// The variables' current values as plain tensors (no gradient tracking,
/// sharing the variables' storage).
pub fn current_weights(varmap: &VarMap) -> std::collections::HashMap<String, candle_core::Tensor> {
    varmap
        .data()
        .lock()
        .expect("the variable map lock is not poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect()
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = temp_name(path);
    let fail = |e: std::io::Error| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
