//! Map coordinates to WGS 84 longitude / latitude (RFC 7946 order) through
//! `proj4rs` (a Rust port of PROJ's projections) with the EPSG definitions
//! of `crs-definitions`. Vertices are transformed one by one; edges are not
//! densified: a polygon edge is a pixel edge (metres long), far below the
//! scale where the straight line in lon / lat departs from the projected one.

use proj4rs::adaptors::transform_vertex_2d;
use proj4rs::Proj;

use super::error::{GeoError, GeoResult};
use super::geokeys::{Crs, CrsKind};

/// EPSG code of WGS 84 geographic coordinates.
pub const WGS84: u16 = 4326;

/// A transform from one CRS to WGS 84 degrees.
pub struct ToWgs84 {
    /// `None` when the source already is EPSG:4326 (the identity).
    projs: Option<(Proj, Proj)>,
    /// Whether the source takes degrees (geographic) rather than lengths.
    source_is_geographic: bool,
}

impl ToWgs84 {
    /// The transform from `crs` (the raster's), which must name an EPSG
    /// code that `crs-definitions` knows and `proj4rs` implements.
    pub fn new(crs: Option<Crs>) -> GeoResult<ToWgs84> {
        let crs = crs.ok_or_else(|| {
            GeoError::UnsupportedCrs("the raster names no CRS (no GeoKey directory), so it cannot go to WGS 84".into())
        })?;
        let code = crs.epsg.ok_or_else(|| {
            GeoError::UnsupportedCrs(
                "the raster's CRS is user-defined (no EPSG code), so it cannot go to WGS 84".into(),
            )
        })?;
        if code == WGS84 {
            return Ok(ToWgs84 {
                projs: None,
                source_is_geographic: true,
            });
        }
        let source = Proj::from_epsg_code(code).map_err(|e| match e {
            proj4rs::errors::Error::ProjectionNotFound => {
                GeoError::UnsupportedCrs(format!("EPSG:{code} is not in the known CRS definitions"))
            }
            other => GeoError::UnsupportedCrs(format!("EPSG:{code}: {other}")),
        })?;
        let target = Proj::from_epsg_code(WGS84).map_err(|e| GeoError::UnsupportedCrs(format!("EPSG:4326: {e}")))?;
        Ok(ToWgs84 {
            projs: Some((source, target)),
            source_is_geographic: crs.kind == CrsKind::Geographic,
        })
    }

    /// `(longitude, latitude)` in degrees of the map point `(x, y)`.
    pub fn transform(&self, x: f64, y: f64) -> GeoResult<(f64, f64)> {
        let Some((source, target)) = &self.projs else {
            return Ok((x, y));
        };
        // proj4rs takes and gives geographic coordinates in radians.
        let input = if self.source_is_geographic {
            (x.to_radians(), y.to_radians())
        } else {
            (x, y)
        };
        let (lon, lat) = transform_vertex_2d(source, target, input).map_err(|e| GeoError::Reprojection {
            x,
            y,
            reason: e.to_string(),
        })?;
        let (lon, lat) = (lon.to_degrees(), lat.to_degrees());
        if !(lon.is_finite() && lat.is_finite()) {
            return Err(GeoError::Reprojection {
                x,
                y,
                reason: "the point has no finite longitude / latitude".into(),
            });
        }
        Ok((lon, lat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projected(code: u16) -> Option<Crs> {
        Some(Crs {
            kind: CrsKind::Projected,
            epsg: Some(code),
        })
    }

    #[test]
    fn web_mercator_origin_and_a_known_point() {
        let t = ToWgs84::new(projected(3857)).unwrap();
        assert_eq!(t.transform(0.0, 0.0).unwrap(), (0.0, 0.0));
        // 180 degrees east is x = pi * 6378137.
        let (lon, lat) = t.transform(std::f64::consts::PI * 6_378_137.0, 0.0).unwrap();
        assert!((lon - 180.0).abs() < 1e-9 && lat.abs() < 1e-9, "{lon} {lat}");
    }

    #[test]
    fn utm_central_meridian_on_the_equator() {
        // UTM 33N's false easting (500 km) lies on its central meridian, 15 E.
        let (lon, lat) = ToWgs84::new(projected(32633))
            .unwrap()
            .transform(500_000.0, 0.0)
            .unwrap();
        assert!((lon - 15.0).abs() < 1e-12 && lat.abs() < 1e-12, "{lon} {lat}");
        // UTM 33S's false northing (10,000 km) is the equator.
        let (lon, lat) = ToWgs84::new(projected(32733))
            .unwrap()
            .transform(500_000.0, 10_000_000.0)
            .unwrap();
        assert!((lon - 15.0).abs() < 1e-12 && lat.abs() < 1e-9, "{lon} {lat}");
    }

    #[test]
    fn wgs84_is_the_identity() {
        let crs = Some(Crs {
            kind: CrsKind::Geographic,
            epsg: Some(4326),
        });
        assert_eq!(
            ToWgs84::new(crs).unwrap().transform(12.5, -3.25).unwrap(),
            (12.5, -3.25)
        );
    }

    #[test]
    fn unknown_crs_are_errors() {
        let e = ToWgs84::new(None).err().unwrap();
        assert!(e.to_string().contains("names no CRS"), "{e}");
        let user = Some(Crs {
            kind: CrsKind::Projected,
            epsg: None,
        });
        assert!(ToWgs84::new(user).err().unwrap().to_string().contains("user-defined"));
        let e = ToWgs84::new(projected(1)).err().unwrap();
        assert!(
            e.to_string().contains("EPSG:1 is not in the known CRS definitions"),
            "{e}"
        );
    }
}
