//! SAM 2's mask decoder with RSAM's text token (`sam_mask_decoder.*`).
//!
//! Single-mask output (token 0), sigmoid IoU head, MLP object-score head, and
//! high-resolution skip features, as the released configuration sets them.
//! RSAM adds the TWGM's global text token to every mask token.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{ConvTranspose2d, ConvTranspose2dConfig, VarBuilder};

use super::transformer::TwoWayTransformer;
use crate::config::RsamConfig;
use crate::models::pointwise_conv::{pointwise_conv, PointwiseConv};
use crate::nn::{gelu_erf, Activation, LayerNorm2d, Mlp};

/// Logit written where the object-score head says "no object".
pub const NO_OBJ_SCORE: f64 = -1024.0;
const NUM_MASK_TOKENS: usize = 4;

#[derive(Debug, Clone)]
pub struct MaskDecoder {
    transformer: TwoWayTransformer,
    /// obj_score_token, iou_token, 4 mask tokens (1, 1 and 4 x d). Kept
    /// apart and concatenated per call: a concatenation made here would be a
    /// copy, which training (updating the variables in place) never sees.
    output_tokens: [Tensor; 3],
    upscale_conv1: ConvTranspose2d,
    upscale_norm: LayerNorm2d,
    upscale_conv2: ConvTranspose2d,
    pub conv_s0: PointwiseConv,
    pub conv_s1: PointwiseConv,
    /// Only the single-mask hypernetwork (token 0) is evaluated; the three
    /// multimask ones are loaded (they are part of the checkpoint) but unused.
    hypernetwork_mlps: Vec<Mlp>,
    iou_prediction_head: Mlp,
    pred_obj_score_head: Mlp,
}

/// Mask decoder output for a batch of prompts.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// B x 1 x 4h x 4w logits after object gating.
    pub low_res_logits: Tensor,
    /// B x 1 predicted IoU (sigmoid applied).
    pub iou: Tensor,
    /// B x 1 object-presence logit.
    pub object_score_logits: Tensor,
}

impl MaskDecoder {
    pub fn new(cfg: &RsamConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let output_tokens = [
            vb.get((1, d), "obj_score_token.weight")?,
            vb.get((1, d), "iou_token.weight")?,
            vb.get((NUM_MASK_TOKENS, d), "mask_tokens.weight")?,
        ];
        let up = ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        let hypernetwork_mlps = (0..NUM_MASK_TOKENS)
            .map(|i| {
                Mlp::new(
                    d,
                    d,
                    d / 8,
                    3,
                    Activation::Relu,
                    false,
                    vb.pp(format!("output_hypernetworks_mlps.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let obj_head_layers = if cfg.pred_obj_scores_mlp { 3 } else { 1 };
        Ok(Self {
            transformer: TwoWayTransformer::new(
                2,
                d,
                cfg.transformer_num_heads,
                cfg.transformer_mlp_dim,
                vb.pp("transformer"),
            )?,
            output_tokens,
            upscale_conv1: candle_nn::conv_transpose2d(d, d / 4, 2, up, vb.pp("output_upscaling.0"))?,
            upscale_norm: LayerNorm2d::new(d / 4, 1e-6, vb.pp("output_upscaling.1"))?,
            upscale_conv2: candle_nn::conv_transpose2d(d / 4, d / 8, 2, up, vb.pp("output_upscaling.3"))?,
            conv_s0: pointwise_conv(d, d / 8, vb.pp("conv_s0"))?,
            conv_s1: pointwise_conv(d, d / 4, vb.pp("conv_s1"))?,
            hypernetwork_mlps,
            iou_prediction_head: Mlp::new(
                d,
                cfg.iou_head_hidden_dim,
                NUM_MASK_TOKENS,
                cfg.iou_head_depth,
                Activation::Relu,
                cfg.iou_prediction_use_sigmoid,
                vb.pp("iou_prediction_head"),
            )?,
            pred_obj_score_head: if cfg.pred_obj_scores_mlp {
                Mlp::new(
                    d,
                    d,
                    1,
                    obj_head_layers,
                    Activation::Relu,
                    false,
                    vb.pp("pred_obj_score_head"),
                )?
            } else {
                // A bare nn.Linear stores its weight without the "layers.0" level.
                Mlp::single_linear(d, 1, vb.pp("pred_obj_score_head"))?
            },
        })
    }

    /// `image_embed`: B x d x h x w (per prompt), `image_pe`: 1 x d x h x w,
    /// `sparse`: B x N x d, `dense`: B x d x h x w, `text_token`: B x 1 x d
    /// (zeros without text), `high_res`: (s0 B x d/8 x 4h x 4w, s1 B x d/4 x
    /// 2h x 2w), `sparse_mask`: additive mask of padded sparse tokens.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        image_embed: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        text_token: &Tensor,
        high_res_s0: &Tensor,
        high_res_s1: &Tensor,
        sparse_mask: Option<&Tensor>,
    ) -> Result<DecoderOutput> {
        let (b, n_sparse, d) = sparse.dims3()?;
        let output_tokens = Tensor::cat(&self.output_tokens, 0)?;
        let n_out = output_tokens.dim(0)?;
        let output_tokens = output_tokens
            .to_dtype(sparse.dtype())?
            .unsqueeze(0)?
            .broadcast_as((b, n_out, d))?;
        // The text token is added to the four mask tokens (rows 2..6).
        let head = output_tokens.narrow(1, 0, 2)?;
        let mask_tokens = output_tokens.narrow(1, 2, NUM_MASK_TOKENS)?.broadcast_add(text_token)?;
        let tokens = Tensor::cat(&[&head, &mask_tokens, sparse], 1)?.contiguous()?;
        // Output tokens are never padding: extend the sparse mask with zeros.
        let token_mask = match sparse_mask {
            Some(mask) => Some(Tensor::cat(
                &[
                    &mask
                        .zeros_like()?
                        .narrow(3, 0, 1)?
                        .broadcast_as((b, 1, 1, n_out))?
                        .contiguous()?,
                    mask,
                ],
                3,
            )?),
            None => None,
        };
        debug_assert_eq!(tokens.dim(1)?, n_out + n_sparse);

        let src = (image_embed + dense)?;
        let (_, c, h, w) = src.dims4()?;
        let (hs, src) = self.transformer.forward(&src, image_pe, &tokens, token_mask.as_ref())?;
        let iou_token_out = hs.narrow(1, 1, 1)?.squeeze(1)?;
        let mask_token_out = hs.narrow(1, 2, 1)?.squeeze(1)?;

        let src = src.transpose(1, 2)?.reshape((b, c, h, w))?;
        let up = self.upscale_conv1.forward(&src)?.broadcast_add(high_res_s1)?;
        let up = gelu_erf(&self.upscale_norm.forward(&up)?)?;
        let up = gelu_erf(&self.upscale_conv2.forward(&up)?.broadcast_add(high_res_s0)?)?;
        let (_, uc, uh, uw) = up.dims4()?;

        let hyper = self.hypernetwork_mlps[0].forward(&mask_token_out)?.unsqueeze(1)?; // B x 1 x d/8
        let masks = hyper.matmul(&up.reshape((b, uc, uh * uw))?)?.reshape((b, 1, uh, uw))?;

        let iou = self
            .iou_prediction_head
            .forward(&iou_token_out)?
            .narrow(D::Minus1, 0, 1)?;
        let object_score_logits = self.pred_obj_score_head.forward(&hs.narrow(1, 0, 1)?.squeeze(1)?)?;

        // Object gating: where no object is predicted, every logit is -1024.
        let present = object_score_logits
            .gt(0.0)?
            .reshape((b, 1, 1, 1))?
            .broadcast_as(masks.shape())?;
        let low_res_logits = present.where_cond(&masks, &(masks.ones_like()? * NO_OBJ_SCORE)?)?;
        Ok(DecoderOutput {
            low_res_logits,
            iou,
            object_score_logits,
        })
    }
}
