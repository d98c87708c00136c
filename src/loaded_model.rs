//! A model directory of either kind, loaded: what the server and
//! `rsam segment` run. RSAM takes sentences, clicks, boxes and mask prompts;
//! SAM 2 / 2.1 takes clicks, boxes and mask prompts, and can answer three
//! candidate masks (multimask). Both encode an image once for any number of
//! prompts, check a prompt once against its image, and decode checked
//! prompts in batches.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::model_kind::ModelKind;
use crate::predictor::{CheckedPrompt, EncodedImage, LoadOptions, ModelImage, ModelPixels, Prediction, Prompt, Rsam};
use crate::preprocess::Rgb8Image;
use crate::sam2::{Sam2Prediction, Sam2Predictor, Sam2Prompt};
use crate::weights::LoadReport;
use crate::{Result, RsamError};

/// A loaded model directory.
#[derive(Debug, Clone)]
pub enum LoadedModel {
    // Boxed: an RSAM predictor (BERT, the guidance module) is twice the
    // size of a SAM 2 one, and the enum is moved around by value.
    Rsam(Box<Rsam>),
    Sam2(Box<Sam2Predictor>),
}

impl LoadedModel {
    /// Loads a model directory as the kind its `config.json` declares (a
    /// directory whose kind cannot be read goes on to the RSAM loader's
    /// errors, which name the problem).
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        match ModelKind::of_dir(dir).unwrap_or_default() {
            ModelKind::Rsam => Ok(Self::Rsam(Box::new(Rsam::load(dir, options)?))),
            ModelKind::Sam2 => Ok(Self::Sam2(Box::new(Sam2Predictor::load(dir, options)?))),
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Rsam(_) => ModelKind::Rsam,
            Self::Sam2(_) => ModelKind::Sam2,
        }
    }

    /// The config's name (`rsam-demo`, `sam2.1_hiera_tiny`, ...).
    pub fn name(&self) -> &str {
        match self {
            Self::Rsam(m) => &m.config.name,
            Self::Sam2(m) => &m.config.name,
        }
    }

    /// The model directory's config, as `config.json` holds it.
    pub fn config_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Rsam(m) => serde_json::to_value(&m.config),
            Self::Sam2(m) => serde_json::to_value(&m.config),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    pub fn load_report(&self) -> &LoadReport {
        match self {
            Self::Rsam(m) => &m.load_report,
            Self::Sam2(m) => &m.load_report,
        }
    }

    pub fn weights_path(&self) -> &PathBuf {
        match self {
            Self::Rsam(m) => &m.weights_path,
            Self::Sam2(m) => &m.weights_path,
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Self::Rsam(m) => m.device(),
            Self::Sam2(m) => m.device(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Self::Rsam(m) => m.dtype(),
            Self::Sam2(m) => m.dtype(),
        }
    }

    /// S, the square model input side.
    pub fn image_size(&self) -> usize {
        match self {
            Self::Rsam(m) => m.image_size(),
            Self::Sam2(m) => m.image_size(),
        }
    }

    /// S/4, the side of the low-resolution logits and of mask prompts.
    pub fn low_res_size(&self) -> usize {
        match self {
            Self::Rsam(m) => m.low_res_size(),
            Self::Sam2(m) => m.low_res_size(),
        }
    }

    /// Most tokens a sentence may have; `None` for a model without text.
    pub fn max_text_tokens(&self) -> Option<usize> {
        match self {
            Self::Rsam(m) => Some(m.tokenizer.max_tokens()),
            Self::Sam2(_) => None,
        }
    }

    /// The normalised 3 x S x S model input of an image, as the model's own
    /// preprocessing makes it (`--input-out`).
    pub fn model_input(&self, image: &Rgb8Image) -> Vec<f32> {
        match self {
            Self::Rsam(m) => crate::preprocess::to_model_input(image, m.image_size() as u32),
            Self::Sam2(m) => crate::sam2::transforms::model_input(image, m.image_size()),
        }
    }

    /// Resizes an image to the model's input, keeping its original size.
    pub fn prepare(&self, image: &Rgb8Image) -> ModelImage {
        match self {
            Self::Rsam(m) => m.prepare(image),
            Self::Sam2(_) => ModelImage {
                pixels: ModelPixels::Normalized(self.model_input(image)),
                width: image.width,
                height: image.height,
            },
        }
    }

    /// Encodes prepared images as one batch (same results as one by one).
    pub fn encode_batch(&self, images: &[ModelImage]) -> Result<Vec<EncodedImage>> {
        match self {
            Self::Rsam(m) => m.encode_batch(images),
            Self::Sam2(m) => m.encode_batch(images),
        }
    }

    /// Encodes one prepared image.
    pub fn encode(&self, image: &ModelImage) -> Result<EncodedImage> {
        Ok(self.encode_batch(std::slice::from_ref(image))?.remove(0))
    }

    /// Prepares and encodes an image.
    pub fn encode_image(&self, image: &Rgb8Image) -> Result<EncodedImage> {
        self.encode(&self.prepare(image))
    }

    /// Checks a prompt against a `width` x `height` image once: coordinates,
    /// labels, box, mask prompt, and the sentence (tokenised for RSAM; a
    /// sentence for a SAM 2 model is [`RsamError::TextNotSupported`]).
    pub fn check_prompt(&self, prompt: Prompt, width: u32, height: u32) -> Result<CheckedPrompt> {
        match self {
            Self::Rsam(m) => m.check_prompt(prompt, width, height),
            Self::Sam2(m) => {
                Sam2Prompt::from_prompt(&prompt)?;
                prompt.check_geometry(width, height, m.low_res_size(), false)?;
                Ok(CheckedPrompt::without_text(prompt, (width, height)))
            }
        }
    }

    /// Decodes checked prompts on one image as one batch. `multimask` asks
    /// a SAM 2 model for its three candidates; an RSAM model gives one mask
    /// per prompt and refuses it.
    pub fn decode(&self, image: &EncodedImage, prompts: &[CheckedPrompt], multimask: bool) -> Result<Vec<Prediction>> {
        match self {
            Self::Rsam(_) if multimask => Err(RsamError::Prompt(
                "multimask needs a SAM 2 model: an RSAM model gives one mask per prompt".into(),
            )),
            Self::Rsam(m) => m.decode(image, prompts),
            Self::Sam2(m) => {
                let sam2_prompts = prompts
                    .iter()
                    .map(|p| Sam2Prompt::from_prompt(p.prompt()))
                    .collect::<Result<Vec<_>>>()?;
                let predictions = m.decode_checked(image, &sam2_prompts, multimask)?;
                Ok(predictions.into_iter().map(prediction_of).collect())
            }
        }
    }

    /// Checks prompts against `image` and decodes them.
    pub fn predict(&self, image: &EncodedImage, prompts: Vec<Prompt>, multimask: bool) -> Result<Vec<Prediction>> {
        let checked = prompts
            .into_iter()
            .map(|p| self.check_prompt(p, image.width, image.height))
            .collect::<Result<Vec<_>>>()?;
        self.decode(image, &checked, multimask)
    }
}

/// A SAM 2 prediction in the common form: the best candidate's fields, and
/// every candidate when there are several.
fn prediction_of(p: Sam2Prediction) -> Prediction {
    let best = p.best();
    let candidates = match p.masks.len() {
        1 => Vec::new(),
        _ => p
            .masks
            .iter()
            .map(|m| crate::predictor::Candidate {
                low_res_logits: m.unclamped_logits().to_vec(),
                iou: m.iou,
            })
            .collect(),
    };
    Prediction {
        low_res_logits: best.unclamped_logits().to_vec(),
        low_res_size: p.low_res_size,
        iou: best.iou,
        object_score_logit: p.object_score_logit,
        logit_limit: Some(crate::sam2::predictor::LOW_RES_LOGIT_LIMIT),
        candidates,
    }
}
