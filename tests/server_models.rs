//! The HTTP service beyond the RSAM fixture: a SAM 2 model (clicks, boxes,
//! multimask candidates, no text), GeoTIFF rasters (bands, stretch, map
//! coordinates, GeoJSON, the mask as a GeoTIFF) and the image-id header.
//! Every JSON answer is validated against `openapi.yaml` by the harness.

mod geojson_support;

mod sam2_support;
mod server_support;

use base64::Engine as _;
use geojson_support::first_vertex;
use reqwest::multipart::{Form, Part};
use rsam::geo::{GeoRaster, ReadOptions};
use serde_json::{json, Value};
use sha2::Digest;

use sam2_support::{expected, flat, sam2_dir};
use server_support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn sam2_image(name: &str) -> Vec<u8> {
    sam2_support::image_bytes(name)
}

/// Pixels > 0 of the official upsampled logits of mask `k` of a case.
fn official_area(id: &str, k: usize) -> u64 {
    let logits = expected()[&format!("{id}.mask_logits")].get(k).unwrap();
    flat(&logits).iter().filter(|&&v| v > 0.0).count() as u64
}

fn geo_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/geo")
            .join(name),
    )
    .unwrap()
}

fn png_of(image: &rsam::preprocess::Rgb8Image) -> Vec<u8> {
    let rgb = image::RgbImage::from_raw(image.width, image.height, image.data.clone()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn rle_mask(rle: &Value) -> Vec<u8> {
    rsam::mask::rle::decode(&serde_json::from_value(rle.clone()).unwrap()).unwrap()
}

fn logits_npy(v: &Value) -> (Vec<usize>, Vec<f32>) {
    rsam::npy::read_f32(&B64.decode(v.as_str().unwrap()).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// SAM 2
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sam2_model_answers_clicks_boxes_and_multimask_and_refuses_text() {
    let s = start_model(sam2_dir(), |_| {}).await;
    let info = s.get("/v1/model").await.ok();
    assert_eq!(info["kind"], "sam2");
    assert_eq!(info["prompts"], json!(["points", "box", "mask_input"]));
    assert!(info["max_text_tokens"].is_null());
    assert_eq!(info["image_size"], 256);
    let metrics = s.metrics().await;
    assert_eq!(metric(&metrics, "rsam_model_info", &[("kind", "sam2")]), 1.0);

    // One click, three candidates in the model's order, like the official
    // predictor with multimask_output=True.
    let image = b64(&sam2_image("s256.png"));
    let body = json!({"image": image, "points": [[79.36, 107.52, 1]], "multimask": true, "outputs": ["rle", "logits"]});
    let r = s.post("/v1/segment", body).await.ok();
    let result = &r["results"][0];
    let candidates = result["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 3);
    let exp = expected();
    let official_ious = flat(&exp["s256_click.iou"]);
    let official_low_res = flat(&exp["s256_click.low_res"]);
    for (k, c) in candidates.iter().enumerate() {
        assert!((c["iou_prediction"].as_f64().unwrap() as f32 - official_ious[k]).abs() < 1e-4);
        assert_eq!(c["area"], official_area("s256_click", k), "candidate {k}");
        let (shape, values) = logits_npy(&c["logits"]);
        assert_eq!(shape, vec![64, 64]);
        let d = sam2_support::max_abs_diff(&values, &official_low_res[k * 4096..(k + 1) * 4096]);
        assert!(d < 1e-4, "candidate {k} logits differ by {d}");
    }
    let best = (0..3)
        .max_by(|&a, &b| official_ious[a].total_cmp(&official_ious[b]))
        .unwrap();
    assert_eq!(result["area"], candidates[best]["area"]);
    assert_eq!(result["rle"], candidates[best]["rle"]);

    // A box, one output (multimask off): the official single mask.
    let image_id = r["image_id"].as_str().unwrap().to_string();
    let body = json!({"image_id": image_id, "box": [25.6, 51.2, 140.8, 204.8]});
    let r = s.post("/v1/segment", body).await.ok();
    assert!(r["cached"].as_bool().unwrap());
    let result = &r["results"][0];
    assert!(result.get("candidates").is_none());
    assert_eq!(result["area"], official_area("s256_box", 0));

    // Refine chains on SAM 2 results like on RSAM ones.
    let rid = result["result_id"].as_str().unwrap();
    let r = s
        .post("/v1/refine", json!({"result_id": rid, "points": [[102.4, 128.0, 0]]}))
        .await
        .ok();
    assert_eq!(r["results"].as_array().unwrap().len(), 1);

    // Text, alone or in a query, is refused with a code that says why.
    for body in [
        json!({"image_id": image_id, "text": "the ship"}),
        json!({"image_id": image_id, "queries": [{"points": [[5, 5, 1]]}, {"text": "a road"}]}),
    ] {
        let r = s.post("/v1/segment", body).await;
        assert_eq!(r.status, 422);
        assert_eq!(r.code(), "text_not_supported");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("SAM 2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multimask_on_an_rsam_model_is_refused() {
    let s = start().await;
    let png = std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/images/square.png"),
    )
    .unwrap();
    let info = s.get("/v1/model").await.ok();
    assert_eq!(info["kind"], "rsam");
    assert_eq!(info["prompts"], json!(["text", "points", "box", "mask_input"]));
    let r = s
        .post(
            "/v1/segment",
            json!({"image": b64(&png), "text": "the square", "multimask": true}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "invalid_request");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("SAM 2"));
}

// ---------------------------------------------------------------------------
// GeoTIFF
// ---------------------------------------------------------------------------

const UTM_TIFF: &str = "u16_cog.tif";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geotiff_is_read_as_the_cli_reads_it_and_answers_in_map_coordinates() {
    let s = start().await;
    let tif = geo_fixture(UTM_TIFF);
    let body = json!({"image": b64(&tif), "text": "the field", "points": [[18, 11, 1]], "outputs": ["rle", "geojson"]});
    let r = s.post("/v1/segment", body).await.ok();
    assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(37), Some(23)));
    assert!(r["georeferenced"].as_bool().unwrap());
    let mask = rle_mask(&r["results"][0]["rle"]);
    let area = mask.iter().filter(|&&v| v > 0).count();
    assert!(
        area > 0 && area < mask.len(),
        "a mask that is neither empty nor everything: {area}"
    );
    let geojson = &r["geojson"];
    assert_eq!(geojson["type"], "FeatureCollection");
    assert_eq!(geojson["features"].as_array().unwrap().len(), 1);
    assert_eq!(geojson["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::32633");

    // The same raster stretched by the library and sent as a PNG gives the
    // same mask: the server read the TIFF's bands with the default stretch.
    let read = rsam::geo::read_rgb_from_bytes(&tif, &ReadOptions::default()).unwrap();
    let body = json!({"image": b64(&png_of(&read.image)), "text": "the field", "points": [[18, 11, 1]], "outputs": ["rle", "geojson"]});
    let plain = s.post("/v1/segment", body).await.ok();
    assert!(!plain["georeferenced"].as_bool().unwrap());
    assert_eq!(rle_mask(&plain["results"][0]["rle"]), mask);
    assert!(plain["geojson"].get("crs").is_none(), "pixel GeoJSON names no CRS");

    // The click in the raster's map units (UTM 33N, 10 m pixels from
    // 500000 E, 4100000 N) is the same click.
    let image_id = r["image_id"].as_str().unwrap().to_string();
    let body =
        json!({"image_id": image_id, "text": "the field", "points": [[500180.0, 4099890.0, 1]], "coords": "map"});
    let by_map = s.post("/v1/segment", body).await.ok();
    assert!(by_map["cached"].as_bool().unwrap());
    assert_eq!(rle_mask(&by_map["results"][0]["rle"]), mask);

    // WGS 84 output: longitudes near UTM 33's central meridian (15 E).
    let body = json!({"image_id": image_id, "text": "the field", "points": [[18, 11, 1]], "outputs": ["geojson"], "crs": "EPSG:4326"});
    let wgs = s.post("/v1/segment", body).await.ok();
    let first = first_vertex(&wgs["geojson"]["features"][0]["geometry"]["coordinates"]);
    assert!(
        (14.9..15.1).contains(&first[0]) && (36.9..37.1).contains(&first[1]),
        "{first:?}"
    );

    // Accept: image/tiff gives the mask on the raster's grid.
    let req = s
        .client
        .post(format!("{}/v1/segment", s.url))
        .header("accept", "image/tiff")
        .json(&json!({"image_id": image_id, "text": "the field", "points": [[18, 11, 1]]}));
    let file = s.send("POST", "/v1/segment", req).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.headers["content-type"], "image/tiff");
    assert_eq!(file.headers["x-rsam-image-id"].to_str().unwrap(), image_id);
    let mut raster = GeoRaster::from_bytes(&file.body, u64::MAX).unwrap();
    let source = GeoRaster::from_bytes(&tif, u64::MAX).unwrap();
    assert_eq!(raster.georef(), source.georef());
    let window = raster.full_window();
    let pixels = raster.read_window(window, &[1]).unwrap();
    let rsam::geo::BandData::U8(bands) = pixels.data else {
        panic!("the mask GeoTIFF holds bytes, not {:?}", pixels.sample_type())
    };
    let written: Vec<u8> = bands[0].iter().map(|&v| u8::from(v > 0)).collect();
    assert_eq!(written, mask.iter().map(|&v| u8::from(v > 0)).collect::<Vec<_>>());

    // Refine with a new click in map units.
    let rid = r["results"][0]["result_id"].as_str().unwrap();
    let body = json!({"result_id": rid, "points": [[500050.0, 4099950.0, 0]], "coords": "map"});
    assert_eq!(
        s.post("/v1/refine", body).await.ok()["results"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bands_and_stretch_are_part_of_the_cached_image() {
    let s = start().await;
    let tif = geo_fixture(UTM_TIFF);
    let warm = |bands: Value| json!({"image": b64(&tif), "bands": bands, "stretch": "minmax"});
    let first = s.post("/v1/images", warm(json!([4, 3, 2]))).await.ok();
    assert!(!first["cached"].as_bool().unwrap());
    assert!(first["georeferenced"].as_bool().unwrap());
    let again = s.post("/v1/images", warm(json!([4, 3, 2]))).await.ok();
    assert!(again["cached"].as_bool().unwrap());
    let other = s.post("/v1/images", warm(json!([1, 2, 3]))).await.ok();
    assert!(
        !other["cached"].as_bool().unwrap(),
        "other bands are another image for the model"
    );
    assert_eq!(first["image_id"], other["image_id"], "the id is the file's hash");

    // An image id with the same rendering finds the features.
    let id = first["image_id"].as_str().unwrap();
    let body = json!({"image_id": id, "bands": [4, 3, 2], "stretch": "minmax", "points": [[3, 4, 1]]});
    let r = s.post("/v1/segment", body).await.ok();
    assert!(r["cached"].as_bool().unwrap());

    // The same fields in a form.
    let form = Form::new()
        .part("image", Part::bytes(tif.clone()).file_name("scene.tif"))
        .text("bands", "[4, 3, 2]")
        .text("stretch", "minmax")
        .text("points", "[[3, 4, 1]]")
        .text("outputs", "geojson");
    let r = s.post_form("/v1/segment", form).await.ok();
    assert!(r["cached"].as_bool().unwrap());
    assert!(r["geojson"]["features"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raster_and_map_errors_name_the_problem() {
    let s = start().await;
    let tif = b64(&geo_fixture(UTM_TIFF));
    let png = b64(&std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/images/square.png"),
    )
    .unwrap());
    let cases = [
        (
            json!({"image": tif, "points": [[3, 4, 1]], "bands": [9, 2, 1]}),
            "invalid_request",
            "band 9",
        ),
        (
            json!({"image": tif, "points": [[3, 4, 1]], "bands": [1, 2]}),
            "invalid_request",
            "2 bands",
        ),
        (
            json!({"image": tif, "points": [[3, 4, 1]], "stretch": "gamma"}),
            "invalid_request",
            "gamma",
        ),
        (
            json!({"image": tif, "points": [[3, 4, 1]], "crs": "EPSG:3857"}),
            "invalid_request",
            "EPSG:3857",
        ),
        (
            json!({"image": tif, "points": [[3, 4, 1]], "coords": "lonlat"}),
            "invalid_request",
            "lonlat",
        ),
        (
            json!({"image": tif, "points": [[0.0, 0.0, 1]], "coords": "map"}),
            "invalid_prompt",
            "",
        ),
        (
            json!({"image": png, "points": [[3, 4, 1]], "bands": [1, 2, 3]}),
            "invalid_image",
            "TIFF",
        ),
        (
            json!({"image": png, "points": [[3, 4, 1]], "coords": "map"}),
            "not_georeferenced",
            "georeferencing",
        ),
        (
            json!({"image": png, "points": [[3, 4, 1]], "outputs": ["geojson"], "crs": "EPSG:4326"}),
            "not_georeferenced",
            "WGS 84",
        ),
    ];
    for (body, code, words) in cases {
        let r = s.post("/v1/segment", body.clone()).await;
        assert_eq!(r.status, 422, "{body}");
        assert_eq!(r.code(), code, "{body}: {}", r.json());
        assert!(
            r.json()["error"]["message"].as_str().unwrap().contains(words),
            "{}",
            r.json()
        );
    }
}

// ---------------------------------------------------------------------------
// The image-id header
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_image_id_must_be_the_hash_of_the_bytes() {
    let s = start().await;
    let png = std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/images/square.png"),
    )
    .unwrap();
    let hash = hex::encode(sha2::Sha256::digest(&png));
    let send = |claimed: String| {
        s.client
            .post(format!("{}/v1/images", s.url))
            .header("content-type", "image/png")
            .header("x-rsam-image-id", claimed)
            .body(png.clone())
    };
    let r = s.send("POST", "/v1/images", send("0".repeat(64))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "image_id_mismatch");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains(&hash));
    let r = s.send("POST", "/v1/images", send(hash.to_uppercase())).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["image_id"], hash);
}
