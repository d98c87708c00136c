//! `rsam segment` on GeoTIFFs: the raster read like the library reads it,
//! clicks in map units, GeoJSON in the raster's CRS or WGS 84, the mask as
//! a GeoTIFF on the raster's grid, and the errors of each flag.

mod geojson_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use geojson_support::first_vertex;
use rsam::geo::{read_rgb_from_path, BandData, GeoRaster, ReadOptions};
use serde_json::Value;

const SCENE: &str = "u16_cog.tif";

fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .arg("segment")
        .args([
            "--model",
            path(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny")),
        ])
        .args(args)
        .output()
        .expect("rsam runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn scene() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo")
        .join(SCENE)
}

fn json_line(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The stretched RGB of the scene as the library reads it, as a PNG.
fn scene_png(dir: &Path) -> PathBuf {
    let read = read_rgb_from_path(&scene(), &ReadOptions::default()).unwrap();
    let rgb = image::RgbImage::from_raw(read.image.width, read.image.height, read.image.data).unwrap();
    let out = dir.join("scene.png");
    rgb.save(&out).unwrap();
    out
}

#[test]
fn a_geotiff_segments_like_the_png_of_its_bands_and_writes_georeferenced_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (mask_tif, geojson) = (dir.path().join("mask.tif"), dir.path().join("mask.geojson"));
    let line = json_line(&rsam(&[
        "--image",
        path(&scene()),
        "--point",
        "18,11,1",
        "--mask-out",
        path(&mask_tif),
        "--geojson-out",
        path(&geojson),
    ]));
    assert_eq!(line["georeferenced"], true);
    assert_eq!((line["width"].as_u64(), line["height"].as_u64()), (Some(37), Some(23)));
    let area = line["area"].as_u64().unwrap();
    assert!(area > 0 && area < 37 * 23, "{area}");

    let png = scene_png(dir.path());
    let plain = json_line(&rsam(&["--image", path(&png), "--point", "18,11,1"]));
    assert_eq!(plain["georeferenced"], false);
    assert_eq!(
        plain["rle"], line["rle"],
        "the TIFF was read with the default bands and stretch"
    );

    // The mask GeoTIFF lies on the scene's grid and holds the mask.
    let mut written = GeoRaster::open(&mask_tif, u64::MAX).unwrap();
    let source = GeoRaster::open(&scene(), u64::MAX).unwrap();
    assert_eq!(written.georef(), source.georef());
    let BandData::U8(bands) = written.read_window(written.full_window(), &[1]).unwrap().data else {
        panic!("a u8 mask")
    };
    assert_eq!(bands[0].iter().filter(|&&v| v > 0).count() as u64, area);

    let collection = read_json(&geojson);
    assert_eq!(collection["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::32633");
    assert_eq!(
        collection["features"][0]["properties"]["object_present"],
        line["object_present"]
    );
}

#[test]
fn clicks_in_map_units_and_wgs84_output() {
    let dir = tempfile::tempdir().unwrap();
    let pixel = json_line(&rsam(&["--image", path(&scene()), "--point", "18,11,1"]));
    // UTM 33N, 10 m pixels from (500000 E, 4100000 N).
    let geojson = dir.path().join("wgs84.geojson");
    let map = json_line(&rsam(&[
        "--image",
        path(&scene()),
        "--coords",
        "map",
        "--point",
        "500180,4099890,1",
        "--geojson-out",
        path(&geojson),
        "--wgs84",
    ]));
    assert_eq!(map["rle"], pixel["rle"]);
    let collection = read_json(&geojson);
    assert!(collection.get("crs").is_none(), "WGS 84 is GeoJSON's default CRS");
    let first = first_vertex(&collection["features"][0]["geometry"]["coordinates"]);
    assert!(
        (14.9..15.1).contains(&first[0]) && (36.9..37.1).contains(&first[1]),
        "{first:?}"
    );

    // A box in map units becomes the pixel box around its corners.
    let by_pixels = json_line(&rsam(&["--image", path(&scene()), "--box", "5,3,30,20"]));
    let by_map = json_line(&rsam(&[
        "--image",
        path(&scene()),
        "--coords",
        "map",
        "--box",
        "500050,4099970,500300,4099800",
    ]));
    assert_eq!(by_map["rle"], by_pixels["rle"]);
}

#[test]
fn every_geo_flag_error_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let png = scene_png(dir.path());
    let out = dir.path().join("out.geojson");
    let tif = scene();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--image", path(&png), "--coords", "map", "--point", "1,1,1"],
            "georeferencing",
        ),
        (
            vec!["--image", path(&png), "--bands", "1,2,3", "--point", "1,1,1"],
            "TIFF",
        ),
        (
            vec![
                "--image",
                path(&png),
                "--point",
                "1,1,1",
                "--geojson-out",
                path(&out),
                "--wgs84",
            ],
            "WGS 84",
        ),
        (
            vec!["--image", path(&tif), "--bands", "9,2,1", "--point", "1,1,1"],
            "band 9",
        ),
        (
            vec!["--image", path(&tif), "--bands", "1,2", "--point", "1,1,1"],
            "2 bands",
        ),
        (
            vec!["--image", path(&tif), "--stretch", "gamma", "--point", "1,1,1"],
            "gamma",
        ),
        (
            vec!["--image", path(&tif), "--coords", "lonlat", "--point", "1,1,1"],
            "lonlat",
        ),
        // Map units far outside the raster are outside the image.
        (
            vec!["--image", path(&tif), "--coords", "map", "--point", "0,0,1"],
            "outside",
        ),
    ];
    for (args, words) in cases {
        let err = failure(&rsam(&args));
        assert!(err.contains(words), "{args:?}: {err}");
    }
    assert!(!out.exists(), "no output file after a failure");
}

#[test]
fn map_units_keep_their_digits_until_they_become_pixels() {
    // 0.5 m pixels from (500000 E, 4100000 N): in f32 a northing near 4.1e6
    // is only exact to 0.25 m, half a pixel here. Sent as f64, the click
    // lands where the same click in pixels does.
    let tif = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/f64_striped_lzw_bigtiff.tif");
    let dir = tempfile::tempdir().unwrap();
    let (by_pixel, by_map) = (dir.path().join("p.npy"), dir.path().join("m.npy"));
    json_line(&rsam(&[
        "--image",
        path(&tif),
        "--point",
        "18.3,11.3,1",
        "--logits-out",
        path(&by_pixel),
    ]));
    json_line(&rsam(&[
        "--image",
        path(&tif),
        "--coords",
        "map",
        "--point",
        "500009.15,4099994.35,1",
        "--logits-out",
        path(&by_map),
    ]));
    let read = |p: &Path| rsam::npy::read_f32(&std::fs::read(p).unwrap()).unwrap().1;
    let (a, b) = (read(&by_pixel), read(&by_map));
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(d < 1e-5, "the map click moved: logits differ by {d}");
    // Where the click lands when narrowed to f32 first (row 11.5, not
    // 11.3) gives other logits: the comparison above can tell them apart.
    let narrowed_row = (4_100_000.0 - f64::from("4099994.35".parse::<f32>().unwrap())) / 0.5;
    assert_eq!(narrowed_row, 11.5);
    let off = dir.path().join("o.npy");
    json_line(&rsam(&[
        "--image",
        path(&tif),
        "--point",
        "18.3,11.5,1",
        "--logits-out",
        path(&off),
    ]));
    let c = read(&off);
    let d = a.iter().zip(&c).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(d > 1e-3, "half a pixel should show in the logits ({d})");
}
