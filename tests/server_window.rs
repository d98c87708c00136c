//! `POST /v1/segment` with `window` (the windowed search over HTTP): the
//! answer equals the library's `window::search` on the same scene (a mosaic
//! of `rsam synth` scenes, the demo model), a second request on the same
//! scene encodes no window, a GeoTIFF scene gets candidates in map
//! coordinates, every refusal has its test, the metrics count searches
//! and windows, and refine on a windowed answer runs in its windows. Every JSON answer is validated against openapi.yaml.

mod geojson_support;
mod server_support;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use geojson_support::first_vertex;
use reqwest::multipart::{Form, Part};
use rsam::loaded_model::LoadedModel;
use rsam::preprocess::Rgb8Image;
use rsam::risors::Dataset;
use rsam::window::{
    crop, refine_object, refined_prompts, search, ImageSource, ModelFeatures, SearchOptions, SearchOutcome, WindowSpec,
};
use rsam::{LoadOptions, Prompt};
use serde_json::{json, Value};
use server_support::{metric, start_model, Server, B64};

const SIDE: u32 = 256;

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rsam::predictor::DEMO_MODEL_DIR)
}

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny")
}

/// Two `rsam synth` scenes side by side (512 x 256) and a sentence of the
/// first one.
fn mosaic(dir: &Path) -> (Rgb8Image, String) {
    let out = dir.join("synth");
    rsam::synth::run(&rsam::cli::args::SynthArgs {
        out: out.clone(),
        images: 2,
        size: SIDE,
        seed: 4_217,
        splits: "test=1".into(),
    })
    .unwrap();
    let dataset = Dataset::open(&out, "test").unwrap();
    let names = dataset.names();
    let mut canvas = Rgb8Image {
        width: 2 * SIDE,
        height: SIDE,
        data: vec![0; (2 * SIDE * SIDE * 3) as usize],
    };
    for (i, name) in names.iter().take(2).enumerate() {
        let bytes = std::fs::read(dataset.image_path(name).unwrap()).unwrap();
        let scene = rsam::preprocess::decode_image(&bytes, u64::MAX).unwrap();
        for y in 0..SIDE {
            let from = (y * SIDE * 3) as usize;
            let to = ((y * 2 * SIDE + i as u32 * SIDE) * 3) as usize;
            canvas.data[to..to + (SIDE * 3) as usize].copy_from_slice(&scene.data[from..from + (SIDE * 3) as usize]);
        }
    }
    let sentence = dataset.load_samples(&names[0], u64::MAX).unwrap().samples[0]
        .sentence
        .clone();
    (canvas, sentence)
}

fn png_bytes(image: &Rgb8Image) -> Vec<u8> {
    let rgb = image::RgbImage::from_raw(image.width, image.height, image.data.clone()).unwrap();
    let mut out = Cursor::new(Vec::new());
    rgb.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `side` x `side` scene of hashed noise (49 windows of 256 px at half
/// overlap: seconds of encoding).
fn noise(side: u32, seed: u32) -> Rgb8Image {
    Rgb8Image {
        width: side,
        height: side,
        data: (0..side * side * 3)
            .map(|i| (i.wrapping_mul(seed) >> 24) as u8)
            .collect(),
    }
}

/// The library's search of `scene` in the windows the HTTP tests use.
fn library_search(model: &LoadedModel, scene: &Rgb8Image, prompt: &Prompt) -> SearchOutcome {
    let options = SearchOptions {
        spec: WindowSpec {
            size: Some(SIDE),
            overlap: Some(SIDE / 2),
        },
        ..SearchOptions::default()
    };
    let mut features = ModelFeatures::uncached(model);
    search(
        model,
        &mut ImageSource::new(scene),
        prompt,
        &options,
        &mut features,
        &mut |_| {},
    )
    .unwrap()
}

/// `POST /v1/segment` of a scene with a sentence and a window, answered 200.
async fn search_scene(s: &Server, png: &[u8], text: &str, window: &Value) -> Value {
    s.post(
        "/v1/segment",
        json!({"image": b64(png), "text": text, "window": window}),
    )
    .await
    .ok()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_answer_is_the_library_search_and_a_second_request_encodes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (scene, sentence) = mosaic(tmp.path());
    let png = png_bytes(&scene);

    let model = LoadedModel::load(&demo_dir(), &LoadOptions::default()).unwrap();
    let outcome = library_search(&model, &scene, &Prompt::text(&sentence));
    drop(model);

    let s = start_model(demo_dir(), |_| {}).await;
    let window = json!({"size": SIDE, "overlap": SIDE / 2});
    let body = search_scene(&s, &png, &sentence, &window).await;
    let w = &body["window"];
    assert_eq!((w["size"].as_u64(), w["overlap"].as_u64()), (Some(256), Some(128)));
    assert_eq!((w["windows"].as_u64(), w["searched"].as_u64()), (Some(3), Some(3)));
    assert_eq!(w["encoded"].as_u64(), Some(3));
    assert_eq!(body["cached"], json!(false));
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(512), Some(256))
    );
    let rle = serde_json::to_value(outcome.best_mask().to_rle()).unwrap();
    assert_eq!(body["results"][0]["rle"], rle, "the best mask is the library's");
    let candidates = w["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), outcome.candidates.len());
    assert!(
        !candidates.is_empty(),
        "the demo model finds something in its own scenes"
    );
    for (c, expected) in candidates.iter().zip(&outcome.candidates) {
        assert_eq!(c["area"].as_u64(), Some(expected.piece.area()));
        assert_eq!(c["window"]["x"].as_u64(), Some(u64::from(expected.window().x)));
        assert!(c.get("geometry").is_none(), "a PNG has no map coordinates");
    }
    let m = s.metrics().await;
    assert_eq!(metric(&m, "rsam_window_searches_total", &[]), 1.0);
    assert_eq!(metric(&m, "rsam_windows_encoded_total", &[]), 3.0);
    assert_eq!(metric(&m, "rsam_windows_per_search_sum", &[]), 3.0);

    // The same scene again, as multipart with the window as a JSON field and
    // more outputs: every window comes from the cache.
    let form = Form::new()
        .part("image", Part::bytes(png.clone()).file_name("scene.png"))
        .text("text", sentence.clone())
        .text("window", window.to_string())
        .text("outputs", "rle,png,polygons,geojson");
    let again = s.post_form("/v1/segment", form).await.ok();
    assert_eq!(again["window"]["encoded"].as_u64(), Some(0));
    assert_eq!(again["cached"], json!(true));
    assert_eq!(again["results"][0]["rle"], rle);
    assert!(again["results"][0]["png"].is_string() && again["results"][0]["polygons"].is_array());
    assert_eq!(again["geojson"]["features"].as_array().map(Vec::len), Some(1));
    let m = s.metrics().await;
    assert_eq!(metric(&m, "rsam_window_searches_total", &[]), 2.0);
    assert_eq!(metric(&m, "rsam_windows_encoded_total", &[]), 3.0);

    // The mask as a file, like a plain request.
    let req = s
        .client
        .post(format!("{}/v1/segment", s.url))
        .header("accept", "image/png")
        .json(&json!({"image": b64(&png), "text": sentence, "window": window}));
    let file = s.send("POST", "/v1/segment", req).await;
    assert_eq!(file.status, 200);
    assert!(file.body.starts_with(b"\x89PNG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geotiff_scene_gets_candidates_in_map_coordinates() {
    let tif =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/u16_rgb_nir_pixel.tif")).unwrap();
    let s = start_model(tiny_dir(), |_| {}).await;
    let body = s
        .post(
            "/v1/segment",
            json!({
                "image": b64(&tif),
                "box": [1, 1, 14, 14],
                "bands": [3, 2, 1],
                "window": {"size": 16, "overlap": 4, "top_k": 2},
                "outputs": ["rle", "geojson"],
            }),
        )
        .await
        .ok();
    assert_eq!(body["georeferenced"], json!(true));
    assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(37), Some(23)));
    let w = &body["window"];
    assert_eq!(w["windows"].as_u64(), Some(6));
    assert_eq!(w["searched"].as_u64(), Some(1), "only the window holding the box");
    let candidates = w["candidates"].as_array().unwrap();
    assert!(!candidates.is_empty() && candidates.len() <= 2, "{w}");
    let geometry = &candidates[0]["geometry"];
    assert!(
        matches!(geometry["type"].as_str(), Some("Polygon" | "MultiPolygon")),
        "{geometry}"
    );
    // Map coordinates, not pixels: the first vertex lies far from 0..37.
    let first = first_vertex(&geometry["coordinates"]);
    assert!(first.iter().any(|v| v.abs() > 1000.0), "{first:?}");
    assert!(body["geojson"]["features"][0]["geometry"].is_object());
    assert_eq!(w["encoded"].as_u64(), Some(1));

    // Refine in map coordinates: the same answer as the same click in
    // scene pixels.
    let georef = rsam::geo::GeoRaster::from_bytes(&tif, 1 << 20)
        .unwrap()
        .georef()
        .clone();
    let (mx, my) = georef.map_from_pixel(7.5, 7.5).unwrap();
    let id = body["results"][0]["result_id"].as_str().unwrap();
    let by_map = s
        .post(
            "/v1/refine",
            json!({"result_id": id, "points": [[mx, my, 0]], "coords": "map", "outputs": ["rle", "geojson"]}),
        )
        .await
        .ok();
    let by_pixel = s
        .post(
            "/v1/refine",
            json!({"result_id": id, "points": [[7.5, 7.5, 0]], "outputs": ["rle", "geojson"]}),
        )
        .await
        .ok();
    assert_eq!(by_map["results"][0]["rle"], by_pixel["results"][0]["rle"]);
    assert_eq!(by_map["window"]["searched"].as_u64(), Some(1));
    assert_eq!(by_map["georeferenced"], json!(true));
    let feature = &by_map["geojson"]["features"][0]["geometry"];
    assert!(by_map["results"][0]["area"].as_u64().unwrap() > 0);
    assert!(first_vertex(&feature["coordinates"]).iter().any(|v| v.abs() > 1000.0));

    // Window features are keyed by the scene's rendering too: other bands
    // encode again, the same bands come from the cache.
    let again = |bands: Value| json!({"image": b64(&tif), "box": [1, 1, 14, 14], "bands": bands, "window": {"size": 16, "overlap": 4}});
    let other = s.post("/v1/segment", again(json!([1, 2, 3]))).await.ok();
    assert_eq!(other["window"]["encoded"].as_u64(), Some(1));
    let same = s.post("/v1/segment", again(json!([3, 2, 1]))).await.ok();
    assert_eq!(same["window"]["encoded"].as_u64(), Some(0));

    // The mask as a GeoTIFF of the whole scene.
    let req = s
        .client
        .post(format!("{}/v1/segment", s.url))
        .header("accept", "image/tiff")
        .json(&again(json!([3, 2, 1])));
    let file = s.send("POST", "/v1/segment", req).await;
    assert_eq!(file.status, 200);
    let mask = rsam::geo::GeoRaster::from_bytes(&file.body, 1 << 20).unwrap();
    assert_eq!((mask.info().width, mask.info().height), (37, 23));
}

/// A scene no larger than the window is one window, the whole image: its
/// windowed answer and the refine of it are exactly the plain answer and
/// the plain `/v1/refine` (same features, same protocol).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refining_a_one_window_answer_is_the_plain_refine() {
    let tmp = tempfile::tempdir().unwrap();
    let (scene, sentence) = mosaic(tmp.path());
    let png = png_bytes(&scene);
    let s = start_model(demo_dir(), |_| {}).await;
    let windowed = s
        .post(
            "/v1/segment",
            json!({"image": b64(&png), "text": sentence, "window": {"size": 2 * SIDE}}),
        )
        .await
        .ok();
    assert_eq!(windowed["window"]["windows"].as_u64(), Some(1));
    let plain = s
        .post("/v1/segment", json!({"image": b64(&png), "text": sentence}))
        .await
        .ok();
    let (w0, p0) = (&windowed["results"][0], &plain["results"][0]);
    assert_eq!(w0["rle"], p0["rle"]);
    assert!(w0["area"].as_u64().unwrap() > 0, "the demo model finds its object");

    // One negative click on the object, then a positive one beside it.
    let [bx, by, bw, bh] = [0, 1, 2, 3].map(|i| p0["bbox"][i].as_f64().unwrap());
    let clicks = [
        json!([[bx + bw / 2.0, by + bh / 2.0, 0]]),
        json!([[bx + bw + 4.0, by + bh / 2.0, 1]]),
    ];
    let (mut wid, mut pid) = (
        w0["result_id"].as_str().unwrap().to_string(),
        p0["result_id"].as_str().unwrap().to_string(),
    );
    assert!(wid.starts_with("window-"), "{wid}");
    for points in clicks {
        let w = s
            .post("/v1/refine", json!({"result_id": wid, "points": points}))
            .await
            .ok();
        let p = s
            .post("/v1/refine", json!({"result_id": pid, "points": points}))
            .await
            .ok();
        let (wr, pr) = (&w["results"][0], &p["results"][0]);
        assert_eq!(wr["rle"], pr["rle"], "{points}");
        assert_eq!(wr["iou_prediction"], pr["iou_prediction"]);
        assert_eq!(wr["object_present"], pr["object_present"]);
        assert_eq!(w["window"]["searched"].as_u64(), Some(1));
        assert_eq!((w["width"].as_u64(), w["height"].as_u64()), (Some(512), Some(256)));
        wid = wr["result_id"].as_str().unwrap().to_string();
        pid = pr["result_id"].as_str().unwrap().to_string();
    }
}

/// Clicks on a mosaic's answer run in the windows that found its object,
/// exactly as the library's refine runs them; a click outside those windows
/// is refused, and so is a refine whose windows left the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refining_a_windowed_answer_runs_in_its_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let (scene, sentence) = mosaic(tmp.path());
    let png = png_bytes(&scene);
    let window = json!({"size": SIDE, "overlap": SIDE / 2});
    let s = start_model(demo_dir(), |_| {}).await;
    let body = search_scene(&s, &png, &sentence, &window).await;
    let best = &body["window"]["candidates"][0];
    let xs: Vec<u64> = best["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["x"].as_u64().unwrap())
        .collect();
    assert!(
        !xs.contains(&u64::from(SIDE)),
        "the sentence's object is in the left scene: {xs:?}"
    );
    let [bx, by, bw, bh] = [0, 1, 2, 3].map(|i| best["bbox"][i].as_f64().unwrap());
    let click = [bx + bw / 2.0, by + bh / 2.0];

    // The library, on the same scene: search, then refine in the windows.
    let model = LoadedModel::load(&demo_dir(), &LoadOptions::default()).unwrap();
    let prompt = Prompt::text(&sentence);
    let outcome = library_search(&model, &scene, &prompt);
    let windows = outcome.best().unwrap().object_windows(&prompt);
    let features: Vec<_> = windows
        .iter()
        .map(|w| Arc::new(model.encode(&model.prepare(&crop(&scene, w.window))).unwrap()))
        .collect();
    let negative = [rsam::Point {
        x: click[0] as f32,
        y: click[1] as f32,
        label: 0,
    }];
    let prompts = refined_prompts(&windows, &negative, None).unwrap();
    let expected = refine_object(&model, &windows, &prompts, &features).unwrap();
    drop(model);
    let expected_mask = match &expected.object {
        Some(c) => c.piece.scene_mask(2 * SIDE, SIDE),
        None => rsam::mask::BinaryMask {
            width: 2 * SIDE,
            height: SIDE,
            data: vec![0; (2 * SIDE * SIDE) as usize],
        },
    };

    let id = body["results"][0]["result_id"].as_str().unwrap();
    let refined = s
        .post(
            "/v1/refine",
            json!({"result_id": id, "points": [[click[0], click[1], 0]], "outputs": ["rle", "geojson"]}),
        )
        .await
        .ok();
    let r = &refined["results"][0];
    assert_eq!(r["rle"], serde_json::to_value(expected_mask.to_rle()).unwrap());
    assert_eq!(refined["window"]["searched"].as_u64(), Some(xs.len() as u64));
    assert_eq!(refined["window"]["encoded"].as_u64(), Some(0));
    assert_eq!(refined["cached"], json!(true));
    assert_eq!(refined["geojson"]["features"][0]["properties"]["text"], json!(sentence));
    assert_ne!(
        r["rle"], body["results"][0]["rle"],
        "a negative click on the object changes it"
    );

    // Clicks follow clicks; a click no window of the object holds is refused.
    let next = r["result_id"].as_str().unwrap();
    let again = s
        .post(
            "/v1/refine",
            json!({"result_id": next, "points": [[click[0], click[1], 1]]}),
        )
        .await
        .ok();
    assert!(again["results"][0]["result_id"]
        .as_str()
        .unwrap()
        .starts_with("window-"));
    let outside = s
        .post(
            "/v1/refine",
            json!({"result_id": next, "points": [[2 * SIDE - 4, 10, 1]]}),
        )
        .await;
    assert_eq!((outside.status, outside.code().as_str()), (422, "invalid_prompt"));
    let message = outside.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("outside the windows that found this object"),
        "{message}"
    );
    for extra in [json!({"multimask": true}), json!({"outputs": ["logits"]})] {
        let mut body = json!({"result_id": next, "points": [[click[0], click[1], 1]]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = s.post("/v1/refine", body).await;
        assert_eq!((r.status, r.code().as_str()), (422, "invalid_request"), "{extra}");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("windowed result"));
    }
    let unknown = s
        .post("/v1/refine", json!({"result_id": "window-0123", "points": [[5, 5, 1]]}))
        .await;
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "result_not_found"));
    assert!(unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("windowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_refine_whose_windows_left_the_cache_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (scene, sentence) = mosaic(tmp.path());
    let png = png_bytes(&scene);
    // A cache too small for one window's features keeps none.
    let s = start_model(demo_dir(), |c| c.cache_bytes = 1024).await;
    let body = s
        .post(
            "/v1/segment",
            json!({"image": b64(&png), "text": sentence, "window": {"size": SIDE, "overlap": SIDE / 2}}),
        )
        .await
        .ok();
    let best = &body["window"]["candidates"][0];
    let (x, y) = (best["bbox"][0].as_f64().unwrap(), best["bbox"][1].as_f64().unwrap());
    let id = body["results"][0]["result_id"].as_str().unwrap();
    let r = s
        .post(
            "/v1/refine",
            json!({"result_id": id, "points": [[x + 1.0, y + 1.0, 1]]}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "image_not_cached"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("no longer in the feature cache") && message.contains("window"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refining_a_search_that_found_nothing_is_refused() {
    // A flat grey scene holds no ship: every window's object score is
    // negative, so RSAM's gated logits give no mask anywhere.
    let grey = Rgb8Image {
        width: 2 * SIDE,
        height: SIDE,
        data: vec![40; (2 * SIDE * SIDE * 3) as usize],
    };
    let s = start_model(demo_dir(), |_| {}).await;
    let body = s
        .post(
            "/v1/segment",
            json!({"image": b64(&png_bytes(&grey)), "text": "the ship", "window": {"size": SIDE, "overlap": SIDE / 2}}),
        )
        .await
        .ok();
    assert_eq!(body["window"]["candidates"], json!([]));
    assert_eq!(body["results"][0]["object_present"], json!(false));
    let id = body["results"][0]["result_id"].as_str().unwrap();
    let r = s
        .post("/v1/refine", json!({"result_id": id, "points": [[10, 10, 1]]}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_prompt"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("found no object"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_stops_encoding_and_keeps_what_it_encoded() {
    // 7 x 7 windows of 256 px: seconds of encoding, far past the deadline.
    let png = png_bytes(&noise(1024, 2_654_435_761));
    let s = start_model(demo_dir(), |c| {
        c.request_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let r = s
        .post(
            "/v1/segment",
            json!({"image": b64(&png), "text": "the ship", "window": {"size": SIDE, "overlap": SIDE / 2}}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (504, "timeout"));
    // The search goes on only until its next batch, then stops.
    let mut last = -1.0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = metric(&s.metrics().await, "rsam_windows_encoded_total", &[]);
        if now == last {
            break;
        }
        last = now;
    }
    assert!((0.0..49.0).contains(&last), "{last} of 49 windows encoded");
    assert_eq!(metric(&s.metrics().await, "rsam_window_searches_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_searches_of_one_new_scene_encode_each_window_once() {
    // 7 x 7 windows: a second of encoding or more, so the two searches
    // overlap; the one that finds a window missing encodes it, the other
    // waits for it.
    let png = png_bytes(&noise(1024, 2_246_822_519));
    let s = start_model(demo_dir(), |_| {}).await;
    let window = json!({"size": SIDE, "overlap": SIDE / 2});
    let request = |text: &str| {
        s.post(
            "/v1/segment",
            json!({"image": b64(&png), "text": text, "window": window}),
        )
    };
    let (a, b) = tokio::join!(request("the ship"), request("the storage tank"));
    let (a, b) = (a.ok(), b.ok());
    assert_eq!(
        (a["window"]["windows"].as_u64(), b["window"]["windows"].as_u64()),
        (Some(49), Some(49))
    );
    let encoded = a["window"]["encoded"].as_u64().unwrap() + b["window"]["encoded"].as_u64().unwrap();
    assert_eq!(encoded, 49, "each window encoded by one of the two searches");
    assert_eq!(metric(&s.metrics().await, "rsam_windows_encoded_total", &[]), 49.0);
}
