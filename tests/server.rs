//! The HTTP service end to end: real HTTP on a loopback port, the tiny
//! fixture model. Every JSON response any test receives is validated
//! against `openapi.yaml`, so the document stays true.

mod common;
mod server_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::multipart::{Form, Part};
use rsam::server::{ErrorCode, ServerConfig};
use serde_json::{json, Value};

use common::*;
use server_support::*;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(tiny_dir().join("images").join(name)).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn square() -> String {
    b64(&image_bytes("square.png"))
}

/// The JSON prompt fields of a fixture case.
fn case_query(case: &Value) -> Value {
    let mut q = json!({});
    for key in ["text", "points", "box"] {
        if let Some(v) = case.get(key).filter(|v| !v.is_null()) {
            q[key] = v.clone();
        }
    }
    q
}

fn expected_vec(name: &str) -> Vec<f32> {
    expected()[name].flatten_all().unwrap().to_vec1().unwrap()
}

fn logits_of(result: &Value) -> Vec<f32> {
    let npy = B64.decode(result["logits"].as_str().unwrap()).unwrap();
    let (shape, data) = rsam::npy::read_f32(&npy).unwrap();
    assert_eq!(shape, vec![32, 32]);
    data
}

/// A distinct small PNG per seed.
fn synthetic_png(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5 + seed * 7) as u8, (y * 3 + seed * 13) as u8, (seed * 31) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Pixels where two RLE masks differ.
fn mask_mismatch(a: &Value, b: &Value) -> usize {
    let decode = |v: &Value| rsam::mask::rle::decode(&serde_json::from_value(v.clone()).unwrap()).unwrap();
    decode(a).iter().zip(decode(b)).filter(|(x, y)| **x != *y).count()
}

async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("the test hung")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_parity_and_refine_chain() {
    let s = start().await;
    let cases = cases();
    let mut body = case_query(&cases[0]);
    body["image"] = json!(square());
    body["outputs"] = json!(["logits"]);
    let r = s.post("/v1/segment", body).await.ok();
    let first = &r["results"][0];
    assert!(first.get("rle").is_none(), "rle only when asked");
    let d = max_abs_diff_vec(&logits_of(first), &expected_vec("case0.low_res_logits"));
    assert!(d < 1e-4, "case 0 differs by {d}");
    assert!((first["iou_prediction"].as_f64().unwrap() - cases[0]["iou"].as_f64().unwrap()).abs() < 1e-4);
    assert_eq!(first["area"], cases[0]["mask_area_orig"]);

    // Case 8: case 0 plus a negative click, case 0's logits as mask prompt;
    // case 9 chains on case 8.
    let mut result_id = first["result_id"].as_str().unwrap().to_string();
    for (case, point) in [(8, json!([[60, 70, 0]])), (9, json!([[30, 40, 1]]))] {
        let body = json!({"result_id": result_id, "points": point, "outputs": ["logits", "rle"]});
        let r = s.post("/v1/refine", body).await.ok();
        let res = &r["results"][0];
        assert!(r["cached"].as_bool().unwrap());
        let d = max_abs_diff_vec(&logits_of(res), &expected_vec(&format!("case{case}.low_res_logits")));
        assert!(d < 1e-4, "refined case {case} differs by {d}");
        assert_eq!(res["area"], cases[case]["mask_area_orig"]);
        assert_ne!(res["result_id"].as_str().unwrap(), result_id);
        result_id = res["result_id"].as_str().unwrap().to_string();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resized_images_match_the_library() {
    // The service resizes before queueing; the result must equal the
    // library's own pipeline on the same bytes.
    let s = start().await;
    let model = load_tiny();
    // A noisy PNG makes a body of about a megabyte (parsed off the runtime).
    let noisy = image::RgbImage::from_fn(480, 360, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
        image::Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
    });
    let mut big = std::io::Cursor::new(Vec::new());
    noisy.write_to(&mut big, image::ImageFormat::Png).unwrap();
    let big = big.into_inner();
    assert!(big.len() > 300_000);
    let images = [
        ("wide.png", image_bytes("wide.png"), "the airplane"),
        ("tall.jpg", image_bytes("tall.jpg"), "the ship in the harbor"),
        ("noisy.png", big, "the noise"),
    ];
    for (name, bytes, text) in images {
        let body = json!({"image": b64(&bytes), "text": text, "box": [10, 20, 60, 90], "outputs": ["logits"]});
        let r = s.post("/v1/segment", body).await.ok();
        let feats = model.encode_bytes(&bytes).unwrap();
        assert_eq!(
            (r["width"].as_u64().unwrap(), r["height"].as_u64().unwrap()),
            (feats.width as u64, feats.height as u64)
        );
        let mut prompt = rsam::Prompt::text(text);
        prompt.bbox = Some([10.0, 20.0, 60.0, 90.0]);
        let want = model.predict(&feats, vec![prompt]).unwrap().remove(0);
        let d = max_abs_diff_vec(&logits_of(&r["results"][0]), &want.low_res_logits);
        assert!(d <= 1e-5, "{name}: differs from the library by {d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_request_is_a_cache_hit_and_image_id_reuses_it() {
    let s = start().await;
    let bytes = image_bytes("square.png");
    let body = json!({"image": b64(&bytes), "text": "bridge"});
    let a = s.post("/v1/segment", body.clone()).await.ok();
    let image_id = a["image_id"].as_str().unwrap().to_string();
    assert_eq!(image_id, rsam::server::service::image_id_of(&bytes));
    assert!(!a["cached"].as_bool().unwrap());
    assert!(a["timings_ms"]["encode"].as_f64().unwrap() > 0.0);
    let m = s.metrics().await;
    assert_eq!(metric(&m, "rsam_feature_cache_misses_total", &[]), 1.0);
    assert_eq!(metric(&m, "rsam_feature_cache_hits_total", &[]), 0.0);
    assert_eq!(
        metric(&m, "rsam_stage_duration_seconds_count", &[("stage", "encode")]),
        1.0
    );

    let b = s.post("/v1/segment", body).await.ok();
    assert!(b["cached"].as_bool().unwrap());
    assert_eq!(b["timings_ms"]["encode"].as_f64().unwrap(), 0.0);
    assert_eq!(a["results"][0]["rle"], b["results"][0]["rle"]);
    let c = s
        .post("/v1/segment", json!({"image_id": image_id, "text": "bridge"}))
        .await
        .ok();
    assert!(c["cached"].as_bool().unwrap());
    assert_eq!(a["results"][0]["rle"], c["results"][0]["rle"]);
    let warm = s.post("/v1/images", json!({"image": b64(&bytes)})).await.ok();
    assert_eq!(warm["image_id"], json!(image_id));
    assert!(warm["cached"].as_bool().unwrap());

    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "rsam_feature_cache_misses_total", &[]),
        1.0,
        "nothing re-encoded"
    );
    assert_eq!(metric(&m, "rsam_feature_cache_hits_total", &[]), 3.0);
    assert_eq!(
        metric(&m, "rsam_stage_duration_seconds_count", &[("stage", "encode")]),
        1.0
    );
    assert_eq!(metric(&m, "rsam_feature_cache_entries", &[]), 1.0);
    assert!(metric(&m, "rsam_feature_cache_bytes", &[]) > 0.0);
    for stage in ["image_decode", "text", "decode", "postprocess"] {
        assert!(
            metric(&m, "rsam_stage_duration_seconds_count", &[("stage", stage)]) >= 1.0,
            "{stage}"
        );
    }
    assert_eq!(
        metric(
            &m,
            "rsam_http_requests_total",
            &[("route", "/v1/segment"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "rsam_model_info",
            &[("model", "rsam-tiny-test"), ("device", "cpu"), ("dtype", "f32")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_batch_equals_single_requests() {
    let s = start().await;
    let warm = s.post("/v1/images", json!({"image": square()})).await.ok();
    let id = warm["image_id"].clone();
    let queries: Vec<Value> = cases().iter().take(8).map(case_query).collect();
    let batch = s
        .post(
            "/v1/segment",
            json!({"image_id": id, "queries": queries, "outputs": ["logits", "rle"]}),
        )
        .await
        .ok();
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    for (q, b) in queries.iter().zip(results) {
        let mut single = q.clone();
        single["image_id"] = id.clone();
        single["outputs"] = json!(["logits", "rle"]);
        let r = s.post("/v1/segment", single).await.ok();
        let one = &r["results"][0];
        let d = max_abs_diff_vec(&logits_of(one), &logits_of(b));
        assert!(d <= 1e-5, "batched query differs by {d}");
        // A logit within 1e-5 of 0 may land on the other side of the threshold.
        assert!(mask_mismatch(&one["rle"], &b["rle"]) <= 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_image_are_batched() {
    let s = Arc::new(start_with(|c| c.max_batch_wait = Duration::from_millis(150)).await);
    let id = s.post("/v1/images", json!({"image": square()})).await.ok()["image_id"].clone();
    let texts = [
        "bridge",
        "the large storage tank on the left",
        "a small white vehicle",
        "the harbor",
    ];
    let tasks: Vec<_> = texts
        .iter()
        .map(|t| {
            let (s, body) = (s.clone(), json!({"image_id": id, "text": t, "outputs": ["logits"]}));
            tokio::spawn(async move { s.post("/v1/segment", body).await.ok() })
        })
        .collect();
    let mut batched = Vec::new();
    for t in tasks {
        batched.push(within(20, t).await.unwrap());
    }
    let m = s.metrics().await;
    let (sum, count) = (
        metric(&m, "rsam_batch_size_sum", &[]),
        metric(&m, "rsam_batch_size_count", &[]),
    );
    assert!(
        sum > count,
        "no decode batch held more than one request ({sum} prompts in {count} batches)"
    );
    // Batched results equal unbatched ones.
    let model = load_tiny();
    let feats = model.encode_bytes(&image_bytes("square.png")).unwrap();
    for (t, r) in texts.iter().zip(&batched) {
        let want = model.predict(&feats, vec![rsam::Prompt::text(*t)]).unwrap().remove(0);
        let d = max_abs_diff_vec(&logits_of(&r["results"][0]), &want.low_res_logits);
        assert!(d <= 1e-5, "{t}: batched differs by {d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_output_rle_and_accept_png_agree() {
    let s = start().await;
    let body = json!({"image": square(), "text": "the large storage tank on the left", "outputs": ["rle", "png"]});
    let r = s.post("/v1/segment", body).await.ok();
    let res = &r["results"][0];
    let png = B64.decode(res["png"].as_str().unwrap()).unwrap();
    let from_png = rsam::mask::BinaryMask::from_png(&png).unwrap();
    let rle: rsam::mask::rle::Rle = serde_json::from_value(res["rle"].clone()).unwrap();
    assert_eq!(rle.size, [128, 128]);
    let from_rle = rsam::mask::rle::decode(&rle).unwrap();
    assert_eq!(from_png.data, from_rle);
    assert_eq!(
        from_rle.iter().filter(|&&v| v != 0).count() as u64,
        res["area"].as_u64().unwrap()
    );

    // curl -F image=@scene.png -F text=... -H 'Accept: image/png'
    let form = Form::new()
        .part("image", Part::bytes(image_bytes("square.png")).file_name("square.png"))
        .text("text", "the large storage tank on the left");
    let req = s
        .client
        .post(format!("{}/v1/segment", s.url))
        .header("accept", "image/png")
        .multipart(form);
    let p = s.send("POST", "/v1/segment", req).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.headers["content-type"], "image/png");
    assert_eq!(p.body, png, "the PNG answer is the first result's mask");
    assert_eq!(
        p.headers["x-rsam-image-id"].to_str().unwrap(),
        r["image_id"].as_str().unwrap()
    );
    assert!(p.headers.contains_key("x-rsam-result-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_equals_json_and_polygons_are_sane() {
    let s = start().await;
    let bytes = image_bytes("wide.png");
    let json_req = json!({
        "image": b64(&bytes), "text": "the airplane parked at the top of the airport",
        "points": [[150, 30, 1]], "box": [120, 10, 190, 60], "outputs": ["rle", "logits", "polygons"],
    });
    let a = s.post("/v1/segment", json_req).await.ok();
    let form = Form::new()
        .part(
            "image",
            Part::bytes(bytes.clone())
                .file_name("wide.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("text", "the airplane parked at the top of the airport")
        .text("points", "[[150, 30, 1]]")
        .text("box", "[120, 10, 190, 60]")
        .text("outputs", "rle, logits,polygons");
    let b = s.post_form("/v1/segment", form).await.ok();
    let (ra, rb) = (&a["results"][0], &b["results"][0]);
    assert_eq!(ra["rle"], rb["rle"]);
    assert_eq!(logits_of(ra), logits_of(rb));
    assert_eq!(ra["polygons"], rb["polygons"]);
    let polygons = ra["polygons"].as_array().unwrap();
    assert!(!polygons.is_empty() || ra["area"] == 0);
    for poly in polygons {
        let coords: Vec<f64> = poly.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(coords.len() >= 6 && coords.len().is_multiple_of(2));
        for xy in coords.chunks(2) {
            assert!((0.0..200.0).contains(&xy[0]) && (0.0..150.0).contains(&xy[1]), "{xy:?}");
        }
    }
    // Queries and a mask_input as a .npy file part.
    let npy = B64.decode(ra["logits"].as_str().unwrap()).unwrap();
    let form = Form::new()
        .text("image_id", a["image_id"].as_str().unwrap().to_string())
        .text("queries", r#"[{"text": "the airplane"}, {"points": [[150, 30, 1]]}]"#)
        .text("outputs", r#"["rle"]"#);
    let q = s.post_form("/v1/segment", form).await.ok();
    assert_eq!(q["results"].as_array().unwrap().len(), 2);
    let form = Form::new()
        .text("image_id", a["image_id"].as_str().unwrap().to_string())
        .text("text", "the airplane")
        .part("mask_input", Part::bytes(npy).file_name("prev.npy"));
    s.post_form("/v1/segment", form).await.ok();
    // /v1/images takes a form and raw bytes too.
    let form = Form::new().part("image", Part::bytes(bytes.clone()).file_name("wide.png"));
    assert!(s.post_form("/v1/images", form).await.ok()["cached"].as_bool().unwrap());
    let req = s
        .client
        .post(format!("{}/v1/images", s.url))
        .header("content-type", "image/png")
        .body(bytes);
    let raw = s.send("POST", "/v1/images", req).await.ok();
    assert_eq!(raw["image_id"], a["image_id"]);
}

/// Posts a body and checks the status and error code.
async fn expect_error(s: &Server, path: &str, body: Value, status: u16, code: &str) {
    let r = s.post(path, body.clone()).await;
    assert_eq!((r.status, r.code().as_str()), (status, code), "{path} {body:.200}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_status_and_code() {
    let s = start_with(|c| {
        c.body_limit = 1 << 20;
        c.max_pixels = 20_000;
    })
    .await;
    let img = square();
    let id = s.post("/v1/images", json!({"image": img})).await.ok()["image_id"].clone();
    let seg = |extra: Value| {
        let mut body = json!({"image_id": id});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"image": "!!!not base64", "text": "a"}), 400, "malformed_base64"),
        (seg(json!({"text": "a", "bogus": 1})), 400, "malformed_json"),
        (seg(json!({"text": 5})), 400, "malformed_json"),
        (
            json!({"image_id": "0".repeat(64), "text": "a"}),
            404,
            "image_not_cached",
        ),
        (
            json!({"image": b64(b"hello, not an image"), "text": "a"}),
            415,
            "unsupported_image_format",
        ),
        (
            json!({"image": b64(&image_bytes("square.png")[..200]), "text": "a"}),
            422,
            "invalid_image",
        ),
        (
            json!({"image": b64(&image_bytes("wide.png")), "text": "a"}),
            422,
            "image_too_large",
        ),
        (seg(json!({"points": [[500, 5, 1]]})), 422, "invalid_prompt"),
        (seg(json!({"points": [[1e39, 5, 1]]})), 422, "invalid_prompt"),
        (seg(json!({"points": [[5, -1, 1]]})), 422, "invalid_prompt"),
        (seg(json!({"points": [[5, 5, 2]]})), 422, "invalid_prompt"),
        (seg(json!({"points": [[5, 5, 0.5]]})), 422, "invalid_prompt"),
        (seg(json!({"points": [[5, 5]]})), 422, "invalid_prompt"),
        (seg(json!({"box": [50, 50, 10, 10]})), 422, "invalid_prompt"),
        (seg(json!({"box": [0, 0, 10]})), 422, "invalid_prompt"),
        (seg(json!({"text": ""})), 422, "invalid_text"),
        (seg(json!({"text": "   "})), 422, "invalid_text"),
        (seg(json!({"text": "ship ".repeat(1000)})), 422, "invalid_text"),
        (
            seg(json!({"points": vec![json!([5, 5, 1]); 65]})),
            422,
            "too_many_points",
        ),
        (
            seg(json!({"queries": vec![json!({"text": "a"}); 65]})),
            422,
            "too_many_queries",
        ),
        (
            seg(json!({"queries": [{"text": "a"}, {"points": [[999, 1, 1]]}]})),
            422,
            "invalid_prompt",
        ),
        (seg(json!({"queries": []})), 422, "no_prompt"),
        (seg(json!({"queries": [{}]})), 422, "no_prompt"),
        (seg(json!({})), 422, "no_prompt"),
        (
            seg(json!({"text": "a", "queries": [{"text": "b"}]})),
            422,
            "invalid_request",
        ),
        (seg(json!({"text": "a", "image": img})), 422, "invalid_request"),
        (json!({"text": "a"}), 422, "invalid_request"),
        (seg(json!({"text": "a", "outputs": ["jpeg"]})), 422, "invalid_request"),
        (
            seg(json!({"mask_input": b64(&rsam::npy::write_f32(&[16, 16], &[0.0; 256]))})),
            422,
            "invalid_mask_input",
        ),
        (seg(json!({"mask_input": b64(b"not a npy")})), 422, "invalid_mask_input"),
    ];
    for (body, status, code) in cases {
        expect_error(&s, "/v1/segment", body, status, code).await;
    }
    expect_error(
        &s,
        "/v1/refine",
        json!({"result_id": "nope", "points": [[1, 1, 1]]}),
        404,
        "result_not_found",
    )
    .await;
    expect_error(
        &s,
        "/v1/images",
        json!({"image": b64(b"GIF89a....")}),
        415,
        "unsupported_image_format",
    )
    .await;
    expect_error(&s, "/v1/images", json!({}), 400, "malformed_json").await;
    let r = s
        .post("/v1/segment", json!({"image_id": id, "text": "a", "outputs": ["rle"]}))
        .await
        .ok();
    let rid = r["results"][0]["result_id"].clone();
    let many = vec![json!([5, 5, 1]); 65];
    expect_error(
        &s,
        "/v1/refine",
        json!({"result_id": rid, "points": many}),
        422,
        "too_many_points",
    )
    .await;
    expect_error(
        &s,
        "/v1/refine",
        json!({"result_id": rid, "points": [[900, 1, 0]]}),
        422,
        "invalid_prompt",
    )
    .await;

    // Bodies that are not JSON at all.
    let raw = |path: &str, ct: &str, body: Vec<u8>| {
        s.client
            .post(format!("{}{path}", s.url))
            .header("content-type", ct.to_string())
            .body(body)
    };
    let cases = [
        ("application/json", b"{not json".to_vec(), 400, "malformed_json"),
        (
            "multipart/form-data; boundary=xyz",
            b"garbage".to_vec(),
            400,
            "malformed_multipart",
        ),
        (
            "multipart/form-data",
            b"no boundary".to_vec(),
            400,
            "malformed_multipart",
        ),
        ("text/plain", b"the ship".to_vec(), 415, "unsupported_media_type"),
        ("image/png", image_bytes("square.png"), 415, "unsupported_media_type"),
        ("application/json", vec![b' '; (1 << 20) + 10], 413, "payload_too_large"),
    ];
    for (ct, body, status, code) in cases {
        let r = s.send("POST", "/v1/segment", raw("/v1/segment", ct, body)).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{ct}");
    }
    let form = Form::new()
        .part("image", Part::bytes(image_bytes("square.png")))
        .text("colour", "red");
    let r = s.post_form("/v1/segment", form).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_request"));

    // Routes.
    let r = s.get("/nope").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = s.get("/v1/segment").await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "rsam_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        metric(
            &m,
            "rsam_http_requests_total",
            &[("route", "/v1/segment"), ("status", "422")]
        ) >= 20.0
    );
    // The model never saw a bad request: one warm-up encode, no failures.
    assert_eq!(metric(&m, "rsam_feature_cache_misses_total", &[]), 1.0);
}

/// Sends `head` (request line and headers) and then `body` over a raw
/// connection, and returns the status line of the answer. Writing fails if
/// the server resets the connection, as it did when it answered 413 without
/// reading the rest of a large body.
async fn raw_exchange(url: &str, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body)
        .await
        .unwrap_or_else(|e| panic!("sending the body: {e}"));
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tcp
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("reading the answer: {e}"));
        assert!(n > 0, "the server closed without answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_large_bodies_get_their_error_not_a_reset() {
    let s = start_with(|c| c.body_limit = 1 << 20).await;
    // Sixteen times the limit: far more than socket buffers absorb, so a
    // server that does not read it resets the connection under the client.
    let big = vec![b' '; 16 << 20];
    for (path, ct, status, code) in [
        ("/v1/segment", "application/json", 413, "payload_too_large"),
        ("/v1/images", "image/png", 413, "payload_too_large"),
        ("/v1/segment", "text/plain", 415, "unsupported_media_type"),
        (
            "/v1/refine",
            "multipart/form-data; boundary=x",
            415,
            "unsupported_media_type",
        ),
    ] {
        let req = s
            .client
            .post(format!("{}{path}", s.url))
            .header("content-type", ct)
            .body(big.clone());
        let r = s.send("POST", path, req).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{path} {ct}");
    }

    // Without a declared length (chunked), the limit is found while reading.
    let mut chunked = Vec::new();
    for _ in 0..64 {
        chunked.extend_from_slice(format!("{:x}\r\n", 256 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 256 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/segment HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let status = raw_exchange(&s.url, head, &chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // A client that waits for 100-continue is answered at once and sends nothing.
    let head = "POST /v1/segment HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 1000000000\r\nexpect: 100-continue\r\n\r\n";
    let status = tokio::time::timeout(Duration::from_secs(5), raw_exchange(&s.url, head, b""))
        .await
        .expect("no answer within 5 s to a request expecting 100-continue");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_gives_504_and_auth_gives_401() {
    // A decode waits 400 ms for batch mates; the deadline is 100 ms.
    let s = start_with(|c| {
        c.max_batch_wait = Duration::from_millis(400);
        c.request_timeout = Duration::from_millis(150);
        c.api_key = Some("sesame".into());
    })
    .await;
    let auth = |req: reqwest::RequestBuilder| req.header("authorization", "Bearer sesame");
    let url = format!("{}/v1/images", s.url);
    let warm = s
        .send(
            "POST",
            "/v1/images",
            auth(s.client.post(&url)).json(&json!({"image": square()})),
        )
        .await
        .ok();
    let body = json!({"image_id": warm["image_id"], "text": "bridge"});
    let url = format!("{}/v1/segment", s.url);
    let r = s
        .send("POST", "/v1/segment", auth(s.client.post(&url)).json(&body))
        .await;
    assert_eq!((r.status, r.code().as_str()), (504, "timeout"));

    let r = s.get("/v1/model").await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let url = format!("{}/v1/model", s.url);
    let wrong = s.client.get(&url).header("x-api-key", "sesame!");
    let r = s.send("GET", "/v1/model", wrong).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let right = s.client.get(&url).header("x-api-key", "sesame");
    let info = s.send("GET", "/v1/model", right).await.ok();
    assert_eq!(info["image_size"], 128);
    assert_eq!(info["low_res_size"], 32);
    assert_eq!(s.get("/healthz").await.status, 200, "probes need no key");
    assert_eq!(s.get("/metrics").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_get_200_or_503() {
    let s = Arc::new(start_with(|c| c.max_queue = 2).await);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = s.clone();
            let body = json!({"image": b64(&synthetic_png(i)), "text": "the ship", "points": [[10, 10, 1]]});
            tokio::spawn(async move { s.post("/v1/segment", body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = within(25, t).await.unwrap();
        if r.status == 503 {
            assert_eq!(r.code(), "overloaded");
            assert_eq!(r.headers["retry-after"], "1");
        }
        statuses.push(r.status);
    }
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    let busy = statuses.iter().filter(|&&c| c == 503).count();
    assert_eq!(ok + busy, 64, "{statuses:?}");
    assert!(ok > 0 && busy > 0, "{ok} answered, {busy} refused");
    // Still healthy and serving.
    let r = s
        .post("/v1/segment", json!({"image": square(), "text": "bridge"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        metric(&s.metrics().await, "rsam_inflight_requests", &[]),
        1.0,
        "only /metrics itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_encodes_a_new_image_once() {
    let s = Arc::new(start_with(|c| c.max_batch_wait = Duration::from_millis(20)).await);
    let img = b64(&synthetic_png(99));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (s, body) = (s.clone(), json!({"image": img, "text": "the ship"}));
            tokio::spawn(async move { s.post("/v1/segment", body).await.ok() })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        let r = within(20, t).await.unwrap();
        fresh += usize::from(!r["cached"].as_bool().unwrap());
    }
    let m = s.metrics().await;
    assert_eq!(metric(&m, "rsam_feature_cache_misses_total", &[]), 1.0);
    assert_eq!(metric(&m, "rsam_feature_cache_hits_total", &[]), 5.0);
    assert_eq!(fresh, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refine_after_eviction_and_rewarm() {
    // Room for one tiny-model image: the second evicts the first.
    let probe = start().await;
    let bytes_one = probe.post("/v1/images", json!({"image": square()})).await.ok();
    let _ = bytes_one;
    let info = probe.get("/v1/model").await.ok();
    let one = info["cache"]["bytes"].as_u64().unwrap() as usize;
    drop(probe);
    let s = start_with(|c| c.cache_bytes = one + one / 2).await;
    let a = s
        .post("/v1/segment", json!({"image": square(), "text": "bridge"}))
        .await
        .ok();
    let rid = a["results"][0]["result_id"].clone();
    s.post("/v1/images", json!({"image": b64(&image_bytes("wide.png"))}))
        .await
        .ok();
    let m = s.metrics().await;
    assert_eq!(metric(&m, "rsam_feature_cache_evictions_total", &[]), 1.0);
    assert_eq!(metric(&m, "rsam_feature_cache_entries", &[]), 1.0);
    expect_error(
        &s,
        "/v1/refine",
        json!({"result_id": rid, "points": [[5, 5, 1]]}),
        404,
        "image_not_cached",
    )
    .await;
    expect_error(
        &s,
        "/v1/segment",
        json!({"image_id": a["image_id"], "text": "a"}),
        404,
        "image_not_cached",
    )
    .await;
    s.post("/v1/images", json!({"image": square()})).await.ok();
    let r = s
        .post("/v1/refine", json!({"result_id": rid, "points": [[5, 5, 1]]}))
        .await
        .ok();
    assert_eq!(r["image_id"], a["image_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let mut s = start_with(|c| c.max_batch_wait = Duration::from_millis(500)).await;
    let id = s.post("/v1/images", json!({"image": square()})).await.ok()["image_id"].clone();
    let (http, url) = (s.client.clone(), format!("{}/v1/segment", s.url));
    let in_flight = tokio::spawn(async move {
        let r = http
            .post(url)
            .json(&json!({"image_id": id, "text": "bridge"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let handle = s.handle.take().unwrap();
    handle.shutdown();
    let (status, body) = within(10, in_flight).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    within(10, handle.join()).await.unwrap();
    let after = client().get(format!("{}/healthz", s.url)).send().await;
    assert!(after.is_err(), "the listener is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_routes_codes_and_probes() {
    let s = start().await;
    // Routes served == routes documented.
    let served: BTreeSet<(String, String)> = rsam::server::http::routes()
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = spec().doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    assert_eq!(served, documented);
    // Every served route answers (not 404 / 405).
    for (method, path) in &served {
        let req = match method.as_str() {
            "get" => s.client.get(format!("{}{path}", s.url)),
            _ => s.client.post(format!("{}{path}", s.url)).json(&json!({})),
        };
        let r = s.send(&method.to_uppercase(), path, req).await;
        assert!(r.status != 404 && r.status != 405, "{method} {path}: {}", r.status);
    }
    // Error codes emitted == error codes documented.
    let emitted: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let listed: BTreeSet<&str> = spec().doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(emitted, listed);
    // The served document is the file.
    let doc = s.get("/openapi.yaml").await;
    assert_eq!(
        doc.body,
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap()
    );
    assert_eq!(s.get("/healthz").await.ok()["status"], "ok");
    assert_eq!(s.get("/readyz").await.ok()["status"], "ready");
    let info = s.get("/v1/model").await.ok();
    assert_eq!(info["model"], "rsam-tiny-test");
    assert_eq!(
        (info["device"].as_str(), info["dtype"].as_str()),
        (Some("cpu"), Some("f32"))
    );
    // Request ids: a client's own is kept.
    let req = s
        .client
        .get(format!("{}/healthz", s.url))
        .header("x-request-id", "abc-123");
    assert_eq!(s.send("GET", "/healthz", req).await.headers["x-request-id"], "abc-123");
    let m = s.metrics().await;
    for name in [
        "rsam_http_requests_total",
        "rsam_http_request_duration_seconds_bucket",
        "rsam_feature_cache_hits_total",
        "rsam_feature_cache_misses_total",
        "rsam_feature_cache_evictions_total",
        "rsam_feature_cache_bytes",
        "rsam_feature_cache_entries",
        "rsam_queue_depth",
        "rsam_inflight_requests",
        "rsam_batch_size_bucket",
        "rsam_model_info",
    ] {
        assert!(m.lines().any(|l| l.starts_with(name)), "{name} missing from /metrics");
    }
    assert!(m.contains("route=\"/v1/model\""));
    assert_eq!(s.handle().addr().ip().to_string(), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_model_directory_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut handle = rsam::server::start(ServerConfig::new(dir.path())).await.unwrap();
    let err = within(10, handle.wait_ready()).await.unwrap_err();
    assert!(err.to_string().contains("cannot load the model"), "{err}");
    within(10, handle.join()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_model_is_ready_model_routes_answer_503() {
    use rsam::server::http::{router, AppState};
    use rsam::server::metrics::Metrics;
    // The router without a loaded model: what clients see while it loads.
    let state = AppState::new(ServerConfig::new(tiny_dir()), Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let s = Server {
        handle: None,
        url,
        client: client(),
    };
    assert_eq!(s.get("/healthz").await.status, 200);
    for r in [
        s.get("/readyz").await,
        s.get("/v1/model").await,
        s.post("/v1/segment", json!({"image": square(), "text": "a"})).await,
    ] {
        assert_eq!((r.status, r.code().as_str()), (503, "not_ready"));
        assert_eq!(r.headers["retry-after"], "1");
    }
    server.abort();
}
