//! What a model directory holds: an RSAM model (text, clicks, boxes, mask
//! prompts) or a SAM 2 / 2.1 model (clicks, boxes, mask prompts, no text).
//! `config.json` says so in its `"kind"` field; a config without one is an
//! RSAM config (every directory written before SAM 2 support).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Result, RsamError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Rsam,
    Sam2,
}

/// Only the field this module reads; the rest of the config is the kind's own.
#[derive(Deserialize)]
struct KindField {
    #[serde(default)]
    kind: Option<serde_json::Value>,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Rsam => "rsam",
            ModelKind::Sam2 => "sam2",
        }
    }

    /// The prompt types a model of this kind takes.
    pub fn prompts(self) -> &'static [&'static str] {
        match self {
            ModelKind::Rsam => &["text", "points", "box", "mask_input"],
            ModelKind::Sam2 => &["points", "box", "mask_input"],
        }
    }

    /// The kind of the model directory `dir`, from its `config.json`.
    pub fn of_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| RsamError::Config {
            path: path.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path)
    }

    /// The kind a `config.json` text declares.
    pub fn parse(config_text: &str, path: &Path) -> Result<Self> {
        let config_error = |reason: String| RsamError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let field: KindField =
            serde_json::from_str(config_text).map_err(|e| config_error(format!("invalid JSON: {e}")))?;
        match field.kind {
            None => Ok(ModelKind::Rsam),
            Some(serde_json::Value::String(s)) if s == "rsam" => Ok(ModelKind::Rsam),
            Some(serde_json::Value::String(s)) if s == "sam2" => Ok(ModelKind::Sam2),
            Some(other) => Err(config_error(format!(
                "unknown model kind {other}: expected \"rsam\" or \"sam2\""
            ))),
        }
    }

    /// Checks that a config text declares `expected`, with an error that says
    /// what the directory holds instead.
    pub fn expect_in(config_text: &str, expected: ModelKind, path: &Path) -> Result<()> {
        let found = Self::parse(config_text, path)?;
        if found == expected {
            return Ok(());
        }
        Err(RsamError::Config {
            path: path.to_path_buf(),
            reason: format!(
                "this is a model directory of kind {:?} ({}), not {:?}",
                found.as_str(),
                found.describe(),
                expected.as_str()
            ),
        })
    }

    fn describe(self) -> &'static str {
        match self {
            ModelKind::Rsam => "RSAM: text, points, boxes and mask prompts",
            ModelKind::Sam2 => "SAM 2: points, boxes and mask prompts, no text",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelKind> {
        ModelKind::parse(text, Path::new("config.json"))
    }

    #[test]
    fn absent_kind_is_rsam() {
        assert_eq!(parse(r#"{"image_size": 128}"#).unwrap(), ModelKind::Rsam);
        assert_eq!(parse(r#"{"kind": "rsam"}"#).unwrap(), ModelKind::Rsam);
        assert_eq!(parse(r#"{"kind": "sam2"}"#).unwrap(), ModelKind::Sam2);
    }

    #[test]
    fn unknown_kind_is_an_error_naming_it() {
        let err = parse(r#"{"kind": "sam3"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown model kind \"sam3\""), "{err}");
        let err = parse(r#"{"kind": 2}"#).unwrap_err().to_string();
        assert!(err.contains("unknown model kind 2"), "{err}");
        let err = parse("not json").unwrap_err().to_string();
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn wrong_kind_says_what_the_directory_holds() {
        let err = ModelKind::expect_in(r#"{"kind": "sam2"}"#, ModelKind::Rsam, Path::new("m/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind \"sam2\""), "{err}");
        assert!(err.contains("no text"), "{err}");
        assert!(ModelKind::expect_in("{}", ModelKind::Rsam, Path::new("c")).is_ok());
    }
}
