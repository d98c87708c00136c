//! The image predictor: a model directory loaded onto a device, with its
//! tokenizer and preprocessing, taking prompts in original-image pixels and
//! giving masks, as SAM 2's `SAM2ImagePredictor` does for SAM 2. The
//! network itself is in [`crate::models`].
//!
//! `encode_image` does everything that does not depend on the prompt, so one
//! encoding serves any number of prompts; `check_prompt` checks a prompt
//! against the image once and tokenises it; `decode` runs a batch of checked
//! prompts (texts of different lengths, different numbers of clicks, with or
//! without mask prompts) as one batch and gives what each gives alone.

mod encoded;
mod options;
mod prediction;
mod prompt;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::RsamConfig;
use crate::models::prompt_encoder::{LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PAD};
use crate::models::rsam::{DecodeBatch, EncoderTrace, RsamModel, SparseBatch, TextBatch};
use crate::preprocess::{self, Rgb8Image};
use crate::tokenizer::TextTokenizer;
use crate::weights::{self, LoadReport};
use crate::{Result, RsamError};

pub use encoded::{EncodedImage, ModelImage, ModelPixels};
pub use options::{check_dtype_on_device, default_model_dir, parse_device, parse_dtype, LoadOptions, DEMO_MODEL_DIR};
pub use prediction::{Candidate, Prediction};
pub use prompt::{CheckedPrompt, Point, Prompt};

/// A loaded RSAM model directory.
#[derive(Debug, Clone)]
pub struct Rsam {
    pub model: RsamModel,
    pub tokenizer: TextTokenizer,
    pub config: RsamConfig,
    pub load_report: LoadReport,
    pub weights_path: PathBuf,
    pub max_pixels: u64,
}

impl Rsam {
    /// Loads `config.json`, the weights and the tokenizer of a model directory.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(RsamError::ModelDir {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        check_dtype_on_device(options.dtype, &options.device)?;
        let config = RsamConfig::from_file(&dir.join("config.json"))?;
        let tokenizer =
            TextTokenizer::from_dir(dir, config.bert.max_position_embeddings.min(config.max_text_positions))?;
        let (weights_path, format) = weights::find_weights(dir)?;
        let bf16 = match crate::autocast::applies(options.dtype, &options.device) {
            true => crate::autocast::bf16_tensor_names(&config)?,
            false => Default::default(),
        };
        let tensors = weights::read_tensors_as(&weights_path, format, &bf16)?;
        Self::from_tensors(config, tokenizer, tensors, weights_path, options)
    }

    /// Builds a model from tensors already in memory (e.g. random weights for
    /// benchmarks, or a checkpoint read elsewhere).
    pub fn from_tensors(
        config: RsamConfig,
        tokenizer: TextTokenizer,
        tensors: std::collections::HashMap<String, Tensor>,
        weights_path: PathBuf,
        options: &LoadOptions,
    ) -> Result<Self> {
        check_dtype_on_device(options.dtype, &options.device)?;
        let tokenizer = tokenizer.with_truncation(config.text_truncation);
        let (model, load_report) = if crate::autocast::applies(options.dtype, &options.device) {
            weights::build_checked(tensors, DType::F32, &options.device, |vb| {
                crate::autocast::with_bf16_products(|| RsamModel::new(&config, vb))
            })?
        } else {
            weights::build_checked(tensors, options.dtype, &options.device, |vb| {
                RsamModel::new(&config, vb)
            })?
        };
        Ok(Self {
            model,
            tokenizer,
            config,
            load_report,
            weights_path,
            max_pixels: options.max_pixels,
        })
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }

    pub fn image_size(&self) -> usize {
        self.config.image_size
    }

    pub fn low_res_size(&self) -> usize {
        self.config.low_res_size()
    }

    /// The preprocessed 1 x 3 x S x S model input of an image.
    pub fn model_input(&self, image: &Rgb8Image) -> Result<Tensor> {
        preprocess::to_model_tensor(image, self.config.image_size as u32, self.device())
    }

    /// Resizes an image to the model's S x S input (PIL's bilinear filter),
    /// keeping its original size for the prompts. Resizing an S x S image to
    /// S x S is the identity, so encoding the result gives exactly what
    /// encoding the original gives.
    pub fn prepare(&self, image: &Rgb8Image) -> ModelImage {
        let side = self.config.image_size as u32;
        ModelImage {
            pixels: ModelPixels::Rgb8(preprocess::resize_bilinear_pil(image, side, side)),
            width: image.width,
            height: image.height,
        }
    }

    /// Decodes image file bytes (with the pixel limit) and encodes them.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<EncodedImage> {
        let image = preprocess::decode_image(bytes, self.max_pixels)?;
        self.encode_image(&image)
    }

    /// Everything that does not depend on the prompt.
    pub fn encode_image(&self, image: &Rgb8Image) -> Result<EncodedImage> {
        Ok(self.encode_image_traced(image)?.0)
    }

    /// [`Self::encode_image`] plus the intermediate tensors.
    pub fn encode_image_traced(&self, image: &Rgb8Image) -> Result<(EncodedImage, EncoderTrace)> {
        let input = self.model_input(image)?;
        let (embeddings, trace) = self.model.encode_traced(&input)?;
        Ok((
            EncodedImage {
                embeddings,
                width: image.width,
                height: image.height,
            },
            trace,
        ))
    }

    /// Encodes an image already resized by [`Self::prepare`].
    pub fn encode(&self, image: &ModelImage) -> Result<EncodedImage> {
        Ok(self.encode_batch(std::slice::from_ref(image))?.remove(0))
    }

    /// Encodes several prepared images as one batch (same results as one by
    /// one).
    pub fn encode_batch(&self, images: &[ModelImage]) -> Result<Vec<EncodedImage>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let inputs = images
            .iter()
            .map(|i| match &i.pixels {
                ModelPixels::Rgb8(pixels) => self.model_input(pixels),
                ModelPixels::Normalized(_) => Err(RsamError::Image(
                    "an image prepared for a SAM 2 model cannot be encoded by an RSAM model".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = self.model.encode(&Tensor::cat(&inputs, 0)?)?;
        images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                Ok(EncodedImage {
                    embeddings: batch.get(i)?,
                    width: image.width,
                    height: image.height,
                })
            })
            .collect()
    }

    /// Encodes several images as one batch (same results as one by one).
    pub fn encode_images(&self, images: &[Rgb8Image]) -> Result<Vec<EncodedImage>> {
        let prepared: Vec<ModelImage> = images.iter().map(|i| self.prepare(i)).collect();
        self.encode_batch(&prepared)
    }

    /// Checks a prompt against an image of `width` x `height` (coordinates
    /// inside the image and finite, labels 0 / 1, box not inverted, mask
    /// prompt of the right size) and tokenises its text: the one check a
    /// prompt gets before [`Self::decode`].
    pub fn check_prompt(&self, prompt: Prompt, width: u32, height: u32) -> Result<CheckedPrompt> {
        let token_ids = prompt.text.as_deref().map(|t| self.tokenizer.encode(t)).transpose()?;
        prompt.check_geometry(width, height, self.low_res_size(), true)?;
        Ok(CheckedPrompt::new(prompt, token_ids, (width, height)))
    }

    /// Checks prompts against `image` and decodes them as one batch:
    /// [`Self::check_prompt`] then [`Self::decode`].
    pub fn predict(&self, image: &EncodedImage, prompts: Vec<Prompt>) -> Result<Vec<Prediction>> {
        let checked = prompts
            .into_iter()
            .map(|p| self.check_prompt(p, image.width, image.height))
            .collect::<Result<Vec<_>>>()?;
        self.decode(image, &checked)
    }

    /// Decodes a batch of checked prompts on one image's features.
    pub fn decode(&self, image: &EncodedImage, prompts: &[CheckedPrompt]) -> Result<Vec<Prediction>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(p) = prompts.iter().find(|p| p.image_size() != (image.width, image.height)) {
            let (w, h) = p.image_size();
            return Err(RsamError::Prompt(format!(
                "a prompt checked against a {w}x{h} image cannot run on a {}x{} one",
                image.width, image.height
            )));
        }
        let batch = self.prepare_batch(image, prompts)?;
        let out = self.model.decode(&image.embeddings, &batch)?;
        let side = self.low_res_size();
        let [logits, ious, scores] =
            crate::device::host_read::to_host_f32([&out.low_res_logits, &out.iou, &out.object_score_logits])?;
        Ok((0..prompts.len())
            .map(|i| Prediction {
                low_res_logits: logits[i * side * side..(i + 1) * side * side].to_vec(),
                low_res_size: side,
                iou: ious[i],
                object_score_logit: scores[i],
                logit_limit: None,
                candidates: Vec::new(),
            })
            .collect())
    }

    /// Turns validated prompts into model-space tensors: coordinates scaled
    /// to S x S, the box as two points labelled 2 and 3 placed before the
    /// clicks, the official padding point appended, and extra batch padding
    /// masked out.
    fn prepare_batch(&self, image: &EncodedImage, prompts: &[CheckedPrompt]) -> Result<DecodeBatch> {
        let device = self.device();
        let s = self.config.image_size as f32;
        let (sx, sy) = (s / image.width as f32, s / image.height as f32);
        let rows: Vec<Vec<(f32, f32, i64)>> = prompts
            .iter()
            .map(|p| {
                let p = p.prompt();
                let mut row = Vec::with_capacity(p.points.len() + 3);
                if let Some([x0, y0, x1, y1]) = p.bbox {
                    row.push((x0 * sx, y0 * sy, LABEL_BOX_TOP_LEFT));
                    row.push((x1 * sx, y1 * sy, LABEL_BOX_BOTTOM_RIGHT));
                }
                row.extend(p.points.iter().map(|pt| (pt.x * sx, pt.y * sy, pt.label as i64)));
                if row.is_empty() {
                    // Without clicks the official model feeds one empty point
                    // (label -1) as its point input...
                    row.push((0.0, 0.0, LABEL_PAD));
                }
                // ...and the prompt encoder always appends a padding point.
                row.push((0.0, 0.0, LABEL_PAD));
                row
            })
            .collect();
        let b = prompts.len();
        let sparse = SparseBatch::from_rows(&rows, device)?;

        let mut text_rows = Vec::with_capacity(b);
        let mut seqs = Vec::new();
        for p in prompts {
            match p.token_ids() {
                Some(seq) => {
                    text_rows.push(Some(seqs.len()));
                    seqs.push(seq.to_vec());
                }
                None => text_rows.push(None),
            }
        }
        let texts = if seqs.is_empty() {
            None
        } else {
            Some(TextBatch::new(&seqs, device)?)
        };
        let side = self.low_res_size();
        let mask_inputs = prompts
            .iter()
            .map(|p| match &p.prompt().mask_input {
                Some(m) => Ok(Some(Tensor::from_slice(m, (1, 1, side, side), device)?)),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecodeBatch {
            sparse,
            text_rows,
            texts,
            mask_inputs,
        })
    }
}
