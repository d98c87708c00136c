//! A small load client for `rsam serve`: N concurrent clients, bounded by a
//! request count and a duration, on loopback only, with a chosen share of
//! cache misses (a new image each time) among cache hits (the same image).
//! Prints throughput and latency percentiles.
//!
//! ```text
//! # start a server in-process on a model directory:
//! cargo run --release --example load_test -- --model tests/fixtures/rsam-tiny --clients 4 --requests 200
//! # or target a running server (loopback addresses only):
//! cargo run --release --example load_test -- --url http://127.0.0.1:8080 --image scene.jpg --miss-ratio 0.1
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Load-test an rsam server on loopback")]
struct Args {
    /// Start a server in-process on this model directory.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    model: Option<PathBuf>,
    /// Target a running server instead (must be a loopback address).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Stop after this many requests in all.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Stop after this many seconds, whatever the count.
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// Share of requests that send a never-seen image (cache misses).
    #[arg(long, default_value_t = 0.0)]
    miss_ratio: f64,
    /// The image for cache hits (default: a synthetic 256 x 256 PNG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Referring sentence sent with every request.
    #[arg(long, default_value = "the ship near the harbor")]
    text: String,
}

/// One request's outcome.
struct Sample {
    latency: Duration,
    status: u16,
}

/// A PNG that differs for every seed, so each is a cache miss.
fn synthetic_png(seed: u64) -> Vec<u8> {
    let img = image::RgbImage::from_fn(256, 256, |x, y| {
        let v = (x as u64 * 7 + y as u64 * 13 + seed * 101) % 251;
        image::Rgb([v as u8, (v * 3 % 251) as u8, (seed % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    out.into_inner()
}

/// Refuses anything but loopback targets: this tool must never load other hosts.
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").context("--url must start with http://")?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--url {url}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed");
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

struct Shared {
    url: String,
    hit_image: String,
    text: String,
    miss_ratio: f64,
    issued: AtomicUsize,
    limit: usize,
    until: Instant,
}

impl Shared {
    /// The next request body, or `None` when the budget is spent.
    fn next_body(&self) -> Option<serde_json::Value> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if n >= self.limit || Instant::now() >= self.until {
            return None;
        }
        // Spread misses evenly: request n is a miss when the running share
        // of misses falls behind the target.
        let misses_before = (n as f64 * self.miss_ratio).floor();
        let misses_after = ((n + 1) as f64 * self.miss_ratio).floor();
        let image = if misses_after > misses_before {
            base64::engine::general_purpose::STANDARD.encode(synthetic_png(1_000_000 + n as u64))
        } else {
            self.hit_image.clone()
        };
        Some(json!({"image": image, "text": self.text}))
    }
}

async fn client_loop(client: reqwest::Client, shared: Arc<Shared>) -> Vec<Sample> {
    let mut samples = Vec::new();
    while let Some(body) = shared.next_body() {
        let start = Instant::now();
        let status = match client
            .post(format!("{}/v1/segment", shared.url))
            .json(&body)
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                status
            }
            Err(_) => 0,
        };
        samples.push(Sample {
            latency: start.elapsed(),
            status,
        });
    }
    samples
}

fn report(samples: &[Sample], elapsed: Duration) {
    let count = |f: &dyn Fn(u16) -> bool| samples.iter().filter(|s| f(s.status)).count();
    let ok = count(&|s| s == 200);
    let busy = count(&|s| s == 503);
    let failed = samples.len() - ok - busy;
    let mut latencies: Vec<Duration> = samples.iter().filter(|s| s.status == 200).map(|s| s.latency).collect();
    latencies.sort();
    println!(
        "requests {}  ok {ok}  503 {busy}  other/failed {failed}  in {:.2} s",
        samples.len(),
        elapsed.as_secs_f64()
    );
    println!("throughput {:.1} ok requests/s", ok as f64 / elapsed.as_secs_f64());
    println!(
        "latency ms (ok): p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}

/// Cache counters from `/metrics`, for the summary.
async fn cache_counters(client: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some((
        value("rsam_feature_cache_hits_total"),
        value("rsam_feature_cache_misses_total"),
    ))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.miss_ratio) {
        bail!("--miss-ratio must be within 0..=1");
    }
    let mut server = None;
    let url = match (&args.url, &args.model) {
        (Some(url), _) => {
            check_loopback(url)?;
            url.trim_end_matches('/').to_string()
        }
        (None, Some(model)) => {
            let mut handle = rsam::server::start(rsam::server::ServerConfig::new(model)).await?;
            handle.wait_ready().await?;
            let url = handle.url();
            server = Some(handle);
            url
        }
        (None, None) => bail!("give --model or --url"),
    };
    let hit_bytes = match &args.image {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => synthetic_png(0),
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let shared = Arc::new(Shared {
        url: url.clone(),
        hit_image: base64::engine::general_purpose::STANDARD.encode(&hit_bytes),
        text: args.text.clone(),
        miss_ratio: args.miss_ratio,
        issued: AtomicUsize::new(0),
        limit: args.requests,
        until: Instant::now() + Duration::from_secs(args.duration_s),
    });
    let before = cache_counters(&client, &url).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients.max(1))
        .map(|_| tokio::spawn(client_loop(client.clone(), shared.clone())))
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    report(&samples, start.elapsed());
    if let (Some((h0, m0)), Some((h1, m1))) = (before, cache_counters(&client, &url).await) {
        println!("feature cache: {} hits, {} misses", h1 - h0, m1 - m0);
    }
    if let Some(handle) = server {
        handle.shutdown();
        handle.join().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}
