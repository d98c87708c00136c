//! Times a SAM 2 model directory the way `SAM2ImagePredictor` is used:
//! `encode_image` (decoding excluded, `SAM2Transforms` included, as
//! `set_image` on a PIL image) and one click's `decode` with the masks
//! upsampled to the image (as `predict(..., return_logits=True)` returns
//! them). Prints one JSON line with every timed iteration in milliseconds,
//! for the side-by-side runs of BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example sam2_bench -- --model DIR --image scene.jpg --iters 3
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use rsam::sam2::{Sam2Predictor, Sam2Prompt};
use rsam::{LoadOptions, Point};

// As the `rsam` binary runs (see main.rs): mimalloc keeping freed pages,
// element-wise operations on the calling thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    image: PathBuf,
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Three candidates instead of one mask.
    #[arg(long)]
    multimask: bool,
}

fn main() -> anyhow::Result<()> {
    rsam::process::keep_freed_memory();
    rsam::process::pin_thread_count();
    let args = Args::parse();
    let model = Sam2Predictor::load(&args.model, &LoadOptions::default())?;
    let image = rsam::preprocess::decode_image(&std::fs::read(&args.image)?, u64::MAX)?;
    let prompt = Sam2Prompt {
        points: vec![Point {
            x: image.width as f32 * 0.4,
            y: image.height as f32 * 0.55,
            label: 1,
        }],
        ..Default::default()
    };
    let (mut encode_ms, mut decode_ms) = (Vec::new(), Vec::new());
    for i in 0..args.warmup + args.iters {
        let start = Instant::now();
        let features = model.encode_image(&image)?;
        let encoded = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let prediction = model
            .decode(&features, std::slice::from_ref(&prompt), args.multimask)?
            .remove(0);
        let upsampled: usize = prediction
            .masks
            .iter()
            .map(|m| m.upsampled_logits(image.width, image.height).len())
            .sum();
        let decoded = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(
            upsampled,
            prediction.masks.len() * image.width as usize * image.height as usize
        );
        if i >= args.warmup {
            encode_ms.push(encoded);
            decode_ms.push(decoded);
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "side": "rsam",
            "model": model.config.name,
            "threads": rayon::current_num_threads(),
            "encode_ms": encode_ms,
            "decode_ms": decode_ms,
        })
    );
    Ok(())
}
