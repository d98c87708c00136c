//! Image file bytes to the 8-bit RGB the model sees, and where the image
//! lies on Earth. TIFFs go through the GeoTIFF reader (band selection,
//! stretch to 8 bits, nodata, georeferencing); every other format through
//! [`preprocess::decode_image`], as PIL's `convert("RGB")` sees it. The CLI
//! and the server both read images here.

use crate::geo::{self, GeoError, Georef, ReadOptions, Stretch};
use crate::predictor::{Point, Prompt};
use crate::preprocess::{self, Rgb8Image};
use crate::{Result, RsamError};

/// How a raster becomes RGB: 1-based bands (default 1, 2, 3, or band 1 as
/// grey) and the stretch (default none for 8-bit rasters, percentile
/// otherwise). Only TIFFs have bands to choose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RasterOptions {
    pub bands: Option<Vec<u16>>,
    pub stretch: Option<Stretch>,
}

impl RasterOptions {
    /// Whether anything other than the defaults was asked for.
    pub fn is_default(&self) -> bool {
        self.bands.is_none() && self.stretch.is_none()
    }

    /// A stable text for cache keys: the same bytes rendered with other
    /// bands or another stretch are another image for the model.
    pub fn key(&self) -> String {
        let bands = self
            .bands
            .as_ref()
            .map(|b| b.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let stretch = self.stretch.map(|s| format!("{s:?}")).unwrap_or_default();
        format!("bands={bands};stretch={stretch}")
    }
}

/// The units of point and box prompts.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coords {
    /// Image pixels.
    #[default]
    Pixel,
    /// The raster's CRS units, through the inverse of its transform.
    Map,
}

/// A decoded image and its georeferencing (empty for a plain image).
#[derive(Debug, Clone)]
pub struct InputImage {
    pub image: Rgb8Image,
    pub georef: Georef,
}

/// Decodes image file bytes under the pixel limit.
///
/// A TIFF the GeoTIFF reader cannot read (JPEG-compressed, palette, ...) is
/// still read as a plain picture when no band or stretch was asked for.
pub fn decode(bytes: &[u8], options: &RasterOptions, max_pixels: u64) -> Result<InputImage> {
    if !geo::is_tiff(bytes) {
        if !options.is_default() {
            return Err(RsamError::Image(
                "bands and stretch apply to TIFF rasters only: this image is not a TIFF".into(),
            ));
        }
        return Ok(InputImage {
            image: preprocess::decode_image(bytes, max_pixels)?,
            georef: Georef::default(),
        });
    }
    let read_options = ReadOptions {
        bands: options.bands.clone(),
        stretch: options.stretch,
        max_pixels,
    };
    match geo::read_rgb_from_bytes(bytes, &read_options) {
        Ok(read) => Ok(InputImage {
            image: read.image,
            georef: read.georef,
        }),
        Err(e @ (GeoError::UnsupportedLayout(_) | GeoError::UnsupportedSampleFormat(_))) if options.is_default() => {
            match preprocess::decode_image(bytes, max_pixels) {
                Ok(image) => Ok(InputImage {
                    image,
                    georef: Georef::default(),
                }),
                Err(_) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A prompt whose points and box are in the raster's map units, with its
/// points and box moved to image pixels through the inverse of the
/// raster's transform (a box becomes the pixel box around its corners).
/// An image without georeferencing has no map units: an error naming why.
pub fn prompt_from_map(prompt: Prompt, georef: &Georef) -> Result<Prompt> {
    let points = prompt
        .points
        .iter()
        .map(|p| {
            let (x, y) = georef.pixel_from_map(p.x as f64, p.y as f64)?;
            Ok(Point {
                x: x as f32,
                y: y as f32,
                label: p.label,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bbox = match prompt.bbox {
        Some(b) => {
            let [x0, y0, x1, y1] = georef.pixel_box_from_map(b.map(f64::from))?;
            Some([x0 as f32, y0 as f32, x1 as f32, y1 as f32])
        }
        None => None,
    };
    Ok(Prompt { points, bbox, ..prompt })
}
