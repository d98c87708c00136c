//! Saved predictions: a JSON list of `{"image": NAME, "id": <annotation id>,
//! "segmentation": {"size": [h, w], "counts": "<COCO compressed RLE>"}}`.
//!
//! The same file is written by `--save-predictions` and scored by
//! `--predictions`, so masks from any implementation (the official PyTorch
//! one included) go through exactly the same scoring code as ours.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};
use crate::mask::rle::Rle;
use crate::risors::AnnotationId;

/// One saved mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub image: String,
    pub id: AnnotationId,
    pub segmentation: Rle,
}

/// Saved masks by (image, annotation id).
#[derive(Debug, Default)]
pub struct PredictionSet {
    masks: HashMap<(String, AnnotationId), Rle>,
}

impl PredictionSet {
    /// Reads a predictions file. When a (image, id) pair appears twice the
    /// first one is kept, like a lookup in file order would.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let records: Vec<PredictionRecord> = serde_json::from_slice(&bytes).map_err(|e| EvalError::Predictions {
            path: path.to_path_buf(),
            reason: format!("expected a JSON list of {{\"image\", \"id\", \"segmentation\"}}: {e}"),
        })?;
        let mut masks = HashMap::with_capacity(records.len());
        for r in records {
            masks.entry((r.image, r.id)).or_insert(r.segmentation);
        }
        Ok(Self { masks })
    }

    pub fn get(&self, image: &str, id: &AnnotationId) -> Option<&Rle> {
        self.masks.get(&(image.to_string(), id.clone()))
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }
}

/// Writes records as a JSON list, one record per line (diff- and grep-able).
pub fn write(path: &Path, records: &[PredictionRecord]) -> Result<()> {
    let err = |source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(err)?;
    let mut out = std::io::BufWriter::new(file);
    let mut body = String::from("[");
    for (i, r) in records.iter().enumerate() {
        body.push_str(if i == 0 { "\n" } else { ",\n" });
        // Serialising plain strings and numbers cannot fail.
        body.push_str(&serde_json::to_string(r).unwrap_or_default());
    }
    body.push_str("\n]\n");
    out.write_all(body.as_bytes()).map_err(err)?;
    out.flush().map_err(err)
}
