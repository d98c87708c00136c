//! BERT checkpoints as Hugging Face ships them, renamed the way the official
//! `CkptRsamInitKernel.replace_bert_to_textencoder` renames them.
//!
//! `bert-base-uncased` comes as `pytorch_model.bin` (a torch zip pickle, with
//! TensorFlow's `gamma` / `beta` names for the LayerNorms) and as
//! `model.safetensors`; both hold `bert.*` encoder tensors plus the `cls.*`
//! pre-training heads. A bare `BertModel` saves the same tensors without the
//! `bert.` prefix, which the official kernel would silently drop; it is
//! accepted here too.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::weights::{self, WeightsFormat};
use crate::{Result, RsamError};

/// Where the encoder's tensors go in an RSAM model.
pub const TEXT_ENCODER_PREFIX: &str = "text_encoder.";
/// The one tensor every BERT checkpoint has, as renamed.
const WORD_EMBEDDINGS: &str = "text_encoder.embeddings.word_embeddings.weight";

/// The first bytes of a legacy (non-zip) `torch.save` file: pickle protocol
/// 2, then the magic number 0x1950a86a20f9469cfc6c as a 10-byte long.
const LEGACY_TORCH_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// The BERT weights file of `path`: the file itself, or in a folder
/// `model.safetensors`, else `pytorch_model.bin`.
pub fn find_bert_weights(path: &Path) -> Result<(PathBuf, WeightsFormat)> {
    let format_of = |p: &Path| match p.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => WeightsFormat::Safetensors,
        _ => WeightsFormat::TorchPickle,
    };
    if path.is_file() {
        return Ok((path.to_path_buf(), format_of(path)));
    }
    if path.is_dir() {
        for name in ["model.safetensors", "pytorch_model.bin"] {
            let candidate = path.join(name);
            if candidate.is_file() {
                let format = format_of(&candidate);
                return Ok((candidate, format));
            }
        }
        return Err(RsamError::ModelDir {
            path: path.to_path_buf(),
            reason: "no BERT weights: expected model.safetensors or pytorch_model.bin".into(),
        });
    }
    Err(RsamError::WeightsFile {
        path: path.to_path_buf(),
        reason: "no such file or folder".into(),
    })
}

/// Reads a BERT checkpoint and renames it: `text_encoder.*` tensors in f32,
/// plus the keys left out (pre-training heads, the pooler, the
/// `position_ids` buffer of newer exports), sorted.
pub fn read_bert(path: &Path, format: WeightsFormat) -> Result<(HashMap<String, Tensor>, Vec<String>)> {
    let file_error = |reason: String| RsamError::WeightsFile {
        path: path.to_path_buf(),
        reason,
    };
    if format == WeightsFormat::TorchPickle && is_legacy_torch_file(path) {
        return Err(file_error(
            "a legacy (non-zip) torch.save file, which rsam cannot read: use the model.safetensors that \
             Hugging Face ships beside it, or save the state dict again with a current torch.save"
                .into(),
        ));
    }
    let tensors = weights::read_tensors(path, format)?;
    let (renamed, dropped) = rename_bert(tensors);
    if !renamed.contains_key(WORD_EMBEDDINGS) {
        return Err(file_error(
            "not a BERT checkpoint: it has no bert.embeddings.word_embeddings.weight".into(),
        ));
    }
    let renamed = renamed
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    Ok((renamed, dropped))
}

/// The official renaming: `bert.` -> `text_encoder.`, `gamma` -> `weight`,
/// `beta` -> `bias` (every occurrence, as `str.replace` does), `cls.*` and
/// `bert.pooler.*` dropped. Keys without the `bert.` prefix get
/// `text_encoder.` put in front. Returns the renamed tensors and the
/// dropped keys, sorted.
pub fn rename_bert(tensors: HashMap<String, Tensor>) -> (HashMap<String, Tensor>, Vec<String>) {
    let mut renamed = HashMap::new();
    let mut dropped = Vec::new();
    for (key, tensor) in tensors {
        let bare = key.strip_prefix("bert.").unwrap_or(&key);
        let unused = key.starts_with("cls.") || bare.starts_with("pooler.") || bare == "embeddings.position_ids";
        if unused {
            dropped.push(key);
            continue;
        }
        let name = if key.starts_with("bert.") {
            key.replace("bert.", TEXT_ENCODER_PREFIX)
        } else {
            format!("{TEXT_ENCODER_PREFIX}{key}")
        };
        renamed.insert(name.replace("gamma", "weight").replace("beta", "bias"), tensor);
    }
    dropped.sort();
    (renamed, dropped)
}

/// Whether a file starts like a legacy (pre zip) `torch.save` file.
pub fn is_legacy_torch_file(path: &Path) -> bool {
    let mut head = [0u8; LEGACY_TORCH_MAGIC.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| head == LEGACY_TORCH_MAGIC)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t() -> Tensor {
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn renames_like_the_official_kernel() {
        let keys = [
            "bert.embeddings.LayerNorm.gamma",
            "bert.encoder.layer.0.attention.output.LayerNorm.beta",
            "bert.encoder.layer.0.attention.self.query.weight",
            "bert.pooler.dense.weight",
            "cls.predictions.bias",
            "cls.predictions.transform.LayerNorm.gamma",
        ];
        let (renamed, dropped) = rename_bert(keys.iter().map(|k| (k.to_string(), t())).collect());
        let mut names: Vec<_> = renamed.keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "text_encoder.embeddings.LayerNorm.weight",
                "text_encoder.encoder.layer.0.attention.output.LayerNorm.bias",
                "text_encoder.encoder.layer.0.attention.self.query.weight",
            ]
        );
        assert_eq!(
            dropped,
            vec![
                "bert.pooler.dense.weight",
                "cls.predictions.bias",
                "cls.predictions.transform.LayerNorm.gamma"
            ]
        );
    }

    #[test]
    fn unprefixed_keys_are_the_encoder_too() {
        let keys = [
            "embeddings.word_embeddings.weight",
            "encoder.layer.1.output.LayerNorm.weight",
            "pooler.dense.bias",
            "embeddings.position_ids",
        ];
        let (renamed, dropped) = rename_bert(keys.iter().map(|k| (k.to_string(), t())).collect());
        assert!(renamed.contains_key("text_encoder.embeddings.word_embeddings.weight"));
        assert!(renamed.contains_key("text_encoder.encoder.layer.1.output.LayerNorm.weight"));
        assert_eq!(dropped, vec!["embeddings.position_ids", "pooler.dense.bias"]);
    }
}
