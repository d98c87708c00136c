//! Errors of the GeoTIFF reader and of the georeferenced outputs. Every
//! variant names the problem; the CLI prints them and the HTTP layer maps
//! each variant to one 4xx code (see [`GeoError::is_client_error`]).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("not a TIFF file: {0}")]
    NotTiff(String),

    #[error("corrupt TIFF: {0}")]
    Corrupt(String),

    #[error("truncated TIFF: {0}")]
    Truncated(String),

    #[error("raster is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },

    #[error("unsupported sample format: {0} (supported: u8, u16, i16, u32, i32, f32, f64)")]
    UnsupportedSampleFormat(String),

    #[error("unsupported TIFF layout: {0}")]
    UnsupportedLayout(String),

    #[error("band {band} is out of range: the raster has {count} band(s), numbered from 1")]
    BandOutOfRange { band: u16, count: u16 },

    #[error("bands: {0}")]
    InvalidBands(String),

    #[error("stretch: {0}")]
    InvalidStretch(String),

    #[error(
        "window at ({x}, {y}) of {width}x{height} pixels does not lie inside the {raster_width}x{raster_height} raster"
    )]
    InvalidWindow {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        raster_width: u32,
        raster_height: u32,
    },

    #[error("GeoKey directory (tag 34735): {0}")]
    GeoKeys(String),

    #[error("georeferencing tags: {0}")]
    Georeferencing(String),

    #[error("GDAL_NODATA tag (42113): {0:?} is not a number")]
    Nodata(String),

    #[error(
        "stretch none: band {band} holds the value {value}, outside 0..255 (use the percentile or minmax stretch)"
    )]
    OutOfByteRange { band: u16, value: f64 },

    #[error("{0}: the raster has no georeferencing (no ModelPixelScale + ModelTiepoint or ModelTransformation tags)")]
    NotGeoreferenced(&'static str),

    #[error("coordinate reference system: {0}")]
    UnsupportedCrs(String),

    #[error("reprojection to WGS 84 failed at ({x}, {y}): {reason}")]
    Reprojection { x: f64, y: f64, reason: String },

    #[error("mask holds {len} values, expected {width}x{height} = {expected}")]
    MaskLength {
        len: usize,
        width: u32,
        height: u32,
        expected: u64,
    },

    #[error("writing the mask GeoTIFF: {0}")]
    Write(String),

    #[error("cannot open {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GeoError {
    /// Whether the caller's input caused the error (a 4xx answer); `false`
    /// only for failures of the machine (writing, reading a local path).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, GeoError::Write(_) | GeoError::Io { .. })
    }
}

pub type GeoResult<T> = std::result::Result<T, GeoError>;
