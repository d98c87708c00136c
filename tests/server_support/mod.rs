//! The HTTP test harness: a server on a loopback port, a client, and the
//! OpenAPI document as a validator of every JSON response a test receives,
//! so the document stays true. Shared by `server.rs` and `server_models.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::multipart::Form;
use rsam::server::{ServerConfig, ServerHandle};
use serde_json::{json, Value};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------------------
// The OpenAPI document as a validator
// ---------------------------------------------------------------------------

pub struct Spec {
    pub doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
        Spec {
            doc: serde_norway::from_str(&text).expect("openapi.yaml parses"),
            validators: Mutex::new(HashMap::new()),
        }
    })
}

impl Spec {
    /// Follows a local `$ref` (`#/a/b`).
    pub fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).expect("dangling $ref"),
            None => v,
        }
    }

    /// JSON Schema of a documented response body.
    pub fn response_schema(&self, method: &str, path: &str, status: u16, content_type: &str) -> Value {
        let op = &self.doc["paths"][path][method.to_ascii_lowercase()];
        if op.is_null() {
            // Unknown route or method: the generic error.
            assert!(
                status == 404 || status == 405,
                "{method} {path} -> {status} undocumented"
            );
            return json!({"$ref": "#/components/schemas/Error"});
        }
        let response = self.deref(&op["responses"][status.to_string()]);
        assert!(
            !response.is_null(),
            "{method} {path}: status {status} is not documented"
        );
        let schema = &response["content"][content_type]["schema"];
        assert!(
            !schema.is_null(),
            "{method} {path} {status}: content type {content_type} is not documented"
        );
        schema.clone()
    }

    pub fn validator(&self, schema: &Value) -> Arc<jsonschema::Validator> {
        let key = schema.to_string();
        let mut cache = self.validators.lock().unwrap();
        cache
            .entry(key)
            .or_insert_with(|| {
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.doc["components"],
                    "allOf": [schema],
                });
                Arc::new(jsonschema::validator_for(&root).expect("schema compiles"))
            })
            .clone()
    }

    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
        let schema = self.response_schema(method, path, status, content_type);
        if content_type != "application/json" {
            return;
        }
        let value: Value = serde_json::from_slice(body).expect("a JSON body");
        let validator = self.validator(&schema);
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: body does not match openapi.yaml: {errors:?}\n{value}"
        );
    }
}

// ---------------------------------------------------------------------------
// A test server and client
// ---------------------------------------------------------------------------

pub struct Server {
    pub handle: Option<ServerHandle>,
    pub url: String,
    pub client: reqwest::Client,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
    start_model(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny"),
        configure,
    )
    .await
}

/// A server on the model directory `dir`, configured further by `configure`.
pub async fn start_model(dir: PathBuf, configure: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig::new(dir);
    config.max_batch_wait = Duration::ZERO;
    configure(&mut config);
    let mut handle = rsam::server::start(config).await.unwrap();
    handle.wait_ready().await.unwrap();
    Server {
        url: handle.url(),
        handle: Some(handle),
        client: client(),
    }
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    pub async fn send(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        assert!(headers.contains_key("x-request-id"), "{method} {path}: no x-request-id");
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = ct.split(';').next().unwrap().trim().to_string();
        spec().check(method, path, status, &essence, &body);
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, self.client.get(format!("{}{path}", self.url)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        let req = self.client.post(format!("{}{path}", self.url)).json(&body);
        self.send("POST", path, req).await
    }

    pub async fn post_form(&self, path: &str, form: Form) -> Resp {
        let req = self.client.post(format!("{}{path}", self.url)).multipart(form);
        self.send("POST", path, req).await
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.get("/metrics").await.body).unwrap()
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }
}

/// A sample's value: `name` with at least the given labels (summed over the rest).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if matches {
            total += value.parse::<f64>().unwrap();
        }
    }
    total
}
