//! One annotated object: its category, colour and size, its body (the
//! pixels of its mask) and effects (shadow, wake), and its rasterised mask.

use super::category::{Category, Colour, SizeBand};
use super::geometry::{pixel_centre, Shape, V2};

/// How an effect shape is drawn. Effects are part of an object's footprint
/// but not of its mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Darkens what is below by this much (0..1).
    Shadow(f32),
    /// A ship's wake: white foam fading away from the stern at local x.
    Wake { stern: f32, length: f32 },
}

/// A mask cropped to its bounding box.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mask {
    x0: usize,
    y0: usize,
    width: usize,
    height: usize,
    /// Row-major, `width * height`, 0 or 1.
    data: Vec<u8>,
}

impl Mask {
    /// Pixels in the mask.
    pub fn area(&self) -> usize {
        self.data.iter().filter(|&&v| v != 0).count()
    }

    /// The whole-image row-major mask.
    pub fn full(&self, size: usize) -> Vec<u8> {
        let mut out = vec![0u8; size * size];
        for y in 0..self.height {
            let row = (self.y0 + y) * size + self.x0;
            out[row..row + self.width].copy_from_slice(&self.data[y * self.width..(y + 1) * self.width]);
        }
        out
    }

    /// `[x, y, w, h]` of the set pixels (COCO order), `[0, 0, 0, 0]` if empty.
    pub fn bbox(&self) -> [usize; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.data[y * self.width + x] != 0 {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        if x0 == usize::MAX {
            return [0, 0, 0, 0];
        }
        [self.x0 + x0, self.y0 + y0, x1 - x0, y1 - y0]
    }

    /// Mean position of the set pixels (pixel centres).
    pub fn centroid(&self) -> V2 {
        let (mut sx, mut sy, mut n) = (0.0f64, 0.0f64, 0usize);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.data[y * self.width + x] != 0 {
                    sx += (self.x0 + x) as f64 + 0.5;
                    sy += (self.y0 + y) as f64 + 0.5;
                    n += 1;
                }
            }
        }
        if n == 0 {
            return V2::ZERO;
        }
        V2::new((sx / n as f64) as f32, (sy / n as f64) as f32)
    }

    /// Set pixels that touch an unset one (or the crop border): enough to
    /// measure the gap between two masks.
    pub fn boundary(&self) -> Vec<V2> {
        let at = |x: isize, y: isize| -> bool {
            x >= 0
                && y >= 0
                && (x as usize) < self.width
                && (y as usize) < self.height
                && self.data[y as usize * self.width + x as usize] != 0
        };
        let mut out = Vec::new();
        for y in 0..self.height as isize {
            for x in 0..self.width as isize {
                if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                    out.push(pixel_centre(self.x0 + x as usize, self.y0 + y as usize));
                }
            }
        }
        out
    }
}

/// One annotated object.
#[derive(Debug, Clone)]
pub struct Object {
    pub category: Category,
    pub colour: Colour,
    /// The drawn colour: the named colour with a little jitter.
    pub rgb: [f32; 3],
    pub band: SizeBand,
    /// Characteristic length in pixels (see [`CategoryInfo::length`]).
    pub length: f32,
    /// The object's pixels; its mask is `body.sdf < 0` at pixel centres.
    pub body: Shape,
    /// Shadows and wakes: drawn, kept free of other things, not in the mask.
    pub effects: Vec<(Shape, Effect)>,
    /// A per-object style number in 0..1 (roof type, stripe count, ...).
    pub variant: f32,
    /// Filled in once the object is placed.
    pub mask: Mask,
}

impl Object {
    fn translate(&mut self, d: V2) {
        self.body = self.body.translated(d);
        for (s, _) in &mut self.effects {
            *s = s.translated(d);
        }
    }

    pub(super) fn set_origin(&mut self, p: V2) {
        let d = p - self.body.frame.origin;
        self.translate(d);
    }

    /// Extent of the footprint (body and effects) along a world direction,
    /// measured from the body's origin.
    pub(super) fn support(&self, dir: V2) -> f32 {
        let o = self.body.frame.origin.dot(dir);
        std::iter::once(&self.body)
            .chain(self.effects.iter().map(|(s, _)| s))
            .map(|s| s.support(dir) + s.frame.origin.dot(dir) - o)
            .fold(f32::MIN, f32::max)
    }

    /// Rasterises the body: a pixel is in when its centre is inside.
    pub(super) fn rasterize(&self, size: usize) -> Mask {
        let [x0, y0, x1, y1] = self.body.pixel_box(0.0, size);
        let (w, h) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
        let mut data = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                if self.body.sdf(pixel_centre(x0 + x, y0 + y)) < 0.0 {
                    data[y * w + x] = 1;
                }
            }
        }
        Mask {
            x0,
            y0,
            width: w,
            height: h,
            data,
        }
    }
}
