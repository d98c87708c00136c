//! `rsam segment --window` with the demo model: a two-scene mosaic of
//! `rsam synth` scenes searched window by window (the JSON line, the
//! full-size mask, the candidates), a GeoTIFF whose mask comes back
//! georeferenced, and every bad input as one clear line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rsam::geo::GeoRaster;

fn rsam(args: &[&str]) -> Output {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join(rsam::predictor::DEMO_MODEL_DIR);
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(["segment", "--model", model.to_str().unwrap()])
        .args(args)
        .output()
        .expect("rsam runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected an error: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// Two synth scenes side by side (512 x 256) as a PNG, and a sentence of
/// the right one.
fn mosaic(dir: &Path) -> (String, String) {
    let out = dir.join("synth");
    rsam::synth::run(&rsam::cli::args::SynthArgs {
        out: out.clone(),
        images: 2,
        size: 256,
        seed: 77,
        splits: "test=1".into(),
    })
    .unwrap();
    let dataset = rsam::risors::Dataset::open(&out, "test").unwrap();
    let mut canvas = image::RgbImage::new(512, 256);
    for (k, name) in dataset.names().iter().enumerate() {
        let scene = image::open(dataset.image_path(name).unwrap()).unwrap().into_rgb8();
        image::imageops::replace(&mut canvas, &scene, 256 * k as i64, 0);
    }
    let sentence = dataset.load_samples(&dataset.names()[1], u64::MAX).unwrap().samples[0]
        .sentence
        .clone();
    let path: PathBuf = dir.join("mosaic.png");
    canvas.save(&path).unwrap();
    (path.display().to_string(), sentence)
}

#[test]
fn a_mosaic_is_searched_window_by_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, sentence) = mosaic(tmp.path());
    let mask_path = tmp.path().join("mask.png");
    let out = rsam(&[
        "--image",
        &image,
        "--text",
        &sentence,
        "--window",
        "256,128",
        "--top-k",
        "3",
        "--mask-out",
        mask_path.to_str().unwrap(),
    ]);
    let line = json(&out);
    assert_eq!(
        (line["width"].as_u64(), line["height"].as_u64()),
        (Some(512), Some(256))
    );
    let window = &line["window"];
    assert_eq!(window["size"], 256);
    assert_eq!(window["overlap"], 128);
    assert_eq!(
        (window["windows"].as_u64(), window["searched"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(window["encoded"], 3);
    let candidates = line["candidates"].as_array().unwrap();
    assert!((1..=3).contains(&candidates.len()), "{candidates:?}");
    let best = &candidates[0];
    // The JSON line's mask is the best candidate's, at the mosaic's size.
    assert_eq!(line["area"], best["area"]);
    assert_eq!(line["bbox"], best["bbox"]);
    assert_eq!(line["object_score_logit"], best["object_score_logit"]);
    assert!(best["window"]["width"] == 256 && !best["polygon"].as_array().unwrap().is_empty());
    assert!(best.get("geometry").is_none(), "a PNG has no map coordinates");
    let mask = image::open(&mask_path).unwrap().into_luma8();
    assert_eq!(mask.dimensions(), (512, 256));
    let area = mask.pixels().filter(|p| p.0[0] == 255).count() as u64;
    assert_eq!(Some(area), line["area"].as_u64());
    assert!(area > 0);
}

#[test]
fn a_window_larger_than_the_scene_is_the_scene() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, sentence) = mosaic(tmp.path());
    let line = json(&rsam(&["--image", &image, "--text", &sentence, "--window", "4096"]));
    assert_eq!(line["window"]["windows"], 1);
    assert_eq!(line["window"]["overlap"], 1024);
    if let Some(best) = line["candidates"].as_array().unwrap().first() {
        assert_eq!(
            best["window"],
            serde_json::json!({"x": 0, "y": 0, "width": 512, "height": 256})
        );
    }
}

#[test]
fn a_geotiff_mask_keeps_the_scene_georeferencing() {
    let tmp = tempfile::tempdir().unwrap();
    let tif = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/u16_rgb_nir_pixel.tif");
    let mask_path = tmp.path().join("mask.tif");
    let line = json(&rsam(&[
        "--image",
        tif.to_str().unwrap(),
        "--point",
        "20,12,1",
        "--window",
        "16,4",
        "--mask-out",
        mask_path.to_str().unwrap(),
    ]));
    assert_eq!(line["window"]["windows"], 6);
    assert_eq!(line["georeferenced"], true);
    let scene = GeoRaster::open(&tif, 1_000_000).unwrap();
    let t = scene.georef().transform.unwrap().0;
    let candidates = line["candidates"].as_array().unwrap();
    assert!(!candidates.is_empty(), "a click finds something");
    for candidate in candidates {
        // The map polygons span the pixel bbox through the raster's transform.
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        vertices(&candidate["geometry"]["coordinates"], &mut xs, &mut ys);
        let bbox: Vec<f64> = candidate["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let span = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(f64::MIN, f64::max),
            )
        };
        assert_eq!(
            span(&xs),
            (t[0] + bbox[0] * t[1], t[0] + (bbox[0] + bbox[2]) * t[1]),
            "{candidate}"
        );
        assert_eq!(
            span(&ys),
            (t[3] + (bbox[1] + bbox[3]) * t[5], t[3] + bbox[1] * t[5]),
            "{candidate}"
        );
    }
    // The same click in map units (10 m pixels from (500000, 4100000)) finds the same.
    let geojson_path = tmp.path().join("best.geojson");
    let in_map = json(&rsam(&[
        "--image",
        tif.to_str().unwrap(),
        "--coords",
        "map",
        "--point",
        &format!("{},{},1", t[0] + 20.0 * t[1], t[3] + 12.0 * t[5]),
        "--window",
        "16,4",
        "--geojson-out",
        geojson_path.to_str().unwrap(),
    ]));
    assert_eq!(in_map, line);
    // --geojson-out: the best mask as one Feature in the raster's CRS.
    let collection: serde_json::Value = serde_json::from_slice(&std::fs::read(&geojson_path).unwrap()).unwrap();
    let features = collection["features"].as_array().unwrap();
    assert_eq!(features.len(), 1);
    assert_eq!(features[0]["properties"]["area_px"], line["area"]);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    vertices(&features[0]["geometry"]["coordinates"], &mut xs, &mut ys);
    let bbox: Vec<f64> = line["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(xs.iter().copied().fold(f64::MAX, f64::min), t[0] + bbox[0] * t[1]);
    assert!(collection["crs"]["properties"]["name"]
        .as_str()
        .unwrap()
        .contains("32633"));
    let mask = GeoRaster::open(&mask_path, 1_000_000).unwrap();
    assert_eq!((mask.info().width, mask.info().height), (37, 23));
    assert_eq!(mask.georef().transform, scene.georef().transform);
    assert_eq!(mask.georef().epsg(), scene.georef().epsg());
}

/// Every `[x, y]` of GeoJSON coordinates, however nested.
fn vertices(value: &serde_json::Value, xs: &mut Vec<f64>, ys: &mut Vec<f64>) {
    let Some(items) = value.as_array() else { return };
    if let [x, y] = items.as_slice() {
        if let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) {
            xs.push(x);
            ys.push(y);
            return;
        }
    }
    items.iter().for_each(|v| vertices(v, xs, ys));
}

#[test]
fn bad_windows_and_prompts_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, sentence) = mosaic(tmp.path());
    let run = |extra: &[&str]| {
        let mut args = vec!["--image", image.as_str(), "--text", sentence.as_str()];
        args.extend_from_slice(extra);
        error(&rsam(&args))
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--window", "0"],
            "window size 0 px: a window needs at least 16 pixels a side",
        ),
        (&["--window", "8,2"], "window size 8 px"),
        (
            &["--window", "256,256"],
            "window overlap 256 px must be smaller than the window size 256 px",
        ),
        (&["--window", "256,300"], "window overlap 300 px must be smaller"),
        (&["--window", "big"], "\"big\" is not a whole number of pixels"),
        (&["--window", "1,2,3"], "--window takes W or W,O"),
        (
            &["--window", "16,15"],
            "the 512x256 scene in 16 px windows overlapping by 15 px makes 119777 windows, over the limit of 1024",
        ),
        (
            &["--window", "256", "--max-windows", "2"],
            "makes 3 windows, over the limit of 2",
        ),
        (&["--window", "256", "--top-k", "0"], "top k 0"),
        (&["--top-k", "3"], "--top-k needs --window"),
        (&["--max-windows", "3"], "--max-windows needs --window"),
        (
            &["--window", "256", "--logits-out", "x.npy"],
            "--logits-out belongs to one model input",
        ),
        (
            &["--window", "256", "--input-out", "x.npy"],
            "--input-out belongs to one model input",
        ),
        (
            &["--window", "256", "--mask-input", "x.npy"],
            "--mask-input belongs to one model input",
        ),
        (
            &["--window", "256", "--multimask"],
            "--multimask belongs to one model input",
        ),
        (
            &["--window", "256", "--point", "600,10,1"],
            "point 0 (600, 10) is outside the 512x256 image",
        ),
        (
            &["--window", "256,0", "--box", "200,10,300,50"],
            "no 256 px window holds every click and the whole box together",
        ),
    ];
    for (extra, expected) in cases {
        let message = run(extra);
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{extra:?}: {message}");
    }
    let missing = error(&rsam(&[
        "--image",
        "/nonexistent/scene.png",
        "--text",
        "x",
        "--window",
        "256",
    ]));
    assert!(missing.contains("/nonexistent/scene.png"), "{missing}");
}

#[test]
fn a_sam2_model_searches_the_windows_that_hold_a_click() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = mosaic(tmp.path());
    let sam2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam2-tiny");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rsam"))
            .args(["segment", "--model", sam2.to_str().unwrap(), "--image", &image])
            .args(extra)
            .output()
            .unwrap()
    };
    // Windows start at x = 0, 192 and 256: x = 300 lies in the last two.
    let line = json(&run(&["--point", "300,100,1", "--window", "256"]));
    assert_eq!(line["window"]["windows"], 3);
    assert_eq!(line["window"]["searched"], 2);
    assert_eq!(line["window"]["encoded"], 2);
    for candidate in line["candidates"].as_array().unwrap() {
        let x = candidate["window"]["x"].as_u64().unwrap();
        assert!(x == 192 || x == 256, "{candidate}");
    }
    let message = error(&run(&["--text", "the ship", "--window", "256"]));
    assert!(message.to_lowercase().contains("text"), "{message}");
}
