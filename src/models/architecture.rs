//! The hyperparameters that SAM 2's image encoder, prompt encoder and mask
//! decoder read. RSAM and SAM 2 model directories have different configs
//! (RSAM adds BERT and the TWGM, SAM 2 adds its multimask choice); both give
//! these parts the same view through this trait.

use crate::config::{HieraConfig, RsamConfig, BACKBONE_STRIDE};

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
pub fn validate_architecture(cfg: &impl SamArchitecture) -> Result<(), String> {
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
