//! Prometheus metrics. The names are a contract with the Grafana dashboard:
//! change none of them.
//!
//! Each server owns its own [`Registry`] (not the process-global one) so
//! that several servers in one process (the tests) keep separate counts.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Pipeline stages timed in `rsam_stage_duration_seconds{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Image bytes to RGB pixels (and the resize to the model's input size).
    ImageDecode,
    /// The image encoder.
    Encode,
    /// Tokenisation and prompt validation (the text encoder itself runs
    /// inside `decode`).
    Text,
    /// One decode batch: text encoder, prompt encoder, TWGM, mask decoder.
    Decode,
    /// Upsampling, thresholding, RLE / PNG / polygons / .npy.
    Postprocess,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ImageDecode => "image_decode",
            Stage::Encode => "encode",
            Stage::Text => "text",
            Stage::Decode => "decode",
            Stage::Postprocess => "postprocess",
        }
    }
}

/// Latency buckets from 0.5 ms to 60 s: the tiny test model answers in
/// milliseconds, a large image on a CPU in tens of seconds.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
}

/// All metrics of one server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub stage_duration: HistogramVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_evictions: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
    pub queue_depth: IntGauge,
    pub inflight: IntGauge,
    pub batch_size: Histogram,
    pub model_info: IntGaugeVec,
    pub window_searches: IntCounter,
    pub windows_encoded: IntCounter,
    pub windows_per_search: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers a metric; the names are constants, so failure is a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let counter = |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid metric"));
        let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("valid metric"));
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            register(&r, HistogramVec::new(opts, labels).expect("valid metric"))
        };
        Self {
            http_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("rsam_http_requests_total", "HTTP requests by route template and status"),
                    &["route", "status"],
                )
                .expect("valid metric"),
            ),
            http_duration: histogram(
                "rsam_http_request_duration_seconds",
                "HTTP request latency by route template",
                &["route"],
                latency_buckets(),
            ),
            stage_duration: histogram(
                "rsam_stage_duration_seconds",
                "Time per pipeline stage",
                &["stage"],
                latency_buckets(),
            ),
            cache_hits: counter(
                "rsam_feature_cache_hits_total",
                "Requests served from cached image features",
            ),
            cache_misses: counter("rsam_feature_cache_misses_total", "Image encodings"),
            cache_evictions: counter("rsam_feature_cache_evictions_total", "Features evicted from the cache"),
            cache_bytes: gauge("rsam_feature_cache_bytes", "Bytes of cached image features"),
            cache_entries: gauge("rsam_feature_cache_entries", "Images in the feature cache"),
            queue_depth: gauge("rsam_queue_depth", "Jobs waiting for the model worker"),
            inflight: gauge("rsam_inflight_requests", "HTTP requests being served"),
            batch_size: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("rsam_batch_size", "Prompts per decode batch")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                )
                .expect("valid metric"),
            ),
            model_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("rsam_model_info", "The loaded model (value 1)"),
                    &["model", "kind", "device", "dtype"],
                )
                .expect("valid metric"),
            ),
            window_searches: counter("rsam_window_searches_total", "Windowed searches run"),
            windows_encoded: counter(
                "rsam_windows_encoded_total",
                "Windows of windowed searches encoded (not taken from the cache)",
            ),
            windows_per_search: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("rsam_windows_per_search", "Windows decoded per windowed search")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
                )
                .expect("valid metric"),
            ),
            registry: r,
        }
    }

    pub fn observe_stage(&self, stage: Stage, elapsed: Duration) {
        self.stage_duration
            .with_label_values(&[stage.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_batch(&self, prompts: usize) {
        self.batch_size.observe(prompts as f64);
    }

    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// `kind` is `rsam` or `sam2`.
    pub fn set_model_info(&self, model: &str, kind: &str, device: &str, dtype: &str) {
        self.model_info.with_label_values(&[model, kind, device, dtype]).set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
