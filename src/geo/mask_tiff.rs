//! A mask as a GeoTIFF: single band, u8 (background 0, foreground 255),
//! deflate-compressed strips, carrying the input's transform (as GDAL would
//! write it: pixel scale + tie point when north-up, else the transformation
//! matrix) and its GeoKey directory, so GDAL reads the same transform and CRS.

use std::io::{Cursor, Seek, Write};

use tiff::encoder::colortype::Gray8;
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder};
use tiff::tags::Tag;

use super::error::{GeoError, GeoResult};
use super::geokeys::RasterType;
use super::georef::Georef;
use super::transform::GeoTransform;

/// The mask GeoTIFF's bytes.
pub fn mask_geotiff_bytes(mask: &[u8], width: u32, height: u32, georef: &Georef) -> GeoResult<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    write_mask_geotiff(&mut out, mask, width, height, georef)?;
    Ok(out.into_inner())
}

/// Writes `mask` (`width x height`, row-major, nonzero is foreground) as a
/// GeoTIFF georeferenced like `georef` (a plain TIFF without one).
pub fn write_mask_geotiff<W: Write + Seek>(
    writer: W,
    mask: &[u8],
    width: u32,
    height: u32,
    georef: &Georef,
) -> GeoResult<()> {
    let expected = u64::from(width) * u64::from(height);
    if mask.len() as u64 != expected || expected == 0 {
        return Err(GeoError::MaskLength {
            len: mask.len(),
            width,
            height,
            expected,
        });
    }
    let pixels: Vec<u8> = mask.iter().map(|&v| if v != 0 { 255 } else { 0 }).collect();
    let failed = |e: tiff::TiffError| GeoError::Write(e.to_string());
    let mut encoder = TiffEncoder::new(writer)
        .map_err(failed)?
        .with_compression(Compression::Deflate(DeflateLevel::Balanced));
    let mut image = encoder.new_image::<Gray8>(width, height).map_err(failed)?;
    let directory = image.encoder();
    if let Some(transform) = georef.transform {
        match transform_tags(&transform) {
            TransformTags::ScaleAndTiepoint { scale, tiepoint } => {
                directory
                    .write_tag(Tag::ModelPixelScaleTag, &scale[..])
                    .map_err(failed)?;
                directory
                    .write_tag(Tag::ModelTiepointTag, &tiepoint[..])
                    .map_err(failed)?;
            }
            TransformTags::Matrix(matrix) => {
                directory
                    .write_tag(Tag::ModelTransformationTag, &matrix[..])
                    .map_err(failed)?;
            }
        }
    }
    if let Some(keys) = &georef.geokeys {
        // The transform written is the PixelIsArea one.
        let (keys, doubles, ascii) = keys.tag_values(RasterType::PixelIsArea);
        directory
            .write_tag(Tag::GeoKeyDirectoryTag, &keys[..])
            .map_err(failed)?;
        if !doubles.is_empty() {
            directory.write_tag(Tag::GeoDoubleParamsTag, doubles).map_err(failed)?;
        }
        if !ascii.is_empty() {
            directory.write_tag(Tag::GeoAsciiParamsTag, ascii).map_err(failed)?;
        }
    }
    image.write_data(&pixels).map_err(failed)
}

enum TransformTags {
    ScaleAndTiepoint { scale: [f64; 3], tiepoint: [f64; 6] },
    Matrix([f64; 16]),
}

fn transform_tags(t: &GeoTransform) -> TransformTags {
    let [c0, c1, c2, c3, c4, c5] = t.0;
    if t.is_north_up() {
        return TransformTags::ScaleAndTiepoint {
            scale: [c1, -c5, 0.0],
            tiepoint: [0.0, 0.0, 0.0, c0, c3, 0.0],
        };
    }
    #[rustfmt::skip]
    let matrix = [
        c1, c2, 0.0, c0,
        c4, c5, 0.0, c3,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.0,
    ];
    TransformTags::Matrix(matrix)
}
