//! A mask cut to its bounding box and placed in the scene: what one window
//! found, or a merged object. Kept this small so that a search over
//! hundreds of windows holds kilobytes per candidate, not a scene-sized
//! mask each.

use crate::geo::Window;
use crate::mask::BinaryMask;

/// `width x height` mask pixels (row-major, 0 / 1) whose top-left pixel is
/// scene pixel `(x, y)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskPiece {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl MaskPiece {
    /// The foreground of a window's mask (at the window's size), in scene
    /// pixels; `None` when the mask is empty.
    pub fn from_window_mask(mask: &BinaryMask, window: Window) -> Option<MaskPiece> {
        let [bx, by, bw, bh] = mask.bbox();
        if bw == 0.0 {
            return None;
        }
        let (bx, by, bw, bh) = (bx as usize, by as usize, bw as usize, bh as usize);
        let stride = mask.width as usize;
        let data = mask
            .data
            .chunks(stride)
            .skip(by)
            .take(bh)
            .flat_map(|row| &row[bx..bx + bw])
            .copied()
            .collect();
        Some(MaskPiece {
            x: window.x + bx as u32,
            y: window.y + by as u32,
            width: bw as u32,
            height: bh as u32,
            data,
        })
    }

    /// The rectangle the piece covers.
    pub fn rect(&self) -> Window {
        Window {
            x: self.x,
            y: self.y,
            width: self.width,
            height: self.height,
        }
    }

    /// Whether scene pixel `(x, y)` is foreground.
    pub fn at(&self, x: u32, y: u32) -> bool {
        if x < self.x || y < self.y || x >= self.x + self.width || y >= self.y + self.height {
            return false;
        }
        self.data[(y - self.y) as usize * self.width as usize + (x - self.x) as usize] != 0
    }

    pub fn area(&self) -> u64 {
        self.data.iter().filter(|&&v| v != 0).count() as u64
    }

    /// Tight `[x, y, w, h]` in scene pixels (pycocotools' form; the piece
    /// is cut to its foreground, so it is the piece's rectangle unless the
    /// piece is empty).
    pub fn bbox(&self) -> [f64; 4] {
        let local = self.local_mask().bbox();
        if local[2] == 0.0 {
            return [0.0; 4];
        }
        [
            local[0] + f64::from(self.x),
            local[1] + f64::from(self.y),
            local[2],
            local[3],
        ]
    }

    /// The piece as a mask of its own size.
    pub fn local_mask(&self) -> BinaryMask {
        BinaryMask {
            width: self.width,
            height: self.height,
            data: self.data.clone(),
        }
    }

    /// The piece pasted into an empty `width x height` scene mask.
    pub fn scene_mask(&self, width: u32, height: u32) -> BinaryMask {
        let mut data = vec![0u8; width as usize * height as usize];
        let (x0, w) = (self.x as usize, self.width as usize);
        for (row, src) in self.data.chunks(w).enumerate() {
            let y = self.y as usize + row;
            if y >= height as usize {
                break;
            }
            let start = y * width as usize + x0;
            let len = w.min((width as usize).saturating_sub(x0));
            data[start..start + len].copy_from_slice(&src[..len]);
        }
        BinaryMask { width, height, data }
    }
}

/// The intersection of two rectangles, if they share a pixel.
pub fn intersection(a: Window, b: Window) -> Option<Window> {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.width).min(b.x + b.width);
    let y1 = (a.y + a.height).min(b.y + b.height);
    // `then`, not `then_some`: the widths underflow when there is no overlap.
    (x1 > x0 && y1 > y0).then(|| Window {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(x: u32, y: u32, width: u32, height: u32) -> Window {
        Window { x, y, width, height }
    }

    #[test]
    fn a_window_mask_is_cut_to_its_foreground_and_placed_in_the_scene() {
        let mut mask = BinaryMask {
            width: 8,
            height: 6,
            data: vec![0; 48],
        };
        for (x, y) in [(2, 1), (3, 1), (3, 2), (5, 4)] {
            mask.data[y * 8 + x] = 1;
        }
        let piece = MaskPiece::from_window_mask(&mask, window(100, 50, 8, 6)).unwrap();
        assert_eq!((piece.x, piece.y, piece.width, piece.height), (102, 51, 4, 4));
        assert_eq!(piece.area(), 4);
        assert!(piece.at(103, 52) && piece.at(105, 54) && !piece.at(104, 52) && !piece.at(0, 0));
        assert_eq!(piece.bbox(), [102.0, 51.0, 4.0, 4.0]);
        let scene = piece.scene_mask(120, 60);
        assert_eq!(scene.area(), 4);
        assert_eq!(scene.bbox(), piece.bbox());
        let empty = BinaryMask {
            width: 8,
            height: 6,
            data: vec![0; 48],
        };
        assert!(MaskPiece::from_window_mask(&empty, window(0, 0, 8, 6)).is_none());
    }

    #[test]
    fn rectangles_intersect_only_when_they_share_pixels() {
        assert_eq!(
            intersection(window(0, 0, 256, 256), window(192, 0, 256, 256)),
            Some(window(192, 0, 64, 256))
        );
        assert_eq!(intersection(window(0, 0, 10, 10), window(10, 0, 10, 10)), None);
        assert_eq!(
            intersection(window(0, 0, 10, 10), window(5, 5, 10, 10)),
            Some(window(5, 5, 5, 5))
        );
    }
}
