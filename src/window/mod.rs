//! Scenes larger than the model: a windowed search (issue 17). The scene is
//! cut into overlapping windows of source pixels ([`WindowGrid`]), each
//! window read when it is needed ([`WindowSource`]), encoded in batches or
//! taken from a cache ([`WindowFeatures`]), the prompt decoded in every
//! window, and what the windows found merged into objects of the scene and
//! ranked ([`merge_candidates`]): the answer is where in the scene the
//! prompt fits best, its mask at full scene resolution. Correction clicks
//! on the answer run in the windows that found it ([`refine_object`]).

/// The smallest window side: below it a window holds too little to be
/// worth a model's input (which would blow each pixel up to a block).
pub const MIN_WINDOW_SIZE: u32 = 16;
/// Most windows a search runs unless told otherwise.
pub const DEFAULT_MAX_WINDOWS: usize = 1024;

mod error;
mod features;
mod grid;
mod merge;
mod piece;
mod refine;
mod report;
mod search;
mod source;

pub use error::WindowError;
pub use features::{FnFeatures, ModelFeatures, WindowFeatures};
pub use grid::{window_prompt, WindowGrid, WindowSpec};
pub use merge::{merge_candidates, merge_members, rank_order, SceneCandidate, WindowCandidate, DEFAULT_MERGE_IOU};
pub use piece::{intersection, MaskPiece};
pub use refine::{refine_object, refined_prompts, ObjectWindow, RefinedObject};
pub use report::{candidate_reports, CandidateReport};
pub use search::{encode_windows, search, SearchOptions, SearchOutcome, SearchProgress, DEFAULT_BATCH, DEFAULT_TOP_K};
pub use source::{crop, CachedScene, GeoTiffSource, ImageSource, WindowSource};
