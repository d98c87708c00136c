//! Checkpoint reading and validation.
//!
//! Weights come as `model.safetensors` or as the checkpoint the official
//! training writes (`*.pt` / `*.pth`: a torch zip pickle whose top-level dict
//! holds the state dict under `"model"`, or a bare state dict). Building the
//! model through a recording VarBuilder backend checks every tensor the
//! architecture asks for; one error then lists each missing, unexpected or
//! mis-shaped key by name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Result, RsamError};

/// Key prefixes of tensors the official training checkpoint carries for
/// SAM 2's video memory, which RSAM inference never uses.
const TRAINING_ONLY_PREFIXES: &[&str] = &[
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "mask_downsample.",
    "memory_attention.",
    "memory_encoder.",
];
const TRAINING_ONLY_KEYS: &[&str] = &[
    "maskmem_tpos_enc",
    "no_mem_embed",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
];

/// Whether a checkpoint key is a training-only tensor that is accepted and ignored.
pub fn is_training_only(key: &str) -> bool {
    TRAINING_ONLY_KEYS.contains(&key) || TRAINING_ONLY_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The weight file formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    Safetensors,
    TorchPickle,
}

/// Finds the weights in a model directory: `model.safetensors` first, then a
/// single `*.pt` / `*.pth` file.
pub fn find_weights(dir: &Path) -> Result<(PathBuf, WeightsFormat)> {
    let st = dir.join("model.safetensors");
    if st.is_file() {
        return Ok((st, WeightsFormat::Safetensors));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| RsamError::ModelDir {
        path: dir.to_path_buf(),
        reason: format!("cannot list: {e}"),
    })?;
    let mut torch: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth")))
        .collect();
    torch.sort();
    match torch.len() {
        0 => Err(RsamError::ModelDir {
            path: dir.to_path_buf(),
            reason: "no weights: expected model.safetensors or a *.pt / *.pth checkpoint".into(),
        }),
        1 => Ok((torch.remove(0), WeightsFormat::TorchPickle)),
        _ => Err(RsamError::ModelDir {
            path: dir.to_path_buf(),
            reason: format!(
                "several checkpoints ({}); keep one or convert it to model.safetensors",
                torch
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Reads every tensor of a weights file into CPU memory.
pub fn read_tensors(path: &Path, format: WeightsFormat) -> Result<HashMap<String, Tensor>> {
    read_tensors_as(path, format, &HashSet::new())
}

/// [`read_tensors`], converting the tensors named in `bf16` to bf16 as
/// they are read (safetensors: one at a time, so that the f32 copy of the
/// converted tensors is never whole in memory).
pub fn read_tensors_as(path: &Path, format: WeightsFormat, bf16: &HashSet<String>) -> Result<HashMap<String, Tensor>> {
    let file_error = |reason: String| RsamError::WeightsFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    if meta.len() == 0 {
        return Err(file_error("the file is empty".into()));
    }
    // The third-party parsers are not hardened against hostile files: turn a
    // panic inside them into an error naming the file.
    let result = std::panic::catch_unwind(|| match format {
        WeightsFormat::Safetensors => {
            read_safetensors(path, bf16).map_err(|e| format!("not a valid safetensors file: {e}"))
        }
        WeightsFormat::TorchPickle => read_torch_checkpoint(path).and_then(|tensors| {
            tensors
                .into_iter()
                .map(|(name, t)| Ok((name.clone(), convert_if_named(t, &name, bf16)?)))
                .collect::<candle_core::Result<_>>()
                .map_err(|e| format!("cannot convert to bf16: {e}"))
        }),
    });
    let tensors = match result {
        Ok(Ok(tensors)) => tensors,
        Ok(Err(reason)) => return Err(file_error(reason)),
        Err(_) => return Err(file_error("the file is corrupt (the parser failed)".into())),
    };
    if tensors.is_empty() {
        return Err(file_error("the file holds no tensors".into()));
    }
    Ok(tensors)
}

/// Reads a safetensors file through a memory map, one tensor at a time.
/// `candle_core::safetensors::load` first reads the whole file into an
/// anonymous buffer, doubling peak memory, and an allocator that keeps freed
/// pages (mimalloc) then holds that second copy for the life of the process.
fn read_safetensors(path: &Path, bf16: &HashSet<String>) -> candle_core::Result<HashMap<String, Tensor>> {
    // SAFETY: the map is only read while this function runs and every
    // tensor is copied out before it is unmapped. A file truncated by
    // another process during these few seconds is the one hazard of mapping.
    let mapped = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
    mapped
        .tensors()
        .into_iter()
        .map(|(name, _)| {
            let tensor = convert_if_named(mapped.load(&name, &Device::Cpu)?, &name, bf16)?;
            Ok((name, tensor))
        })
        .collect()
}

/// `tensor` in bf16 if `name` is in `bf16`, unchanged otherwise.
fn convert_if_named(tensor: Tensor, name: &str, bf16: &HashSet<String>) -> candle_core::Result<Tensor> {
    if bf16.contains(name) {
        tensor.to_dtype(DType::BF16)
    } else {
        Ok(tensor)
    }
}

fn read_torch_checkpoint(path: &Path) -> std::result::Result<HashMap<String, Tensor>, String> {
    let describe = |e: candle_core::Error| {
        let msg = e.to_string();
        if msg.contains("InvalidArchive") || msg.contains("zip") || msg.contains("Zip") {
            format!("not a PyTorch zip checkpoint ({msg})")
        } else {
            format!("cannot read the PyTorch checkpoint: {msg}")
        }
    };
    // The official training saves {"model": state_dict, ...}; accept a bare
    // state dict too.
    let tensors = match candle_core::pickle::read_all_with_key(path, Some("model")) {
        Ok(t) => t,
        Err(e) if e.to_string().contains("key model not found") => {
            candle_core::pickle::read_all_with_key(path, None).map_err(describe)?
        }
        Err(e) => return Err(describe(e)),
    };
    Ok(tensors.into_iter().collect())
}

/// What building the model asked of the checkpoint.
#[derive(Debug, Default)]
struct Record {
    requested: BTreeSet<String>,
    missing: Vec<(String, Vec<usize>)>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

/// A VarBuilder backend over the loaded tensors that records every request,
/// so that all problems are reported at once instead of at the first one.
struct RecordingBackend {
    tensors: HashMap<String, Tensor>,
    record: Mutex<Record>,
}

impl SimpleBackend for RecordingBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut record = self.record.lock().expect("weights record lock");
        record.requested.insert(name.to_string());
        match self.tensors.get(name) {
            Some(t) if t.shape() == &shape => t.to_dtype(dtype)?.to_device(dev),
            Some(t) => {
                record
                    .mismatched
                    .push((name.to_string(), shape.dims().to_vec(), t.dims().to_vec()));
                Tensor::zeros(shape, dtype, dev)
            }
            None => {
                record.missing.push((name.to_string(), shape.dims().to_vec()));
                Tensor::zeros(shape, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.record
            .lock()
            .expect("weights record lock")
            .requested
            .insert(name.to_string());
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("missing tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Report of a successful load.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Training-only keys that were accepted and ignored.
    pub ignored_keys: Vec<String>,
    /// Number of parameters the model uses.
    pub num_parameters: usize,
    /// Parameters per component (`image_encoder.trunk`, `text_encoder`, ...).
    pub parameters_by_component: std::collections::BTreeMap<String, usize>,
}

/// The component a key belongs to: its first path segment, or the first two
/// for the image encoder (trunk and neck are worth telling apart).
pub fn component_of(key: &str) -> String {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default();
    match (first, parts.next()) {
        ("image_encoder", Some(second)) => format!("{first}.{second}"),
        _ => first.to_string(),
    }
}

/// Builds a model with `build` over `tensors`, checking every key.
pub fn build_checked<T>(
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<(T, LoadReport)> {
    let keys: Vec<(String, usize)> = tensors.iter().map(|(k, t)| (k.clone(), t.elem_count())).collect();
    let backend = std::sync::Arc::new(RecordingBackend {
        tensors,
        record: Mutex::new(Record::default()),
    });
    let vb = VarBuilder::from_backend(Box::new(SharedBackend(backend.clone())), dtype, device.clone());
    let built = build(vb);
    let record = std::mem::take(&mut *backend.record.lock().expect("weights record lock"));
    drop(backend);

    let mut unexpected = Vec::new();
    let mut ignored = Vec::new();
    let mut num_parameters = 0;
    let mut parameters_by_component = std::collections::BTreeMap::new();
    for (key, count) in &keys {
        if record.requested.contains(key) {
            num_parameters += count;
            *parameters_by_component.entry(component_of(key)).or_insert(0) += count;
        } else if is_training_only(key) {
            ignored.push(key.clone());
        } else {
            unexpected.push(key.clone());
        }
    }
    ignored.sort();
    unexpected.sort();
    if !record.missing.is_empty() || !record.mismatched.is_empty() || !unexpected.is_empty() {
        let mut lines = Vec::new();
        for (k, shape) in &record.missing {
            lines.push(format!("  missing key {k} (expected shape {shape:?})"));
        }
        for (k, want, got) in &record.mismatched {
            lines.push(format!("  mis-shaped key {k}: expected {want:?}, found {got:?}"));
        }
        for k in &unexpected {
            lines.push(format!("  unexpected key {k}"));
        }
        return Err(RsamError::WeightsMismatch(lines.join("\n")));
    }
    let model = built?;
    Ok((
        model,
        LoadReport {
            ignored_keys: ignored,
            num_parameters,
            parameters_by_component,
        },
    ))
}

/// `SimpleBackend` over a shared recording backend (the VarBuilder owns a
/// box; we keep an `Arc` to read the record afterwards).
struct SharedBackend(std::sync::Arc<RecordingBackend>);

impl SimpleBackend for SharedBackend {
    fn get(&self, s: Shape, name: &str, h: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
