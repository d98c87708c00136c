//! Prompts for a SAM 2 model: clicks, one box and an earlier mask, in
//! original-image pixels; no text. [`Sam2Prompt::model_points`] places them
//! in model-input space the way `SAM2ImagePredictor._prep_prompts` and
//! `_predict` do.

use crate::models::prompt_encoder::{LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PAD};
use crate::predictor::{Point, Prompt};
use crate::{Result, RsamError};

/// Any combination of clicks, one box and a mask prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sam2Prompt {
    pub points: Vec<Point>,
    /// `[x0, y0, x1, y1]` in original-image pixels.
    pub bbox: Option<[f32; 4]>,
    /// Earlier low-resolution logits (S/4 x S/4, row-major), e.g. a
    /// prediction's [`super::Sam2Mask::low_res_logits`].
    pub mask_input: Option<Vec<f32>>,
}

impl Sam2Prompt {
    /// The SAM 2 part of an RSAM-style prompt; a sentence is an error, since
    /// a SAM 2 model has no text encoder.
    pub fn from_prompt(prompt: &Prompt) -> Result<Self> {
        if let Some(text) = &prompt.text {
            return Err(RsamError::TextNotSupported(format!(
                "a SAM 2 model takes points, a box and a mask input, not a sentence (got {text:?})"
            )));
        }
        Ok(Self {
            points: prompt.points.clone(),
            bbox: prompt.bbox,
            mask_input: prompt.mask_input.clone(),
        })
    }

    /// Checks the prompt against an image of `width` x `height` and a model
    /// with `low_res_size`² mask logits: coordinates finite and inside the
    /// image, labels 0 / 1, box not inverted, mask prompt of the right size
    /// and finite, and at least one of the three.
    pub fn validate(&self, width: u32, height: u32, low_res_size: usize) -> Result<()> {
        Prompt::from(self.clone()).check_geometry(width, height, low_res_size, false)
    }

    /// The sparse prompt in model-input pixels for an image of `width` x
    /// `height` and a model of input size `size`: the box as two points
    /// labelled 2 and 3 before the clicks, then SAM's padding point (label
    /// -1). Empty without points and box: the prompt encoder then gets no
    /// sparse token at all. Coordinates are scaled as `transform_coords`
    /// does, `x / width * size` in f32.
    pub fn model_points(&self, width: u32, height: u32, size: usize) -> Vec<(f32, f32, i64)> {
        let to_model = |x: f32, y: f32| (x / width as f32 * size as f32, y / height as f32 * size as f32);
        let mut row = Vec::with_capacity(self.points.len() + 3);
        if let Some([x0, y0, x1, y1]) = self.bbox {
            let (a, b) = to_model(x0, y0);
            row.push((a, b, LABEL_BOX_TOP_LEFT));
            let (a, b) = to_model(x1, y1);
            row.push((a, b, LABEL_BOX_BOTTOM_RIGHT));
        }
        for p in &self.points {
            let (x, y) = to_model(p.x, p.y);
            row.push((x, y, p.label as i64));
        }
        if !row.is_empty() {
            row.push((0.0, 0.0, LABEL_PAD));
        }
        row
    }
}

impl From<Sam2Prompt> for Prompt {
    fn from(p: Sam2Prompt) -> Self {
        Prompt {
            text: None,
            points: p.points,
            bbox: p.bbox,
            mask_input: p.mask_input,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(x: f32, y: f32, label: u8) -> Point {
        Point { x, y, label }
    }

    #[test]
    fn box_corners_come_first_then_clicks_then_the_padding_point() {
        let p = Sam2Prompt {
            points: vec![click(50.0, 20.0, 0)],
            bbox: Some([10.0, 20.0, 100.0, 40.0]),
            mask_input: None,
        };
        let rows = p.model_points(200, 100, 256);
        assert_eq!(
            rows,
            vec![
                (12.8, 51.2, LABEL_BOX_TOP_LEFT),
                (128.0, 102.4, LABEL_BOX_BOTTOM_RIGHT),
                (64.0, 51.2, 0),
                (0.0, 0.0, LABEL_PAD),
            ]
        );
    }

    #[test]
    fn a_mask_alone_has_no_sparse_token() {
        let p = Sam2Prompt {
            mask_input: Some(vec![0.0; 16]),
            ..Default::default()
        };
        assert!(p.model_points(10, 10, 16).is_empty());
        p.validate(10, 10, 4).unwrap();
    }

    #[test]
    fn text_is_refused_with_its_own_error() {
        let err = Sam2Prompt::from_prompt(&Prompt::text("the ship")).unwrap_err();
        assert!(matches!(err, RsamError::TextNotSupported(_)), "{err}");
        assert!(err.to_string().contains("not a sentence"), "{err}");
        let ok = Sam2Prompt::from_prompt(&Prompt {
            points: vec![click(1.0, 2.0, 1)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.points, vec![click(1.0, 2.0, 1)]);
    }

    #[test]
    fn every_bad_prompt_is_named() {
        let check = |p: Sam2Prompt| p.validate(100, 50, 4).unwrap_err().to_string();
        let with_points = |points| Sam2Prompt {
            points,
            ..Default::default()
        };
        assert!(check(Sam2Prompt::default()).contains("no prompt"));
        assert!(check(with_points(vec![click(f32::NAN, 1.0, 1)])).contains("not a finite number"));
        assert!(check(with_points(vec![click(101.0, 1.0, 1)])).contains("outside the 100x50 image"));
        assert!(check(with_points(vec![click(1.0, 1.0, 2)])).contains("label 2"));
        let boxed = |b| Sam2Prompt {
            bbox: Some(b),
            ..Default::default()
        };
        assert!(check(boxed([0.0, 0.0, f32::INFINITY, 1.0])).contains("not a finite number"));
        assert!(check(boxed([0.0, 0.0, 10.0, 60.0])).contains("outside"));
        assert!(check(boxed([10.0, 0.0, 5.0, 10.0])).contains("inverted"));
        let masked = |m| Sam2Prompt {
            mask_input: Some(m),
            ..Default::default()
        };
        assert!(check(masked(vec![0.0; 15])).contains("4x4 = 16"));
        assert!(check(masked(vec![f32::NAN; 16])).contains("not finite"));
    }
}
