//! From logits to masks and what users take away from them: the binary
//! mask at the image's size (upsampled exactly like PyTorch), its area and
//! box, COCO RLE, PNG, and polygons: COCO-style outer contours
//! ([`polygons`]) and exact pixel-edge polygons with holes
//! ([`pixel_polygons`], what georeferenced outputs need). The CLI, the server and `rsam eval` all
//! go through here.

pub mod pixel_polygons;
pub mod png;
pub mod polygons;
pub mod rle;
pub mod upsample;

pub use rle::Rle;
pub use upsample::upsample_bilinear;

/// A binary mask, row-major (`data[y * width + x]`), each byte 0 or 1.
///
/// The methods read `data` as exactly `width * height` pixels: missing bytes
/// count as background and extra bytes are ignored, so an inconsistent mask
/// never causes a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl BinaryMask {
    /// Thresholds row-major logits at 0 (foreground where `logit > 0.0`, so
    /// NaN is background), as SAM does. Missing logits are background.
    pub fn from_logits(logits: &[f32], height: u32, width: u32) -> BinaryMask {
        let len = height as usize * width as usize;
        let mut data: Vec<u8> = logits.iter().take(len).map(|&v| u8::from(v > 0.0)).collect();
        data.resize(len, 0);
        BinaryMask { width, height, data }
    }

    /// The mask of `side x side` low-resolution logits at a `width x height`
    /// image: upsampled bilinearly (align_corners = false), then thresholded
    /// at 0.
    pub fn from_low_res_logits(logits: &[f32], side: usize, width: u32, height: u32) -> BinaryMask {
        let upsampled = upsample_bilinear(logits, side, side, height as usize, width as usize);
        BinaryMask::from_logits(&upsampled, height, width)
    }

    /// Number of pixels in the mask, `width * height`, as `usize`.
    fn len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().take(self.len()).filter(|&&v| v != 0).count() as u64
    }

    /// Tight bounding box `[x, y, w, h]` of the foreground, as pycocotools'
    /// `toBbox` gives it: `w = x_max - x_min + 1`, likewise `h`, and all
    /// zeros for an empty mask.
    pub fn bbox(&self) -> [f64; 4] {
        let width = self.width as usize;
        if width == 0 {
            return [0.0; 4];
        }
        let mut min = (usize::MAX, usize::MAX);
        let mut max = (0usize, 0usize);
        let mut any = false;
        for (y, row) in self.data.chunks(width).take(self.height as usize).enumerate() {
            // Only the first and last foreground pixel of a row matter.
            let Some(first) = row.iter().position(|&v| v != 0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
            any = true;
            min = (min.0.min(first), min.1.min(y));
            max = (max.0.max(last), max.1.max(y));
        }
        if !any {
            return [0.0; 4];
        }
        [
            min.0 as f64,
            min.1 as f64,
            (max.0 - min.0 + 1) as f64,
            (max.1 - min.1 + 1) as f64,
        ]
    }

    /// COCO compressed RLE of the mask, identical to pycocotools' string.
    pub fn to_rle(&self) -> Rle {
        rle::encode(&self.data, self.height as usize, self.width as usize)
    }
}
