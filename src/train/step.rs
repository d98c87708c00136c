//! One training step's forward pass: encode the batch's images, then for
//! every image decode its sentences, text-only first and then with
//! correction clicks, summing the official loss over all prediction steps.
//!
//! This is SAM 2's `_iter_correct_pt_sampling` as RSAM inherits it: after
//! each prediction a click is drawn from the current error of the
//! high-resolution mask, appended to the clicks so far, and the previous
//! low-resolution logits are fed back as the mask prompt (not detached, as
//! in the official code). The text side (BERT + TWGM) does not depend on the
//! clicks, so it runs once per image and is shared by every step.

use candle_core::{DType, Result, Tensor};
use rand::Rng;

use super::clicks::{correction_click, initial_click};
use super::data::LoadedImage;
use super::loss::{step_loss, LossParts, LossWeights};
use super::resize::{bilinear_matrix, resize_bilinear_with};
use crate::models::prompt_encoder::LABEL_PAD;
use crate::models::rsam::{DecodeBatch, RsamModel, SparseBatch, TextBatch};

/// The knobs of the interactive protocol.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// Correction clicks after the text-only prediction (official SAM 2: 7).
    pub correction_clicks: usize,
    /// Probability of drawing a click from the ground truth instead of the
    /// error (official: 0.1).
    pub click_from_gt: f64,
    /// Probability of the evaluation's center click instead of a uniform one.
    pub center_clicks: f64,
    /// Probability that a sentence starts from a click instead of its text.
    pub text_dropout: f64,
    pub weights: LossWeights,
}

/// The summed loss of a batch and how many sentences it had.
pub struct StepLoss {
    pub parts: LossParts,
    pub sentences: usize,
}

/// Forward pass of one batch; call `parts.total.backward()` on the result.
pub fn forward<R: Rng>(
    model: &RsamModel,
    batch: &[LoadedImage],
    options: &StepOptions,
    rng: &mut R,
) -> Result<StepLoss> {
    let device = model.device().clone();
    let s = model.config.image_size;
    let pixels: Vec<f32> = batch.iter().flat_map(|b| b.pixels.iter().copied()).collect();
    let pixels = Tensor::from_vec(pixels, (batch.len(), 3, s, s), &device)?;
    let features = model.encode(&pixels)?;

    // The official loss divides every term by the number of objects in the
    // batch (all images together).
    let sentences: usize = batch.iter().map(|b| b.targets.len()).sum();
    let num_objects = sentences.max(1) as f64;
    let low = model.config.low_res_size();
    let up = bilinear_matrix(low, s, &device, DType::F32)?;

    let mut total: Option<LossParts> = None;
    for (i, image) in batch.iter().enumerate() {
        if image.targets.is_empty() {
            continue;
        }
        let parts = image_loss(model, &features.get(i)?, image, &up, num_objects, options, rng)?;
        total = Some(match total {
            Some(t) => t.add(&parts)?,
            None => parts,
        });
    }
    let parts = match total {
        Some(p) => p,
        None => {
            let zero = Tensor::zeros((), DType::F32, &device)?;
            LossParts {
                focal: zero.clone(),
                dice: zero.clone(),
                iou: zero.clone(),
                class: zero.clone(),
                total: zero,
            }
        }
    };
    Ok(StepLoss { parts, sentences })
}

/// All prediction steps of one image's sentences.
fn image_loss<R: Rng>(
    model: &RsamModel,
    features: &crate::models::image_encoder::ImageEmbeddings,
    image: &LoadedImage,
    up: &Tensor,
    num_objects: f64,
    options: &StepOptions,
    rng: &mut R,
) -> Result<LossParts> {
    let device = model.device();
    let s = model.config.image_size;
    let k = image.targets.len();
    let ids: Vec<Vec<u32>> = image.targets.iter().map(|t| t.token_ids.clone()).collect();
    let texts = TextBatch::new(&ids, device)?;
    let guided = model.guidance(features, &texts)?;
    let gt_flat: Vec<f32> = image
        .targets
        .iter()
        .flat_map(|t| t.mask.iter().map(|&v| v as f32))
        .collect();
    let gt = Tensor::from_vec(gt_flat, (k, 1, s, s), device)?;

    // Text only: the official empty point input plus the padding point.
    // A sentence whose text is dropped starts from one click in its object
    // instead (negatives, with nothing to click, keep their text).
    let mut clicks: Vec<Vec<(f32, f32, i64)>> = vec![Vec::new(); k];
    let mut text_rows: Vec<Option<usize>> = (0..k).map(Some).collect();
    if options.text_dropout > 0.0 {
        for (j, target) in image.targets.iter().enumerate() {
            if rng.random::<f64>() >= options.text_dropout {
                continue;
            }
            if let Some(c) = initial_click(&target.mask, s, options.center_clicks, rng) {
                clicks[j].push((c.x, c.y, c.label));
                text_rows[j] = None;
            }
        }
    }
    let mut mask_inputs: Vec<Option<Tensor>> = vec![None; k];
    let mut total: Option<LossParts> = None;
    for step in 0..=options.correction_clicks {
        let rows: Vec<Vec<(f32, f32, i64)>> = clicks
            .iter()
            .map(|c| {
                let mut row = if c.is_empty() {
                    vec![(0.0, 0.0, LABEL_PAD)]
                } else {
                    c.clone()
                };
                row.push((0.0, 0.0, LABEL_PAD));
                row
            })
            .collect();
        let batch = DecodeBatch {
            sparse: SparseBatch::from_rows(&rows, device)?,
            text_rows: text_rows.clone(),
            texts: Some(texts.clone()),
            mask_inputs: mask_inputs.clone(),
        };
        let out = model.decode_guided(features, Some(&guided), &batch)?;
        let high = resize_bilinear_with(&out.low_res_logits, up, up)?;
        let parts = step_loss(
            &high,
            &gt,
            &out.iou,
            &out.object_score_logits,
            num_objects,
            &options.weights,
        )?;
        total = Some(match total {
            Some(t) => t.add(&parts)?,
            None => parts,
        });
        if step == options.correction_clicks {
            break;
        }
        let predicted: Vec<u8> = high.detach().gt(0f64)?.flatten_all()?.to_dtype(DType::U8)?.to_vec1()?;
        for (j, target) in image.targets.iter().enumerate() {
            let pred = &predicted[j * s * s..(j + 1) * s * s];
            let click = correction_click(&target.mask, pred, s, options.click_from_gt, options.center_clicks, rng);
            if let Some(c) = click {
                clicks[j].push((c.x, c.y, c.label));
            }
            mask_inputs[j] = Some(out.low_res_logits.narrow(0, j, 1)?);
        }
    }
    Ok(total.expect("at least the text-only step ran"))
}
