//! Cutting a scene into overlapping square windows of source pixels.
//!
//! Along each axis windows start every `size - overlap` pixels from 0, and
//! the last one is moved back to end exactly at the scene's edge (so it may
//! overlap its neighbour by more than `overlap`). A scene no larger than a
//! window along an axis gets one window spanning it there: a window larger
//! than the whole scene is the scene.

use serde::{Deserialize, Serialize};

use super::error::WindowError;
use super::MIN_WINDOW_SIZE;
use crate::geo::Window;
use crate::predictor::Prompt;

/// How to cut a scene: `None` takes the default (the model's input side;
/// a quarter of the window side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub size: Option<u32>,
    pub overlap: Option<u32>,
}

/// The windows of one scene, row by row (top to bottom, left to right).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WindowGrid {
    pub scene_width: u32,
    pub scene_height: u32,
    /// The window side asked for (windows are narrower along an axis where
    /// the scene is smaller).
    pub size: u32,
    pub overlap: u32,
    pub windows: Vec<Window>,
}

impl WindowGrid {
    /// Plans the windows of a `width x height` scene for a model whose
    /// input side is `model_size`, refusing more than `max_windows`.
    pub fn plan(
        width: u32,
        height: u32,
        spec: WindowSpec,
        model_size: u32,
        max_windows: usize,
    ) -> Result<WindowGrid, WindowError> {
        if width == 0 || height == 0 {
            return Err(WindowError::EmptyScene { width, height });
        }
        let size = spec.size.unwrap_or(model_size);
        if size < MIN_WINDOW_SIZE {
            return Err(WindowError::Size(size));
        }
        let overlap = spec.overlap.unwrap_or(size / 4);
        if overlap >= size {
            return Err(WindowError::Overlap { size, overlap });
        }
        let stride = size - overlap;
        let count = axis_count(width, size, stride) * axis_count(height, size, stride);
        if count > max_windows as u64 {
            return Err(WindowError::TooManyWindows {
                width,
                height,
                size,
                overlap,
                count,
                max: max_windows,
            });
        }
        let (columns, rows) = (axis_starts(width, size, stride), axis_starts(height, size, stride));
        let (window_width, window_height) = (size.min(width), size.min(height));
        let windows = rows
            .iter()
            .flat_map(|&y| {
                columns.iter().map(move |&x| Window {
                    x,
                    y,
                    width: window_width,
                    height: window_height,
                })
            })
            .collect();
        Ok(WindowGrid {
            scene_width: width,
            scene_height: height,
            size,
            overlap,
            windows,
        })
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The windows that hold every click and the whole box of `prompt`
    /// (scene pixels; all windows when it has neither), in grid order.
    pub fn windows_for(&self, prompt: &Prompt) -> Vec<usize> {
        let mut corners: Vec<(f32, f32)> = prompt.points.iter().map(|p| (p.x, p.y)).collect();
        if let Some([x0, y0, x1, y1]) = prompt.bbox {
            corners.extend([(x0, y0), (x1, y1)]);
        }
        (0..self.windows.len())
            .filter(|&i| corners.iter().all(|&(x, y)| contains(self.windows[i], x, y)))
            .collect()
    }
}

/// `prompt` in the pixels of `window`: clicks and box shifted by the
/// window's origin (the sentence and a mask input as they are).
pub fn window_prompt(prompt: &Prompt, window: Window) -> Prompt {
    let (dx, dy) = (window.x as f32, window.y as f32);
    let mut shifted = prompt.clone();
    for p in &mut shifted.points {
        p.x -= dx;
        p.y -= dy;
    }
    shifted.bbox = prompt.bbox.map(|[x0, y0, x1, y1]| [x0 - dx, y0 - dy, x1 - dx, y1 - dy]);
    shifted
}

/// Whether the continuous position `(x, y)` lies in the window, edges
/// included (as prompt checks count an image's edges inside).
pub(super) fn contains(w: Window, x: f32, y: f32) -> bool {
    let (x0, y0) = (w.x as f32, w.y as f32);
    (x0..=x0 + w.width as f32).contains(&x) && (y0..=y0 + w.height as f32).contains(&y)
}

/// Windows along an axis of `len` pixels.
fn axis_count(len: u32, size: u32, stride: u32) -> u64 {
    if len <= size {
        1
    } else {
        u64::from((len - size).div_ceil(stride)) + 1
    }
}

/// Window starts along an axis: every `stride` pixels, the last one moved
/// back to end at the edge.
fn axis_starts(len: u32, size: u32, stride: u32) -> Vec<u32> {
    if len <= size {
        return vec![0];
    }
    let last = len - size;
    let mut starts: Vec<u32> = (0..last).step_by(stride as usize).collect();
    starts.push(last);
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::Point;
    use crate::window::DEFAULT_MAX_WINDOWS;

    fn plan(width: u32, height: u32, size: u32, overlap: u32) -> Result<WindowGrid, WindowError> {
        let spec = WindowSpec {
            size: Some(size),
            overlap: Some(overlap),
        };
        WindowGrid::plan(width, height, spec, 256, DEFAULT_MAX_WINDOWS)
    }

    #[test]
    fn starts_step_by_the_stride_and_the_last_window_ends_at_the_edge() {
        assert_eq!(axis_starts(512, 256, 192), vec![0, 192, 256]);
        assert_eq!(axis_starts(448, 256, 192), vec![0, 192]);
        assert_eq!(axis_starts(449, 256, 192), vec![0, 192, 193]);
        assert_eq!(axis_starts(256, 256, 192), vec![0]);
        assert_eq!(axis_starts(100, 256, 192), vec![0]);
        for (len, size, stride) in [(4096, 256, 192), (4096, 800, 600), (1000, 100, 1), (5000, 999, 998)] {
            let starts = axis_starts(len, size, stride);
            assert_eq!(starts.len() as u64, axis_count(len, size, stride));
            assert_eq!(starts[0], 0);
            assert_eq!(*starts.last().unwrap(), len - size);
            assert!(starts.windows(2).all(|p| p[1] > p[0] && p[1] - p[0] <= stride));
        }
    }

    #[test]
    fn defaults_are_the_model_size_and_a_quarter_overlap() {
        let grid = WindowGrid::plan(4096, 4096, WindowSpec::default(), 256, DEFAULT_MAX_WINDOWS).unwrap();
        assert_eq!((grid.size, grid.overlap), (256, 64));
        assert_eq!(grid.len(), 21 * 21);
        let grid = WindowGrid::plan(4096, 4096, WindowSpec::default(), 800, DEFAULT_MAX_WINDOWS).unwrap();
        assert_eq!((grid.size, grid.overlap), (800, 200));
        assert_eq!(grid.len(), 7 * 7);
        let only_size = WindowSpec {
            size: Some(100),
            overlap: None,
        };
        assert_eq!(WindowGrid::plan(400, 400, only_size, 256, 100).unwrap().overlap, 25);
    }

    #[test]
    fn windows_cover_the_scene_row_by_row() {
        let grid = plan(512, 300, 256, 64).unwrap();
        let origins: Vec<(u32, u32)> = grid.windows.iter().map(|w| (w.x, w.y)).collect();
        assert_eq!(origins, vec![(0, 0), (192, 0), (256, 0), (0, 44), (192, 44), (256, 44)]);
        assert!(grid.windows.iter().all(|w| (w.width, w.height) == (256, 256)));
    }

    #[test]
    fn a_window_larger_than_the_scene_is_the_scene() {
        let grid = plan(300, 200, 1000, 10).unwrap();
        assert_eq!(
            grid.windows,
            vec![Window {
                x: 0,
                y: 0,
                width: 300,
                height: 200
            }]
        );
        // Larger along one axis only: full height, windows across.
        let grid = plan(600, 200, 256, 64).unwrap();
        assert_eq!(grid.len(), 3);
        assert!(grid.windows.iter().all(|w| (w.width, w.height) == (256, 200)));
    }

    #[test]
    fn bad_sizes_are_errors_that_name_them() {
        let err = plan(512, 512, 0, 0).unwrap_err();
        assert!(matches!(err, WindowError::Size(0)), "{err}");
        assert!(err.to_string().contains("at least 16"), "{err}");
        assert!(matches!(plan(512, 512, 8, 2).unwrap_err(), WindowError::Size(8)));
        let err = plan(512, 512, 256, 256).unwrap_err();
        assert!(
            err.to_string()
                .contains("overlap 256 px must be smaller than the window size 256"),
            "{err}"
        );
        assert!(matches!(
            plan(512, 512, 256, 300).unwrap_err(),
            WindowError::Overlap { .. }
        ));
        assert!(matches!(
            plan(0, 512, 256, 0).unwrap_err(),
            WindowError::EmptyScene { .. }
        ));
    }

    #[test]
    fn more_windows_than_the_limit_is_refused_before_planning_them() {
        let spec = WindowSpec {
            size: Some(16),
            overlap: Some(15),
        };
        // 100,000 px a side in 1 px steps: ~10^10 windows, counted, never listed.
        let err = WindowGrid::plan(100_000, 100_000, spec, 256, 1024).unwrap_err();
        match &err {
            WindowError::TooManyWindows { count, max, .. } => {
                assert_eq!(*count, 99_985u64 * 99_985);
                assert_eq!(*max, 1024);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("over the limit of 1024"), "{err}");
        let err = WindowGrid::plan(512, 512, WindowSpec::default(), 256, 8).unwrap_err();
        assert!(
            err.to_string().contains("makes 9 windows, over the limit of 8"),
            "{err}"
        );
        assert_eq!(
            WindowGrid::plan(512, 512, WindowSpec::default(), 256, 9).unwrap().len(),
            9
        );
    }

    #[test]
    fn clicks_and_boxes_pick_the_windows_that_hold_them() {
        let grid = plan(512, 256, 256, 64).unwrap(); // x = 0, 192, 256
        let click = |x: f32, y: f32| Prompt {
            points: vec![Point { x, y, label: 1 }],
            ..Default::default()
        };
        assert_eq!(grid.windows_for(&Prompt::text("the ship")), vec![0, 1, 2]);
        assert_eq!(grid.windows_for(&click(10.0, 10.0)), vec![0]);
        assert_eq!(grid.windows_for(&click(200.0, 10.0)), vec![0, 1]);
        assert_eq!(grid.windows_for(&click(500.0, 10.0)), vec![2]);
        let boxed = Prompt {
            bbox: Some([200.0, 0.0, 300.0, 100.0]),
            ..Default::default()
        };
        assert_eq!(grid.windows_for(&boxed), vec![1]);
        let wide = Prompt {
            bbox: Some([10.0, 0.0, 500.0, 100.0]),
            ..Default::default()
        };
        assert!(grid.windows_for(&wide).is_empty());
    }

    #[test]
    fn prompts_move_into_window_pixels() {
        let prompt = Prompt {
            text: Some("the ship".into()),
            points: vec![Point {
                x: 300.0,
                y: 50.0,
                label: 1,
            }],
            bbox: Some([200.0, 10.0, 400.0, 90.0]),
            mask_input: None,
        };
        let window = Window {
            x: 192,
            y: 0,
            width: 256,
            height: 256,
        };
        let shifted = window_prompt(&prompt, window);
        assert_eq!(shifted.text, prompt.text);
        assert_eq!((shifted.points[0].x, shifted.points[0].y), (108.0, 50.0));
        assert_eq!(shifted.bbox, Some([8.0, 10.0, 208.0, 90.0]));
    }
}
