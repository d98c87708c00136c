//! The `config.json` of a SAM 2 model directory (`"kind": "sam2"`).
//!
//! The image predictor's architecture as `build_sam2()` builds it from the
//! official yamls: Hiera trunk, FPN neck of width `d_model` (scalp 1, top-down
//! fusion on levels 2 and 3), prompt encoder and mask decoder with SAM's fixed
//! widths (8 heads, MLP 2048, `mask_in_chans` 16, IoU head 256 x 3 layers,
//! sigmoid IoUs, an MLP object-score head, high-resolution features), the
//! `no_mem_embed` added to the image embedding, and the dynamic multimask
//! fallback that `build_sam2()` switches on (delta 0.05, threshold 0.98).
//! Everything but `image_size`, `d_model` and `hiera` has the official value
//! as its default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{validate_architecture, HieraConfig, HieraSize, SamArchitecture};
use crate::model_kind::ModelKind;
use crate::{Result, RsamError};

/// SAM 2 (July 2024) or SAM 2.1 (September 2024). The image predictor is the
/// same network in both; 2.1 changed video-only modules and the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sam2Version {
    #[serde(rename = "2")]
    Sam2,
    #[serde(rename = "2.1")]
    Sam2_1,
}

impl Sam2Version {
    /// `sam2` or `sam2.1`, as the official file names start.
    pub fn prefix(self) -> &'static str {
        match self {
            Sam2Version::Sam2 => "sam2",
            Sam2Version::Sam2_1 => "sam2.1",
        }
    }
}

fn default_kind() -> ModelKind {
    ModelKind::Sam2
}
fn default_name() -> String {
    "sam2".to_string()
}
fn default_fpn_top_down_levels() -> Vec<usize> {
    vec![2, 3]
}
fn default_scalp() -> usize {
    1
}
fn default_mask_in_chans() -> usize {
    16
}
fn default_heads() -> usize {
    8
}
fn default_mlp_dim() -> usize {
    2048
}
fn default_iou_head_hidden_dim() -> usize {
    256
}
fn default_iou_head_depth() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_stability_delta() -> f64 {
    0.05
}
fn default_stability_thresh() -> f64 {
    0.98
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sam2Config {
    /// Always `sam2`: the field that tells this directory from an RSAM one.
    #[serde(default = "default_kind")]
    pub kind: ModelKind,
    #[serde(default = "default_name")]
    pub name: String,
    /// Which release the weights come from (informational).
    #[serde(default)]
    pub version: Option<Sam2Version>,
    /// Square input size S (1024 for every official checkpoint).
    pub image_size: usize,
    /// Prompt / mask decoder / FPN width (256 for every official checkpoint).
    pub d_model: usize,
    pub hiera: HieraConfig,
    #[serde(default = "default_fpn_top_down_levels")]
    pub fpn_top_down_levels: Vec<usize>,
    #[serde(default = "default_scalp")]
    pub scalp: usize,
    #[serde(default = "default_mask_in_chans")]
    pub mask_in_chans: usize,
    #[serde(default = "default_heads")]
    pub transformer_num_heads: usize,
    #[serde(default = "default_mlp_dim")]
    pub transformer_mlp_dim: usize,
    #[serde(default = "default_iou_head_hidden_dim")]
    pub iou_head_hidden_dim: usize,
    #[serde(default = "default_iou_head_depth")]
    pub iou_head_depth: usize,
    #[serde(default = "default_true")]
    pub iou_prediction_use_sigmoid: bool,
    #[serde(default = "default_true")]
    pub pred_obj_scores_mlp: bool,
    /// `SAM2Base.directly_add_no_mem_embed`: the image predictor adds
    /// `no_mem_embed` to the lowest-resolution features.
    #[serde(default = "default_true")]
    pub directly_add_no_mem_embed: bool,
    /// With a single output, fall back to the best multimask output when the
    /// single-mask output is unstable (`build_sam2(apply_postprocessing=True)`).
    #[serde(default = "default_true")]
    pub dynamic_multimask_via_stability: bool,
    #[serde(default = "default_stability_delta")]
    pub dynamic_multimask_stability_delta: f64,
    #[serde(default = "default_stability_thresh")]
    pub dynamic_multimask_stability_thresh: f64,
}

impl Sam2Config {
    /// The official image predictor of one size and release, at 1024 px.
    pub fn preset(size: HieraSize, version: Sam2Version) -> Self {
        let json = serde_json::json!({
            "kind": "sam2",
            "name": format!("{}_hiera_{}", version.prefix(), size.file_name()),
            "version": version,
            "image_size": 1024,
            "d_model": 256,
            "hiera": size.hiera(),
        });
        serde_json::from_value(json).expect("preset config is valid")
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let config_error = |reason: String| RsamError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| config_error(format!("cannot read: {e}")))?;
        Self::from_json(&text, path)
    }

    /// Parses and checks a config text; `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let config_error = |reason: String| RsamError::Config {
            path: path.to_path_buf(),
            reason,
        };
        ModelKind::expect_in(text, ModelKind::Sam2, path)?;
        let config: Sam2Config =
            serde_json::from_str(text).map_err(|e| config_error(format!("invalid JSON or schema: {e}")))?;
        config.validate().map_err(config_error)?;
        Ok(config)
    }

    /// Checks the relations the architecture needs.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.kind != ModelKind::Sam2 {
            return Err(format!("kind must be \"sam2\", got {:?}", self.kind.as_str()));
        }
        validate_architecture(self)?;
        let delta = self.dynamic_multimask_stability_delta;
        if !delta.is_finite() || delta < 0.0 {
            return Err(format!(
                "dynamic_multimask_stability_delta {delta} must be a finite number >= 0"
            ));
        }
        let thresh = self.dynamic_multimask_stability_thresh;
        if !(0.0..=1.0).contains(&thresh) {
            return Err(format!(
                "dynamic_multimask_stability_thresh {thresh} must be between 0 and 1"
            ));
        }
        Ok(())
    }

    /// Side of the low-resolution mask logits (S / 4).
    pub fn low_res_size(&self) -> usize {
        self.image_size / 4
    }
}

impl SamArchitecture for Sam2Config {
    fn image_size(&self) -> usize {
        self.image_size
    }
    fn d_model(&self) -> usize {
        self.d_model
    }
    fn hiera(&self) -> &HieraConfig {
        &self.hiera
    }
    fn fpn_top_down_levels(&self) -> &[usize] {
        &self.fpn_top_down_levels
    }
    fn scalp(&self) -> usize {
        self.scalp
    }
    fn mask_in_chans(&self) -> usize {
        self.mask_in_chans
    }
    fn transformer_num_heads(&self) -> usize {
        self.transformer_num_heads
    }
    fn transformer_mlp_dim(&self) -> usize {
        self.transformer_mlp_dim
    }
    fn iou_head_hidden_dim(&self) -> usize {
        self.iou_head_hidden_dim
    }
    fn iou_head_depth(&self) -> usize {
        self.iou_head_depth
    }
    fn iou_prediction_use_sigmoid(&self) -> bool {
        self.iou_prediction_use_sigmoid
    }
    fn pred_obj_scores_mlp(&self) -> bool {
        self.pred_obj_scores_mlp
    }
    fn text_positions(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_official_yamls() {
        for size in HieraSize::ALL {
            for version in [Sam2Version::Sam2, Sam2Version::Sam2_1] {
                let c = Sam2Config::preset(size, version);
                c.validate().unwrap();
                assert_eq!((c.image_size, c.d_model), (1024, 256));
                assert!(c.dynamic_multimask_via_stability && c.directly_add_no_mem_embed);
                assert_eq!(c.dynamic_multimask_stability_delta, 0.05);
                assert_eq!(c.dynamic_multimask_stability_thresh, 0.98);
            }
        }
        let large = Sam2Config::preset(HieraSize::Large, Sam2Version::Sam2_1);
        assert_eq!(large.name, "sam2.1_hiera_large");
        assert_eq!(large.hiera.window_spec, vec![8, 4, 16, 8]);
        assert_eq!(large.stage_dims(), vec![144, 288, 576, 1152]);
        let bp = Sam2Config::preset(HieraSize::BasePlus, Sam2Version::Sam2);
        assert_eq!(bp.name, "sam2_hiera_base_plus");
        assert_eq!(bp.hiera.window_pos_embed_bkg_spatial_size, [14, 14]);
    }

    #[test]
    fn config_round_trips_and_defaults_are_official() {
        let c = Sam2Config::preset(HieraSize::Tiny, Sam2Version::Sam2_1);
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"kind\":\"sam2\"") && text.contains("\"version\":\"2.1\""));
        assert_eq!(Sam2Config::from_json(&text, Path::new("c.json")).unwrap(), c);
        let minimal = r#"{"kind": "sam2", "image_size": 256, "d_model": 32,
            "hiera": {"embed_dim": 8, "num_heads": 1, "stages": [1, 1, 2, 1], "window_spec": [8, 4, 14, 7],
                      "global_att_blocks": [3], "window_pos_embed_bkg_spatial_size": [7, 7]}}"#;
        let c = Sam2Config::from_json(minimal, Path::new("c.json")).unwrap();
        assert_eq!(
            (c.transformer_num_heads, c.transformer_mlp_dim, c.mask_in_chans),
            (8, 2048, 16)
        );
        assert_eq!(c.low_res_size(), 64);
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let err = Sam2Config::from_json(r#"{"image_size": 256}"#, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind \"rsam\""), "{err}");
        let mut c = Sam2Config::preset(HieraSize::Tiny, Sam2Version::Sam2_1);
        c.image_size = 1000;
        assert!(c.validate().unwrap_err().contains("multiple of 16"));
        let mut c = Sam2Config::preset(HieraSize::Tiny, Sam2Version::Sam2_1);
        c.dynamic_multimask_stability_thresh = 1.5;
        assert!(c.validate().unwrap_err().contains("between 0 and 1"));
        let mut c = Sam2Config::preset(HieraSize::Tiny, Sam2Version::Sam2_1);
        c.dynamic_multimask_stability_delta = f64::NAN;
        assert!(c.validate().unwrap_err().contains("delta"));
        let text = serde_json::to_string(&Sam2Config::preset(HieraSize::Tiny, Sam2Version::Sam2_1))
            .unwrap()
            .replace("\"d_model\":256", "\"d_model\":\"wide\"");
        let err = Sam2Config::from_json(&text, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid JSON or schema"), "{err}");
    }
}
