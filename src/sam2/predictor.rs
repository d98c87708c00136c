//! A SAM 2 model directory loaded onto a device, with SAM 2's preprocessing,
//! taking prompts in original-image pixels: `build_sam2()` +
//! `SAM2ImagePredictor` (`set_image`, then `predict(..., multimask_output,
//! return_logits=True)`).
//!
//! `encode_image` is `set_image`; `decode` is `predict` for a batch of
//! prompts on one image (the official predictor takes a batch of prompts with
//! the same number of points; prompts with fewer points are padded here with
//! masked tokens, which gives what each prompt gives alone).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::config::Sam2Config;
use super::multimask::{self, DynamicMultimask};
use super::network::{Sam2Batch, Sam2Network};
use super::prompt::Sam2Prompt;
use super::transforms;
use crate::models::mask_decoder::NUM_MASK_TOKENS;
use crate::models::rsam::SparseBatch;
use crate::predictor::{check_dtype_on_device, EncodedImage, LoadOptions, ModelImage, ModelPixels};
use crate::preprocess::{self, Rgb8Image};
use crate::weights::{self, LoadReport};
use crate::{Result, RsamError};

/// `SAM2ImagePredictor.predict` clamps the low-resolution logits it returns
/// (and that are fed back as mask prompts) to this range.
pub const LOW_RES_LOGIT_LIMIT: f32 = 32.0;

/// One output mask of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Sam2Mask {
    /// The decoder's S/4 x S/4 logits, before the predictor's clamp.
    logits: Vec<f32>,
    /// Predicted IoU (sigmoid applied).
    pub iou: f32,
    /// Which of the decoder's four mask tokens gave it (0: single-mask token).
    pub token: usize,
}

impl Sam2Mask {
    /// The S/4 x S/4 low-resolution logits the official predictor returns,
    /// clamped to ±32: what a later prompt takes back as its mask input.
    pub fn low_res_logits(&self) -> Vec<f32> {
        self.logits
            .iter()
            .map(|v| v.clamp(-LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT))
            .collect()
    }

    /// The decoder's logits before the clamp (what the mask is thresholded from).
    pub fn unclamped_logits(&self) -> &[f32] {
        &self.logits
    }

    /// The logits upsampled bilinearly (align_corners = false) to the
    /// original image size, row-major `height x width`. As in the official
    /// predictor, the unclamped logits are upsampled.
    pub fn upsampled_logits(&self, width: u32, height: u32) -> Vec<f32> {
        let side = (self.logits.len() as f64).sqrt() as usize;
        crate::mask::upsample_bilinear(&self.logits, side, side, height as usize, width as usize)
    }

    /// The binary mask (logit > 0) at the original image size.
    pub fn mask(&self, width: u32, height: u32) -> crate::mask::BinaryMask {
        crate::mask::BinaryMask::from_logits(&self.upsampled_logits(width, height), height, width)
    }
}

/// One prompt's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sam2Prediction {
    /// One mask, or with multimask the three candidates in the model's order.
    pub masks: Vec<Sam2Mask>,
    /// Side of each mask's low-resolution logits (S / 4).
    pub low_res_size: usize,
    /// The object-score head's logit (the image predictor does not gate the
    /// masks with it; reported for information).
    pub object_score_logit: f32,
}

impl Sam2Prediction {
    /// The index of the mask with the highest predicted IoU (the first on a tie).
    pub fn best_index(&self) -> usize {
        let ious: Vec<f32> = self.masks.iter().map(|m| m.iou).collect();
        multimask::argmax(&ious)
    }

    /// The mask with the highest predicted IoU.
    pub fn best(&self) -> &Sam2Mask {
        &self.masks[self.best_index()]
    }
}

/// A loaded SAM 2 model directory.
#[derive(Debug, Clone)]
pub struct Sam2Predictor {
    pub network: Sam2Network,
    pub config: Sam2Config,
    pub load_report: LoadReport,
    pub weights_path: PathBuf,
    pub max_pixels: u64,
}

impl Sam2Predictor {
    /// Loads `config.json` (of kind `sam2`) and the weights of a model
    /// directory: `model.safetensors`, or an official `*.pt` checkpoint
    /// (its video-only tensors are ignored).
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(RsamError::ModelDir {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        check_dtype_on_device(options.dtype, &options.device)?;
        let config = Sam2Config::from_file(&dir.join("config.json"))?;
        let (weights_path, format) = weights::find_weights(dir)?;
        let bf16 = match crate::autocast::applies(options.dtype, &options.device) {
            true => crate::autocast::bf16_tensor_names_of(|vb| Sam2Network::new(&config, vb))?,
            false => Default::default(),
        };
        let tensors = weights::read_tensors_as(&weights_path, format, &bf16)?;
        Self::from_tensors(config, tensors, weights_path, options)
    }

    /// Builds a predictor from tensors already in memory, checking every key.
    pub fn from_tensors(
        config: Sam2Config,
        tensors: std::collections::HashMap<String, Tensor>,
        weights_path: PathBuf,
        options: &LoadOptions,
    ) -> Result<Self> {
        check_dtype_on_device(options.dtype, &options.device)?;
        config.validate().map_err(|reason| RsamError::Config {
            path: weights_path.clone(),
            reason,
        })?;
        let (network, load_report) = if crate::autocast::applies(options.dtype, &options.device) {
            weights::build_checked(tensors, DType::F32, &options.device, |vb| {
                crate::autocast::with_bf16_products(|| Sam2Network::new(&config, vb))
            })?
        } else {
            weights::build_checked(tensors, options.dtype, &options.device, |vb| {
                Sam2Network::new(&config, vb)
            })?
        };
        Ok(Self {
            network,
            config,
            load_report,
            weights_path,
            max_pixels: options.max_pixels,
        })
    }

    pub fn device(&self) -> &Device {
        self.network.device()
    }

    pub fn dtype(&self) -> DType {
        self.network.dtype()
    }

    pub fn image_size(&self) -> usize {
        self.config.image_size
    }

    pub fn low_res_size(&self) -> usize {
        self.config.low_res_size()
    }

    /// The preprocessed 1 x 3 x S x S model input (`SAM2Transforms`).
    pub fn model_input(&self, image: &Rgb8Image) -> Result<Tensor> {
        transforms::model_tensor(image, self.config.image_size, self.device())
    }

    /// Decodes image file bytes (with the pixel limit) and encodes them.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<EncodedImage> {
        let image = preprocess::decode_image(bytes, self.max_pixels)?;
        self.encode_image(&image)
    }

    /// `set_image`: everything that does not depend on the prompt.
    pub fn encode_image(&self, image: &Rgb8Image) -> Result<EncodedImage> {
        Ok(self.encode_images(std::slice::from_ref(image))?.remove(0))
    }

    /// Encodes several images as one batch (`set_image_batch`).
    pub fn encode_images(&self, images: &[Rgb8Image]) -> Result<Vec<EncodedImage>> {
        let prepared: Vec<ModelImage> = images
            .iter()
            .map(|image| ModelImage {
                pixels: ModelPixels::Normalized(transforms::model_input(image, self.image_size())),
                width: image.width,
                height: image.height,
            })
            .collect();
        self.encode_batch(&prepared)
    }

    /// Encodes images already through `SAM2Transforms` as one batch.
    pub fn encode_batch(&self, images: &[ModelImage]) -> Result<Vec<EncodedImage>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.image_size();
        let inputs = images
            .iter()
            .map(|image| match &image.pixels {
                ModelPixels::Normalized(input) => Ok(Tensor::from_slice(input, (1, 3, s, s), self.device())?),
                ModelPixels::Rgb8(_) => Err(RsamError::Image(
                    "an image prepared for an RSAM model cannot be encoded by a SAM 2 model".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = self.network.encode(&Tensor::cat(&inputs, 0)?)?;
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

    /// `predict` for a batch of prompts on one image's features. With
    /// `multimask` every prediction holds the three multimask candidates,
    /// otherwise one mask (token 0's, or the dynamic fallback's).
    pub fn decode(
        &self,
        features: &EncodedImage,
        prompts: &[Sam2Prompt],
        multimask: bool,
    ) -> Result<Vec<Sam2Prediction>> {
        for p in prompts {
            p.validate(features.width, features.height, self.low_res_size())?;
        }
        self.decode_checked(features, prompts, multimask)
    }

    /// [`Self::decode`] for prompts already checked against the image.
    pub fn decode_checked(
        &self,
        features: &EncodedImage,
        prompts: &[Sam2Prompt],
        multimask: bool,
    ) -> Result<Vec<Sam2Prediction>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.low_res_size();
        let batch = self.prepare_batch(features, prompts)?;
        let out = self.network.decode(&features.embeddings, &batch)?;
        let [logits, ious, scores] =
            crate::device::host_read::to_host_f32([&out.masks, &out.iou, &out.object_score_logits])?;
        let plane = side * side;
        let dynamic = self.config.dynamic_multimask_via_stability.then_some(DynamicMultimask {
            delta: self.config.dynamic_multimask_stability_delta as f32,
            threshold: self.config.dynamic_multimask_stability_thresh as f32,
        });
        Ok((0..prompts.len())
            .map(|i| {
                let logits = &logits[i * NUM_MASK_TOKENS * plane..(i + 1) * NUM_MASK_TOKENS * plane];
                let ious: [f32; NUM_MASK_TOKENS] = std::array::from_fn(|t| ious[i * NUM_MASK_TOKENS + t]);
                let masks = multimask::select_tokens(logits, &ious, multimask, dynamic)
                    .into_iter()
                    .map(|t| Sam2Mask {
                        logits: logits[t * plane..(t + 1) * plane].to_vec(),
                        iou: ious[t],
                        token: t,
                    })
                    .collect();
                Sam2Prediction {
                    masks,
                    low_res_size: side,
                    object_score_logit: scores[i],
                }
            })
            .collect())
    }

    /// Model-space tensors of validated prompts: points scaled to S x S with
    /// the box first and the padding point last, extra batch padding masked
    /// out, and the mask prompts.
    fn prepare_batch(&self, features: &EncodedImage, prompts: &[Sam2Prompt]) -> Result<Sam2Batch> {
        let device = self.device();
        let rows: Vec<Vec<(f32, f32, i64)>> = prompts
            .iter()
            .map(|p| p.model_points(features.width, features.height, self.image_size()))
            .collect();
        let sparse = if rows.iter().all(Vec::is_empty) {
            None
        } else {
            Some(SparseBatch::from_rows(&rows, device)?)
        };
        let side = self.low_res_size();
        let mask_inputs = prompts
            .iter()
            .map(|p| match &p.mask_input {
                Some(m) => Ok(Some(Tensor::from_slice(m, (1, 1, side, side), device)?)),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sam2Batch { sparse, mask_inputs })
    }
}
