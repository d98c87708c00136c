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

    /// The pixel box `[x0, y0, x1, y1]` (x0 <= x1, y0 <= y1) around the map
    /// box with corners `(x0, y0)` and `(x1, y1)`: rows run down while map y
    /// runs up, so the corners swap; a rotated transform gives the bounding
    /// box of the four mapped corners.
    pub fn pixel_box_from_map(&self, [x0, y0, x1, y1]: [f64; 4]) -> GeoResult<[f64; 4]> {
        let t = self.require_transform("map coordinates")?;
        let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| t.pixel_from_map(x, y));
        let cols = corners.map(|c| c.0);
        let rows = corners.map(|c| c.1);
        let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
        let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
        Ok([min(cols), min(rows), max(cols), max(rows)])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn north_up() -> Georef {
        Georef {
            transform: Some(GeoTransform::new([500_000.0, 10.0, 0.0, 4_100_000.0, 0.0, -10.0]).unwrap()),
            crs: Some(Crs {
                kind: CrsKind::Projected,
                epsg: Some(32633),
            }),
            geokeys: None,
        }
    }

    #[test]
    fn map_box_becomes_an_ordered_pixel_box() {
        let g = north_up();
        // Map y grows north, rows grow south: the corners swap.
        let b = g
            .pixel_box_from_map([500_010.0, 4_099_900.0, 500_050.0, 4_099_980.0])
            .unwrap();
        assert_eq!(b, [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(g.pixel_from_map(500_015.0, 4_099_995.0).unwrap(), (1.5, 0.5));
        assert_eq!(g.map_from_pixel(1.5, 0.5).unwrap(), (500_015.0, 4_099_995.0));
    }

    #[test]
    fn areas_only_for_projected_crs_and_windows_shift_the_origin() {
        let g = north_up();
        assert_eq!(g.area_of(3), Some(300.0));
        let geographic = Georef {
            crs: Some(Crs {
                kind: CrsKind::Geographic,
                epsg: Some(4326),
            }),
            ..north_up()
        };
        assert_eq!(geographic.area_of(3), None);
        assert_eq!(Georef::default().area_of(3), None);
        let w = g.window(100, 50);
        assert_eq!(w.transform.unwrap().0, [501_000.0, 10.0, 0.0, 4_099_500.0, 0.0, -10.0]);
        assert_eq!(w.epsg(), Some(32633));
    }

    #[test]
    fn no_transform_is_an_error_naming_the_request() {
        let e = Georef::default().pixel_box_from_map([0.0; 4]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("map coordinates: the raster has no georeferencing"),
            "{e}"
        );
        assert!(matches!(e, GeoError::NotGeoreferenced(_)) && e.is_client_error());
    }
}
