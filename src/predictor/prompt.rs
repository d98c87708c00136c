//! Prompts in original-image pixels, and the checked prompt that `decode`
//! takes: checked once against the image it will run on and tokenised, so
//! nothing downstream checks or tokenises it again.

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

    fn is_empty(&self) -> bool {
        self.text.is_none() && self.points.is_empty() && self.bbox.is_none() && self.mask_input.is_none()
    }

    /// Checks everything but the text against a `width` x `height` image
    /// and a model whose low-resolution logits are `side` x `side`:
    /// coordinates finite and inside the image, labels 0 / 1, the box not
    /// inverted, the mask prompt of the right size and finite, something
    /// given at all.
    /// `takes_text` words the error for a prompt with nothing in it.
    pub(crate) fn check_geometry(&self, width: u32, height: u32, side: usize, takes_text: bool) -> Result<()> {
        if self.is_empty() {
            let what = if takes_text { "a text, points" } else { "points" };
            return Err(RsamError::Prompt(format!(
                "no prompt: give {what}, a box or a mask input"
            )));
        }
        let (w, h) = (width as f32, height as f32);
        let inside = |x: f32, y: f32| (0.0..=w).contains(&x) && (0.0..=h).contains(&y);
        for (i, p) in self.points.iter().enumerate() {
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
        if let Some([x0, y0, x1, y1]) = self.bbox {
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
        if let Some(mask) = &self.mask_input {
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
        Ok(())
    }
}

/// A prompt checked against one image size and tokenised. Only
/// [`super::Rsam::check_prompt`] makes one, so holding one means the prompt
/// is valid for an image of [`Self::image_size`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPrompt {
    prompt: Prompt,
    token_ids: Option<Vec<u32>>,
    image_size: (u32, u32),
}

impl CheckedPrompt {
    pub(super) fn new(prompt: Prompt, token_ids: Option<Vec<u32>>, image_size: (u32, u32)) -> Self {
        Self {
            prompt,
            token_ids,
            image_size,
        }
    }

    /// A prompt without a sentence, checked by the caller (models without a
    /// text encoder).
    pub(crate) fn without_text(prompt: Prompt, image_size: (u32, u32)) -> Self {
        Self::new(prompt, None, image_size)
    }

    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// The sentence's token ids (`[CLS] ... [SEP]`, truncated as the model
    /// directory says), when the prompt has a sentence.
    pub fn token_ids(&self) -> Option<&[u32]> {
        self.token_ids.as_deref()
    }

    /// `(width, height)` of the image the prompt was checked against.
    pub fn image_size(&self) -> (u32, u32) {
        self.image_size
    }

    pub fn into_prompt(self) -> Prompt {
        self.prompt
    }
}
