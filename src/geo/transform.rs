//! The affine pixel -> map transform of a georeferenced raster, in GDAL's
//! geotransform order, built from the GeoTIFF tags the way GDAL builds it.
//!
//! Pixel coordinates are continuous and corner-based: `(0, 0)` is the top-left
//! corner of the top-left pixel, `(0.5, 0.5)` its centre (GDAL's convention).

use serde::Serialize;

use super::error::{GeoError, GeoResult};

/// `[c0, c1, c2, c3, c4, c5]` with `x = c0 + col * c1 + row * c2` and
/// `y = c3 + col * c4 + row * c5` (GDAL's `GetGeoTransform`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// Checks that the coefficients are finite and invertible.
    pub fn new(coefficients: [f64; 6]) -> GeoResult<GeoTransform> {
        if coefficients.iter().any(|c| !c.is_finite()) {
            return Err(GeoError::Georeferencing(format!(
                "the transform {coefficients:?} has a non-finite coefficient"
            )));
        }
        let transform = GeoTransform(coefficients);
        if transform.determinant() == 0.0 {
            return Err(GeoError::Georeferencing(format!(
                "the transform {coefficients:?} is singular (a zero pixel size or collinear axes)"
            )));
        }
        Ok(transform)
    }

    /// From ModelPixelScale `(sx, sy, sz)` and the first ModelTiepoint
    /// `(i, j, k, x, y, z)`: raster point `(i, j)` sits at map `(x, y)`, and
    /// rows go down the map (`c5 = -sy`), as GDAL reads these tags.
    pub fn from_scale_and_tiepoint(scale: &[f64], tiepoint: &[f64]) -> GeoResult<GeoTransform> {
        if scale.len() < 2 {
            return Err(GeoError::Georeferencing(format!(
                "ModelPixelScale (33550) has {} values, expected 3",
                scale.len()
            )));
        }
        if tiepoint.len() < 6 {
            return Err(GeoError::Georeferencing(format!(
                "ModelTiepoint (33922) has {} values, expected a multiple of 6",
                tiepoint.len()
            )));
        }
        let (sx, sy) = (scale[0], scale[1]);
        let (i, j, x, y) = (tiepoint[0], tiepoint[1], tiepoint[3], tiepoint[4]);
        GeoTransform::new([x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy])
    }

    /// From ModelTransformation: a row-major 4 x 4 matrix taking
    /// `(col, row, 0, 1)` to `(x, y, z, 1)`.
    pub fn from_model_transformation(matrix: &[f64]) -> GeoResult<GeoTransform> {
        if matrix.len() != 16 {
            return Err(GeoError::Georeferencing(format!(
                "ModelTransformation (34264) has {} values, expected 16",
                matrix.len()
            )));
        }
        let m = matrix;
        GeoTransform::new([m[3], m[0], m[1], m[7], m[4], m[5]])
    }

    /// The transform of a PixelIsPoint raster moved to GDAL's PixelIsArea
    /// convention: the tags place pixel *centres*, so the corner `(0, 0)` lies
    /// half a pixel up and left (GDAL's default, `GTIFF_POINT_GEO_IGNORE=NO`).
    pub fn point_to_area(self) -> GeoTransform {
        let [c0, c1, c2, c3, c4, c5] = self.0;
        GeoTransform([c0 - 0.5 * c1 - 0.5 * c2, c1, c2, c3 - 0.5 * c4 - 0.5 * c5, c4, c5])
    }

    /// The transform of the window whose top-left pixel is `(col, row)`.
    pub fn shifted(self, col: f64, row: f64) -> GeoTransform {
        let (x, y) = self.map_from_pixel(col, row);
        let [_, c1, c2, _, c4, c5] = self.0;
        GeoTransform([x, c1, c2, y, c4, c5])
    }

    /// Map coordinates of the pixel position `(col, row)`.
    pub fn map_from_pixel(&self, col: f64, row: f64) -> (f64, f64) {
        let [c0, c1, c2, c3, c4, c5] = self.0;
        (c0 + col * c1 + row * c2, c3 + col * c4 + row * c5)
    }

    /// Pixel position `(col, row)` of the map coordinates `(x, y)`, through
    /// the inverse transform.
    pub fn pixel_from_map(&self, x: f64, y: f64) -> (f64, f64) {
        let [c0, c1, c2, c3, c4, c5] = self.0;
        let (dx, dy) = (x - c0, y - c3);
        if c2 == 0.0 && c4 == 0.0 {
            // North-up: one division per axis, exact for pixel-aligned input.
            return (dx / c1, dy / c5);
        }
        let det = self.determinant();
        ((c5 * dx - c2 * dy) / det, (c1 * dy - c4 * dx) / det)
    }

    /// `c1 * c5 - c2 * c4`: the signed map area of one pixel.
    pub fn determinant(&self) -> f64 {
        let [_, c1, c2, _, c4, c5] = self.0;
        c1 * c5 - c2 * c4
    }

    /// Map area of one pixel, in the CRS's units squared.
    pub fn pixel_area(&self) -> f64 {
        self.determinant().abs()
    }

    /// Whether the pixel axes are parallel to the map axes with rows going
    /// down the map (no rotation, positive column step, negative row step).
    pub fn is_north_up(&self) -> bool {
        let [_, c1, c2, _, c4, c5] = self.0;
        c2 == 0.0 && c4 == 0.0 && c1 > 0.0 && c5 < 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_and_tiepoint_give_gdal_order() {
        let t =
            GeoTransform::from_scale_and_tiepoint(&[10.0, 20.0, 0.0], &[0.0, 0.0, 0.0, 500_000.0, 4_000_000.0, 0.0])
                .unwrap();
        assert_eq!(t.0, [500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -20.0]);
        // A tie point at raster (2, 3) moves the origin by 2 columns, 3 rows.
        let t = GeoTransform::from_scale_and_tiepoint(&[10.0, 20.0, 0.0], &[2.0, 3.0, 0.0, 100.0, 200.0, 0.0]).unwrap();
        assert_eq!(t.0, [80.0, 10.0, 0.0, 260.0, 0.0, -20.0]);
        assert_eq!(t.map_from_pixel(2.0, 3.0), (100.0, 200.0));
    }

    #[test]
    fn model_transformation_is_read_row_major() {
        #[rustfmt::skip]
        let m = [
            2.0, 0.5, 0.0, 100.0,
            0.25, -3.0, 0.0, 50.0,
            0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 1.0,
        ];
        let t = GeoTransform::from_model_transformation(&m).unwrap();
        assert_eq!(t.0, [100.0, 2.0, 0.5, 50.0, 0.25, -3.0]);
        assert!(!t.is_north_up());
        let (x, y) = t.map_from_pixel(3.0, 4.0);
        assert_eq!((x, y), (100.0 + 6.0 + 2.0, 50.0 + 0.75 - 12.0));
        let (col, row) = t.pixel_from_map(x, y);
        assert!((col - 3.0).abs() < 1e-12 && (row - 4.0).abs() < 1e-12, "{col} {row}");
    }

    #[test]
    fn pixel_is_point_moves_half_a_pixel_up_left() {
        let t = GeoTransform::new([1000.0, 10.0, 0.0, 2000.0, 0.0, -10.0])
            .unwrap()
            .point_to_area();
        assert_eq!(t.0, [995.0, 10.0, 0.0, 2005.0, 0.0, -10.0]);
    }

    #[test]
    fn inverse_of_north_up_is_exact() {
        let t = GeoTransform::new([440_720.0, 60.0, 0.0, 3_751_320.0, 0.0, -60.0]).unwrap();
        assert!(t.is_north_up());
        assert_eq!(
            t.pixel_from_map(440_720.0 + 60.0 * 7.5, 3_751_320.0 - 60.0 * 2.25),
            (7.5, 2.25)
        );
        assert_eq!(t.pixel_area(), 3600.0);
        assert_eq!(t.shifted(10.0, 20.0).0, [441_320.0, 60.0, 0.0, 3_750_120.0, 0.0, -60.0]);
    }

    #[test]
    fn bad_tags_are_errors_naming_the_tag() {
        let e = GeoTransform::from_scale_and_tiepoint(&[0.0, 1.0, 0.0], &[0.0; 6]).unwrap_err();
        assert!(e.to_string().contains("singular"), "{e}");
        let e = GeoTransform::from_scale_and_tiepoint(&[1.0], &[0.0; 6]).unwrap_err();
        assert!(e.to_string().contains("ModelPixelScale (33550) has 1 values"), "{e}");
        let e = GeoTransform::from_scale_and_tiepoint(&[1.0, 1.0, 0.0], &[0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("ModelTiepoint (33922)"), "{e}");
        let e = GeoTransform::from_model_transformation(&[1.0; 12]).unwrap_err();
        assert!(
            e.to_string().contains("ModelTransformation (34264) has 12 values"),
            "{e}"
        );
        let e = GeoTransform::new([f64::NAN, 1.0, 0.0, 0.0, 0.0, -1.0]).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
    }
}
