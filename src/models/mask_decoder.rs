//! SAM 2's mask decoder with RSAM's text token (`sam_mask_decoder.*`).
//!
//! Sigmoid IoU head, MLP object-score head, and high-resolution skip
//! features, as the released configurations set them. RSAM evaluates the
//! single-mask token only, adds the TWGM's global text token to every mask
//! token and gates the logits by the object score ([`MaskDecoder::forward`]);
//! SAM 2's image predictor evaluates all four mask tokens, without text and
//! without gating ([`MaskDecoder::forward_all_masks`]).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{ConvTranspose2dConfig, VarBuilder};

use super::transformer::TwoWayTransformer;
use crate::config::SamArchitecture;
use crate::device::products::{self, conv_transpose2d, ConvTranspose2d};
use crate::models::pointwise_conv::{pointwise_conv, PointwiseConv};
use crate::nn::{gelu_erf, Activation, LayerNorm2d, Mlp};

/// Logit written where the object-score head says "no object".
pub const NO_OBJ_SCORE: f64 = -1024.0;
/// The single-mask token plus SAM's three multimask tokens.
pub const NUM_MASK_TOKENS: usize = 4;

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
    /// One per mask token: RSAM evaluates token 0's only, SAM 2 all four.
    hypernetwork_mlps: Vec<Mlp>,
    iou_prediction_head: Mlp,
    pred_obj_score_head: Mlp,
}

/// What SAM 2's image predictor takes from the decoder for a batch of prompts.
#[derive(Debug, Clone)]
pub struct AllMasks {
    /// B x 4 x 4h x 4w logits of the four mask tokens (not gated).
    pub masks: Tensor,
    /// B x 4 predicted IoUs.
    pub iou: Tensor,
    /// B x 1 object-presence logit.
    pub object_score_logits: Tensor,
}

/// Which mask tokens get a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskTokens {
    SingleMask,
    All,
}

/// The heads' outputs before any selection or gating.
struct Heads {
    /// B x M x 4h x 4w, M = 1 or 4 (see [`MaskTokens`]).
    masks: Tensor,
    /// B x 4.
    iou: Tensor,
    /// B x 1.
    object_score_logits: Tensor,
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
    pub fn new(cfg: &impl SamArchitecture, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model();
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
        let obj_head_layers = if cfg.pred_obj_scores_mlp() { 3 } else { 1 };
        Ok(Self {
            transformer: TwoWayTransformer::new(
                2,
                d,
                cfg.transformer_num_heads(),
                cfg.transformer_mlp_dim(),
                vb.pp("transformer"),
            )?,
            output_tokens,
            upscale_conv1: conv_transpose2d(d, d / 4, 2, up, vb.pp("output_upscaling.0"))?,
            upscale_norm: LayerNorm2d::new(d / 4, 1e-6, vb.pp("output_upscaling.1"))?,
            upscale_conv2: conv_transpose2d(d / 4, d / 8, 2, up, vb.pp("output_upscaling.3"))?,
            conv_s0: pointwise_conv(d, d / 8, vb.pp("conv_s0"))?,
            conv_s1: pointwise_conv(d, d / 4, vb.pp("conv_s1"))?,
            hypernetwork_mlps,
            iou_prediction_head: Mlp::new(
                d,
                cfg.iou_head_hidden_dim(),
                NUM_MASK_TOKENS,
                cfg.iou_head_depth(),
                Activation::Relu,
                cfg.iou_prediction_use_sigmoid(),
                vb.pp("iou_prediction_head"),
            )?,
            pred_obj_score_head: if cfg.pred_obj_scores_mlp() {
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

    /// RSAM's decoder: the single-mask token's logits after object gating.
    ///
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
        let _span = tracing::trace_span!("mask-decoder").entered();
        let heads = self.predict(
            image_embed,
            image_pe,
            Some(sparse),
            dense,
            Some(text_token),
            (high_res_s0, high_res_s1),
            sparse_mask,
            MaskTokens::SingleMask,
        )?;
        let masks = heads.masks;
        let b = masks.dim(0)?;
        let iou = heads.iou.narrow(D::Minus1, 0, 1)?;
        let object_score_logits = heads.object_score_logits;
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

    /// SAM 2's `MaskDecoder.predict_masks`: the logits and IoUs of all four
    /// mask tokens, no text, no gating (the image predictor applies none).
    /// `sparse` is `None` when no prompt has points (no sparse tokens at
    /// all); other arguments as in [`Self::forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_all_masks(
        &self,
        image_embed: &Tensor,
        image_pe: &Tensor,
        sparse: Option<&Tensor>,
        dense: &Tensor,
        high_res_s0: &Tensor,
        high_res_s1: &Tensor,
        sparse_mask: Option<&Tensor>,
    ) -> Result<AllMasks> {
        let _span = tracing::trace_span!("mask-decoder-all").entered();
        let heads = self.predict(
            image_embed,
            image_pe,
            sparse,
            dense,
            None,
            (high_res_s0, high_res_s1),
            sparse_mask,
            MaskTokens::All,
        )?;
        Ok(AllMasks {
            masks: heads.masks,
            iou: heads.iou,
            object_score_logits: heads.object_score_logits,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn predict(
        &self,
        image_embed: &Tensor,
        image_pe: &Tensor,
        sparse: Option<&Tensor>,
        dense: &Tensor,
        text_token: Option<&Tensor>,
        (high_res_s0, high_res_s1): (&Tensor, &Tensor),
        sparse_mask: Option<&Tensor>,
        which: MaskTokens,
    ) -> Result<Heads> {
        let (b, _, _, _) = dense.dims4()?;
        let output_tokens = Tensor::cat(&self.output_tokens, 0)?;
        let (n_out, d) = output_tokens.dims2()?;
        let output_tokens = output_tokens
            .to_dtype(dense.dtype())?
            .unsqueeze(0)?
            .broadcast_as((b, n_out, d))?;
        // RSAM adds the text token to the four mask tokens (rows 2..6).
        let head = output_tokens.narrow(1, 0, 2)?;
        let mask_tokens = output_tokens.narrow(1, 2, NUM_MASK_TOKENS)?;
        let mask_tokens = match text_token {
            Some(text) => mask_tokens.broadcast_add(text)?,
            None => mask_tokens,
        };
        let tokens = match sparse {
            Some(sparse) => Tensor::cat(&[&head, &mask_tokens, sparse], 1)?,
            None => Tensor::cat(&[&head, &mask_tokens], 1)?,
        }
        .contiguous()?;
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

        let src = (image_embed + dense)?;
        let (_, c, h, w) = src.dims4()?;
        let (hs, src) = self.transformer.forward(&src, image_pe, &tokens, token_mask.as_ref())?;
        let iou_token_out = hs.narrow(1, 1, 1)?.squeeze(1)?;

        let src = src.transpose(1, 2)?.reshape((b, c, h, w))?;
        let up = self.upscale_conv1.forward(&src)?.broadcast_add(high_res_s1)?;
        let up = gelu_erf(&self.upscale_norm.forward(&up)?)?;
        let up = gelu_erf(&self.upscale_conv2.forward(&up)?.broadcast_add(high_res_s0)?)?;
        let (_, uc, uh, uw) = up.dims4()?;

        let hyper = match which {
            MaskTokens::SingleMask => {
                let mask_token_out = hs.narrow(1, 2, 1)?.squeeze(1)?;
                self.hypernetwork_mlps[0].forward(&mask_token_out)?.unsqueeze(1)?
                // B x 1 x d/8
            }
            MaskTokens::All => {
                let per_token = (0..NUM_MASK_TOKENS)
                    .map(|i| self.hypernetwork_mlps[i].forward(&hs.narrow(1, 2 + i, 1)?.squeeze(1)?))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::stack(&per_token, 1)? // B x 4 x d/8
            }
        };
        let m = hyper.dim(1)?;
        let masks = products::matmul(&hyper, &up.reshape((b, uc, uh * uw))?)?.reshape((b, m, uh, uw))?;

        let iou = self.iou_prediction_head.forward(&iou_token_out)?;
        let object_score_logits = self.pred_obj_score_head.forward(&hs.narrow(1, 0, 1)?.squeeze(1)?)?;
        Ok(Heads {
            masks,
            iou,
            object_score_logits,
        })
    }
}
