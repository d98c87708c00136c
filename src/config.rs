//! Model configuration: the `config.json` of a model directory.
//!
//! The schema is the one of the official fixtures (`image_size`, `d_model`,
//! `num_twgt`, `hiera`, `bert`). Everything else the official code fixes
//! (8 heads and MLP width 2048 in the TWGM and mask decoder, `mask_in_chans`
//! 16, a sigmoid IoU head, an MLP object-score head, high-resolution features)
//! is kept as optional keys with the official defaults so that a config
//! written by us or by hand reads the same.
//!
//! Also here: the four SAM 2 image encoder sizes ([`HieraSize`]) behind the
//! presets, and [`SamArchitecture`], the view of a config that the SAM parts
//! of the network read (RSAM and SAM 2 configs both give it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Result, RsamError};

fn default_q_pool() -> usize {
    3
}
fn default_q_stride() -> usize {
    2
}
fn default_mul() -> f64 {
    2.0
}
fn default_mlp_ratio() -> f64 {
    4.0
}

/// HieraDet trunk hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HieraConfig {
    pub embed_dim: usize,
    pub num_heads: usize,
    /// Blocks per stage.
    pub stages: Vec<usize>,
    /// Window size per stage (0 would mean global attention).
    pub window_spec: Vec<usize>,
    /// Indices of blocks with global attention.
    pub global_att_blocks: Vec<usize>,
    /// Size of the background positional embedding, resampled bicubically to
    /// the patch grid.
    pub window_pos_embed_bkg_spatial_size: [usize; 2],
    #[serde(default = "default_q_pool")]
    pub q_pool: usize,
    #[serde(default = "default_q_stride")]
    pub q_stride: usize,
    #[serde(default = "default_mul")]
    pub dim_mul: f64,
    #[serde(default = "default_mul")]
    pub head_mul: f64,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_string()
}

/// BERT text encoder hyperparameters (Hugging Face names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub hidden_dropout_prob: f64,
    #[serde(default)]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default)]
    pub initializer_range: f64,
    /// The official BERT uses a TF-style LayerNorm with epsilon 1e-12.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

fn default_name() -> String {
    "rsam".to_string()
}
fn default_heads() -> usize {
    8
}
fn default_mlp_dim() -> usize {
    2048
}
fn default_mask_in_chans() -> usize {
    16
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
fn default_fpn_top_down_levels() -> Vec<usize> {
    vec![2, 3]
}
fn default_scalp() -> usize {
    1
}
fn default_max_text_positions() -> usize {
    512
}
fn default_text_truncation() -> Option<usize> {
    Some(47)
}

/// Full RSAM configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RsamConfig {
    #[serde(default = "default_name")]
    pub name: String,
    /// Square input size S (800 for the released model).
    pub image_size: usize,
    /// Prompt / mask decoder / FPN width.
    pub d_model: usize,
    /// Number of Two-Way Guidance Transformer layers.
    pub num_twgt: usize,
    pub hiera: HieraConfig,
    pub bert: BertConfig,
    #[serde(default = "default_heads")]
    pub transformer_num_heads: usize,
    #[serde(default = "default_mlp_dim")]
    pub transformer_mlp_dim: usize,
    #[serde(default = "default_mask_in_chans")]
    pub mask_in_chans: usize,
    #[serde(default = "default_iou_head_hidden_dim")]
    pub iou_head_hidden_dim: usize,
    #[serde(default = "default_iou_head_depth")]
    pub iou_head_depth: usize,
    #[serde(default = "default_true")]
    pub iou_prediction_use_sigmoid: bool,
    #[serde(default = "default_true")]
    pub pred_obj_scores_mlp: bool,
    #[serde(default = "default_fpn_top_down_levels")]
    pub fpn_top_down_levels: Vec<usize>,
    /// How many of the lowest-resolution FPN levels are dropped (official: 1).
    #[serde(default = "default_scalp")]
    pub scalp: usize,
    #[serde(default = "default_max_text_positions")]
    pub max_text_positions: usize,
    /// Sentences are cut to this many tokens, `[CLS]` and `[SEP]` included,
    /// as the official training and evaluation do (`collate_fn` with
    /// `max_tokens: 47`). `null` keeps every token up to the position limit.
    #[serde(default = "default_text_truncation")]
    pub text_truncation: Option<usize>,
}

/// Stride of the image embedding the mask decoder works on.
pub const BACKBONE_STRIDE: usize = 16;

impl RsamConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| RsamError::Config {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        crate::model_kind::ModelKind::expect_in(&text, crate::model_kind::ModelKind::Rsam, path)?;
        let config: RsamConfig = serde_json::from_str(&text).map_err(|e| RsamError::Config {
            path: path.to_path_buf(),
            reason: format!("invalid JSON or schema: {e}"),
        })?;
        config.validate().map_err(|reason| RsamError::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Checks the relations the architecture needs, so that a bad config is a
    /// clear error instead of a shape mismatch deep inside a forward pass.
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_architecture(self)?;
        let b = &self.bert;
        if b.num_attention_heads == 0 || !b.hidden_size.is_multiple_of(b.num_attention_heads) {
            return Err(format!(
                "bert.hidden_size {} must be divisible by bert.num_attention_heads {}",
                b.hidden_size, b.num_attention_heads
            ));
        }
        if b.hidden_act != "gelu" {
            return Err(format!(
                "bert.hidden_act {:?} is not supported (gelu only)",
                b.hidden_act
            ));
        }
        Ok(())
    }

    /// Channels of each Hiera stage output, highest resolution first.
    pub fn stage_dims(&self) -> Vec<usize> {
        hiera_stage_dims(&self.hiera)
    }

    /// Side of the stride-16 image embedding.
    pub fn embedding_size(&self) -> usize {
        self.image_size / BACKBONE_STRIDE
    }

    /// Side of the low-resolution mask logits (S / 4).
    pub fn low_res_size(&self) -> usize {
        self.image_size / 4
    }

    /// The released configuration: Hiera base+, BERT base, 800 px, 2 TWGT layers.
    pub fn base_plus_800() -> Self {
        Self::base_plus(800, "rsam-b+-800")
    }

    /// The released configuration at SAM 2's native 1024 px.
    pub fn base_plus_1024() -> Self {
        Self::base_plus(1024, "rsam-b+-1024")
    }

    fn base_plus(image_size: usize, name: &str) -> Self {
        Self::with_hiera_size(HieraSize::BasePlus, image_size, name)
    }

    /// The released RSAM configuration (BERT base, d = 256, 2 TWGT layers)
    /// on another SAM 2 image encoder size, so that training can start from
    /// any of the official SAM 2 / 2.1 checkpoints.
    pub fn with_hiera_size(size: HieraSize, image_size: usize, name: &str) -> Self {
        let json = serde_json::json!({
            "name": name,
            "image_size": image_size,
            "d_model": 256,
            "num_twgt": 2,
            "hiera": size.hiera(),
            "bert": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                     "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                     "max_position_embeddings": 512, "type_vocab_size": 2,
                     "initializer_range": 0.02}
        });
        serde_json::from_value(json).expect("preset config is valid")
    }

    /// The small configuration `weights/rsam-demo` is trained from scratch
    /// with: 192 px input (then fine-tuned at 256 with `--image-size`), a
    /// narrow Hiera (16 channels, 5 blocks), d = 64, a 2-layer BERT of width
    /// 64 over `vocab_size` tokens (a vocabulary made for the data, trained
    /// from scratch), sentences of up to 64 positions. About 0.8 M
    /// parameters: an epoch of 4,000 images takes ~12 min on two CPU cores.
    pub fn demo(vocab_size: usize) -> Self {
        let json = serde_json::json!({
            "name": "rsam-demo",
            "image_size": 192,
            "d_model": 64,
            "num_twgt": 2,
            "hiera": {"embed_dim": 16, "num_heads": 1, "stages": [1, 1, 2, 1],
                      "window_spec": [8, 4, 6, 3], "global_att_blocks": [3],
                      "window_pos_embed_bkg_spatial_size": [4, 4]},
            "bert": {"vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "intermediate_size": 128, "hidden_act": "gelu",
                     "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                     "max_position_embeddings": 64, "type_vocab_size": 2,
                     "initializer_range": 0.02},
            "transformer_num_heads": 4,
            "transformer_mlp_dim": 256,
            "iou_head_hidden_dim": 64,
            "max_text_positions": 64
        });
        serde_json::from_value(json).expect("preset config is valid")
    }

    /// A preset by name: `SIZE-800` or `SIZE-1024` with SIZE one of
    /// `tiny`, `small`, `base-plus` (`b+`), `large`: the released
    /// configuration on that SAM 2 image encoder at that input size.
    pub fn preset(name: &str) -> Option<Self> {
        let (size, pixels) = name.rsplit_once('-')?;
        let image_size = match pixels {
            "800" => 800,
            "1024" => 1024,
            _ => return None,
        };
        let size = HieraSize::from_name(size)?;
        Some(Self::with_hiera_size(
            size,
            image_size,
            &format!("rsam-{}-{image_size}", size.short_name()),
        ))
    }

    /// Names [`Self::preset`] knows, for messages.
    pub const PRESET_NAMES: &'static str =
        "tiny-800, tiny-1024, small-800, small-1024, base-plus-800, base-plus-1024, large-800, large-1024";
}

/// The four Hiera image encoders of SAM 2 and SAM 2.1 (the same in both:
/// the `sam2/` and `sam2.1/` configs differ only in video-only modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HieraSize {
    Tiny,
    Small,
    BasePlus,
    Large,
}

impl HieraSize {
    pub const ALL: [HieraSize; 4] = [HieraSize::Tiny, HieraSize::Small, HieraSize::BasePlus, HieraSize::Large];

    /// `tiny`, `small`, `base-plus` (or `b+`), `large` (or `t`, `s`, `l`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tiny" | "t" => Some(Self::Tiny),
            "small" | "s" => Some(Self::Small),
            "base-plus" | "base_plus" | "b+" => Some(Self::BasePlus),
            "large" | "l" => Some(Self::Large),
            _ => None,
        }
    }

    /// The official checkpoint files' spelling: `tiny`, `small`, `base_plus`, `large`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Small => "small",
            Self::BasePlus => "base_plus",
            Self::Large => "large",
        }
    }

    /// `t`, `s`, `b+`, `l`, as the official config files name them.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Tiny => "t",
            Self::Small => "s",
            Self::BasePlus => "b+",
            Self::Large => "l",
        }
    }

    /// The trunk of `configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml` (Hiera's
    /// defaults where a config leaves a value out).
    pub fn hiera(self) -> HieraConfig {
        let (embed_dim, num_heads, stages, global_att_blocks, bkg, window_spec) = match self {
            Self::Tiny => (96, 1, vec![1, 2, 7, 2], vec![5, 7, 9], [7, 7], vec![8, 4, 14, 7]),
            Self::Small => (96, 1, vec![1, 2, 11, 2], vec![7, 10, 13], [7, 7], vec![8, 4, 14, 7]),
            Self::BasePlus => (112, 2, vec![2, 3, 16, 3], vec![12, 16, 20], [14, 14], vec![8, 4, 14, 7]),
            Self::Large => (144, 2, vec![2, 6, 36, 4], vec![23, 33, 43], [7, 7], vec![8, 4, 16, 8]),
        };
        HieraConfig {
            embed_dim,
            num_heads,
            stages,
            window_spec,
            global_att_blocks,
            window_pos_embed_bkg_spatial_size: bkg,
            q_pool: default_q_pool(),
            q_stride: default_q_stride(),
            dim_mul: default_mul(),
            head_mul: default_mul(),
            mlp_ratio: default_mlp_ratio(),
        }
    }
}

/// The hyperparameters that SAM 2's image encoder, prompt encoder and mask
/// decoder read. RSAM and SAM 2 model directories have different configs
/// (RSAM adds BERT and the TWGM, SAM 2 its multimask choice); both give
/// these parts the same view through this trait.
pub trait SamArchitecture {
    /// Square input size S.
    fn image_size(&self) -> usize;
    /// Prompt / mask decoder / FPN width.
    fn d_model(&self) -> usize;
    fn hiera(&self) -> &HieraConfig;
    fn fpn_top_down_levels(&self) -> &[usize];
    /// How many of the lowest-resolution FPN levels are dropped.
    fn scalp(&self) -> usize;
    fn mask_in_chans(&self) -> usize;
    fn transformer_num_heads(&self) -> usize;
    fn transformer_mlp_dim(&self) -> usize;
    fn iou_head_hidden_dim(&self) -> usize;
    fn iou_head_depth(&self) -> usize;
    fn iou_prediction_use_sigmoid(&self) -> bool;
    fn pred_obj_scores_mlp(&self) -> bool;
    /// Positions of RSAM's learned text positional embedding
    /// (`sam_prompt_encoder.description_pe`); `None` for a model without text.
    fn text_positions(&self) -> Option<usize>;

    /// Channels of each Hiera stage output, highest resolution first.
    fn stage_dims(&self) -> Vec<usize> {
        hiera_stage_dims(self.hiera())
    }

    /// Side of the stride-16 image embedding.
    fn embedding_size(&self) -> usize {
        self.image_size() / BACKBONE_STRIDE
    }
}

/// Checks the relations the image encoder, prompt encoder and mask decoder
/// need, so that a bad config is a clear error instead of a shape mismatch
/// deep inside a forward pass.
pub fn validate_architecture(cfg: &impl SamArchitecture) -> std::result::Result<(), String> {
    let h = cfg.hiera();
    let image_size = cfg.image_size();
    if image_size == 0 || !image_size.is_multiple_of(BACKBONE_STRIDE) {
        return Err(format!(
            "image_size {image_size} must be a positive multiple of {BACKBONE_STRIDE}"
        ));
    }
    if h.stages.len() != h.window_spec.len() {
        return Err(format!(
            "hiera.stages has {} entries but hiera.window_spec has {}",
            h.stages.len(),
            h.window_spec.len()
        ));
    }
    if h.stages.len() != 4 {
        return Err(format!("hiera.stages must have 4 stages, got {}", h.stages.len()));
    }
    if h.stages.contains(&0) {
        return Err("every hiera stage needs at least one block".into());
    }
    if h.q_pool > h.stages.len() - 1 {
        return Err(format!(
            "hiera.q_pool {} exceeds the number of stage transitions",
            h.q_pool
        ));
    }
    if h.window_spec[0] == 0 {
        return Err("hiera.window_spec[0] must be positive (it sizes pos_embed_window)".into());
    }
    if h.num_heads == 0 || !h.embed_dim.is_multiple_of(h.num_heads) {
        return Err(format!(
            "hiera.embed_dim {} must be divisible by hiera.num_heads {}",
            h.embed_dim, h.num_heads
        ));
    }
    let patch_grid = image_size / 4;
    if !patch_grid.is_multiple_of(h.window_spec[0]) {
        return Err(format!(
            "the patch grid ({patch_grid}) must be a multiple of hiera.window_spec[0] ({})",
            h.window_spec[0]
        ));
    }
    let (d, heads) = (cfg.d_model(), cfg.transformer_num_heads());
    if !d.is_multiple_of(8) {
        return Err(format!("d_model {d} must be divisible by 8"));
    }
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(format!(
            "d_model {d} must be divisible by transformer_num_heads {heads}"
        ));
    }
    if !(d / 2).is_multiple_of(heads) {
        return Err("d_model / 2 must be divisible by transformer_num_heads".into());
    }
    if cfg.scalp() >= h.stages.len() - 2 {
        return Err(format!("scalp {} leaves too few FPN levels", cfg.scalp()));
    }
    if !cfg.mask_in_chans().is_multiple_of(4) || cfg.mask_in_chans() == 0 {
        return Err("mask_in_chans must be a positive multiple of 4".into());
    }
    Ok(())
}

/// Channels of each Hiera stage output, highest resolution first.
pub fn hiera_stage_dims(hiera: &HieraConfig) -> Vec<usize> {
    let mut dims = Vec::with_capacity(hiera.stages.len());
    let mut dim = hiera.embed_dim as f64;
    for i in 0..hiera.stages.len() {
        if i > 0 {
            dim *= hiera.dim_mul;
        }
        dims.push(dim as usize);
    }
    dims
}

impl SamArchitecture for RsamConfig {
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
        Some(self.max_text_positions)
    }
}
