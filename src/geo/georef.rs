//! Where a raster lies on Earth: its affine transform and CRS, read from the
//! GeoTIFF tags the way GDAL reads them, and the map <-> pixel conversions
//! prompts in map coordinates need.

use std::io::{Read, Seek};

use tiff::decoder::Decoder;
use tiff::tags::Tag;

use super::error::{GeoError, GeoResult};
use super::geokeys::{Crs, CrsKind, GeoKeyDirectory, RasterType};
use super::transform::GeoTransform;

/// A raster's georeferencing. `transform` is `None` for a plain image (which
/// then keeps pixel coordinates everywhere).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Georef {
    /// Pixel corner -> map, in GDAL's PixelIsArea convention (a PixelIsPoint
    /// file's transform is shifted half a pixel on reading, as GDAL does).
    pub transform: Option<GeoTransform>,
    /// The CRS the GeoKeys name, if any.
    pub crs: Option<Crs>,
    /// The GeoKey directory as read, written again into mask GeoTIFFs.
    pub(crate) geokeys: Option<GeoKeyDirectory>,
}

impl Georef {
    /// Whether map coordinates exist (the raster has an affine transform).
    pub fn is_georeferenced(&self) -> bool {
        self.transform.is_some()
    }

    /// The CRS's EPSG code, if the GeoKeys name one.
    pub fn epsg(&self) -> Option<u16> {
        self.crs.and_then(|c| c.epsg)
    }

    /// Whether the CRS is a projected one (map units are lengths).
    pub fn is_projected(&self) -> bool {
        matches!(
            self.crs,
            Some(Crs {
                kind: CrsKind::Projected,
                ..
            })
        )
    }

    /// The affine transform, or the error a map-coordinate request gets on a
    /// raster without one (`what` names the request).
    pub fn require_transform(&self, what: &'static str) -> GeoResult<GeoTransform> {
        self.transform.ok_or(GeoError::NotGeoreferenced(what))
    }

    /// Pixel position `(col, row)` (continuous, corner-based: the centre of
    /// the top-left pixel is `(0.5, 0.5)`) of the map point `(x, y)`.
    pub fn pixel_from_map(&self, x: f64, y: f64) -> GeoResult<(f64, f64)> {
        Ok(self.require_transform("map coordinates")?.pixel_from_map(x, y))
    }

    /// Map coordinates of the pixel position `(col, row)`.
    pub fn map_from_pixel(&self, col: f64, row: f64) -> GeoResult<(f64, f64)> {
        Ok(self.require_transform("map coordinates")?.map_from_pixel(col, row))
    }

    /// The georeferencing of the window whose top-left pixel is `(col, row)`.
    pub fn window(&self, col: u32, row: u32) -> Georef {
        Georef {
            transform: self.transform.map(|t| t.shifted(f64::from(col), f64::from(row))),
            ..self.clone()
        }
    }

    /// The map area of `pixels` pixels in the CRS's units squared, when the
    /// CRS is projected (degrees squared mean nothing).
    pub fn area_of(&self, pixels: u64) -> Option<f64> {
        let transform = self.transform.filter(|_| self.is_projected())?;
        Some(transform.pixel_area() * pixels as f64)
    }
}

/// Reads the georeferencing tags of the decoder's current image.
pub(super) fn read_georef<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<Georef> {
    let geokeys = read_geokeys(decoder)?;
    let raster_type = match &geokeys {
        Some(keys) => keys.raster_type()?,
        None => RasterType::PixelIsArea,
    };
    let transform = read_transform(decoder)?.map(|t| match raster_type {
        RasterType::PixelIsArea => t,
        RasterType::PixelIsPoint => t.point_to_area(),
    });
    Ok(Georef {
        transform,
        crs: geokeys.as_ref().and_then(GeoKeyDirectory::crs),
        geokeys,
    })
}

fn read_geokeys<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<Option<GeoKeyDirectory>> {
    let bad = |tag: &str, e: tiff::TiffError| GeoError::GeoKeys(format!("{tag}: {e}"));
    let Some(directory) = decoder
        .find_tag(Tag::GeoKeyDirectoryTag)
        .map_err(|e| bad("reading", e))?
    else {
        return Ok(None);
    };
    let directory = directory
        .into_u16_vec()
        .map_err(|e| bad("not a list of SHORT values", e))?;
    let doubles = match decoder.find_tag(Tag::GeoDoubleParamsTag) {
        Ok(Some(v)) => v.into_f64_vec().map_err(|e| bad("GeoDoubleParams (34736)", e))?,
        Ok(None) => Vec::new(),
        Err(e) => return Err(bad("GeoDoubleParams (34736)", e)),
    };
    let ascii = match decoder.find_tag(Tag::GeoAsciiParamsTag) {
        Ok(Some(v)) => v.into_string().map_err(|e| bad("GeoAsciiParams (34737)", e))?,
        Ok(None) => String::new(),
        Err(e) => return Err(bad("GeoAsciiParams (34737)", e)),
    };
    GeoKeyDirectory::parse(&directory, &doubles, &ascii).map(Some)
}

fn read_doubles<R: Read + Seek>(decoder: &mut Decoder<R>, tag: Tag, name: &str) -> GeoResult<Option<Vec<f64>>> {
    let bad = |e: tiff::TiffError| GeoError::Georeferencing(format!("{name}: {e}"));
    match decoder.find_tag(tag).map_err(bad)? {
        Some(value) => value.into_f64_vec().map(Some).map_err(bad),
        None => Ok(None),
    }
}

/// GDAL's order of preference: pixel scale + first tie point, else the
/// transformation matrix. Several tie points without a scale are ground
/// control points, which have no affine transform (GDAL reports them as
/// GCPs); such a raster is read as not georeferenced.
fn read_transform<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<Option<GeoTransform>> {
    let scale = read_doubles(decoder, Tag::ModelPixelScaleTag, "ModelPixelScale (33550)")?;
    let tiepoints = read_doubles(decoder, Tag::ModelTiepointTag, "ModelTiepoint (33922)")?;
    let matrix = read_doubles(decoder, Tag::ModelTransformationTag, "ModelTransformation (34264)")?;
    match (scale, tiepoints, matrix) {
        (Some(scale), Some(tiepoints), _) => GeoTransform::from_scale_and_tiepoint(&scale, &tiepoints).map(Some),
        (_, _, Some(matrix)) => GeoTransform::from_model_transformation(&matrix).map(Some),
        (None, Some(tiepoints), None) if tiepoints.len() > 6 => {
            tracing::warn!(
                points = tiepoints.len() / 6,
                "GeoTIFF georeferenced by ground control points only: read as not georeferenced"
            );
            Ok(None)
        }
        (Some(_), None, None) => Err(GeoError::Georeferencing(
            "ModelPixelScale (33550) without a ModelTiepoint (33922)".into(),
        )),
        (None, Some(_), None) => Err(GeoError::Georeferencing(
            "ModelTiepoint (33922) without a ModelPixelScale (33550)".into(),
        )),
        (None, None, None) => Ok(None),
    }
}
