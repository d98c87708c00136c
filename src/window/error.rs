//! Errors of a windowed search. Each names the problem; the HTTP layer maps
//! [`WindowError::TooManyWindows`] to 413 and the other request errors to
//! 422, and passes model and raster errors on as it maps those.

use crate::geo::GeoError;
use crate::RsamError;

use super::MIN_WINDOW_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("window size {0} px: a window needs at least {MIN_WINDOW_SIZE} pixels a side")]
    Size(u32),

    #[error("window overlap {overlap} px must be smaller than the window size {size} px")]
    Overlap { size: u32, overlap: u32 },

    #[error(
        "the {width}x{height} scene in {size} px windows overlapping by {overlap} px makes {count} windows, over the limit of {max}: use larger windows, less overlap, or raise the limit"
    )]
    TooManyWindows {
        width: u32,
        height: u32,
        size: u32,
        overlap: u32,
        count: u64,
        max: usize,
    },

    #[error("the scene is empty ({width}x{height} pixels)")]
    EmptyScene { width: u32, height: u32 },

    #[error("top k {0}: at least one candidate must be asked for")]
    TopK(usize),

    /// A prompt the windowed search cannot run (no window holds its
    /// points and box; a mask input, which belongs to one model input).
    #[error("prompt: {0}")]
    Prompt(String),

    /// A window neither cached nor readable: the scene's pixels are not at
    /// hand ([`super::CachedScene`]).
    #[error("window {},{} {}x{} is not in the feature cache and the scene's pixels are not at hand", .0.x, .0.y, .0.width, .0.height)]
    NotCached(crate::geo::Window),

    /// The caller's feature source stopped the search (a server past its
    /// request deadline); the windows encoded before stay wherever the
    /// source keeps them.
    #[error("the search was stopped: {0}")]
    Stopped(String),

    /// A [`super::WindowFeatures`] that gave back another number of
    /// windows than it was asked to encode.
    #[error("the feature source encoded {got} windows but was asked for {asked}")]
    FeatureCount { asked: usize, got: usize },

    #[error(transparent)]
    Model(#[from] RsamError),

    #[error(transparent)]
    Geo(#[from] GeoError),
}

impl From<candle_core::Error> for WindowError {
    fn from(e: candle_core::Error) -> Self {
        WindowError::Model(RsamError::Candle(e))
    }
}
