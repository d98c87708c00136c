//! Times a windowed search (`rsam::window`) over a big scene the way a
//! server with a feature cache runs it: a first sentence (every window
//! read, encoded and decoded; the features kept in memory), then a second
//! sentence on the same scene (decode-only). The scene is a mosaic of
//! `rsam synth` scenes. Prints one JSON line: windows, encode time per
//! window, time to the first answer, time for the second sentence, the
//! features kept, resident and peak resident memory, the load average.
//!
//! ```text
//! cargo run --release --example window_bench -- --model weights/rsam-demo --side 4096
//! cargo run --release --example window_bench -- --config base-plus-800 --side 4096
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rsam::geo::Window;
use rsam::loaded_model::LoadedModel;
use rsam::predictor::{EncodedImage, ModelImage, Rsam};
use rsam::preprocess::Rgb8Image;
use rsam::window::{search, ImageSource, ModelFeatures, SearchOptions, WindowError, WindowFeatures};
use rsam::{LoadOptions, Prompt, RsamConfig};
use serde_json::json;

// As the `rsam` binary runs (see main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// A model directory.
    #[arg(long, conflicts_with = "config")]
    model: Option<PathBuf>,
    /// A preset (as `rsam bench --config`): random weights.
    #[arg(long)]
    config: Option<String>,
    /// The scene's side in pixels (a mosaic of synth scenes).
    #[arg(long, default_value_t = 4096)]
    side: u32,
    /// Side of each synth scene in the mosaic.
    #[arg(long, default_value_t = 512)]
    tile: u32,
    /// Windows per batch.
    #[arg(long, default_value_t = rsam::window::DEFAULT_BATCH)]
    batch: usize,
}

/// Times the encoder calls of the features it wraps.
struct Timed<'m> {
    inner: ModelFeatures<'m>,
    encode: Duration,
    encoded: usize,
}

impl WindowFeatures for Timed<'_> {
    fn cached(&mut self, index: usize, window: Window) -> Option<Arc<EncodedImage>> {
        self.inner.cached(index, window)
    }

    fn encode(
        &mut self,
        windows: &[(usize, Window)],
        images: Vec<ModelImage>,
    ) -> Result<Vec<Arc<EncodedImage>>, WindowError> {
        let start = Instant::now();
        let out = self.inner.encode(windows, images);
        self.encode += start.elapsed();
        self.encoded += windows.len();
        out
    }
}

/// One correction click on the second sentence's best object (a positive
/// click on its first pixel), run in the windows that found it, their
/// features cached: what `/v1/refine` costs on a windowed answer.
fn time_refine(
    model: &rsam::loaded_model::LoadedModel,
    outcome: &rsam::window::SearchOutcome,
    sentence: &str,
    features: &mut Timed,
) -> anyhow::Result<serde_json::Value> {
    let Some(best) = outcome.best() else {
        return Ok(serde_json::Value::Null);
    };
    let windows = best.object_windows(&Prompt::text(sentence));
    let p = &best.piece;
    let first = p.data.iter().position(|&v| v == 1).unwrap_or(0) as u32;
    let click = rsam::Point {
        x: (p.x + first % p.width.max(1)) as f32 + 0.5,
        y: (p.y + first / p.width.max(1)) as f32 + 0.5,
        label: 1,
    };
    let held: Vec<Arc<EncodedImage>> = windows
        .iter()
        .filter_map(|w| features.cached(w.index, w.window))
        .collect();
    let prompts = rsam::window::refined_prompts(&windows, &[click], None)?;
    let start = Instant::now();
    let refined = rsam::window::refine_object(model, &windows, &prompts, &held)?;
    Ok(json!({
        "ms": start.elapsed().as_secs_f64() * 1e3,
        "windows": windows.len(),
        "area_before": p.area(),
        "area_after": refined.object.map_or(0, |c| c.piece.area()),
    }))
}

fn main() -> anyhow::Result<()> {
    rsam::process::keep_freed_memory();
    rsam::process::pin_thread_count();
    let args = Args::parse();
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let tmp = tempfile::tempdir()?;
    let (model, name) = load(&args, tmp.path())?;
    let rss_after_load = rsam::bench::resident_bytes();
    let scene = mosaic(tmp.path(), args.side, args.tile)?;

    let options = SearchOptions {
        batch: args.batch,
        ..SearchOptions::default()
    };
    let mut features = Timed {
        inner: ModelFeatures::cached(&model),
        encode: Duration::ZERO,
        encoded: 0,
    };
    let sentences = [
        "the large ship on the right",
        "the storage tank left of the long bridge",
    ];
    let mut runs = Vec::new();
    let mut last = None;
    for sentence in sentences {
        let start = Instant::now();
        let outcome = search(
            &model,
            &mut ImageSource::new(&scene),
            &Prompt::text(sentence),
            &options,
            &mut features,
            &mut |_| {},
        )?;
        let mask = outcome.best_mask();
        let reports = rsam::window::candidate_reports(&outcome.candidates, None)?;
        let seconds = start.elapsed().as_secs_f64();
        runs.push(json!({
            "sentence": sentence,
            "seconds": seconds,
            "windows_encoded": outcome.encoded,
            "candidates": reports.len(),
            "best_area": mask.area(),
        }));
        last = Some((outcome, sentence));
    }
    let refine = match last {
        Some((outcome, sentence)) => time_refine(&model, &outcome, sentence, &mut features)?,
        None => serde_json::Value::Null,
    };
    let windows = options.plan(&model, scene.width, scene.height)?.len();
    let line = json!({
        "model": name,
        "scene": [scene.width, scene.height],
        "window_size": model.image_size(),
        "windows": windows,
        "batch": args.batch,
        "encode_ms_per_window": features.encode.as_secs_f64() * 1e3 / features.encoded.max(1) as f64,
        "first_sentence_s": runs[0]["seconds"],
        "second_sentence_s": runs[1]["seconds"],
        "runs": runs,
        "refine_click": refine,
        "features_kept_mib": features.inner.kept_bytes() as f64 / (1 << 20) as f64,
        "rss_after_load_mib": rss_after_load.map(|b| b as f64 / (1 << 20) as f64),
        "rss_end_mib": rsam::bench::resident_bytes().map(|b| b as f64 / (1 << 20) as f64),
        "peak_rss_mib": peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
        "loadavg_start": load_average.trim(),
        "loadavg_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    println!("{line}");
    Ok(())
}

/// A model directory, or a preset written with random weights and loaded
/// from disk as a user would.
fn load(args: &Args, tmp: &std::path::Path) -> anyhow::Result<(LoadedModel, String)> {
    if let Some(dir) = &args.model {
        let model = LoadedModel::load(dir, &LoadOptions::default())?;
        let name = model.name().to_string();
        return Ok((model, name));
    }
    let preset = args.config.as_deref().unwrap_or("base-plus-800");
    let config = RsamConfig::preset(preset).ok_or_else(|| anyhow::anyhow!("no preset {preset}"))?;
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir)?;
    rsam::bench::write_random_safetensors(&config, 0, &dir.join("model.safetensors"))?;
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    rsam::bench::write_filler_vocab(&dir, config.bert.vocab_size)?;
    let model = LoadedModel::Rsam(Box::new(Rsam::load(&dir, &LoadOptions::default())?));
    Ok((model, format!("{preset} (random weights)")))
}

/// A `side x side` mosaic of `tile` px synth scenes.
fn mosaic(tmp: &std::path::Path, side: u32, tile: u32) -> anyhow::Result<Rgb8Image> {
    let across = side.div_ceil(tile);
    let out = tmp.join("synth");
    rsam::synth::run(&rsam::cli::args::SynthArgs {
        out: out.clone(),
        images: (across * across) as usize,
        size: tile,
        seed: 5,
        splits: "test=1".into(),
    })?;
    let dataset = rsam::risors::Dataset::open(&out, "test")?;
    let mut scene = Rgb8Image {
        width: side,
        height: side,
        data: vec![0; side as usize * side as usize * 3],
    };
    for (k, name) in dataset.names().iter().enumerate() {
        let bytes = std::fs::read(dataset.image_path(name)?)?;
        let image = rsam::preprocess::decode_image(&bytes, u64::MAX)?;
        let (x0, y0) = ((k as u32 % across) * tile, (k as u32 / across) * tile);
        for y in 0..tile.min(side - y0) {
            let w = tile.min(side - x0) as usize * 3;
            let from = (y * tile) as usize * 3;
            let to = ((y0 + y) as usize * side as usize + x0 as usize) * 3;
            scene.data[to..to + w].copy_from_slice(&image.data[from..from + w]);
        }
    }
    Ok(scene)
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
