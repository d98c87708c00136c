//! `rsam convert --sam2 CKPT --out DIR`: an official SAM 2 / 2.1 checkpoint
//! (`sam2_hiera_*.pt`, `sam2.1_hiera_*.pt`: the whole `SAM2Base` state dict
//! under `"model"`) into a model directory of kind `sam2`.
//!
//! The Hiera size is recognised from the tensors' names and shapes (each
//! official size has its own width and block count), the release from the
//! video-only tensors that SAM 2.1 added; `--config` gives the architecture
//! instead. Only what the image predictor uses is kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::config::{Sam2Config, Sam2Version};
use super::network::Sam2Network;
use crate::config::HieraSize;
use crate::weights::{self, LoadReport, WeightsFormat};
use crate::{Result, RsamError};

/// Key prefixes of the modules `SAM2ImagePredictor` runs.
const PREDICTOR_PREFIXES: [&str; 3] = ["image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder."];
/// The one loose parameter it uses.
const NO_MEM_EMBED: &str = "no_mem_embed";
/// Tensors only SAM 2.1 checkpoints have (`no_obj_embed_spatial: true`,
/// `proj_tpos_enc_in_obj_ptrs: true` in its configs).
const SAM2_1_MARKERS: [&str; 2] = ["no_obj_embed_spatial", "obj_ptr_tpos_proj.weight"];
/// Present in every SAM 2 checkpoint: the first tensor the image encoder reads.
const FIRST_KEY: &str = "image_encoder.trunk.patch_embed.proj.weight";

/// Whether the image predictor uses a checkpoint key.
pub fn is_predictor_key(key: &str) -> bool {
    key == NO_MEM_EMBED || PREDICTOR_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// What a conversion found and wrote.
#[derive(Debug, Clone)]
pub struct Sam2Conversion {
    pub config: Sam2Config,
    /// The recognised size (`None` when `--config` gave the architecture).
    pub size: Option<HieraSize>,
    pub version: Sam2Version,
    pub report: LoadReport,
    /// Checkpoint keys left out (video-only modules), sorted.
    pub dropped_keys: Vec<String>,
    pub weights_path: PathBuf,
}

/// Reads a SAM 2 checkpoint (torch zip pickle, or safetensors by extension).
pub fn read_sam2_checkpoint(checkpoint: &Path) -> Result<HashMap<String, Tensor>> {
    let format = match checkpoint.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => WeightsFormat::Safetensors,
        _ => WeightsFormat::TorchPickle,
    };
    let tensors = weights::read_tensors(checkpoint, format)?;
    check_is_sam2(&tensors).map_err(|reason| RsamError::WeightsFile {
        path: checkpoint.to_path_buf(),
        reason,
    })?;
    Ok(tensors)
}

/// Recognises a SAM 2 state dict, or says what the file holds instead.
fn check_is_sam2(tensors: &HashMap<String, Tensor>) -> std::result::Result<(), String> {
    if tensors
        .keys()
        .any(|k| k.starts_with("text_encoder.") || k.starts_with("description_transformer."))
    {
        return Err("an RSAM checkpoint, not a SAM 2 one (it has a text encoder): convert it with --checkpoint".into());
    }
    if tensors.contains_key(FIRST_KEY) && tensors.contains_key(NO_MEM_EMBED) {
        return Ok(());
    }
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    let sample: Vec<&str> = keys.iter().take(3).map(|k| k.as_str()).collect();
    let missing = if tensors.contains_key(FIRST_KEY) {
        NO_MEM_EMBED
    } else {
        FIRST_KEY
    };
    Err(format!(
        "not a SAM 2 checkpoint: it has no {missing} (its {} tensors start with {})",
        tensors.len(),
        sample.join(", ")
    ))
}

/// SAM 2.1 if the checkpoint has the tensors 2.1 added, else SAM 2.
pub fn detect_version(tensors: &HashMap<String, Tensor>) -> Sam2Version {
    if SAM2_1_MARKERS.iter().any(|k| tensors.contains_key(*k)) {
        Sam2Version::Sam2_1
    } else {
        Sam2Version::Sam2
    }
}

/// One official size's image predictor: its tensors' shapes, and their names
/// in the order the network reads them.
#[derive(Clone)]
struct Candidate {
    size: HieraSize,
    shapes: BTreeMap<String, Vec<usize>>,
    order: Vec<String>,
}

impl Candidate {
    fn of(size: HieraSize) -> std::result::Result<Self, String> {
        let config = Sam2Config::preset(size, Sam2Version::Sam2_1);
        let ordered = crate::bench::shapes_in_build_order(|vb| Sam2Network::new(&config, vb))
            .map_err(|e| format!("cannot list the {size:?} architecture: {e}"))?;
        Ok(Self {
            size,
            order: ordered.iter().map(|(k, _)| k.clone()).collect(),
            shapes: ordered.into_iter().collect(),
        })
    }

    /// What this size expects at `key`, for messages.
    fn describe(&self, key: &str) -> String {
        match self.shapes.get(key) {
            Some(shape) => format!("{} {shape:?}", size_name(self.size)),
            None => format!("{} no such tensor", size_name(self.size)),
        }
    }
}

/// The official size whose image predictor has exactly the checkpoint's
/// predictor tensors. The error names the first tensor (in the order the
/// network reads them) that no remaining size accepts, with its shape and
/// what each of those sizes expects there.
pub fn infer_size(tensors: &HashMap<String, Tensor>) -> std::result::Result<HieraSize, String> {
    let mut alive = HieraSize::ALL
        .into_iter()
        .map(Candidate::of)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for key in &keys_to_check(&alive, tensors) {
        let have = tensors.get(key).map(|t| t.dims().to_vec());
        let fits: Vec<Candidate> = alive
            .iter()
            .filter(|c| c.shapes.get(key) == have.as_ref())
            .cloned()
            .collect();
        if fits.is_empty() {
            let found = match &have {
                Some(shape) => format!("has shape {shape:?}"),
                None => "is missing".to_string(),
            };
            let wanted: Vec<String> = alive.iter().map(|c| c.describe(key)).collect();
            return Err(format!(
                "the checkpoint fits no SAM 2 size: {key} {found} (expected: {}); give --config with its architecture",
                wanted.join(", ")
            ));
        }
        alive = fits;
    }
    Ok(alive[0].size)
}

/// Keys in the order the networks read them, the smallest size's first,
/// then the checkpoint's own predictor keys that no size reads.
fn keys_to_check(candidates: &[Candidate], tensors: &HashMap<String, Tensor>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for key in candidates.iter().flat_map(|c| &c.order) {
        if seen.insert(key.clone()) {
            order.push(key.clone());
        }
    }
    let mut extra: Vec<String> = tensors
        .keys()
        .filter(|k| is_predictor_key(k) && !seen.contains(*k))
        .cloned()
        .collect();
    extra.sort();
    order.extend(extra);
    order
}

fn size_name(size: HieraSize) -> &'static str {
    match size {
        HieraSize::Tiny => "tiny",
        HieraSize::Small => "small",
        HieraSize::BasePlus => "base+",
        HieraSize::Large => "large",
    }
}

/// Converts a SAM 2 checkpoint into a model directory: `config.json` (kind
/// `sam2`) and `model.safetensors` with the predictor's tensors in `storage`
/// dtype. `config` overrides the recognised architecture.
pub fn convert_sam2(
    checkpoint: &Path,
    config: Option<Sam2Config>,
    out: &Path,
    storage: DType,
) -> Result<Sam2Conversion> {
    let tensors = read_sam2_checkpoint(checkpoint)?;
    let version = detect_version(&tensors);
    let file_error = |reason: String| RsamError::WeightsFile {
        path: checkpoint.to_path_buf(),
        reason,
    };
    let (config, size) = match config {
        Some(mut c) => {
            c.version = c.version.or(Some(version));
            (c, None)
        }
        None => {
            let size = infer_size(&tensors).map_err(file_error)?;
            (Sam2Config::preset(size, version), Some(size))
        }
    };
    config.validate().map_err(|reason| RsamError::Config {
        path: checkpoint.to_path_buf(),
        reason,
    })?;
    let (kept, mut dropped): (HashMap<String, Tensor>, HashMap<String, Tensor>) =
        tensors.into_iter().partition(|(k, _)| is_predictor_key(k));
    let (_, report) = weights::build_checked(kept.clone(), DType::F32, &Device::Cpu, |vb| {
        Sam2Network::new(&config, vb)
    })?;
    let mut dropped_keys: Vec<String> = dropped.drain().map(|(k, _)| k).collect();
    dropped_keys.sort();

    let weights_path = write_model_dir(out, &config, kept, storage)?;
    Ok(Sam2Conversion {
        config,
        size,
        version,
        report,
        dropped_keys,
        weights_path,
    })
}

fn write_model_dir(
    out: &Path,
    config: &Sam2Config,
    tensors: HashMap<String, Tensor>,
    storage: DType,
) -> Result<PathBuf> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RsamError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let config_path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(&config_path, json).map_err(io_error(&config_path))?;
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(storage)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let weights_path = out.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights_path).map_err(|e| RsamError::WeightsFile {
        path: weights_path.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    Ok(weights_path)
}
