//! The web page at `/` over real HTTP (the tiny fixture model): every
//! embedded file is served at its path with its content type, validators
//! and caching headers, as `openapi.yaml` documents it; the page is public
//! when the server has an API key; unknown assets are 404. The page itself
//! runs in a real browser in `tests/browser/test_page.py` (CI).

mod common;

use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use rsam::server::page::ASSETS;
use rsam::server::{ServerConfig, ServerHandle};
use serde_json::Value;

use common::tiny_dir;

async fn start(api_key: Option<&str>) -> ServerHandle {
    let mut config = ServerConfig::new(tiny_dir());
    config.api_key = api_key.map(str::to_string);
    let mut handle = rsam::server::start(config).await.unwrap();
    handle.wait_ready().await.unwrap();
    handle
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header(a: &Answer, name: impl reqwest::header::AsHeaderName) -> &str {
    a.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn openapi() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// The content types `openapi.yaml` lists for `GET path` 200.
fn documented_types(doc: &Value, path: &str) -> Vec<String> {
    let mut response = &doc["paths"][path]["get"]["responses"]["200"];
    if let Some(r) = response["$ref"].as_str() {
        response = doc.pointer(r.trim_start_matches('#')).unwrap();
    }
    response["content"]
        .as_object()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_file_is_served_with_its_type_validator_and_cache_policy() {
    let server = start(None).await;
    let doc = openapi();
    for asset in ASSETS {
        let a = send(client().get(format!("{}{}", server.url(), asset.path))).await;
        assert_eq!(a.status, 200, "{}", asset.path);
        assert_eq!(header(&a, CONTENT_TYPE), asset.content_type, "{}", asset.path);
        assert_eq!(a.body, asset.bytes, "{}", asset.path);
        assert_eq!(header(&a, CACHE_CONTROL), "no-cache", "{}", asset.path);
        assert_eq!(header(&a, "x-content-type-options"), "nosniff");
        let essence = asset.content_type.split(';').next().unwrap();
        assert_eq!(
            documented_types(&doc, asset.path),
            vec![essence],
            "{} in openapi.yaml",
            asset.path
        );

        // Revalidation: the same ETag gives a bodiless 304, another a 200.
        let etag = header(&a, ETAG).to_string();
        assert!(
            etag.starts_with('"') && etag.len() > 10,
            "{}: ETag {etag:?}",
            asset.path
        );
        let url = format!("{}{}", server.url(), asset.path);
        let again = send(client().get(&url).header(IF_NONE_MATCH, &etag)).await;
        assert_eq!((again.status, again.body.len()), (304, 0), "{}", asset.path);
        assert_eq!(header(&again, ETAG), etag);
        let stale = send(client().get(&url).header(IF_NONE_MATCH, "\"0000\"")).await;
        assert_eq!(stale.status, 200, "{}", asset.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_has_the_test_hooks_and_loads_its_assets_relatively() {
    let server = start(None).await;
    let a = send(client().get(format!("{}/", server.url()))).await;
    assert_eq!(header(&a, CONTENT_TYPE), "text/html; charset=utf-8");
    let csp = header(&a, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = String::from_utf8(a.body).unwrap();
    for hook in [
        "image-input",
        "text-input",
        "segment-button",
        "mask-overlay",
        "results",
        "error",
    ] {
        assert!(
            html.contains(&format!("data-testid=\"{hook}\"")),
            "no data-testid {hook}"
        );
    }
    for asset in ASSETS.iter().filter(|a| a.path != "/" && !a.path.ends_with(".js")) {
        // The page names its stylesheet and samples by relative URL; the
        // scripts import one another (checked in the browser).
        let relative = asset.path.trim_start_matches('/');
        assert!(
            html.contains(&format!("\"{relative}\"")),
            "the page does not use {relative}"
        );
    }
    assert!(html.contains("src=\"assets/app.js\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_public_when_the_api_needs_a_key() {
    let server = start(Some("sesame")).await;
    for asset in ASSETS {
        let a = send(client().get(format!("{}{}", server.url(), asset.path))).await;
        assert_eq!(a.status, 200, "{} must load without a key", asset.path);
    }
    let model = send(client().get(format!("{}/v1/model", server.url()))).await;
    assert_eq!(model.status, 401, "the API itself still needs the key");
    let keyed = client().get(format!("{}/v1/model", server.url())).bearer_auth("sesame");
    assert_eq!(send(keyed).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_assets_are_404_and_other_methods_405() {
    let server = start(None).await;
    for path in ["/assets/nope.js", "/assets/samples/nope.jpg", "/assets/", "/index.html"] {
        let a = send(client().get(format!("{}{path}", server.url()))).await;
        assert_eq!(a.status, 404, "{path}");
        let error: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(error["error"]["code"], "not_found", "{path}");
    }
    let a = send(client().post(format!("{}/", server.url())).body("x")).await;
    assert_eq!(a.status, 405);
    let head = send(client().head(format!("{}/assets/app.js", server.url()))).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(header(&head, CONTENT_TYPE), "text/javascript; charset=utf-8");
}
