//! The `window` object of a request (`POST /v1/segment`, `POST
//! /v1/images`) and its numbers checked into the search's options.

use std::ops::RangeInclusive;

use serde::Deserialize;

use super::errors::ApiError;
use crate::window::{SearchOptions, WindowSpec, DEFAULT_MAX_WINDOWS, DEFAULT_TOP_K, MIN_WINDOW_SIZE};

/// The `window` object of a segment request: every field optional.
/// Numbers like `bands` (JSON has no integer type), checked in
/// [`parse_window`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowJson {
    pub size: Option<f64>,
    pub overlap: Option<f64>,
    pub top_k: Option<f64>,
    pub max_windows: Option<f64>,
}

/// Most candidates a request may ask for.
pub const MAX_TOP_K: usize = 100;

/// Checks the `window` object's numbers (what may come with it is checked
/// where the whole request is, in [`super::api`]).
pub fn parse_window(w: &WindowJson) -> Result<SearchOptions, ApiError> {
    let pixels = MIN_WINDOW_SIZE as usize..=u32::MAX as usize;
    let size = w.size.map(|v| whole("window.size", v, pixels)).transpose()?;
    let overlap = w
        .overlap
        .map(|v| whole("window.overlap", v, 0..=u32::MAX as usize))
        .transpose()?;
    let top_k = w.top_k.map(|v| whole("window.top_k", v, 1..=MAX_TOP_K)).transpose()?;
    let max_windows = w
        .max_windows
        .map(|v| whole("window.max_windows", v, 1..=DEFAULT_MAX_WINDOWS))
        .transpose()?;
    Ok(SearchOptions {
        spec: WindowSpec {
            size: size.map(|s| s as u32),
            overlap: overlap.map(|o| o as u32),
        },
        top_k: top_k.unwrap_or(DEFAULT_TOP_K),
        max_windows: max_windows.unwrap_or(DEFAULT_MAX_WINDOWS),
        ..SearchOptions::default()
    })
}

/// A whole number in `range`.
fn whole(name: &str, v: f64, range: RangeInclusive<usize>) -> Result<usize, ApiError> {
    if v.fract() == 0.0 && (*range.start() as f64..=*range.end() as f64).contains(&v) {
        return Ok(v as usize);
    }
    Err(ApiError::invalid_request(format!(
        "{name}: {v} is not a whole number from {} to {}",
        range.start(),
        range.end()
    )))
}
