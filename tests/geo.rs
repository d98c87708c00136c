//! Tests for `rsam::geo` on the GDAL-written fixtures of `tests/fixtures/geo`
//! (made by `tests/geo/make_fixtures.py`; pixel values follow a formula
//! recomputed here, georeferencing as GDAL reads it is in `expected.json`):
//! every layout, compression and sample type, windows, band selection, the
//! RGB stretch, the mask GeoTIFF and GeoJSON round trips, and every error.
//! The comparisons against GDAL itself run in `tests/geo/test_gdal.py`.

use std::io::Cursor;
use std::path::PathBuf;

use rsam::geo::{
    feature_collection, mask_geotiff_bytes, read_rgb_from_bytes, read_rgb_from_path, BandData, BandMapping, BandStack,
    GeoError, GeoRaster, MaskFeature, OutputCrs, ReadOptions, Stretch, Window,
};
use serde_json::Value;
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(format!("{name}.tif"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture formula: value(x, y, band) = f_type((x + W * y) * 3 + band).
fn formula(kind: &str, x: u32, y: u32, band: u16, width: u32) -> f64 {
    let v = i64::from((x + width * y) * 3) + i64::from(band);
    match kind {
        "u8" => (v % 256) as f64,
        "u16" => (v * 25) as f64,
        "i16" => (v * 10 - 12000) as f64,
        "u32" => (v * 1_000_003) as f64,
        "i32" => (v * -100_003) as f64,
        "f32" => v as f64 * 0.5 - 300.25,
        "f64" => v as f64 * 1e-3 - 1.5,
        other => panic!("unknown type {other}"),
    }
}

fn as_f64(stack: &BandStack) -> Vec<Vec<f64>> {
    fn conv<T: Copy + Into<f64>>(bands: &[Vec<T>]) -> Vec<Vec<f64>> {
        bands.iter().map(|b| b.iter().map(|&v| v.into()).collect()).collect()
    }
    match &stack.data {
        BandData::U8(b) => conv(b),
        BandData::U16(b) => conv(b),
        BandData::I16(b) => conv(b),
        BandData::U32(b) => conv(b),
        BandData::I32(b) => conv(b),
        BandData::F32(b) => conv(b),
        BandData::F64(b) => conv(b),
    }
}

fn assert_window(name: &str, kind: &str, stack: &BandStack, window: Window, width: u32) {
    let values = as_f64(stack);
    for (i, &band) in stack.bands.iter().enumerate() {
        for y in 0..window.height {
            for x in 0..window.width {
                let got = values[i][(y * window.width + x) as usize];
                let want = formula(kind, window.x + x, window.y + y, band, width);
                assert_eq!(got, want, "{name} band {band} at ({}, {})", window.x + x, window.y + y);
            }
        }
    }
}

#[test]
fn every_fixture_reads_as_gdal_wrote_it() {
    let expected = expected();
    let width = expected["width"].as_u64().unwrap() as u32;
    let height = expected["height"].as_u64().unwrap() as u32;
    let fixtures = expected["fixtures"].as_object().unwrap();
    assert_eq!(fixtures.len(), 13);
    for (name, want) in fixtures {
        let kind = want["type"].as_str().unwrap();
        let band_count = want["bands"].as_u64().unwrap() as u16;
        let bytes = fixture(name);
        let mut raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = raster.info().clone();
        assert_eq!(
            (info.width, info.height, info.band_count),
            (width, height, band_count),
            "{name}"
        );
        assert_eq!(serde_json::to_value(info.sample_type).unwrap(), kind, "{name}");
        if want["nodata_nan"].as_bool().unwrap() {
            assert!(info.nodata.unwrap().is_nan(), "{name}");
        } else {
            assert_eq!(info.nodata, want["nodata"].as_f64(), "{name}");
        }
        let georef = raster.georef().clone();
        match want["transform"].as_array() {
            Some(t) => {
                let t: Vec<f64> = t.iter().map(|v| v.as_f64().unwrap()).collect();
                assert_eq!(georef.transform.unwrap().0.to_vec(), t, "{name}");
            }
            None => assert!(!georef.is_georeferenced(), "{name}"),
        }
        assert_eq!(georef.epsg().map(u64::from), want["epsg"].as_u64(), "{name}");

        // The whole raster, every band in order (the fourth band of the RGB
        // + NIR file is refused, see below).
        let band_count = if name == "u16_rgb_nir_pixel" { 3 } else { band_count };
        let bands: Vec<u16> = (1..=band_count).collect();
        let full = raster.full_window();
        let stack = raster
            .read_window(full, &bands)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_window(name, kind, &stack, full, width);

        // A window across strip / tile borders, bands reversed and repeated.
        let window = Window {
            x: 5,
            y: 3,
            width: 20,
            height: 17,
        };
        let mut bands: Vec<u16> = (1..=band_count).rev().collect();
        bands.push(band_count);
        let stack = raster.read_window(window, &bands).unwrap();
        assert_eq!((stack.width, stack.height), (20, 17));
        assert_window(name, kind, &stack, window, width);
    }
}

#[test]
fn one_pixel_windows_at_the_corners() {
    let bytes = fixture("u16_tiled_deflate_pixel");
    let mut raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    for (x, y) in [(0, 0), (36, 0), (0, 22), (36, 22), (16, 16)] {
        let window = Window {
            x,
            y,
            width: 1,
            height: 1,
        };
        let stack = raster.read_window(window, &[4, 1]).unwrap();
        assert_window("corner", "u16", &stack, window, 37);
    }
}

#[test]
fn pixel_is_point_is_shifted_like_gdal() {
    // GDAL wrote the tie point of the pixel centre; it reads (and we read)
    // the corner-based transform it was given.
    let bytes = fixture("i16_striped_lzw_band");
    let raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    assert_eq!(
        raster.georef().transform.unwrap().0,
        [1_000_000.0, 30.0, 0.0, 6_000_000.0, 0.0, -30.0]
    );
}

#[test]
fn map_and_pixel_coordinates() {
    let bytes = fixture("u16_rotated");
    let raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let georef = raster.georef();
    let (x, y) = georef.map_from_pixel(10.5, 4.25).unwrap();
    assert_eq!(
        (x, y),
        (
            500_000.0 + 8.0 * 10.5 + 2.0 * 4.25,
            4_100_000.0 + 1.5 * 10.5 - 8.0 * 4.25
        )
    );
    let (col, row) = georef.pixel_from_map(x, y).unwrap();
    assert!((col - 10.5).abs() < 1e-9 && (row - 4.25).abs() < 1e-9, "{col} {row}");

    let bytes = fixture("u8_plain");
    let plain = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let e = plain.georef().pixel_from_map(1.0, 2.0).unwrap_err();
    assert!(matches!(e, GeoError::NotGeoreferenced(_)));
    assert_eq!(
        e.to_string(),
        "map coordinates: the raster has no georeferencing (no ModelPixelScale + ModelTiepoint or ModelTransformation tags)"
    );
}

#[test]
fn rgb_of_an_8_bit_raster_is_its_bands() {
    let bytes = fixture("u8_striped_packbits_rgb");
    let read = read_rgb_from_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(read.rendering.stretch, Stretch::None);
    assert_eq!(read.rendering.bands, [1, 2, 3]);
    for (i, px) in read.image.data.chunks(3).enumerate() {
        let (x, y) = (i as u32 % 37, i as u32 / 37);
        let want: Vec<u8> = (1..=3).map(|b| formula("u8", x, y, b, 37) as u8).collect();
        assert_eq!(px, &want[..], "pixel {x},{y}");
    }
    // One band is grey.
    let options = ReadOptions {
        bands: Some(vec![2]),
        ..ReadOptions::default()
    };
    let read = read_rgb_from_bytes(&bytes, &options).unwrap();
    assert!(read.image.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    assert_eq!(read.image.data[3 * 5], formula("u8", 5, 0, 2, 37) as u8);
}

/// numpy's percentile(method="lower"/"higher") by sorting, as an oracle.
fn oracle_limits(values: &[f64], nodata: f64) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|&x| x != nodata).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len() as f64;
    let lo = v[((n - 1.0) * 0.02).floor() as usize];
    let hi = v[((n - 1.0) * 0.98).ceil() as usize];
    (lo, hi)
}

#[test]
fn u16_bands_321_with_nodata_are_percentile_stretched() {
    let path = fixture_dir().join("u16_tiled_deflate_pixel.tif");
    let options = ReadOptions {
        bands: Some(vec![3, 2, 1]),
        ..ReadOptions::default()
    };
    let read = read_rgb_from_path(&path, &options).unwrap();
    assert_eq!(read.rendering.stretch, Stretch::Percentile);
    assert_eq!(read.info.nodata, Some(400.0));
    for (channel, band) in [3u16, 2, 1].into_iter().enumerate() {
        let values: Vec<f64> = (0..37 * 23).map(|i| formula("u16", i % 37, i / 37, band, 37)).collect();
        let (lo, hi) = oracle_limits(&values, 400.0);
        assert_eq!(read.rendering.mappings[channel], BandMapping::Linear { lo, hi });
        for (i, &v) in values.iter().enumerate() {
            let want = if v == 400.0 {
                0
            } else {
                ((v - lo) * 255.0 / (hi - lo) + 0.5).floor().clamp(0.0, 255.0) as u8
            };
            assert_eq!(read.image.data[i * 3 + channel], want, "band {band} pixel {i}");
        }
    }
    // Band 1 of pixel 5 is the nodata value 400 = 25 * (5 * 3 + 1).
    assert_eq!(read.image.data[5 * 3 + 2], 0);
}

#[test]
fn stretch_none_rejects_16_bit_values() {
    let bytes = fixture("u16_cog");
    let options = ReadOptions {
        stretch: Some(Stretch::None),
        ..ReadOptions::default()
    };
    let e = read_rgb_from_bytes(&bytes, &options).unwrap_err();
    assert!(matches!(e, GeoError::OutOfByteRange { band: 1, .. }), "{e}");
}

#[test]
fn extra_samples_of_an_rgb_pixel_interleaved_file() {
    let bytes = fixture("u16_rgb_nir_pixel");
    let mut raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let full = raster.full_window();
    let stack = raster.read_window(full, &[3, 1]).unwrap();
    assert_window("rgb_nir", "u16", &stack, full, 37);
    let e = raster.read_window(full, &[4]).unwrap_err();
    assert!(
        e.to_string()
            .contains("band 4 is an extra sample of a pixel-interleaved RGB TIFF, which the decoder drops"),
        "{e}"
    );
}

#[test]
fn mask_geotiff_round_trips_pixels_transform_and_crs() {
    for name in [
        "u16_tiled_deflate_pixel",
        "i16_striped_lzw_band",
        "u16_rotated",
        "u8_plain",
    ] {
        let bytes = fixture(name);
        let source = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
        let mask: Vec<u8> = (0..37 * 23).map(|i| u8::from(i % 7 < 3)).collect();
        let tiff = mask_geotiff_bytes(&mask, 37, 23, source.georef()).unwrap();
        let mut back = GeoRaster::from_bytes(&tiff, 1_000_000).unwrap();
        assert_eq!(back.info().band_count, 1);
        assert_eq!(back.georef().transform, source.georef().transform, "{name}");
        assert_eq!(back.georef().crs, source.georef().crs, "{name}");
        let full = back.full_window();
        let BandData::U8(bands) = back.read_window(full, &[1]).unwrap().data else {
            panic!("{name}: not u8");
        };
        let want: Vec<u8> = mask.iter().map(|&m| m * 255).collect();
        assert_eq!(bands[0], want, "{name}");
        // Deflate (Compression 8).
        let mut decoder = tiff::decoder::Decoder::new(Cursor::new(&tiff)).unwrap();
        assert_eq!(decoder.get_tag_u32(Tag::Compression).unwrap(), 8);
    }
    let e = mask_geotiff_bytes(&[1, 0], 2, 2, &Default::default()).unwrap_err();
    assert_eq!(e.to_string(), "mask holds 2 values, expected 2x2 = 4");
}

#[test]
fn geojson_of_a_fixture_in_its_crs() {
    let bytes = fixture("i16_striped_lzw_band");
    let raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let mut mask = vec![0u8; 37 * 23];
    mask[37 + 1] = 1; // pixel (1, 1)
    let feature = MaskFeature {
        mask: &mask,
        width: 37,
        height: 23,
        text: Some("a field"),
        result_id: Some("r1"),
        iou_prediction: 0.5,
        object_score_logit: -1.0,
        object_present: false,
    };
    let fc = feature_collection(std::slice::from_ref(&feature), raster.georef(), OutputCrs::Raster).unwrap();
    let json = serde_json::to_value(&fc).unwrap();
    assert_eq!(json["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::3857");
    let ring = &json["features"][0]["geometry"]["coordinates"][0];
    assert_eq!(ring[0], serde_json::json!([1_000_030.0, 5_999_940.0]));
    assert_eq!(json["features"][0]["properties"]["area"], 900.0);
    assert_eq!(json["features"][0]["properties"]["result_id"], "r1");
    let short = MaskFeature {
        mask: &mask[..10],
        ..feature
    };
    let e = feature_collection(&[short], raster.georef(), OutputCrs::Raster).unwrap_err();
    assert_eq!(e.to_string(), "mask holds 10 values, expected 37x23 = 851");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn open_err(bytes: &[u8], max_pixels: u64) -> GeoError {
    match GeoRaster::from_bytes(bytes, max_pixels) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn over_max_pixels_is_refused_from_the_header() {
    let e = open_err(&fixture("u16_cog"), 850);
    assert_eq!(
        e.to_string(),
        "raster is 37x23 = 851 pixels, over the limit of 850 pixels"
    );
}

#[test]
fn bands_and_windows_out_of_range() {
    let bytes = fixture("u16_tiled_deflate_pixel");
    let mut raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let full = raster.full_window();
    for band in [0, 5] {
        let e = raster.read_window(full, &[band]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("band {band} is out of range: the raster has 4 band(s), numbered from 1")
        );
    }
    assert!(matches!(raster.read_window(full, &[]), Err(GeoError::InvalidBands(_))));
    let outside = Window {
        x: 30,
        y: 0,
        width: 8,
        height: 1,
    };
    let e = raster.read_window(outside, &[1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "window at (30, 0) of 8x1 pixels does not lie inside the 37x23 raster"
    );
    let options = ReadOptions {
        bands: Some(vec![1, 2]),
        ..ReadOptions::default()
    };
    let e = read_rgb_from_bytes(&bytes, &options).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 bands given ([1, 2]): RGB needs 3 bands, or 1 for grey"),
        "{e}"
    );
}

#[test]
fn unsupported_compression_and_sample_format() {
    let e = open_err(&fixture("reject_zstd"), 1_000_000);
    assert_eq!(
        e.to_string(),
        "unsupported TIFF layout: ZSTD compression (Compression 50000); supported: none, deflate, LZW, PackBits"
    );
    let e = open_err(&fixture("reject_cint16"), 1_000_000);
    assert!(
        e.to_string()
            .starts_with("unsupported sample format: 32-bit complex integer samples (SampleFormat 5)"),
        "{e}"
    );
}

#[test]
fn not_a_tiff_and_truncated_tiffs() {
    let e = open_err(b"\x89PNG\r\n\x1a\n....", 100);
    assert!(matches!(e, GeoError::NotTiff(_)), "{e}");
    assert!(!rsam::geo::is_tiff(b"\x89PNG"));
    assert!(rsam::geo::is_tiff(&fixture("u8_plain")));

    // Cut inside the last tile: the header opens, the read fails.
    let bytes = fixture("i32_tiled_none");
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(&bytes)).unwrap();
    let last_tile = decoder
        .get_tag_u64_vec(Tag::TileOffsets)
        .unwrap()
        .into_iter()
        .max()
        .unwrap();
    let cut = &bytes[..last_tile as usize + 10];
    let mut raster = GeoRaster::from_bytes(cut, 1_000_000).unwrap();
    let full = raster.full_window();
    let e = raster.read_window(full, &[1, 2]).unwrap_err();
    assert!(matches!(e, GeoError::Truncated(_)), "{e}");
    assert!(e.to_string().starts_with("truncated TIFF: strip or tile "), "{e}");

    // Cut inside the header.
    let e = open_err(&bytes[..6], 1_000_000);
    assert!(matches!(e, GeoError::Truncated(_)), "{e}");
}

#[test]
fn no_truncation_or_corruption_panics() {
    for name in [
        "u16_cog",
        "f32_tiled_float_predictor_band",
        "i16_striped_lzw_band",
        "f64_striped_lzw_bigtiff",
    ] {
        let bytes = fixture(name);
        for len in (0..bytes.len()).step_by(37) {
            if let Ok(mut raster) = GeoRaster::from_bytes(&bytes[..len], 1_000_000) {
                let full = raster.full_window();
                let _ = raster.read_window(full, &[1]);
            }
        }
        for pos in (0..bytes.len()).step_by(53) {
            let mut corrupt = bytes.clone();
            corrupt[pos] ^= 0xA5;
            if let Ok(mut raster) = GeoRaster::from_bytes(&corrupt, 1_000_000) {
                let full = raster.full_window();
                let _ = raster.read_window(full, &[1]);
            }
        }
    }
}

/// Extra tags of a test TIFF.
#[derive(Default)]
struct Tags<'a> {
    geokeys: Option<&'a [u16]>,
    pixel_scale: Option<&'a [f64]>,
    nodata: Option<&'a str>,
}

/// A 4 x 2 u8 TIFF (values 0..8) with `tags`, written with the `tiff` encoder.
fn tiff_with(tags: Tags) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    {
        let mut encoder = TiffEncoder::new(&mut out).unwrap();
        let mut image = encoder.new_image::<colortype::Gray8>(4, 2).unwrap();
        let dir = image.encoder();
        if let Some(keys) = tags.geokeys {
            dir.write_tag(Tag::GeoKeyDirectoryTag, keys).unwrap();
        }
        if let Some(scale) = tags.pixel_scale {
            dir.write_tag(Tag::ModelPixelScaleTag, scale).unwrap();
        }
        if let Some(nodata) = tags.nodata {
            dir.write_tag(Tag::GdalNodata, nodata).unwrap();
        }
        image.write_data(&[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    }
    out.into_inner()
}

#[test]
fn bad_geokey_directory_is_an_error() {
    let bytes = tiff_with(Tags {
        geokeys: Some(&[1, 1, 0, 2, 1024, 0, 1, 1]),
        ..Tags::default()
    });
    let e = open_err(&bytes, 100);
    assert_eq!(
        e.to_string(),
        "GeoKey directory (tag 34735): the header declares 2 keys (12 values) but the tag holds 8 values"
    );
    let bytes = tiff_with(Tags {
        geokeys: Some(&[1, 1, 0, 1, 3072, 0, 1, 32633]),
        pixel_scale: Some(&[1.0, 1.0, 0.0]),
        ..Tags::default()
    });
    let e = open_err(&bytes, 100);
    assert_eq!(
        e.to_string(),
        "georeferencing tags: ModelPixelScale (33550) without a ModelTiepoint (33922)"
    );
    let bytes = tiff_with(Tags {
        nodata: Some("none"),
        ..Tags::default()
    });
    assert_eq!(
        open_err(&bytes, 100).to_string(),
        "GDAL_NODATA tag (42113): \"none\" is not a number"
    );
}

#[test]
fn unsupported_sample_types_written_by_the_tiff_crate() {
    let mut out = Cursor::new(Vec::new());
    TiffEncoder::new(&mut out)
        .unwrap()
        .write_image::<colortype::GrayI8>(2, 2, &[1, -1, 2, -2])
        .unwrap();
    let e = open_err(out.get_ref(), 100);
    assert!(e.to_string().contains("8-bit signed integer samples"), "{e}");
    let mut out = Cursor::new(Vec::new());
    TiffEncoder::new(&mut out)
        .unwrap()
        .write_image::<colortype::Gray64>(2, 2, &[1, 2, 3, 4])
        .unwrap();
    let e = open_err(out.get_ref(), 100);
    assert!(e.to_string().contains("64-bit unsigned integer samples"), "{e}");
}

#[test]
fn plain_tiff_works_as_an_image() {
    let bytes = tiff_with(Tags::default());
    let read = read_rgb_from_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert!(!read.georef.is_georeferenced());
    assert_eq!(read.image.width, 4);
    let grey: Vec<u8> = read.image.data.chunks(3).map(|p| p[0]).collect();
    assert_eq!(grey, [0, 1, 2, 3, 4, 5, 6, 7]);
}

/// A little-endian TIFF of one directory holding `entries` (tag, type, value;
/// type 3 SHORT or 4 LONG, one value each), then 256 zero bytes of pixel data.
fn handmade_tiff(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    b.extend(8u32.to_le_bytes());
    b.extend((entries.len() as u16).to_le_bytes());
    for &(tag, ty, value) in entries {
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        match ty {
            3 => b.extend([(value as u16).to_le_bytes(), [0, 0]].concat()),
            _ => b.extend(value.to_le_bytes()),
        }
    }
    b.extend(0u32.to_le_bytes());
    b.extend([0u8; 256]);
    b
}

/// A 16 x 16 u8 image in one tile of `tile` x `tile` pixels, compressed
/// with `compression`, claiming `byte_count` bytes of tile data (which
/// start right after the directory).
fn one_tile(tile: u32, compression: u32, photometric: u32, byte_count: u32) -> Vec<u8> {
    handmade_tiff(&[
        (256, 4, 16),
        (257, 4, 16),
        (258, 3, 8),
        (259, 3, compression),
        (262, 3, photometric),
        (277, 3, 1),
        (322, 4, tile),
        (323, 4, tile),
        (324, 4, 8 + 2 + 10 * 12 + 4),
        (325, 4, byte_count),
    ])
}

#[test]
fn handmade_header_reads_and_its_bombs_are_refused() {
    // The well-formed file decodes: a 16 x 16 tile of zeros.
    let bytes = one_tile(16, 1, 1, 256);
    let mut raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let full = raster.full_window();
    assert_eq!(
        raster.read_window(full, &[1]).unwrap().data,
        BandData::U8(vec![vec![0; 256]])
    );

    // One 16384 x 16384 tile over a 16 x 16 image: 256 MiB to decode.
    let e = open_err(&one_tile(16384, 1, 1, 256), 1_000_000);
    assert_eq!(
        e.to_string(),
        "unsupported TIFF layout: a strip or tile of 16384x16384 pixels (268435456 bytes decoded) \
         exceeds the 67108864-byte limit"
    );

    // An LZW tile claiming 4 GB of compressed data.
    let lying = one_tile(16, 5, 1, 4_000_000_000);
    let mut raster = GeoRaster::from_bytes(&lying, 1_000_000).unwrap();
    let e = raster.read_window(full, &[1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported TIFF layout: strip or tile 0 holds 4000000000 compressed bytes, over the 67108864-byte limit"
    );
}

#[test]
fn unsupported_photometric_interpretations_are_named() {
    for (code, name) in [(0, "MinIsWhite (inverted grey)"), (3, "palette colour"), (6, "YCbCr")] {
        let e = open_err(&one_tile(16, 1, code, 256), 1_000_000);
        assert_eq!(
            e.to_string(),
            format!(
                "unsupported TIFF layout: {name} photometric interpretation (PhotometricInterpretation {code}); \
                 supported: MinIsBlack, RGB, Separated"
            )
        );
    }
}
