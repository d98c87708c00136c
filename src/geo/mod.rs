//! GeoTIFF in, georeferenced masks out (issue 16).
//!
//! - Reading: [`read_rgb_from_path`] / [`read_rgb_from_bytes`] turn a GeoTIFF
//!   (striped or tiled, any of the supported compressions and sample types)
//!   into the 8-bit [`Rgb8Image`](crate::preprocess::Rgb8Image) the model sees,
//!   with band selection and the stretch of [`Stretch`], plus its
//!   [`Georef`]. [`GeoRaster::read_window`] reads a pixel window of selected
//!   bands, decoding only the strips or tiles it touches.
//! - Coordinates: [`Georef::pixel_from_map`] / [`Georef::map_from_pixel`]
//!   for prompts in map units.
//! - Output: [`feature_collection`] (GeoJSON in the raster's CRS or WGS 84),
//!   [`mask_geotiff_bytes`] (a u8 0/255 mask GeoTIFF with the input's
//!   georeferencing), both from plain row-major masks; the polygons under
//!   the GeoJSON are [`crate::mask::pixel_polygons`].

mod error;
mod geojson;
mod geokeys;
mod georef;
mod lzw;
mod mask_tiff;
mod order_stats;
mod raster;
mod reproject;
mod rgb;
mod samples;
mod stretch;
mod transform;

pub use self::geojson::{feature_collection, feature_collection_bytes, MaskFeature, OutputCrs};
pub use error::{GeoError, GeoResult};
pub use geokeys::{Crs, CrsKind, RasterType};
pub use georef::Georef;
pub use mask_tiff::{mask_geotiff_bytes, write_mask_geotiff};
pub use raster::{is_tiff, GeoRaster, RasterInfo, Window};
pub use reproject::ToWgs84;
pub use rgb::{default_bands, read_rgb, read_rgb_from_bytes, read_rgb_from_path, GeoImage, ReadOptions, Rendering};
pub use samples::{BandData, BandStack, SampleType};
pub use stretch::{apply_mappings, band_mappings, stretch_to_rgb, BandMapping, Stretch, PERCENTILES};
pub use transform::GeoTransform;
