//! The parts of `SAM2Base` that `SAM2ImagePredictor` runs, on tensors:
//! `forward_image` (Hiera + FPN, `conv_s0` / `conv_s1` on the two
//! highest-resolution levels), `no_mem_embed` added to the lowest-resolution
//! level (`directly_add_no_mem_embed`), then `sam_prompt_encoder` and
//! `sam_mask_decoder` for a batch of prompts.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::Sam2Config;
use crate::models::image_encoder::{project_high_res, ImageEmbeddings, ImageEncoder};
use crate::models::mask_decoder::{AllMasks, MaskDecoder};
use crate::models::prompt_encoder::PromptEncoder;
use crate::models::rsam::SparseBatch;
use crate::nn::additive_key_mask;

/// The model-space prompts of a batch on one image.
#[derive(Debug, Clone)]
pub struct Sam2Batch {
    /// Points in model-input pixels with their labels; `None` when no prompt
    /// of the batch has a point or a box (then there are no sparse tokens).
    pub sparse: Option<SparseBatch>,
    /// Per prompt: an optional 1 x 1 x S/4 x S/4 mask prompt.
    pub mask_inputs: Vec<Option<Tensor>>,
}

#[derive(Debug, Clone)]
pub struct Sam2Network {
    pub config: Sam2Config,
    pub image_encoder: ImageEncoder,
    /// 1 x 1 x d, added to every position of the image embedding.
    pub no_mem_embed: Tensor,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    /// Dense positional encoding of the embedding grid, 1 x d x h x w.
    dense_pe: Tensor,
    dtype: DType,
    device: Device,
}

impl Sam2Network {
    /// Reads the tensors in the order the predictor uses them (the image
    /// encoder first), which is the order conversion errors follow.
    pub fn new(config: &Sam2Config, vb: VarBuilder) -> Result<Self> {
        let image_encoder = ImageEncoder::new(config, vb.pp("image_encoder"))?;
        let no_mem_embed = vb.get((1, 1, config.d_model), "no_mem_embed")?;
        let prompt_encoder = PromptEncoder::new(config, vb.pp("sam_prompt_encoder"))?;
        let dense_pe = prompt_encoder.dense_pe(vb.device(), vb.dtype())?;
        Ok(Self {
            config: config.clone(),
            image_encoder,
            no_mem_embed,
            prompt_encoder,
            mask_decoder: MaskDecoder::new(config, vb.pp("sam_mask_decoder"))?,
            dense_pe,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dense_pe(&self) -> &Tensor {
        &self.dense_pe
    }

    /// `set_image`'s features of a B x 3 x S x S normalised batch.
    pub fn encode(&self, pixels: &Tensor) -> Result<ImageEmbeddings> {
        let pixels = pixels.to_dtype(self.dtype)?;
        let (levels, _) = self.image_encoder.forward(&pixels)?;
        let mut features = project_high_res(&levels, &self.mask_decoder.conv_s0, &self.mask_decoder.conv_s1)?;
        if self.config.directly_add_no_mem_embed {
            let d = self.config.d_model;
            let embed = self.no_mem_embed.reshape((1, d, 1, 1))?.to_dtype(self.dtype)?;
            features.image_embed = features.image_embed.broadcast_add(&embed)?;
        }
        Ok(features)
    }

    /// The four mask tokens' logits and IoUs and the object score of each
    /// prompt of a batch on the features of one image.
    pub fn decode(&self, features: &ImageEmbeddings, batch: &Sam2Batch) -> Result<AllMasks> {
        let b = batch.mask_inputs.len();
        let (_, c, h, w) = features.image_embed.dims4()?;
        let image_embed = features.image_embed.broadcast_as((b, c, h, w))?.contiguous()?;
        let sparse = match &batch.sparse {
            Some(s) => Some(
                self.prompt_encoder
                    .embed_points(&s.coords, &s.labels)?
                    .to_dtype(self.dtype)?,
            ),
            None => None,
        };
        let sparse_mask = match batch.sparse.as_ref().and_then(|s| s.valid.as_ref()) {
            Some(valid) => Some(additive_key_mask(valid, self.dtype)?),
            None => None,
        };
        let dense = self.dense_embeddings(&batch.mask_inputs)?;
        self.mask_decoder.forward_all_masks(
            &image_embed,
            &self.dense_pe,
            sparse.as_ref(),
            &dense,
            &features.high_res_s0,
            &features.high_res_s1,
            sparse_mask.as_ref(),
        )
    }

    /// The mask prompt through the downscaler where given, the learned
    /// no-mask embedding elsewhere.
    fn dense_embeddings(&self, masks: &[Option<Tensor>]) -> Result<Tensor> {
        if masks.iter().all(Option::is_none) {
            return self.prompt_encoder.no_mask_dense(masks.len())?.to_dtype(self.dtype);
        }
        let no_mask = self.prompt_encoder.no_mask_dense(1)?.to_dtype(self.dtype)?;
        let rows = masks
            .iter()
            .map(|m| match m {
                Some(m) => self.prompt_encoder.embed_masks(&m.to_dtype(self.dtype)?),
                None => Ok(no_mask.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }
}
