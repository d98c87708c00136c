//! Correction clicks on an object a windowed search found. The official
//! refine protocol (the earlier prompt plus the new clicks, the earlier
//! logits as the mask prompt) runs in each window that found the object,
//! each window with the new clicks that fall in it and its own logits, and
//! the windows' new masks are stitched as the search stitches them.

use std::sync::Arc;

use super::error::WindowError;
use super::grid::{contains, window_prompt};
use super::merge::{merge_members, SceneCandidate};
use super::search::window_candidate;
use crate::geo::Window;
use crate::loaded_model::LoadedModel;
use crate::predictor::{EncodedImage, Point, Prediction, Prompt};

/// One window of an object, with what the next correction click there
/// starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectWindow {
    /// Index of the window in its grid.
    pub index: usize,
    pub window: Window,
    /// The prompt last decoded in this window, in scene pixels (no mask).
    pub prompt: Prompt,
    /// The logits that decode returned: the next mask prompt.
    pub logits: Vec<f32>,
}

impl SceneCandidate {
    /// The candidate's windows, best first, each with `prompt` (scene
    /// pixels, as the search decoded it) and the window's own logits.
    pub fn object_windows(&self, prompt: &Prompt) -> Vec<ObjectWindow> {
        let prompt = Prompt {
            mask_input: None,
            ..prompt.clone()
        };
        self.window_indices
            .iter()
            .zip(&self.windows)
            .zip(&self.logits)
            .map(|((&index, &window), logits)| ObjectWindow {
                index,
                window,
                prompt: prompt.clone(),
                logits: logits.clone(),
            })
            .collect()
    }
}

/// A refined object: its stitched mask and scores (`None` when no window
/// found anything any more) and its windows ready for the next click.
#[derive(Clone, Debug)]
pub struct RefinedObject {
    pub object: Option<SceneCandidate>,
    pub windows: Vec<ObjectWindow>,
}

/// Each window's prompt after the new clicks and box: the earlier clicks
/// plus the new ones that fall in the window, the new box where the window
/// holds it whole (else the earlier box), the window's logits as the mask.
///
/// # Errors
///
/// [`WindowError::Prompt`] naming a click that no window of the object
/// holds, or a box that none holds whole: a refine stays within them.
pub fn refined_prompts(
    windows: &[ObjectWindow],
    new_points: &[Point],
    new_box: Option<[f32; 4]>,
) -> Result<Vec<Prompt>, WindowError> {
    let holds = |w: &ObjectWindow, x: f32, y: f32| contains(w.window, x, y);
    let holds_box = |w: &ObjectWindow, [x0, y0, x1, y1]: [f32; 4]| holds(w, x0, y0) && holds(w, x1, y1);
    if let Some(p) = new_points.iter().find(|p| !windows.iter().any(|w| holds(w, p.x, p.y))) {
        return Err(WindowError::Prompt(format!(
            "the click at ({}, {}) is outside the windows that found this object ({}): a refine stays within \
             them; search the scene again with the click",
            p.x,
            p.y,
            describe(windows)
        )));
    }
    if let Some(b) = new_box.filter(|&b| !windows.iter().any(|w| holds_box(w, b))) {
        return Err(WindowError::Prompt(format!(
            "the box {b:?} does not fit whole in a window that found this object ({}): a refine stays within \
             them; search the scene again with the box",
            describe(windows)
        )));
    }
    Ok(windows
        .iter()
        .map(|w| {
            let mut prompt = w.prompt.clone();
            prompt
                .points
                .extend(new_points.iter().filter(|p| holds(w, p.x, p.y)).copied());
            if let Some(b) = new_box.filter(|&b| holds_box(w, b)) {
                prompt.bbox = Some(b);
            }
            prompt.mask_input = Some(w.logits.clone());
            prompt
        })
        .collect())
}

/// Decodes each window's refined prompt (from [`refined_prompts`]) on its
/// features and stitches what they found into one object.
///
/// # Errors
///
/// A prompt the model refuses in a window (checked against the window), and
/// the model's errors.
pub fn refine_object(
    model: &LoadedModel,
    windows: &[ObjectWindow],
    prompts: &[Prompt],
    features: &[Arc<EncodedImage>],
) -> Result<RefinedObject, WindowError> {
    if windows.len() != prompts.len() || windows.len() != features.len() {
        return Err(WindowError::FeatureCount {
            asked: windows.len(),
            got: features.len().min(prompts.len()),
        });
    }
    let mut found = Vec::new();
    let mut next = Vec::with_capacity(windows.len());
    for ((w, prompt), image) in windows.iter().zip(prompts).zip(features) {
        let prediction = decode_in(model, image, prompt, w.window)?;
        found.extend(window_candidate(w.index, w.window, &prediction));
        next.push(ObjectWindow {
            index: w.index,
            window: w.window,
            prompt: Prompt {
                mask_input: None,
                ..prompt.clone()
            },
            logits: prediction.returned_logits().into_owned(),
        });
    }
    Ok(RefinedObject {
        object: merge_members(found),
        windows: next,
    })
}

/// One window's decode of a scene-pixel prompt.
fn decode_in(
    model: &LoadedModel,
    image: &EncodedImage,
    prompt: &Prompt,
    window: Window,
) -> Result<Prediction, WindowError> {
    let checked = model.check_prompt(window_prompt(prompt, window), window.width, window.height)?;
    Ok(model.decode(image, std::slice::from_ref(&checked), false)?.remove(0))
}

fn describe(windows: &[ObjectWindow]) -> String {
    windows
        .iter()
        .map(|w| {
            let r = w.window;
            format!("{},{} {}x{}", r.x, r.y, r.width, r.height)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(index: usize, x: u32) -> ObjectWindow {
        ObjectWindow {
            index,
            window: Window {
                x,
                y: 0,
                width: 100,
                height: 100,
            },
            prompt: Prompt {
                text: Some("the ship".into()),
                points: vec![Point {
                    x: 90.0,
                    y: 50.0,
                    label: 1,
                }],
                bbox: None,
                mask_input: None,
            },
            logits: vec![index as f32; 4],
        }
    }

    fn click(x: f32, label: u8) -> Point {
        Point { x, y: 50.0, label }
    }

    #[test]
    fn each_window_gets_the_clicks_it_holds_and_its_own_logits() {
        // Windows [0, 100] and [80, 180]: a click at 50 is the left one's,
        // at 95 both windows', at 150 the right one's.
        let windows = [window(0, 0), window(1, 80)];
        let new = [click(50.0, 0), click(95.0, 1), click(150.0, 0)];
        let prompts = refined_prompts(&windows, &new, None).unwrap();
        let xs = |p: &Prompt| p.points.iter().map(|p| p.x).collect::<Vec<_>>();
        assert_eq!(xs(&prompts[0]), vec![90.0, 50.0, 95.0]);
        assert_eq!(xs(&prompts[1]), vec![90.0, 95.0, 150.0]);
        assert_eq!(prompts[0].mask_input.as_deref(), Some(&[0.0; 4][..]));
        assert_eq!(prompts[1].mask_input.as_deref(), Some(&[1.0; 4][..]));
        assert!(prompts.iter().all(|p| p.text.as_deref() == Some("the ship")));
    }

    #[test]
    fn a_new_box_goes_to_the_windows_that_hold_it_whole() {
        let windows = [window(0, 0), window(1, 80)];
        let prompts = refined_prompts(&windows, &[], Some([120.0, 10.0, 170.0, 60.0])).unwrap();
        assert_eq!(prompts[0].bbox, None);
        assert_eq!(prompts[1].bbox, Some([120.0, 10.0, 170.0, 60.0]));
    }

    #[test]
    fn clicks_and_boxes_outside_the_object_windows_are_refused() {
        let windows = [window(0, 0), window(1, 80)];
        let e = refined_prompts(&windows, &[click(181.0, 1)], None).unwrap_err();
        assert!(
            e.to_string()
                .contains("(181, 50) is outside the windows that found this object (0,0 100x100; 80,0 100x100)"),
            "{e}"
        );
        let e = refined_prompts(&windows, &[], Some([10.0, 10.0, 170.0, 20.0])).unwrap_err();
        assert!(e.to_string().contains("does not fit whole in a window"), "{e}");
    }
}
