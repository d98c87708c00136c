//! `rsam serve` flags. Every flag can also be set with an `RSAM_*`
//! environment variable, the usual way to configure a container.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::server::ServerConfig;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `rsam serve` flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model directory (config.json, weights, tokenizer); default: the bundled weights/rsam-demo.
    #[arg(long, env = "RSAM_MODEL")]
    pub model: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", env = "RSAM_ADDR")]
    pub addr: SocketAddr,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", env = "RSAM_DEVICE")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32", env = "RSAM_DTYPE")]
    pub dtype: String,
    /// Image-feature cache size in MiB (LRU by bytes).
    #[arg(long, default_value_t = 2048, env = "RSAM_CACHE_MIB")]
    pub cache_mib: usize,
    /// Model jobs allowed to wait; beyond that requests get 503 with Retry-After.
    #[arg(long, default_value_t = 256, env = "RSAM_MAX_QUEUE")]
    pub max_queue: usize,
    /// Deadline of a whole request in seconds (504 past it).
    #[arg(long, default_value_t = 60, env = "RSAM_REQUEST_TIMEOUT_S")]
    pub request_timeout_s: u64,
    /// Require this key on /v1/* (Authorization: Bearer KEY, or x-api-key: KEY).
    #[arg(long, env = "RSAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Most prompts decoded in one batch across concurrent requests on one image.
    #[arg(long, default_value_t = 16, env = "RSAM_MAX_BATCH_SIZE")]
    pub max_batch_size: usize,
    /// Longest a decode waits for batch mates, in milliseconds.
    #[arg(long, default_value_t = 2, env = "RSAM_MAX_BATCH_WAIT_MS")]
    pub max_batch_wait_ms: u64,
    /// Largest request body in MiB (413 above).
    #[arg(long, default_value_t = 32, env = "RSAM_MAX_BODY_MIB")]
    pub max_body_mib: usize,
    /// Most points in one prompt.
    #[arg(long, default_value_t = 64, env = "RSAM_MAX_POINTS")]
    pub max_points: usize,
    /// Most queries in one request.
    #[arg(long, default_value_t = 64, env = "RSAM_MAX_QUERIES")]
    pub max_queries: usize,
    /// How long a result stays refinable, in seconds.
    #[arg(long, default_value_t = 600, env = "RSAM_RESULT_TTL_S")]
    pub result_ttl_s: u64,
    /// How many results stay refinable (oldest dropped first).
    #[arg(long, default_value_t = 1000, env = "RSAM_RESULT_CAPACITY")]
    pub result_capacity: usize,
    /// Largest image accepted, in pixels (decompression-bomb guard).
    #[arg(long, default_value_t = crate::preprocess::DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
    /// Model worker threads (1 is best on one device; always 1 on CUDA).
    #[arg(long, default_value_t = 1, env = "RSAM_WORKERS")]
    pub workers: usize,
    /// Most queued images (of different requests) encoded as one batch: a
    /// GPU's throughput grows with the batch; 1 encodes one at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64), env = "RSAM_MAX_ENCODE_BATCH")]
    pub max_encode_batch: u64,
    /// Log format: text or json (one JSON object per line). Filter with RUST_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RSAM_LOG_FORMAT")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    pub fn to_config(&self) -> ServerConfig {
        ServerConfig {
            model_dir: self.model.clone().unwrap_or_else(crate::predictor::default_model_dir),
            addr: self.addr,
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            max_pixels: self.max_pixels,
            cache_bytes: self.cache_mib.saturating_mul(1 << 20),
            max_queue: self.max_queue,
            request_timeout: Duration::from_secs(self.request_timeout_s),
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            max_batch_size: self.max_batch_size,
            max_batch_wait: Duration::from_millis(self.max_batch_wait_ms),
            body_limit: self.max_body_mib.saturating_mul(1 << 20),
            max_points: self.max_points,
            max_queries: self.max_queries,
            result_ttl: Duration::from_secs(self.result_ttl_s),
            result_capacity: self.result_capacity,
            workers: self.workers,
            max_encode_batch: self.max_encode_batch as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn every_flag_has_an_rsam_environment_variable() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments().filter(|a| a.get_long().is_some()) {
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            let want = format!("RSAM_{}", arg.get_long().unwrap().to_uppercase().replace('-', "_"));
            assert_eq!(env, want, "--{}", arg.get_long().unwrap());
        }
    }

    #[test]
    fn defaults_and_conversion() {
        let cli = Cli::try_parse_from(["rsam", "--model", "m", "--cache-mib", "3", "--api-key", ""]).unwrap();
        let c = cli.serve.to_config();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.cache_bytes, 3 << 20);
        assert_eq!(c.body_limit, 32 << 20);
        assert_eq!((c.max_points, c.max_queries), (64, 64));
        assert_eq!(c.api_key, None, "an empty key means no key");
        assert!(Cli::try_parse_from(["rsam", "--model", "m", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn max_encode_batch_is_one_to_64() {
        let parse = |n: &str| Cli::try_parse_from(["rsam", "--max-encode-batch", n]);
        assert_eq!(
            Cli::try_parse_from(["rsam"])
                .unwrap()
                .serve
                .to_config()
                .max_encode_batch,
            1
        );
        assert_eq!(parse("8").unwrap().serve.to_config().max_encode_batch, 8);
        for bad in ["0", "65", "x"] {
            let err = parse(bad).err().expect("refused").to_string();
            assert!(err.contains("--max-encode-batch"), "{bad}: {err}");
        }
    }
}
