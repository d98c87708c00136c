//! `rsam segment --window` flags: the windowed search over a scene larger
//! than the model.

use crate::window::{WindowSpec, DEFAULT_BATCH, DEFAULT_MAX_WINDOWS, DEFAULT_TOP_K};

#[derive(clap::Args, Debug, Clone)]
pub struct WindowArgs {
    /// Search the scene in W x W windows of source pixels overlapping by O
    /// (default O = W/4); `auto`: W = the model's input size.
    #[arg(long, value_parser = parse_window, value_name = "W[,O]")]
    pub window: Option<WindowSpec>,
    /// With --window: candidates (objects of the scene) reported, best first.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    pub top_k: usize,
    /// With --window: refuse scenes that make more windows than this.
    #[arg(long, default_value_t = DEFAULT_MAX_WINDOWS)]
    pub max_windows: usize,
    /// With --window: windows encoded as one batch.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub window_batch: usize,
}

impl WindowArgs {
    /// Whether a window flag other than --window was changed without it.
    pub fn stray_flag(&self) -> Option<&'static str> {
        match () {
            _ if self.top_k != DEFAULT_TOP_K => Some("--top-k"),
            _ if self.max_windows != DEFAULT_MAX_WINDOWS => Some("--max-windows"),
            _ if self.window_batch != DEFAULT_BATCH => Some("--window-batch"),
            _ => None,
        }
    }
}

/// `W`, `W,O` or `auto`.
pub fn parse_window(s: &str) -> Result<WindowSpec, String> {
    if s.trim() == "auto" {
        return Ok(WindowSpec::default());
    }
    let number = |p: &str| {
        p.trim()
            .parse::<u32>()
            .map_err(|_| format!("--window W[,O]: {p:?} is not a whole number of pixels"))
    };
    match s.split(',').collect::<Vec<_>>().as_slice() {
        [size] => Ok(WindowSpec {
            size: Some(number(size)?),
            overlap: None,
        }),
        [size, overlap] => Ok(WindowSpec {
            size: Some(number(size)?),
            overlap: Some(number(overlap)?),
        }),
        _ => Err(format!("--window takes W or W,O (pixels) or auto, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_parse_and_bad_ones_are_named() {
        let spec = |size, overlap| WindowSpec { size, overlap };
        assert_eq!(parse_window("512"), Ok(spec(Some(512), None)));
        assert_eq!(parse_window("512,64"), Ok(spec(Some(512), Some(64))));
        assert_eq!(parse_window("auto"), Ok(spec(None, None)));
        assert!(parse_window("512,x")
            .unwrap_err()
            .contains("\"x\" is not a whole number"));
        assert!(parse_window("-5").unwrap_err().contains("not a whole number"));
        assert!(parse_window("1,2,3").unwrap_err().contains("W or W,O"));
        assert!(parse_window("99999999999").is_err());
    }
}
