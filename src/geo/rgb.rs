//! A GeoTIFF to the 8-bit RGB the model sees: select the bands, read them
//! (only them), stretch, and keep the georeferencing beside the pixels.

use std::io::{Read, Seek};
use std::path::Path;

use serde::Serialize;

use super::error::{GeoError, GeoResult};
use super::georef::Georef;
use super::raster::{GeoRaster, RasterInfo};
use super::stretch::{apply_mappings, band_mappings, BandMapping, Stretch};
use crate::preprocess::{Rgb8Image, DEFAULT_MAX_PIXELS};

/// How to turn a raster into RGB.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOptions {
    /// 1-based bands for R, G, B (or one band for grey); `None`: 1, 2, 3, or
    /// band 1 as grey when the raster has fewer than 3 bands.
    pub bands: Option<Vec<u16>>,
    /// `None`: `none` for u8 rasters, `percentile` for every other type.
    pub stretch: Option<Stretch>,
    /// Largest `width * height` accepted (checked on the header).
    pub max_pixels: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            bands: None,
            stretch: None,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// A raster read as RGB, with where it lies and how it was stretched.
#[derive(Clone, Debug, PartialEq)]
pub struct GeoImage {
    pub image: Rgb8Image,
    pub georef: Georef,
    pub info: RasterInfo,
    pub rendering: Rendering,
}

/// Which bands went into R, G, B and how each was mapped (for reports).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rendering {
    pub bands: Vec<u16>,
    pub stretch: Stretch,
    pub mappings: Vec<BandMapping>,
}

/// Bands used when none are given: 1, 2, 3, or band 1 (grey) for rasters of
/// one or two bands.
pub fn default_bands(band_count: u16) -> Vec<u16> {
    if band_count >= 3 {
        vec![1, 2, 3]
    } else {
        vec![1]
    }
}

/// Reads a GeoTIFF from any seekable reader as RGB.
pub fn read_rgb<R: Read + Seek>(reader: R, options: &ReadOptions) -> GeoResult<GeoImage> {
    read_raster(GeoRaster::new(reader, options.max_pixels)?, options)
}

/// Reads GeoTIFF bytes as RGB.
pub fn read_rgb_from_bytes(bytes: &[u8], options: &ReadOptions) -> GeoResult<GeoImage> {
    read_raster(GeoRaster::from_bytes(bytes, options.max_pixels)?, options)
}

/// Reads a GeoTIFF file as RGB, streaming it from disk (the file is never
/// held in memory whole).
pub fn read_rgb_from_path(path: &Path, options: &ReadOptions) -> GeoResult<GeoImage> {
    read_raster(GeoRaster::open(path, options.max_pixels)?, options)
}

fn read_raster<R: Read + Seek>(mut raster: GeoRaster<R>, options: &ReadOptions) -> GeoResult<GeoImage> {
    let info = raster.info().clone();
    let bands = options.bands.clone().unwrap_or_else(|| default_bands(info.band_count));
    if !matches!(bands.len(), 1 | 3) {
        return Err(GeoError::InvalidBands(format!(
            "{} bands given ({bands:?}): RGB needs 3 bands, or 1 for grey",
            bands.len()
        )));
    }
    let stretch = options
        .stretch
        .unwrap_or_else(|| Stretch::default_for(info.sample_type));
    let stack = raster.read_window(raster.full_window(), &bands)?;
    let mappings = band_mappings(&stack, info.nodata, stretch)?;
    let image = apply_mappings(&stack, info.nodata, &mappings)?;
    Ok(GeoImage {
        image,
        georef: raster.georef().clone(),
        info,
        rendering: Rendering {
            bands,
            stretch,
            mappings,
        },
    })
}
