//! The hidden `rsam geo` helper commands on the GDAL-written fixtures: what
//! they print and write, and their errors (the comparisons with GDAL itself
//! are in `tests/geo/test_gdal.py`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rsam::geo::{read_rgb_from_path, BandData, GeoRaster, ReadOptions};
use rsam::mask::BinaryMask;

fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(["geo"])
        .args(args)
        .output()
        .expect("rsam runs")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo")
        .join(format!("{name}.tif"))
        .display()
        .to_string()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A 37 x 23 mask PNG (the fixtures' size) with pixels (x, y) where `f`.
fn mask_png(dir: &Path, name: &str, width: u32, height: u32, f: impl Fn(u32, u32) -> bool) -> String {
    let data = (0..width * height).map(|i| u8::from(f(i % width, i / width))).collect();
    let mask = BinaryMask { width, height, data };
    let path = dir.join(name);
    std::fs::write(&path, mask.to_png()).unwrap();
    path.display().to_string()
}

#[test]
fn info_prints_the_header_and_georeferencing() {
    let info = json(&rsam(&["info", "--image", &fixture("u16_tiled_deflate_pixel")]));
    assert_eq!(info["raster"]["width"], 37);
    assert_eq!(info["raster"]["band_count"], 4);
    assert_eq!(info["raster"]["sample_type"], "u16");
    assert_eq!(info["raster"]["tiled"], true);
    assert_eq!(info["raster"]["nodata"], 400.0);
    assert_eq!(info["epsg"], 32633);
    assert_eq!(info["projected"], true);
    assert_eq!(
        info["transform"],
        serde_json::json!([500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0])
    );
    let plain = json(&rsam(&["info", "--image", &fixture("u8_plain")]));
    assert_eq!(plain["georeferenced"], false);
    assert_eq!(plain["transform"], serde_json::Value::Null);
}

#[test]
fn stretch_writes_the_rgb_the_library_reads() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("rgb.png");
    let image = fixture("u16_cog");
    let summary = json(&rsam(&[
        "stretch",
        "--image",
        &image,
        "--bands",
        "4,2,1",
        "--stretch",
        "minmax",
        "--png-out",
        png.to_str().unwrap(),
    ]));
    assert_eq!(summary["rendering"]["bands"], serde_json::json!([4, 2, 1]));
    assert_eq!(summary["rendering"]["stretch"], "minmax");
    let decoded = image::open(&png).unwrap().into_rgb8();
    let options = ReadOptions {
        bands: Some(vec![4, 2, 1]),
        stretch: Some(rsam::geo::Stretch::Minmax),
        ..ReadOptions::default()
    };
    let read = read_rgb_from_path(Path::new(&image), &options).unwrap();
    assert_eq!(decoded.as_raw(), &read.image.data);
}

#[test]
fn vectorize_and_mask_tiff_write_georeferenced_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mask = mask_png(dir.path(), "m.png", 37, 23, |x, y| {
        (3..9).contains(&x) && (2..5).contains(&y)
    });
    let geojson = dir.path().join("m.geojson");
    json(&rsam(&[
        "vectorize",
        "--image",
        &fixture("u16_tiled_deflate_pixel"),
        "--mask",
        &mask,
        "--text",
        "a field",
        "--geojson-out",
        geojson.to_str().unwrap(),
    ]));
    let fc: serde_json::Value = serde_json::from_slice(&std::fs::read(&geojson).unwrap()).unwrap();
    assert_eq!(fc["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::32633");
    let feature = &fc["features"][0];
    assert_eq!(feature["properties"]["text"], "a field");
    assert_eq!(feature["properties"]["area_px"], 18);
    assert_eq!(feature["properties"]["area"], 1800.0);
    assert_eq!(
        feature["geometry"]["coordinates"][0][0],
        serde_json::json!([500030.0, 4099950.0])
    );

    let tif = dir.path().join("m.tif");
    json(&rsam(&[
        "mask-tiff",
        "--image",
        &fixture("u16_tiled_deflate_pixel"),
        "--mask",
        &mask,
        "--out",
        tif.to_str().unwrap(),
    ]));
    let mut back = GeoRaster::open(&tif, 1_000_000).unwrap();
    assert_eq!(back.georef().epsg(), Some(32633));
    let full = back.full_window();
    let BandData::U8(bands) = back.read_window(full, &[1]).unwrap().data else {
        panic!("not u8");
    };
    assert_eq!(bands[0].iter().filter(|&&v| v == 255).count(), 18);
}

#[test]
fn coords_convert_both_ways() {
    let image = fixture("u16_tiled_deflate_pixel");
    let p = json(&rsam(&["coords", "--image", &image, "--map", "500015,4099995"]));
    assert_eq!((p["col"].as_f64(), p["row"].as_f64()), (Some(1.5), Some(0.5)));
    let m = json(&rsam(&["coords", "--image", &image, "--pixel", "1.5,0.5"]));
    assert_eq!((m["x"].as_f64(), m["y"].as_f64()), (Some(500015.0), Some(4099995.0)));
}

#[test]
fn errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let small = mask_png(dir.path(), "small.png", 3, 3, |_, _| true);
    let image = fixture("u16_tiled_deflate_pixel");
    let plain = fixture("u8_plain");
    let out_json = dir.path().join("x.geojson");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "vectorize",
                "--image",
                &image,
                "--mask",
                &small,
                "--geojson-out",
                out_json.to_str().unwrap(),
            ],
            format!("error: {small}: mask is 3x3 but the raster is 37x23"),
        ),
        (
            vec!["vectorize", "--image", &image, "--mask", &small],
            "error: give --geojson-out FILE".to_string(),
        ),
        (
            vec!["coords", "--image", &plain, "--map", "1,2"],
            "error: map coordinates: the raster has no georeferencing (no ModelPixelScale + ModelTiepoint or \
             ModelTransformation tags)"
                .to_string(),
        ),
        (
            vec!["stretch", "--image", &image, "--bands", "9"],
            format!("error: {image}: band 9 is out of range: the raster has 4 band(s), numbered from 1"),
        ),
        (
            vec!["info", "--image", "/nonexistent/scene.tif"],
            "error: cannot open /nonexistent/scene.tif: No such file or directory (os error 2)".to_string(),
        ),
    ];
    for (args, message) in cases {
        let out = rsam(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), message, "{args:?}");
    }
    let out = rsam(&["stretch", "--image", &image, "--stretch", "gamma"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"gamma\" is not one of percentile, minmax, none"),
        "{}",
        stderr(&out)
    );
}
