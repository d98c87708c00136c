//! One prompt on each of several images of the same size, as one batch:
//! what a windowed search over a big scene runs, the sentence decoded in
//! every window. `decode` batches many prompts on one image; this batches
//! one prompt per image, stacking the images' features, and runs BERT once
//! when every prompt has the same sentence (the usual case: one sentence
//! searched across the windows of a scene).

use candle_core::Tensor;

use super::{CheckedPrompt, EncodedImage, Prediction, Rsam};
use crate::models::image_encoder::ImageEmbeddings;
use crate::models::mask_decoder::DecoderOutput;
use crate::models::rsam::TextBatch;
use crate::{Result, RsamError};

impl Rsam {
    /// Decodes `prompts[i]` on `images[i]` for every `i` as one batch; the
    /// same predictions as decoding each alone. Every image must have the
    /// size the prompts were checked against. Prompts without a sentence
    /// (the TWGM does not run for them, and `decode` gives their rows the
    /// one image's features) are decoded image by image.
    pub fn decode_across(&self, images: &[&EncodedImage], prompts: &[CheckedPrompt]) -> Result<Vec<Prediction>> {
        if images.len() != prompts.len() {
            return Err(RsamError::Prompt(format!(
                "{} images but {} prompts: decode_across takes one prompt per image",
                images.len(),
                prompts.len()
            )));
        }
        let Some(first) = images.first() else {
            return Ok(Vec::new());
        };
        if let Some(p) = prompts.iter().find(|p| p.image_size() != (first.width, first.height)) {
            let (w, h) = p.image_size();
            return Err(RsamError::Prompt(format!(
                "a prompt checked against a {w}x{h} image cannot run on a {}x{} one",
                first.width, first.height
            )));
        }
        if let Some(i) = images
            .iter()
            .position(|i| (i.width, i.height) != (first.width, first.height))
        {
            return Err(RsamError::Prompt(format!(
                "image {i} is {}x{} but image 0 is {}x{}: decode_across takes images of one size",
                images[i].width, images[i].height, first.width, first.height
            )));
        }
        if prompts.iter().any(|p| p.token_ids().is_none()) {
            return images
                .iter()
                .zip(prompts)
                .map(|(image, prompt)| Ok(self.decode(image, std::slice::from_ref(prompt))?.remove(0)))
                .collect();
        }
        let stacked = EncodedImage {
            embeddings: stack(images)?,
            width: first.width,
            height: first.height,
        };
        let batch = self.prepare_batch(&stacked, prompts)?;
        let texts = batch
            .texts
            .as_ref()
            .ok_or_else(|| RsamError::Prompt("no sentence in the batch".into()))?;
        let text_features = self.text_features(prompts, texts)?;
        let guided = self
            .model
            .guide(&stacked.embeddings.image_embed, &text_features, texts)?;
        let out = self.model.decode_guided(&stacked.embeddings, Some(&guided), &batch)?;
        self.predictions(&out, prompts.len())
    }

    /// BERT + `text_proj` for the batch's sentences: once, broadcast to
    /// every row, when they are all the same sentence.
    fn text_features(&self, prompts: &[CheckedPrompt], texts: &TextBatch) -> Result<Tensor> {
        let first = prompts[0].token_ids().unwrap_or_default();
        let features = if prompts.iter().all(|p| p.token_ids() == Some(first)) {
            let one = self
                .model
                .encode_text(&TextBatch::new(&[first.to_vec()], self.device())?)?;
            let (_, len, d) = one.dims3()?;
            one.broadcast_as((prompts.len(), len, d))?.contiguous()?
        } else {
            self.model.encode_text(texts)?
        };
        Ok(features.to_dtype(self.dtype())?)
    }

    /// The decoder's outputs as one [`Prediction`] per row.
    pub(super) fn predictions(&self, out: &DecoderOutput, rows: usize) -> Result<Vec<Prediction>> {
        let side = self.low_res_size();
        // One device-to-host read for all three.
        let [logits, ious, scores] =
            crate::device::host_read::to_host_f32([&out.low_res_logits, &out.iou, &out.object_score_logits])?;
        Ok((0..rows)
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
}

/// The features of several images as one batch (each image's tensors have
/// batch size 1).
fn stack(images: &[&EncodedImage]) -> Result<ImageEmbeddings> {
    let cat = |part: fn(&ImageEmbeddings) -> &Tensor| -> Result<Tensor> {
        let parts: Vec<&Tensor> = images.iter().map(|i| part(&i.embeddings)).collect();
        Ok(Tensor::cat(&parts, 0)?)
    };
    Ok(ImageEmbeddings {
        image_embed: cat(|e| &e.image_embed)?,
        high_res_s0: cat(|e| &e.high_res_s0)?,
        high_res_s1: cat(|e| &e.high_res_s1)?,
    })
}
