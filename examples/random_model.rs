//! Writes a model directory of random weights for a preset, the way
//! `rsam bench` does before loading it: for measuring `rsam serve` on a
//! full-size model (BENCHMARKS.md, "server memory").
//!
//!   cargo run --release --example random_model -- base-plus-800 /tmp/rsam-base-plus

use std::path::PathBuf;

use rsam::config::RsamConfig;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(preset), Some(dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: random_model PRESET OUT_DIR (e.g. base-plus-800 /tmp/rsam-base-plus)");
    };
    let config = RsamConfig::preset(&preset).ok_or_else(|| anyhow::anyhow!("unknown preset {preset:?}"))?;
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    rsam::bench::write_random_safetensors(&config, 0, &dir.join("model.safetensors"))?;
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    rsam::bench::write_filler_vocab(&dir, config.bert.vocab_size)?;
    println!("{}", dir.display());
    Ok(())
}
