//! What a windowed answer keeps for `/v1/refine`: the scene (its id,
//! rendering, size, georeferencing and grid) and the windows that found its
//! object, each with its prompt and logits. The scene's pixels are not
//! kept: the windows' features are in the feature cache, under
//! [`window_key`].

use super::window_report::GridShape;
use crate::geo::{Georef, Window};
use crate::window::ObjectWindow;

/// How a windowed answer's result id begins (its own result store).
pub const WINDOWED_RESULT: &str = "window-";

/// What a refine of a windowed answer needs.
#[derive(Debug)]
pub struct WindowedResult {
    pub image_id: String,
    /// The rendering's cache-key part (bands, stretch): with the image id
    /// and a rectangle, a window's feature-cache key.
    pub raster_key: String,
    pub scene_width: u32,
    pub scene_height: u32,
    pub georef: Georef,
    pub grid: GridShape,
    /// The windows that found the object, best first; empty when the search
    /// found nothing.
    pub windows: Vec<ObjectWindow>,
}

/// The cache key of one window: the scene, its rendering, the rectangle.
pub fn window_key(image_id: &str, raster_key: &str, w: Window) -> String {
    format!(
        "{image_id}|{raster_key}|window {},{} {}x{}",
        w.x, w.y, w.width, w.height
    )
}
