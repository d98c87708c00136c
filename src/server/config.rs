//! Server settings, independent of how they were given (flags, environment,
//! or code: the tests and the load-test example build one directly).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `rsam serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Model directory (config.json, weights, tokenizer).
    pub model_dir: PathBuf,
    pub addr: SocketAddr,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// Decompression-bomb guard: largest `width * height` accepted.
    pub max_pixels: u64,
    /// Feature cache capacity in bytes.
    pub cache_bytes: usize,
    /// Model jobs waiting beyond this get 503.
    pub max_queue: usize,
    /// Deadline of a whole request (504 past it).
    pub request_timeout: Duration,
    /// When set, `/v1/*` needs `Authorization: Bearer KEY` or `x-api-key: KEY`.
    pub api_key: Option<String>,
    pub max_batch_size: usize,
    pub max_batch_wait: Duration,
    /// Largest request body in bytes (413 above).
    pub body_limit: usize,
    pub max_points: usize,
    pub max_queries: usize,
    /// How long results stay refinable.
    pub result_ttl: Duration,
    /// How many results stay refinable.
    pub result_capacity: usize,
    /// Model worker threads (one on a CUDA device).
    pub workers: usize,
    /// Most queued images encoded as one batch.
    pub max_encode_batch: usize,
}

impl ServerConfig {
    /// Defaults for a model directory, listening on a free loopback port.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            device: "cpu".into(),
            dtype: "f32".into(),
            max_pixels: crate::preprocess::DEFAULT_MAX_PIXELS,
            cache_bytes: 2048 << 20,
            max_queue: 256,
            request_timeout: Duration::from_secs(60),
            api_key: None,
            max_batch_size: 16,
            max_batch_wait: Duration::from_millis(2),
            body_limit: 32 << 20,
            max_points: 64,
            max_queries: 64,
            result_ttl: Duration::from_secs(600),
            result_capacity: 1000,
            workers: 1,
            max_encode_batch: 1,
        }
    }
}
