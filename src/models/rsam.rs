//! The whole RSAM network on tensors: image encoder, BERT + `text_proj`,
//! Two-Way Guidance Module (`description_transformer`), prompt encoder and
//! mask decoder, wired as the official `SAM2Base._forward_sam_heads` does for
//! a single image without memory.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::bert::BertModel;
use super::image_encoder::{project_high_res, ImageEmbeddings, ImageEncoder};
use super::mask_decoder::{DecoderOutput, MaskDecoder};
use super::prompt_encoder::{PromptEncoder, LABEL_PAD};
use super::transformer::TwoWayGuidanceTransformer;
use crate::config::RsamConfig;
use crate::nn::{additive_key_mask, linear, Linear};

/// Intermediate results of an encoding, for layer-by-layer checks.
#[derive(Debug, Clone)]
pub struct EncoderTrace {
    /// Hiera stage outputs, highest resolution first (B x C x h x w).
    pub trunk: Vec<Tensor>,
    /// FPN levels kept, levels 0 and 1 already through conv_s0 / conv_s1.
    pub fpn: Vec<Tensor>,
}

/// Tokenised texts of a batch, right-padded with id 0.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// B x L u32 token ids.
    pub input_ids: Tensor,
    /// B x L u32, 1 for tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// Whether any sequence is padded, known here so that a decode never
    /// reads the mask back from the device.
    padded: bool,
}

impl TextBatch {
    pub fn new(ids: &[Vec<u32>], device: &Device) -> Result<Self> {
        let len = ids.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat_ids = Vec::with_capacity(ids.len() * len);
        let mut flat_mask = Vec::with_capacity(ids.len() * len);
        for seq in ids {
            let pad = len - seq.len();
            flat_ids.extend(seq.iter().copied().chain(std::iter::repeat_n(0, pad)));
            flat_mask.extend(std::iter::repeat_n(1u32, seq.len()).chain(std::iter::repeat_n(0, pad)));
        }
        Ok(Self {
            input_ids: Tensor::from_vec(flat_ids, (ids.len(), len), device)?,
            attention_mask: Tensor::from_vec(flat_mask, (ids.len(), len), device)?,
            padded: ids.iter().any(|seq| seq.len() < len),
        })
    }

    /// Whether any sequence is padded (then attention needs key masks).
    pub fn is_padded(&self) -> bool {
        self.padded
    }
}

/// Sparse prompts of a batch in model-input pixels: points with labels
/// (-1 pad, 0 negative, 1 positive, 2 / 3 box corners), the official padding
/// point included, and a mask of extra batch padding.
#[derive(Debug, Clone)]
pub struct SparseBatch {
    /// B x N x 2 f32.
    pub coords: Tensor,
    /// B x N i64.
    pub labels: Tensor,
    /// B x N u32: 1 for real tokens, 0 for batch padding (`None` when no
    /// prompt needed batch padding).
    pub valid: Option<Tensor>,
}

impl SparseBatch {
    /// Batches per-prompt point rows `(x, y, label)` (model-input pixels,
    /// padding point already appended): shorter rows are padded with
    /// padding points that `valid` masks out.
    pub fn from_rows(rows: &[Vec<(f32, f32, i64)>], device: &Device) -> Result<Self> {
        let n = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let needs_padding = rows.iter().any(|r| r.len() != n);
        let (mut coords, mut labels, mut valid) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            for k in 0..n {
                let (x, y, l) = row.get(k).copied().unwrap_or((0.0, 0.0, LABEL_PAD));
                coords.extend([x, y]);
                labels.push(l);
                valid.push(u32::from(k < row.len()));
            }
        }
        let b = rows.len();
        Ok(Self {
            coords: Tensor::from_vec(coords, (b, n, 2), device)?,
            labels: Tensor::from_vec(labels, (b, n), device)?,
            valid: if needs_padding {
                Some(Tensor::from_vec(valid, (b, n), device)?)
            } else {
                None
            },
        })
    }
}

/// What the mask decoder needs for a batch of prompts on one image.
#[derive(Debug, Clone)]
pub struct DecodeBatch {
    pub sparse: SparseBatch,
    /// Per prompt: its texts' row in `texts`, if it has a text.
    pub text_rows: Vec<Option<usize>>,
    pub texts: Option<TextBatch>,
    /// Per prompt: an optional 1 x 1 x S/4 x S/4 mask prompt (low-res logits).
    pub mask_inputs: Vec<Option<Tensor>>,
}

#[derive(Debug, Clone)]
pub struct RsamModel {
    pub config: RsamConfig,
    pub image_encoder: ImageEncoder,
    pub text_encoder: BertModel,
    pub text_proj: Linear,
    pub description_transformer: TwoWayGuidanceTransformer,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    /// Dense positional encoding of the embedding grid, 1 x d x h x w.
    dense_pe: Tensor,
    dtype: DType,
    device: Device,
}

impl RsamModel {
    pub fn new(config: &RsamConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let prompt_encoder = PromptEncoder::new(config, vb.pp("sam_prompt_encoder"))?;
        let dense_pe = prompt_encoder.dense_pe(vb.device(), vb.dtype())?;
        Ok(Self {
            config: config.clone(),
            image_encoder: ImageEncoder::new(config, vb.pp("image_encoder"))?,
            text_encoder: BertModel::new(&config.bert, vb.pp("text_encoder"))?,
            text_proj: linear(config.bert.hidden_size, d, vb.pp("text_proj"))?,
            description_transformer: TwoWayGuidanceTransformer::new(
                config.num_twgt,
                d,
                config.transformer_num_heads,
                config.transformer_mlp_dim,
                vb.pp("description_transformer"),
            )?,
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

    /// Encodes a B x 3 x S x S normalised batch.
    pub fn encode(&self, pixels: &Tensor) -> Result<ImageEmbeddings> {
        Ok(self.encode_traced(pixels)?.0)
    }

    /// [`Self::encode`] that also returns the intermediate tensors.
    pub fn encode_traced(&self, pixels: &Tensor) -> Result<(ImageEmbeddings, EncoderTrace)> {
        let pixels = pixels.to_dtype(self.dtype)?;
        let (levels, trunk) = self.image_encoder.forward(&pixels)?;
        let features = project_high_res(&levels, &self.mask_decoder.conv_s0, &self.mask_decoder.conv_s1)?;
        let fpn = vec![
            features.high_res_s0.clone(),
            features.high_res_s1.clone(),
            features.image_embed.clone(),
        ];
        Ok((features, EncoderTrace { trunk, fpn }))
    }

    /// BERT + `text_proj`: B x L x d text features.
    pub fn encode_text(&self, texts: &TextBatch) -> Result<Tensor> {
        let hidden = self.text_encoder.forward(&texts.input_ids, &texts.attention_mask)?;
        self.text_proj.forward(&hidden)
    }

    /// The TWGM for a batch of texts on one image: returns the global text
    /// token (B x 1 x d) and the rewritten image embedding (B x d x h x w).
    pub fn guide(&self, image_embed: &Tensor, text_features: &Tensor, texts: &TextBatch) -> Result<(Tensor, Tensor)> {
        let (b, len, _) = text_features.dims3()?;
        let (_, c, h, w) = image_embed.dims4()?;
        let image = image_embed.broadcast_as((b, c, h, w))?.contiguous()?;
        let text_pe = self.prompt_encoder.text_pe(len, &self.device)?.to_dtype(self.dtype)?;
        let mask = if texts.is_padded() {
            Some(additive_key_mask(&texts.attention_mask, self.dtype)?)
        } else {
            None
        };
        let (tokens, image) =
            self.description_transformer
                .forward(&image, &self.dense_pe, text_features, &text_pe, mask.as_ref())?;
        // The first token ([CLS]) is the sentence's global token.
        Ok((tokens.narrow(1, 0, 1)?, image))
    }

    /// Decodes a batch of prompts on the features of one image.
    pub fn decode(&self, features: &ImageEmbeddings, batch: &DecodeBatch) -> Result<DecoderOutput> {
        // Text: BERT + TWGM for the prompts that have a sentence.
        let guided = batch
            .texts
            .as_ref()
            .map(|texts| self.guidance(features, texts))
            .transpose()?;
        self.decode_guided(features, guided.as_ref(), batch)
    }

    /// BERT + `text_proj` + TWGM for a batch of sentences on one image: what
    /// [`Self::decode_guided`] needs. Training computes it once and decodes
    /// several correction-click steps with it.
    pub fn guidance(&self, features: &ImageEmbeddings, texts: &TextBatch) -> Result<(Tensor, Tensor)> {
        let text_features = self.encode_text(texts)?.to_dtype(self.dtype)?;
        self.guide(&features.image_embed, &text_features, texts)
    }

    /// [`Self::decode`] with the text side already computed by
    /// [`Self::guidance`] for `batch.texts` (`None` when no prompt has text).
    pub fn decode_guided(
        &self,
        features: &ImageEmbeddings,
        guided: Option<&(Tensor, Tensor)>,
        batch: &DecodeBatch,
    ) -> Result<DecoderOutput> {
        let b = batch.text_rows.len();
        let d = self.config.d_model;
        let (_, c, h, w) = features.image_embed.dims4()?;
        let zero_token = Tensor::zeros((1, 1, d), self.dtype, &self.device)?;
        let mut image_embeds = Vec::with_capacity(b);
        let mut text_tokens = Vec::with_capacity(b);
        for row in &batch.text_rows {
            match (row, guided) {
                (Some(r), Some((tokens, images))) => {
                    text_tokens.push(tokens.narrow(0, *r, 1)?);
                    image_embeds.push(images.narrow(0, *r, 1)?);
                }
                _ => {
                    text_tokens.push(zero_token.clone());
                    image_embeds.push(features.image_embed.clone());
                }
            }
        }
        let image_embed = Tensor::cat(&image_embeds, 0)?;
        let text_token = Tensor::cat(&text_tokens, 0)?;
        debug_assert_eq!(image_embed.dims(), &[b, c, h, w]);

        let sparse = self
            .prompt_encoder
            .embed_points(&batch.sparse.coords, &batch.sparse.labels)?
            .to_dtype(self.dtype)?;
        let sparse_mask = match &batch.sparse.valid {
            Some(valid) => Some(additive_key_mask(valid, self.dtype)?),
            None => None,
        };
        let dense = self.dense_embeddings(&batch.mask_inputs)?;
        self.mask_decoder.forward(
            &image_embed,
            &self.dense_pe,
            &sparse,
            &dense,
            &text_token,
            &features.high_res_s0,
            &features.high_res_s1,
            sparse_mask.as_ref(),
        )
    }

    /// Dense prompt embeddings: the mask prompt through the downscaler where
    /// given, the learned no-mask embedding elsewhere.
    fn dense_embeddings(&self, masks: &[Option<Tensor>]) -> Result<Tensor> {
        if masks.iter().all(Option::is_none) {
            return self.prompt_encoder.no_mask_dense(masks.len());
        }
        let no_mask = self.prompt_encoder.no_mask_dense(1)?;
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
