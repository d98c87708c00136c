//! Image encoder: Hiera trunk + FPN neck (`image_encoder.*`), plus the mask
//! decoder's `conv_s0` / `conv_s1` projections of the high-resolution levels,
//! which the official `forward_image` applies once at encode time so that no
//! prompt has to pay for them again.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::hiera::Hiera;
use crate::config::SamArchitecture;
use crate::models::pointwise_conv::{pointwise_conv, PointwiseConv};

/// The modified FPN of SAM 2: 1x1 lateral convs, nearest-neighbour top-down
/// fusion on `fpn_top_down_levels`, no output convs. Positional encodings of
/// the levels are only used by SAM 2's memory attention, which RSAM does not
/// run (`num_maskmem = 0`), so they are not computed.
#[derive(Debug, Clone)]
pub struct FpnNeck {
    /// `convs[j]` serves backbone level `n - j` (the lowest resolution first).
    convs: Vec<PointwiseConv>,
    top_down_levels: Vec<usize>,
}

impl FpnNeck {
    pub fn new(cfg: &impl SamArchitecture, vb: VarBuilder) -> Result<Self> {
        // backbone_channel_list is the trunk's stage widths, lowest resolution first.
        let channels: Vec<usize> = cfg.stage_dims().into_iter().rev().collect();
        let convs = channels
            .iter()
            .enumerate()
            .map(|(j, &dim)| pointwise_conv(dim, cfg.d_model(), vb.pp(format!("convs.{j}.conv"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            convs,
            top_down_levels: cfg.fpn_top_down_levels().to_vec(),
        })
    }

    /// `xs`: trunk outputs, highest resolution first. Returns the fused
    /// levels in the same order.
    pub fn forward(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let _span = tracing::trace_span!("fpn-neck").entered();
        let n = self.convs.len() - 1;
        let mut out: Vec<Option<Tensor>> = vec![None; self.convs.len()];
        let mut prev: Option<Tensor> = None;
        for i in (0..=n).rev() {
            let lateral = self.convs[n - i].forward(&xs[i])?;
            let fused = match (&prev, self.top_down_levels.contains(&i)) {
                (Some(p), true) => {
                    let (_, _, h, w) = p.dims4()?;
                    (lateral + p.upsample_nearest2d(h * 2, w * 2)?)?
                }
                _ => lateral,
            };
            out[i] = Some(fused.clone());
            prev = Some(fused);
        }
        Ok(out.into_iter().map(|t| t.expect("every level is set")).collect())
    }
}

/// Prompt-independent image features: what one encoding gives every prompt.
#[derive(Debug, Clone)]
pub struct ImageEmbeddings {
    /// B x d x S/16 x S/16: the image embedding the mask decoder attends to.
    pub image_embed: Tensor,
    /// B x d/8 x S/4 x S/4: level 0 after `conv_s0`.
    pub high_res_s0: Tensor,
    /// B x d/4 x S/8 x S/8: level 1 after `conv_s1`.
    pub high_res_s1: Tensor,
}

impl ImageEmbeddings {
    /// Bytes held by the feature tensors (for cache accounting).
    pub fn nbytes(&self) -> usize {
        [&self.image_embed, &self.high_res_s0, &self.high_res_s1]
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Number of images in the batch.
    pub fn batch_size(&self) -> usize {
        self.image_embed.dims()[0]
    }

    /// The features of image `i` of a batch.
    pub fn get(&self, i: usize) -> Result<ImageEmbeddings> {
        Ok(ImageEmbeddings {
            image_embed: self.image_embed.narrow(0, i, 1)?,
            high_res_s0: self.high_res_s0.narrow(0, i, 1)?,
            high_res_s1: self.high_res_s1.narrow(0, i, 1)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ImageEncoder {
    pub trunk: Hiera,
    pub neck: FpnNeck,
    scalp: usize,
}

impl ImageEncoder {
    pub fn new(cfg: &impl SamArchitecture, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            trunk: Hiera::new(cfg, vb.pp("trunk"))?,
            neck: FpnNeck::new(cfg, vb.pp("neck"))?,
            scalp: cfg.scalp(),
        })
    }

    /// Returns the FPN levels kept after `scalp`, highest resolution first
    /// (for the released model: strides 4, 8 and 16), and the trunk outputs.
    pub fn forward(&self, x: &Tensor) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let _span = tracing::trace_span!("image-encoder").entered();
        let trunk = self.trunk.forward(x)?;
        let mut levels = self.neck.forward(&trunk)?;
        levels.truncate(levels.len() - self.scalp);
        Ok((levels, trunk))
    }
}

/// Applies `conv_s0` / `conv_s1` to the two highest-resolution levels.
pub fn project_high_res(
    levels: &[Tensor],
    conv_s0: &PointwiseConv,
    conv_s1: &PointwiseConv,
) -> Result<ImageEmbeddings> {
    let last = levels.len() - 1;
    Ok(ImageEmbeddings {
        image_embed: levels[last].clone(),
        high_res_s0: conv_s0.forward(&levels[0])?,
        high_res_s1: conv_s1.forward(&levels[1])?,
    })
}
