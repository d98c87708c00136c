//! The search itself: the windows that can hold the prompt, a batch at a
//! time read (or taken from the cache), encoded and decoded, what each
//! window found kept as a small mask piece, the features dropped unless the
//! cache keeps them; then the pieces merged into objects and ranked.

use std::sync::Arc;

use super::error::WindowError;
use super::features::WindowFeatures;
use super::grid::{window_prompt, WindowGrid, WindowSpec};
use super::merge::{merge_candidates, SceneCandidate, WindowCandidate, DEFAULT_MERGE_IOU};
use super::piece::MaskPiece;
use super::source::WindowSource;
use super::DEFAULT_MAX_WINDOWS;
use crate::geo::Window;
use crate::loaded_model::LoadedModel;
use crate::predictor::{CheckedPrompt, EncodedImage, Prediction, Prompt};

/// Candidates a search returns unless told otherwise.
pub const DEFAULT_TOP_K: usize = 5;
/// Windows encoded (and decoded) as one batch unless told otherwise: enough
/// to batch, few enough that a batch of the largest model's activations
/// stays well under a gigabyte.
pub const DEFAULT_BATCH: usize = 4;

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchOptions {
    pub spec: WindowSpec,
    /// Most windows a scene may be cut into.
    pub max_windows: usize,
    /// Candidates (objects of the scene) returned, best first.
    pub top_k: usize,
    /// Windows per encoder / decoder batch.
    pub batch: usize,
    /// Least IoU of two windows' masks in their overlap for one object.
    pub merge_iou: f32,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            spec: WindowSpec::default(),
            max_windows: DEFAULT_MAX_WINDOWS,
            top_k: DEFAULT_TOP_K,
            batch: DEFAULT_BATCH,
            merge_iou: DEFAULT_MERGE_IOU,
        }
    }
}

impl SearchOptions {
    /// The grid these options cut a `width x height` scene into for `model`.
    pub fn plan(&self, model: &LoadedModel, width: u32, height: u32) -> Result<WindowGrid, WindowError> {
        WindowGrid::plan(width, height, self.spec, model.image_size() as u32, self.max_windows)
    }
}

/// Where a search stands, after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchProgress {
    /// Windows decoded so far.
    pub done: usize,
    /// Windows the search runs.
    pub total: usize,
    /// Of `done`, windows the encoder ran on (the rest came from the cache).
    pub encoded: usize,
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    pub grid: WindowGrid,
    /// Grid indices of the windows searched (those holding the prompt's
    /// clicks and box; every window for a sentence alone).
    pub searched: Vec<usize>,
    /// Windows encoded by this search; the others searched came from the cache.
    pub encoded: usize,
    /// The top k objects, best first (object score, then predicted IoU);
    /// empty when no window found anything.
    pub candidates: Vec<SceneCandidate>,
}

impl SearchOutcome {
    pub fn best(&self) -> Option<&SceneCandidate> {
        self.candidates.first()
    }

    /// The best candidate's mask at full scene resolution (empty when none).
    pub fn best_mask(&self) -> crate::mask::BinaryMask {
        let (w, h) = (self.grid.scene_width, self.grid.scene_height);
        match self.best() {
            Some(c) => c.piece.scene_mask(w, h),
            None => crate::mask::BinaryMask {
                width: w,
                height: h,
                data: vec![0; w as usize * h as usize],
            },
        }
    }
}

/// Searches `source` for `prompt` (scene pixels): every window that can
/// hold it is decoded, its features taken from `features` or encoded there,
/// and the objects found returned ranked. `progress` hears after each batch.
///
/// # Errors
///
/// The grid's errors ([`WindowError::Size`], [`WindowError::Overlap`],
/// [`WindowError::TooManyWindows`], [`WindowError::EmptyScene`]);
/// [`WindowError::TopK`] for `top_k` 0; the prompt's errors checked against
/// the whole scene (a click outside it, a sentence for a SAM 2 model, ...);
/// [`WindowError::Prompt`] for a mask input or clicks and a box no window
/// holds together; the source's and the model's errors as they come.
pub fn search(
    model: &LoadedModel,
    source: &mut dyn WindowSource,
    prompt: &Prompt,
    options: &SearchOptions,
    features: &mut dyn WindowFeatures,
    progress: &mut dyn FnMut(SearchProgress),
) -> Result<SearchOutcome, WindowError> {
    let grid = options.plan(model, source.width(), source.height())?;
    if options.top_k == 0 {
        return Err(WindowError::TopK(0));
    }
    let searched = windows_to_search(model, &grid, prompt)?;
    let mut found = Vec::new();
    let mut state = SearchProgress {
        done: 0,
        total: searched.len(),
        encoded: 0,
    };
    for chunk in searched.chunks(options.batch.max(1)) {
        let windows: Vec<(usize, Window)> = chunk.iter().map(|&i| (i, grid.windows[i])).collect();
        let (images, encoded) = window_features(model, source, features, &windows)?;
        let predictions = decode_windows(model, &images, &windows, prompt)?;
        found.extend(
            windows
                .iter()
                .zip(&predictions)
                .filter_map(|(&(index, window), p)| window_candidate(index, window, p)),
        );
        state.done += windows.len();
        state.encoded += encoded;
        progress(state);
    }
    let mut candidates = merge_candidates(found, options.merge_iou);
    candidates.truncate(options.top_k);
    Ok(SearchOutcome {
        grid,
        searched,
        encoded: state.encoded,
        candidates,
    })
}

/// Reads and encodes every window of `source` not yet in `features` (what
/// `/v1/images` with a `window` does, so that later sentences on the scene
/// are decode-only); gives the grid and the number of windows encoded.
/// `progress` hears after each batch.
///
/// # Errors
///
/// The grid's errors, the source's and the model's.
pub fn encode_windows(
    model: &LoadedModel,
    source: &mut dyn WindowSource,
    options: &SearchOptions,
    features: &mut dyn WindowFeatures,
    progress: &mut dyn FnMut(SearchProgress),
) -> Result<(WindowGrid, usize), WindowError> {
    let grid = options.plan(model, source.width(), source.height())?;
    let mut state = SearchProgress {
        done: 0,
        total: grid.len(),
        encoded: 0,
    };
    let all: Vec<(usize, Window)> = grid.windows.iter().copied().enumerate().collect();
    for windows in all.chunks(options.batch.max(1)) {
        let (_, encoded) = window_features(model, source, features, windows)?;
        state.done += windows.len();
        state.encoded += encoded;
        progress(state);
    }
    Ok((grid, state.encoded))
}

/// The windows a prompt is searched in, after checking it against the
/// whole scene.
fn windows_to_search(model: &LoadedModel, grid: &WindowGrid, prompt: &Prompt) -> Result<Vec<usize>, WindowError> {
    if prompt.mask_input.is_some() {
        return Err(WindowError::Prompt(
            "a mask input belongs to one model input and cannot be searched across windows: give a sentence, clicks or a box".into(),
        ));
    }
    model.check_prompt(prompt.clone(), grid.scene_width, grid.scene_height)?;
    let searched = grid.windows_for(prompt);
    if searched.is_empty() {
        return Err(WindowError::Prompt(format!(
            "no {} px window holds every click and the whole box together: use larger windows, or a smaller box",
            grid.size
        )));
    }
    Ok(searched)
}

/// The features of `windows`, in order: from the cache, or read, prepared
/// and encoded as one batch. Also gives how many were encoded.
fn window_features(
    model: &LoadedModel,
    source: &mut dyn WindowSource,
    features: &mut dyn WindowFeatures,
    windows: &[(usize, Window)],
) -> Result<(Vec<Arc<EncodedImage>>, usize), WindowError> {
    let mut held: Vec<Option<Arc<EncodedImage>>> = windows.iter().map(|&(i, w)| features.cached(i, w)).collect();
    let missing: Vec<(usize, Window)> = windows
        .iter()
        .zip(&held)
        .filter(|(_, h)| h.is_none())
        .map(|(w, _)| *w)
        .collect();
    if !missing.is_empty() {
        let images = missing
            .iter()
            .map(|&(_, w)| Ok(model.prepare(&source.read(w)?)))
            .collect::<Result<Vec<_>, WindowError>>()?;
        let encoded = features.encode(&missing, images)?;
        if encoded.len() != missing.len() {
            return Err(WindowError::FeatureCount {
                asked: missing.len(),
                got: encoded.len(),
            });
        }
        let mut encoded = encoded.into_iter();
        for slot in held.iter_mut().filter(|h| h.is_none()) {
            *slot = encoded.next();
        }
    }
    Ok((held.into_iter().flatten().collect(), missing.len()))
}

/// The prompt moved into each window and decoded there: a sentence on an
/// RSAM model as one batch across the windows, anything else window by
/// window.
fn decode_windows(
    model: &LoadedModel,
    images: &[Arc<EncodedImage>],
    windows: &[(usize, Window)],
    prompt: &Prompt,
) -> Result<Vec<Prediction>, WindowError> {
    let checked = windows
        .iter()
        .map(|&(_, w)| model.check_prompt(window_prompt(prompt, w), w.width, w.height))
        .collect::<crate::Result<Vec<CheckedPrompt>>>()?;
    let predictions = match model {
        LoadedModel::Rsam(rsam) if prompt.text.is_some() => {
            let refs: Vec<&EncodedImage> = images.iter().map(|i| i.as_ref()).collect();
            rsam.decode_across(&refs, &checked)?
        }
        _ => images
            .iter()
            .zip(&checked)
            .map(|(image, p)| Ok(model.decode(image, std::slice::from_ref(p), false)?.remove(0)))
            .collect::<crate::Result<Vec<_>>>()?,
    };
    Ok(predictions)
}

/// What a window's prediction found, if its mask is not empty.
pub(super) fn window_candidate(index: usize, window: Window, prediction: &Prediction) -> Option<WindowCandidate> {
    let mask = prediction.mask(window.width, window.height);
    let piece = MaskPiece::from_window_mask(&mask, window)?;
    Some(WindowCandidate {
        window_index: index,
        window,
        object_score_logit: prediction.object_score_logit,
        iou: prediction.iou,
        piece,
        logits: prediction.returned_logits().into_owned(),
    })
}
