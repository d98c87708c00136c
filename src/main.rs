//! The `rsam` command line: segment, inspect, convert.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use rsam::postprocess::{read_npy_f32, write_npy_f32};
use rsam::{LoadOptions, Point, Prompt, Rsam};

// Inference allocates and frees many large tensors; mimalloc keeps freed
// pages for reuse instead of returning them to the OS and faulting them in
// again (a measurable share of CPU time with the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "rsam", version, about = "RSAM referring remote-sensing image segmentation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Segment what a sentence (and/or clicks, a box, a mask prompt) describes.
    Segment(SegmentArgs),
    /// Print a model directory's config, parameter counts and ignored keys.
    Inspect(InspectArgs),
    /// Turn an official training checkpoint into a model directory.
    Convert(ConvertArgs),
    /// Measure encode / decode latency and memory with random weights.
    Bench(BenchArgs),
    /// Run the HTTP service.
    Serve(rsam::server::ServeArgs),
    /// Score a model (or saved predictions) on a RISORS-format dataset.
    Eval(rsam::eval::EvalArgs),
    /// Train RSAM (from scratch or from a model directory) on a RISORS-format dataset.
    Train(rsam::train::TrainArgs),
    /// Generate a synthetic RISORS-format referring dataset.
    Synth(rsam::synth::SynthArgs),
    /// GeoTIFF helpers: info, stretch, vectorize, mask-tiff, coords (for tests; to fold into segment).
    #[command(hide = true)]
    Geo(rsam::geo::cli::GeoArgs),
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// base-plus-800, base-plus-1024, or a config.json path.
    #[arg(long, default_value = "base-plus-800")]
    config: String,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Image batch sizes for encode, comma-separated.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    encode_batches: Vec<usize>,
    /// Prompt batch sizes for decode on one cached image, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    decode_batches: Vec<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(clap::Args, Debug)]
struct DeviceArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", env = "RSAM_DEVICE")]
    device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32", env = "RSAM_DTYPE")]
    dtype: String,
    /// Largest image accepted, in pixels (decompression-bomb guard).
    #[arg(long, default_value_t = rsam::preprocess::DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    max_pixels: u64,
}

impl DeviceArgs {
    fn load_options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            device: rsam::model::parse_device(&self.device)?,
            dtype: rsam::model::parse_dtype(&self.dtype)?,
            max_pixels: self.max_pixels,
        })
    }
}

#[derive(clap::Args, Debug)]
struct SegmentArgs {
    /// Model directory (config.json, weights, tokenizer); default: the bundled weights/rsam-demo.
    #[arg(long, env = "RSAM_MODEL")]
    model: Option<PathBuf>,
    /// Image file (PNG, JPEG, TIFF, BMP, WebP).
    #[arg(long)]
    image: PathBuf,
    /// The referring sentence.
    #[arg(long)]
    text: Option<String>,
    /// A click X,Y,LABEL in image pixels (label 1 positive, 0 negative); repeatable.
    #[arg(long = "point", value_parser = parse_point)]
    points: Vec<Point>,
    /// A box X0,Y0,X1,Y1 in image pixels.
    #[arg(long = "box", value_parser = parse_box)]
    bbox: Option<[f32; 4]>,
    /// Earlier low-resolution logits (.npy, S/4 x S/4 float32) as the mask prompt.
    #[arg(long)]
    mask_input: Option<PathBuf>,
    /// Write the low-resolution logits (S/4 x S/4 float32 .npy).
    #[arg(long)]
    logits_out: Option<PathBuf>,
    /// Write the preprocessed 3 x S x S float32 model input (.npy).
    #[arg(long)]
    input_out: Option<PathBuf>,
    /// Write the mask at the image's size as a PNG (0 / 255).
    #[arg(long)]
    mask_out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(clap::Args, Debug)]
struct InspectArgs {
    /// Model directory; default: the bundled weights/rsam-demo.
    #[arg(long, env = "RSAM_MODEL")]
    model: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ConvertArgs {
    /// The official checkpoint (*.pt / *.pth, or a safetensors file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// config.json in the rsam schema.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    config: Option<PathBuf>,
    /// A built-in config instead of --config: base-plus-800 or base-plus-1024.
    #[arg(long)]
    preset: Option<String>,
    /// tokenizer.json, vocab.txt, or a folder holding either (the official tokenizer_bert/).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output model directory (created).
    #[arg(long)]
    out: PathBuf,
    /// Storage dtype of the weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn parse_floats<const N: usize>(s: &str, what: &str) -> Result<[f32; N], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != N {
        return Err(format!("{what} needs {N} comma-separated numbers, got {s:?}"));
    }
    let mut out = [0f32; N];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse::<f32>().map_err(|_| format!("{what}: {p:?} is not a number"))?;
        if !o.is_finite() {
            return Err(format!("{what}: {p:?} is not a finite number"));
        }
    }
    Ok(out)
}

fn parse_point(s: &str) -> Result<Point, String> {
    let [x, y, label] = parse_floats::<3>(s, "--point X,Y,LABEL")?;
    if label != 0.0 && label != 1.0 {
        return Err(format!(
            "--point label must be 1 (positive) or 0 (negative), got {label}"
        ));
    }
    Ok(Point {
        x,
        y,
        label: label as u8,
    })
}

fn parse_box(s: &str) -> Result<[f32; 4], String> {
    parse_floats::<4>(s, "--box X0,Y0,X1,Y1")
}

fn main() -> ExitCode {
    keep_freed_memory();
    pin_thread_count();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            // One line: the reason, without clap's usage block and tips.
            let text = e.to_string();
            let reason: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{}", reason.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber_init();
    let result = match cli.command {
        Command::Segment(args) => segment(args),
        Command::Inspect(args) => inspect(args),
        Command::Convert(args) => convert(args),
        Command::Bench(args) => bench(args),
        Command::Serve(args) => rsam::server::run(args),
        Command::Eval(args) => rsam::eval::run(args),
        Command::Train(args) => train(args),
        Command::Geo(args) => rsam::geo::cli::run(args),
        Command::Synth(args) => {
            rsam::synth::run(&args).and_then(|summary| print_line(&serde_json::to_string(&summary)?))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line (a multi-key weights report keeps
/// its lines: each names one key).
fn format_error(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

fn tracing_subscriber_init() {
    // The CLI logs nothing by default; RUST_LOG is honoured by the server.
}

/// Prints a line to stdout; a closed pipe (`rsam inspect | head`) is not an error.
fn print_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn segment(args: SegmentArgs) -> anyhow::Result<()> {
    let options = args.device.load_options()?;
    let model_dir = args.model.clone().unwrap_or_else(rsam::model::default_model_dir);
    let model = Rsam::load(&model_dir, &options)?;
    let bytes = read_file(&args.image)?;
    let image = rsam::preprocess::decode_image(&bytes, options.max_pixels)
        .with_context(|| format!("{}", args.image.display()))?;
    let side = model.low_res_size();
    let mask_input = match &args.mask_input {
        Some(path) => {
            let (shape, data) = read_npy_f32(&read_file(path)?).with_context(|| format!("{}", path.display()))?;
            let squeezed: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
            if squeezed != [side, side] && !(side == 1 && squeezed.is_empty()) {
                bail!(
                    "{}: mask input has shape {shape:?}, expected {side}x{side} low-resolution logits",
                    path.display()
                );
            }
            Some(data)
        }
        None => None,
    };
    let prompt = Prompt {
        text: args.text.clone(),
        points: args.points.clone(),
        bbox: args.bbox,
        mask_input,
    };
    if let Some(path) = &args.input_out {
        let s = model.image_size();
        let input = rsam::preprocess::to_model_input(&image, s as u32);
        write_file(path, &write_npy_f32(&[3, s, s], &input))?;
    }
    let features = model.encode_image(&image)?;
    let prediction = model.decode(&features, &[prompt])?.remove(0);
    if let Some(path) = &args.logits_out {
        write_file(path, &write_npy_f32(&[side, side], &prediction.low_res_logits))?;
    }
    let mask = prediction.mask(image.width, image.height);
    if let Some(path) = &args.mask_out {
        write_file(path, &mask.to_png())?;
    }
    let summary = serde_json::json!({
        "width": image.width,
        "height": image.height,
        "iou_prediction": prediction.iou,
        "object_score_logit": prediction.object_score_logit,
        "object_present": prediction.object_present(),
        "area": mask.area(),
        "bbox": mask.bbox(),
        "rle": mask.to_rle(),
    });
    print_line(&summary.to_string())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let model_dir = args.model.clone().unwrap_or_else(rsam::model::default_model_dir);
    let model = Rsam::load(&model_dir, &LoadOptions::default())?;
    let report = &model.load_report;
    let summary = serde_json::json!({
        "model": model_dir,
        "weights": model.weights_path,
        "config": model.config,
        "parameters": report.num_parameters,
        "parameters_by_component": report.parameters_by_component,
        "ignored_keys": report.ignored_keys,
        "tokenizer_vocab_size": model.tokenizer.vocab_size(),
    });
    print_line(&serde_json::to_string_pretty(&summary)?)
}

fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let storage = rsam::model::parse_dtype(&args.dtype)?;
    let config = match (&args.config, &args.preset) {
        (Some(path), _) => rsam::RsamConfig::from_file(path)?,
        (None, Some(name)) => rsam::RsamConfig::preset(name)
            .with_context(|| format!("unknown preset {name:?}: expected base-plus-800 or base-plus-1024"))?,
        (None, None) => bail!("give --config or --preset"),
    };
    let report = rsam::convert::convert_checkpoint(&args.checkpoint, &config, &args.tokenizer, &args.out, storage)?;
    let summary = serde_json::json!({
        "out": args.out,
        "parameters": report.num_parameters,
        "ignored_keys": report.ignored_keys,
        "dtype": args.dtype,
    });
    print_line(&summary.to_string())
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let config = match rsam::RsamConfig::preset(&args.config) {
        Some(c) => c,
        None => rsam::RsamConfig::from_file(Path::new(&args.config))?,
    };
    let options = args.device.load_options()?;
    let report = rsam::bench::run(&rsam::bench::BenchOptions {
        config,
        device: options.device,
        dtype: options.dtype,
        iters: args.iters,
        warmup: args.warmup,
        encode_batches: args.encode_batches,
        decode_batches: args.decode_batches,
    })?;
    for t in &report.timings {
        eprintln!(
            "{:<24} batch {:>3}: median {:>9.2} ms (min {:.2}, max {:.2}), {:.1}/s",
            t.name, t.batch, t.median_ms, t.min_ms, t.max_ms, t.per_second
        );
    }
    print_line(&serde_json::to_string_pretty(&report)?)
}

/// `rsam train`: trains, then prints the summary as one JSON line.
fn train(args: rsam::train::TrainArgs) -> anyhow::Result<()> {
    let summary = rsam::train::run(&args)?;
    print_line(&serde_json::to_string(&summary)?)
}

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3
/// headers; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Every encode, decode and training step allocates and frees tensors of
/// tens of megabytes. mimalloc returns freed memory to the OS after 10 ms by
/// default, and the kernel then zeroes every page again on the next
/// allocation: 9-11 % of encode time and up to 46 % of a training step in
/// perf. Keeping freed memory (purge delay -1) measured encode 3.8 s ->
/// 3.2 s on the base+ bench; the resident size stays at its peak instead of
/// shrinking between requests. `MIMALLOC_PURGE_DELAY` still overrides.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option before any other thread runs.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Candle asks for its thread count on every matrix product and, unless
/// `RAYON_NUM_THREADS` is set, counts physical cores by reading
/// `/proc/cpuinfo` each time (8 % of a training run's CPU time, measured with
/// perf). Counting once at start-up, before any thread exists, gives the same
/// number for free.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    // Candle 0.11 runs element-wise operations on its own pool of
    // core-pinned threads that spin (25,000 rounds) after every operation,
    // beside rayon's threads that run the matrix products and our kernels:
    // every spinning worker takes a core from them. One thread (no pool;
    // element-wise operations run on the calling thread) measured decode
    // 250 -> 210 ms and a training step ~3 -> ~2 s on two cores, encode
    // unchanged. CANDLE_NUM_THREADS overrides.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
