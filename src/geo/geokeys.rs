//! The GeoKey directory (GeoTIFF tags 34735 / 34736 / 34737): parsed strictly,
//! so a directory that does not hold together is an error naming the
//! problem, and kept whole, so the mask GeoTIFF can carry the same keys.
//!
//! Hand-written rather than taken from the `geotiff` crate: version 0.1 is
//! built on `tiff` 0.9 (a second TIFF decoder beside the 0.11 we read with),
//! only reads a directory through its own whole-image decoder, rejects any
//! key id it does not know, and panics on a zero-length ASCII key.

use super::error::{GeoError, GeoResult};

pub const GEO_KEY_DIRECTORY_TAG: u16 = 34735;
pub const GEO_DOUBLE_PARAMS_TAG: u16 = 34736;
pub const GEO_ASCII_PARAMS_TAG: u16 = 34737;

const GT_MODEL_TYPE: u16 = 1024;
const GT_RASTER_TYPE: u16 = 1025;
const GEOGRAPHIC_TYPE: u16 = 2048;
const PROJECTED_CS_TYPE: u16 = 3072;

const MODEL_TYPE_PROJECTED: u16 = 1;
const MODEL_TYPE_GEOGRAPHIC: u16 = 2;
/// "User-defined": the CRS is described by other keys, not by a code.
const USER_DEFINED: u16 = 32767;

/// How the georeferencing tags place the raster (GTRasterTypeGeoKey).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RasterType {
    /// The tags place pixel corners (the GeoTIFF default).
    PixelIsArea,
    /// The tags place pixel centres.
    PixelIsPoint,
}

/// Whether the CRS is projected (metres, feet) or geographic (degrees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrsKind {
    Projected,
    Geographic,
}

/// The raster's coordinate reference system as the GeoKeys name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crs {
    pub kind: CrsKind,
    /// The EPSG code (ProjectedCSTypeGeoKey or GeographicTypeGeoKey); `None`
    /// for a user-defined CRS.
    pub epsg: Option<u16>,
}

/// One key: `(KeyID, TIFFTagLocation, Count, Value_Offset)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GeoKey {
    id: u16,
    location: u16,
    count: u16,
    value: u16,
}

/// A parsed GeoKey directory with its parameter tags.
#[derive(Clone, Debug, PartialEq)]
pub struct GeoKeyDirectory {
    directory: Vec<u16>,
    doubles: Vec<f64>,
    ascii: String,
    keys: Vec<GeoKey>,
}

impl GeoKeyDirectory {
    /// Parses tag 34735 (`directory`) with 34736 (`doubles`) and 34737
    /// (`ascii`, empty when absent), checking the header, the key count and
    /// that every key's value lies inside the tag it points to.
    pub fn parse(directory: &[u16], doubles: &[f64], ascii: &str) -> GeoResult<GeoKeyDirectory> {
        let bad = |reason: String| Err(GeoError::GeoKeys(reason));
        let Some(&[version, _revision, _minor, count]) = directory.get(..4) else {
            return bad(format!("{} values, fewer than the 4 of its header", directory.len()));
        };
        if version != 1 {
            return bad(format!("KeyDirectoryVersion is {version}, expected 1"));
        }
        let needed = 4 + 4 * usize::from(count);
        if directory.len() < needed {
            return bad(format!(
                "the header declares {count} keys ({needed} values) but the tag holds {} values",
                directory.len()
            ));
        }
        let keys: Vec<GeoKey> = directory[4..needed]
            .chunks_exact(4)
            .map(|k| GeoKey {
                id: k[0],
                location: k[1],
                count: k[2],
                value: k[3],
            })
            .collect();
        for key in &keys {
            let end = usize::from(key.value) + usize::from(key.count);
            let (name, len) = match key.location {
                0 if key.count == 1 => continue,
                0 => return bad(format!("key {} stores {} values inline, expected 1", key.id, key.count)),
                GEO_DOUBLE_PARAMS_TAG => ("GeoDoubleParams (34736)", doubles.len()),
                GEO_ASCII_PARAMS_TAG => ("GeoAsciiParams (34737)", ascii.len()),
                GEO_KEY_DIRECTORY_TAG => ("the GeoKey directory", directory.len()),
                other => {
                    return bad(format!(
                        "key {} points to tag {other}, which holds no GeoKey values",
                        key.id
                    ))
                }
            };
            if end > len {
                return bad(format!(
                    "key {} reads values {}..{end} of {name}, which holds {len}",
                    key.id, key.value
                ));
            }
        }
        Ok(GeoKeyDirectory {
            directory: directory.to_vec(),
            doubles: doubles.to_vec(),
            ascii: ascii.to_string(),
            keys,
        })
    }

    /// The value of a key stored inline (a SHORT), if present.
    fn short(&self, id: u16) -> Option<u16> {
        self.keys
            .iter()
            .find(|k| k.id == id && k.location == 0)
            .map(|k| k.value)
    }

    /// GTRasterTypeGeoKey; PixelIsArea when absent, as the standard says.
    pub fn raster_type(&self) -> GeoResult<RasterType> {
        match self.short(GT_RASTER_TYPE) {
            None | Some(1) => Ok(RasterType::PixelIsArea),
            Some(2) => Ok(RasterType::PixelIsPoint),
            Some(other) => Err(GeoError::GeoKeys(format!(
                "GTRasterTypeGeoKey (1025) is {other}, expected 1 (PixelIsArea) or 2 (PixelIsPoint)"
            ))),
        }
    }

    /// The CRS: the projected code if there is one, else the geographic one;
    /// `None` when the keys name neither (and GTModelTypeGeoKey says nothing).
    pub fn crs(&self) -> Option<Crs> {
        let code = |v: u16| (v != 0 && v != USER_DEFINED).then_some(v);
        let model = self.short(GT_MODEL_TYPE);
        if let Some(v) = self.short(PROJECTED_CS_TYPE) {
            return Some(Crs {
                kind: CrsKind::Projected,
                epsg: code(v),
            });
        }
        if model == Some(MODEL_TYPE_PROJECTED) {
            return Some(Crs {
                kind: CrsKind::Projected,
                epsg: None,
            });
        }
        match (self.short(GEOGRAPHIC_TYPE), model) {
            (Some(v), _) => Some(Crs {
                kind: CrsKind::Geographic,
                epsg: code(v),
            }),
            (None, Some(MODEL_TYPE_GEOGRAPHIC)) => Some(Crs {
                kind: CrsKind::Geographic,
                epsg: None,
            }),
            _ => None,
        }
    }

    /// The three tag values to write this directory again, with
    /// GTRasterTypeGeoKey (if present) set to `raster_type`.
    pub fn tag_values(&self, raster_type: RasterType) -> (Vec<u16>, &[f64], &str) {
        let mut directory = self.directory.clone();
        let value = match raster_type {
            RasterType::PixelIsArea => 1,
            RasterType::PixelIsPoint => 2,
        };
        for (i, key) in self.keys.iter().enumerate() {
            if key.id == GT_RASTER_TYPE && key.location == 0 {
                directory[4 + 4 * i + 3] = value;
            }
        }
        (directory, &self.doubles, &self.ascii)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What GDAL writes for a north-up WGS 84 / UTM 33N raster.
    fn utm33n(raster_type: u16) -> Vec<u16> {
        vec![
            1,
            1,
            0,
            4, //
            1024,
            0,
            1,
            1, //
            1025,
            0,
            1,
            raster_type, //
            1026,
            34737,
            25,
            0, //
            3072,
            0,
            1,
            32633,
        ]
    }

    #[test]
    fn projected_code_and_raster_type() {
        let ascii = "WGS 84 / UTM zone 33N|";
        let keys = GeoKeyDirectory::parse(&utm33n(1), &[], &format!("{ascii}    ")).unwrap();
        assert_eq!(
            keys.crs(),
            Some(Crs {
                kind: CrsKind::Projected,
                epsg: Some(32633)
            })
        );
        assert_eq!(keys.raster_type().unwrap(), RasterType::PixelIsArea);
        let keys = GeoKeyDirectory::parse(&utm33n(2), &[], &" ".repeat(25)).unwrap();
        assert_eq!(keys.raster_type().unwrap(), RasterType::PixelIsPoint);
        // Writing back as PixelIsArea edits only that key's value.
        let (dir, _, _) = keys.tag_values(RasterType::PixelIsArea);
        assert_eq!(dir, utm33n(1));
    }

    #[test]
    fn geographic_and_user_defined() {
        let dir = [1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 4326];
        let keys = GeoKeyDirectory::parse(&dir, &[], "").unwrap();
        assert_eq!(
            keys.crs(),
            Some(Crs {
                kind: CrsKind::Geographic,
                epsg: Some(4326)
            })
        );
        let dir = [1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32767];
        let keys = GeoKeyDirectory::parse(&dir, &[], "").unwrap();
        assert_eq!(
            keys.crs(),
            Some(Crs {
                kind: CrsKind::Projected,
                epsg: None
            })
        );
        let dir = [1, 1, 0, 1, 1025, 0, 1, 1];
        assert_eq!(GeoKeyDirectory::parse(&dir, &[], "").unwrap().crs(), None);
    }

    #[test]
    fn double_and_ascii_keys_in_bounds() {
        // ProjLinearUnitSizeGeoKey (3077) as a double, a citation as ASCII.
        let dir = [1, 1, 0, 2, 1026, 34737, 4, 0, 3077, 34736, 1, 1];
        assert!(GeoKeyDirectory::parse(&dir, &[0.0, 0.3048], "abc|").is_ok());
        let e = GeoKeyDirectory::parse(&dir, &[0.3048], "abc|").unwrap_err();
        assert!(
            e.to_string()
                .contains("key 3077 reads values 1..2 of GeoDoubleParams (34736), which holds 1"),
            "{e}"
        );
        let e = GeoKeyDirectory::parse(&dir, &[0.0, 0.3048], "ab").unwrap_err();
        assert!(e.to_string().contains("GeoAsciiParams (34737)"), "{e}");
    }

    #[test]
    fn malformed_directories_are_errors_naming_the_problem() {
        let cases: [(&[u16], &str); 6] = [
            (&[1, 1], "2 values, fewer than the 4 of its header"),
            (&[2, 1, 0, 0], "KeyDirectoryVersion is 2, expected 1"),
            (
                &[1, 1, 0, 3, 1024, 0, 1, 1],
                "declares 3 keys (16 values) but the tag holds 8",
            ),
            (
                &[1, 1, 0, 1, 1024, 0, 2, 1],
                "key 1024 stores 2 values inline, expected 1",
            ),
            (&[1, 1, 0, 1, 1024, 33550, 1, 0], "key 1024 points to tag 33550"),
            (
                &[1, 1, 0, 1, 2049, 34737, 0, 9],
                "key 2049 reads values 9..9 of GeoAsciiParams (34737), which holds 0",
            ),
        ];
        for (dir, expected) in cases {
            let e = GeoKeyDirectory::parse(dir, &[], "").unwrap_err();
            assert!(e.to_string().contains(expected), "{dir:?}: {e}");
            assert!(e.to_string().starts_with("GeoKey directory (tag 34735)"), "{e}");
        }
        let dir = [1, 1, 0, 1, 1025, 0, 1, 7];
        let e = GeoKeyDirectory::parse(&dir, &[], "")
            .unwrap()
            .raster_type()
            .unwrap_err();
        assert!(e.to_string().contains("GTRasterTypeGeoKey (1025) is 7"), "{e}");
    }
}
