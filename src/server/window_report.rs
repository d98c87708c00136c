//! The `window` member of a windowed answer, on the wire.

use serde::Serialize;

use crate::window::{CandidateReport, WindowGrid};

/// The grid a scene was searched in.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GridShape {
    /// Window side and overlap in scene pixels.
    pub size: u32,
    pub overlap: u32,
    /// Windows the scene is cut into.
    pub windows: usize,
}

impl From<&WindowGrid> for GridShape {
    fn from(grid: &WindowGrid) -> Self {
        Self {
            size: grid.size,
            overlap: grid.overlap,
            windows: grid.len(),
        }
    }
}

/// The `window` member of a windowed answer.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    #[serde(flatten)]
    pub grid: GridShape,
    /// Of those, windows decoded (those holding the clicks and box).
    pub searched: usize,
    /// Of those, windows encoded by this request (the rest were cached).
    pub encoded: usize,
    /// The top k objects of the scene, best first.
    pub candidates: Vec<CandidateReport>,
}
