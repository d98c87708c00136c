//! The user-facing model: a model directory loaded onto a device, with
//! tokenizer and preprocessing, taking prompts in original-image pixels.
//!
//! `encode_image` does everything that does not depend on the prompt, so one
//! encoding serves any number of prompts; `decode` runs a batch of prompts
//! (texts of different lengths, different numbers of clicks, with or without
//! mask prompts) as one batch and gives what each gives alone.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::RsamConfig;
use crate::models::image_encoder::ImageFeatures as Embeddings;
use crate::models::prompt_encoder::{LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PAD};
use crate::models::rsam::{DecodeBatch, EncoderTrace, RsamModel, SparseBatch, TextBatch};
use crate::preprocess::{self, RgbImage};
use crate::tokenizer::TextTokenizer;
use crate::weights::{self, LoadReport};
use crate::{Result, RsamError};

/// A click in original-image pixels; label 1 positive, 0 negative.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub label: u8,
}

/// Any combination of a sentence, clicks, one box and a mask prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub text: Option<String>,
    pub points: Vec<Point>,
    /// `[x0, y0, x1, y1]` in original-image pixels.
    pub bbox: Option<[f32; 4]>,
    /// Earlier low-resolution logits (S/4 x S/4, row-major), the way the
    /// official correction-click protocol feeds a prediction back.
    pub mask_input: Option<Vec<f32>>,
}

impl Prompt {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Default::default()
        }
    }
}

/// One prompt's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// S/4 x S/4 logits after object gating (-1024 where no object).
    pub low_res_logits: Vec<f32>,
    /// Side of `low_res_logits`.
    pub low_res_size: usize,
    /// Predicted IoU (sigmoid applied).
    pub iou: f32,
    /// Object-presence logit; the object is present when it is > 0.
    pub object_score_logit: f32,
}

impl Prediction {
    /// Whether the object-score head says the described object is present.
    pub fn object_present(&self) -> bool {
        self.object_score_logit > 0.0
    }

    /// The logits upsampled bilinearly (align_corners = false) to the
    /// original image size, row-major `height x width`.
    pub fn upsampled_logits(&self, width: u32, height: u32) -> Vec<f32> {
        crate::postprocess::upsample_bilinear(
            &self.low_res_logits,
            self.low_res_size,
            self.low_res_size,
            height as usize,
            width as usize,
        )
    }

    /// The binary mask (logit > 0) at the original image size.
    pub fn mask(&self, width: u32, height: u32) -> crate::postprocess::BinaryMask {
        crate::postprocess::BinaryMask::from_logits(&self.upsampled_logits(width, height), height, width)
    }
}

/// Features of one encoded image plus its original size.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    pub embeddings: Embeddings,
    pub width: u32,
    pub height: u32,
}

impl ImageFeatures {
    pub fn nbytes(&self) -> usize {
        self.embeddings.nbytes()
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| RsamError::Device(format!("invalid device {s:?}: expected cuda:N")))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(RsamError::Device(format!(
                    "{s} requested but this binary was built without the `cuda` feature"
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| RsamError::Device(format!("cannot open {s}: {e}")))
        }
        other => Err(RsamError::Device(format!(
            "unknown device {other:?}: expected cpu, cuda or cuda:N"
        ))),
    }
}

/// Parses `f32`, `bf16` or `f16`.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(RsamError::Device(format!(
            "unknown dtype {other:?}: expected f32, bf16 or f16"
        ))),
    }
}

/// bf16 on the CPU runs on rsam's kernels ([`crate::autocast`]); without
/// them (`RSAM_GENERIC_KERNELS=1`) the whole network would run in bf16, and
/// Candle's CPU convolution has no bf16 matrix multiply: say so before
/// loading rather than failing inside the first forward pass.
pub fn check_dtype_on_device(dtype: DType, device: &Device) -> Result<()> {
    if dtype == DType::BF16 && device.is_cpu() && !crate::kernel_choice::custom_kernels() {
        return Err(RsamError::Device(
            "bf16 on the CPU needs rsam's CPU kernels, which RSAM_GENERIC_KERNELS=1 turns off (Candle's CPU convolution has no bf16 matrix multiply): use f32 or f16 there, or unset it".into(),
        ));
    }
    Ok(())
}

/// Where the bundled demo model lives, relative to the repository root.
pub const DEMO_MODEL_DIR: &str = "weights/rsam-demo";

/// The model used when no `--model` is given: the bundled `rsam-demo`,
/// looked for in `./weights/rsam-demo`, then in this source tree's
/// `weights/` (for `cargo run` or the built binary used from elsewhere).
/// When neither exists the first is returned, so that loading fails with an
/// error naming the path. (The Docker images mount their model instead.)
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from(DEMO_MODEL_DIR);
    let in_source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEMO_MODEL_DIR);
    if !local.join("config.json").is_file() && in_source_tree.join("config.json").is_file() {
        return in_source_tree;
    }
    local
}

/// Options for loading a model directory.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    /// Decompression-bomb guard for `encode_bytes`.
    pub max_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            max_pixels: preprocess::DEFAULT_MAX_PIXELS,
        }
    }
}

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
    pub fn model_input(&self, image: &RgbImage) -> Result<Tensor> {
        preprocess::to_model_tensor(image, self.config.image_size as u32, self.device())
    }

    /// Decodes image file bytes (with the pixel limit) and encodes them.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<ImageFeatures> {
        let image = preprocess::decode_image(bytes, self.max_pixels)?;
        self.encode_image(&image)
    }

    /// Everything that does not depend on the prompt.
    pub fn encode_image(&self, image: &RgbImage) -> Result<ImageFeatures> {
        Ok(self.encode_image_traced(image)?.0)
    }

    /// [`Self::encode_image`] plus the intermediate tensors.
    pub fn encode_image_traced(&self, image: &RgbImage) -> Result<(ImageFeatures, EncoderTrace)> {
        let input = self.model_input(image)?;
        let (embeddings, trace) = self.model.encode_traced(&input)?;
        Ok((
            ImageFeatures {
                embeddings,
                width: image.width,
                height: image.height,
            },
            trace,
        ))
    }

    /// Encodes several images as one batch (same results as one by one).
    pub fn encode_images(&self, images: &[RgbImage]) -> Result<Vec<ImageFeatures>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let inputs = images.iter().map(|i| self.model_input(i)).collect::<Result<Vec<_>>>()?;
        let batch = self.model.encode(&Tensor::cat(&inputs, 0)?)?;
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                Ok(ImageFeatures {
                    embeddings: batch.get(i)?,
                    width: img.width,
                    height: img.height,
                })
            })
            .collect()
    }

    /// Checks a prompt against an image of `width` x `height`: coordinates
    /// inside the image and finite, labels 0 / 1, box not inverted, mask
    /// prompt of the right size, text tokenisable. Returns the token ids.
    pub fn validate_prompt(&self, prompt: &Prompt, width: u32, height: u32) -> Result<Option<Vec<u32>>> {
        let (w, h) = (width as f32, height as f32);
        let inside =
            |x: f32, y: f32| x.is_finite() && y.is_finite() && (0.0..=w).contains(&x) && (0.0..=h).contains(&y);
        for (i, p) in prompt.points.iter().enumerate() {
            if !p.x.is_finite() || !p.y.is_finite() {
                return Err(RsamError::Prompt(format!(
                    "point {i} has a coordinate that is not a finite number"
                )));
            }
            if !inside(p.x, p.y) {
                return Err(RsamError::Prompt(format!(
                    "point {i} ({}, {}) is outside the {width}x{height} image",
                    p.x, p.y
                )));
            }
            if p.label > 1 {
                return Err(RsamError::Prompt(format!(
                    "point {i} has label {}: expected 1 (positive) or 0 (negative)",
                    p.label
                )));
            }
        }
        if let Some([x0, y0, x1, y1]) = prompt.bbox {
            if [x0, y0, x1, y1].iter().any(|v| !v.is_finite()) {
                return Err(RsamError::Prompt(
                    "the box has a coordinate that is not a finite number".into(),
                ));
            }
            if !inside(x0, y0) || !inside(x1, y1) {
                return Err(RsamError::Prompt(format!(
                    "the box [{x0}, {y0}, {x1}, {y1}] is outside the {width}x{height} image"
                )));
            }
            if x1 < x0 || y1 < y0 {
                return Err(RsamError::Prompt(format!(
                    "the box [{x0}, {y0}, {x1}, {y1}] is inverted: expected x0 <= x1 and y0 <= y1"
                )));
            }
        }
        if let Some(mask) = &prompt.mask_input {
            let side = self.low_res_size();
            if mask.len() != side * side {
                return Err(RsamError::MaskInput(format!(
                    "expected {side}x{side} = {} low-resolution logits, got {}",
                    side * side,
                    mask.len()
                )));
            }
            if mask.iter().any(|v| !v.is_finite()) {
                return Err(RsamError::MaskInput(
                    "the mask input holds a value that is not finite".into(),
                ));
            }
        }
        let ids = match &prompt.text {
            Some(text) => Some(self.tokenizer.encode(text)?),
            None => None,
        };
        if ids.is_none() && prompt.points.is_empty() && prompt.bbox.is_none() && prompt.mask_input.is_none() {
            return Err(RsamError::Prompt(
                "no prompt: give a text, points, a box or a mask input".into(),
            ));
        }
        Ok(ids)
    }

    /// Decodes a batch of prompts on one image's features.
    pub fn decode(&self, features: &ImageFeatures, prompts: &[Prompt]) -> Result<Vec<Prediction>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = prompts
            .iter()
            .map(|p| self.validate_prompt(p, features.width, features.height))
            .collect::<Result<Vec<_>>>()?;
        let batch = self.prepare_batch(features, prompts, &ids)?;
        let out = self.model.decode(&features.embeddings, &batch)?;
        let side = self.low_res_size();
        let logits: Vec<f32> = out.low_res_logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let ious: Vec<f32> = out.iou.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let scores: Vec<f32> = out.object_score_logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok((0..prompts.len())
            .map(|i| Prediction {
                low_res_logits: logits[i * side * side..(i + 1) * side * side].to_vec(),
                low_res_size: side,
                iou: ious[i],
                object_score_logit: scores[i],
            })
            .collect())
    }

    /// Turns validated prompts into model-space tensors: coordinates scaled
    /// to S x S, the box as two points labelled 2 and 3 placed before the
    /// clicks, the official padding point appended, and extra batch padding
    /// masked out.
    fn prepare_batch(
        &self,
        features: &ImageFeatures,
        prompts: &[Prompt],
        ids: &[Option<Vec<u32>>],
    ) -> Result<DecodeBatch> {
        let device = self.device();
        let s = self.config.image_size as f32;
        let (sx, sy) = (s / features.width as f32, s / features.height as f32);
        let rows: Vec<Vec<(f32, f32, i64)>> = prompts
            .iter()
            .map(|p| {
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
        for id in ids {
            match id {
                Some(seq) => {
                    text_rows.push(Some(seqs.len()));
                    seqs.push(seq.clone());
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
            .map(|p| match &p.mask_input {
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
