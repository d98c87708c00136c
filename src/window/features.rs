//! Where a search gets each window's features: a cache that may already
//! hold them, and an encoder for the rest. The CLI encodes every window and
//! keeps nothing; a caller that searches the same scene again (a second
//! sentence) keeps them, in memory here or in the server's byte-bounded
//! LRU cache under (model, scene hash, window rectangle).

use std::collections::HashMap;
use std::sync::Arc;

use super::error::WindowError;
use crate::geo::Window;
use crate::loaded_model::LoadedModel;
use crate::predictor::{EncodedImage, ModelImage};

/// A window's rectangle as a map key.
type WindowKey = (u32, u32, u32, u32);

fn key(w: Window) -> WindowKey {
    (w.x, w.y, w.width, w.height)
}

/// A source of window features for one scene and one model.
pub trait WindowFeatures {
    /// The features of window `index` (rectangle `window`) if they are
    /// already held: the search then neither reads nor encodes it.
    fn cached(&mut self, index: usize, window: Window) -> Option<Arc<EncodedImage>>;

    /// Encodes prepared windows as one batch, in order, keeping them if
    /// this source caches. `windows[i]` is `(index, rectangle)` of
    /// `images[i]`.
    fn encode(
        &mut self,
        windows: &[(usize, Window)],
        images: Vec<ModelImage>,
    ) -> Result<Vec<Arc<EncodedImage>>, WindowError>;
}

/// Encodes with a loaded model; keeps the features in memory when made
/// with [`ModelFeatures::cached`].
pub struct ModelFeatures<'m> {
    model: &'m LoadedModel,
    kept: Option<HashMap<WindowKey, Arc<EncodedImage>>>,
}

impl<'m> ModelFeatures<'m> {
    /// Encodes every window it is asked for and keeps nothing.
    pub fn uncached(model: &'m LoadedModel) -> Self {
        Self { model, kept: None }
    }

    /// Keeps every window's features: a later search of the same scene
    /// (same grid) is decode-only.
    pub fn cached(model: &'m LoadedModel) -> Self {
        Self {
            model,
            kept: Some(HashMap::new()),
        }
    }

    /// Bytes of feature tensors kept.
    pub fn kept_bytes(&self) -> usize {
        self.kept
            .as_ref()
            .map_or(0, |kept| kept.values().map(|e| e.nbytes()).sum())
    }

    /// Windows kept.
    pub fn kept_windows(&self) -> usize {
        self.kept.as_ref().map_or(0, HashMap::len)
    }
}

impl WindowFeatures for ModelFeatures<'_> {
    fn cached(&mut self, _index: usize, window: Window) -> Option<Arc<EncodedImage>> {
        self.kept.as_ref()?.get(&key(window)).cloned()
    }

    fn encode(
        &mut self,
        windows: &[(usize, Window)],
        images: Vec<ModelImage>,
    ) -> Result<Vec<Arc<EncodedImage>>, WindowError> {
        let encoded: Vec<Arc<EncodedImage>> = self.model.encode_batch(&images)?.into_iter().map(Arc::new).collect();
        if let Some(kept) = &mut self.kept {
            for ((_, window), features) in windows.iter().zip(&encoded) {
                kept.insert(key(*window), Arc::clone(features));
            }
        }
        Ok(encoded)
    }
}

/// A [`WindowFeatures`] from two closures, for a caller with its own cache
/// (the server keys window features by scene hash and rectangle in its
/// byte-bounded LRU cache): `get(index, window)` looks a window up,
/// `encode(windows, images)` encodes the missing ones as one batch (and
/// stores them), in order.
pub struct FnFeatures<G, E> {
    pub get: G,
    pub encode: E,
}

impl<G, E> WindowFeatures for FnFeatures<G, E>
where
    G: FnMut(usize, Window) -> Option<Arc<EncodedImage>>,
    E: FnMut(&[(usize, Window)], Vec<ModelImage>) -> Result<Vec<Arc<EncodedImage>>, WindowError>,
{
    fn cached(&mut self, index: usize, window: Window) -> Option<Arc<EncodedImage>> {
        (self.get)(index, window)
    }

    fn encode(
        &mut self,
        windows: &[(usize, Window)],
        images: Vec<ModelImage>,
    ) -> Result<Vec<Arc<EncodedImage>>, WindowError> {
        (self.encode)(windows, images)
    }
}
