//! Masks as PNG files: 0 / 255 greyscale out, any PNG in.

use image::DynamicImage;

use super::BinaryMask;
use crate::{Result, RsamError};

impl BinaryMask {
    /// Encodes the mask as an 8-bit greyscale PNG (background 0, foreground
    /// 255).
    ///
    /// PNG cannot represent an image with a zero dimension; for such a mask
    /// this returns an empty vector rather than panicking.
    pub fn to_png(&self) -> Vec<u8> {
        let pixels: Vec<u8> = (0..self.len())
            .map(|i| match self.data.get(i) {
                Some(&v) if v != 0 => 255,
                _ => 0,
            })
            .collect();
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        // Writing into a Vec cannot hit I/O errors; the only possible
        // failure is the zero-dimension case documented above.
        let written = encoder
            .write_header()
            .and_then(|mut writer| {
                writer.write_image_data(&pixels)?;
                writer.finish()
            })
            .is_ok();
        if written {
            out
        } else {
            Vec::new()
        }
    }

    /// Decodes a mask from any PNG (greyscale, RGB, palette, with or without
    /// alpha, 1- to 16-bit). A pixel is foreground when its first channel is
    /// nonzero: the grey value, or the red component (of the palette colour,
    /// for palette images). Alpha is ignored.
    pub fn from_png(bytes: &[u8]) -> Result<BinaryMask> {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
            .map_err(|e| RsamError::MaskInput(format!("cannot decode mask PNG: {e}")))?;
        let (width, height) = (img.width(), img.height());
        let data = match &img {
            DynamicImage::ImageLuma8(b) => first_channel_nonzero(b.as_raw(), 1),
            DynamicImage::ImageLumaA8(b) => first_channel_nonzero(b.as_raw(), 2),
            DynamicImage::ImageRgb8(b) => first_channel_nonzero(b.as_raw(), 3),
            DynamicImage::ImageRgba8(b) => first_channel_nonzero(b.as_raw(), 4),
            DynamicImage::ImageLuma16(b) => first_channel_nonzero(b.as_raw(), 1),
            DynamicImage::ImageLumaA16(b) => first_channel_nonzero(b.as_raw(), 2),
            DynamicImage::ImageRgb16(b) => first_channel_nonzero(b.as_raw(), 3),
            DynamicImage::ImageRgba16(b) => first_channel_nonzero(b.as_raw(), 4),
            // The PNG decoder does not produce other layouts today, but the
            // enum is non-exhaustive: convert to a known one. 16 bits keep
            // every nonzero PNG sample nonzero.
            other => first_channel_nonzero(other.to_rgba16().as_raw(), 4),
        };
        Ok(BinaryMask { width, height, data })
    }
}

/// 0/1 per pixel: whether the first of `channels` interleaved samples is
/// nonzero.
fn first_channel_nonzero<T: Copy + Default + PartialEq>(raw: &[T], channels: usize) -> Vec<u8> {
    raw.chunks_exact(channels)
        .map(|px| u8::from(px[0] != T::default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sized_png_is_empty() {
        let m = BinaryMask {
            width: 0,
            height: 3,
            data: vec![],
        };
        assert!(m.to_png().is_empty());
    }
}
