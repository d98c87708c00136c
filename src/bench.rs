//! `rsam bench`: encode / decode latency and memory on a configuration with
//! random weights (no trained weights are needed to measure speed).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use crate::config::RsamConfig;
use crate::models::prompt_encoder::LABEL_PAD;
use crate::models::rsam::{DecodeBatch, RsamModel, SparseBatch, TextBatch};
use crate::predictor::{LoadOptions, Point, Prompt, Rsam};
use crate::preprocess::Rgb8Image;
use crate::tokenizer::TextTokenizer;
use crate::Result;

/// Names and shapes of every tensor the architecture of `config` loads,
/// learned by building the model over a backend that hands out zero-stride
/// (unallocated) tensors.
pub fn parameter_shapes(config: &RsamConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let mut shapes = shapes_in_build_order(|vb| RsamModel::new(config, vb))?;
    shapes.sort();
    shapes.dedup();
    Ok(shapes)
}

/// Names and shapes of every tensor `build` asks its VarBuilder for, in the
/// order it asks.
pub fn shapes_in_build_order<T>(
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let recorder = std::sync::Arc::new(ShapeRecorder::default());
    let vb = VarBuilder::from_backend(Box::new(SharedRecorder(recorder.clone())), DType::F32, Device::Cpu);
    build(vb)?;
    let shapes = recorder.shapes.lock().expect("shape recorder lock").clone();
    Ok(shapes)
}

#[derive(Default)]
struct ShapeRecorder {
    shapes: std::sync::Mutex<Vec<(String, Vec<usize>)>>,
}

/// The VarBuilder owns its backend; this handle lets us read the record after.
#[derive(Clone)]
struct SharedRecorder(std::sync::Arc<ShapeRecorder>);

impl candle_nn::var_builder::SimpleBackend for SharedRecorder {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .shapes
            .lock()
            .expect("shape recorder lock")
            .push((name.to_string(), shape.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape recorder: {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Deterministic random values for one tensor: normal with std 0.02;
/// 1-D `weight`s (norm scales) near 1.
fn random_values(name: &str, shape: &[usize], rng: &mut SplitMix64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let is_norm_weight = name.ends_with("weight") && shape.len() == 1;
    (0..n)
        .map(|_| {
            let v = rng.normal() * 0.02;
            if is_norm_weight {
                1.0 + v
            } else {
                v
            }
        })
        .collect()
}

/// Deterministic random weights for every tensor of `config`, in memory.
pub fn random_weights(config: &RsamConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = SplitMix64(seed);
    parameter_shapes(config)?
        .into_iter()
        .map(|(name, shape)| {
            let values = random_values(&name, &shape, &mut rng);
            Ok((name, Tensor::from_vec(values, shape, &Device::Cpu)?))
        })
        .collect()
}

/// Writes the same weights as [`random_weights`] straight to a safetensors
/// file, one tensor at a time, so that measuring a model's memory is not
/// skewed by a second copy the allocator keeps after it is freed.
pub fn write_random_safetensors(config: &RsamConfig, seed: u64, path: &Path) -> Result<()> {
    use std::io::Write;
    let io = |source| crate::RsamError::Io {
        path: path.to_path_buf(),
        source,
    };
    let shapes = parameter_shapes(config)?;
    // The header: name -> dtype, shape, byte range; padded to 8 bytes.
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &shapes {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let mut rng = SplitMix64(seed);
    for (name, shape) in &shapes {
        for v in random_values(name, shape, &mut rng) {
            out.write_all(&v.to_le_bytes()).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// A small deterministic PRNG (no extra dependency for benchmarks).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Box-Muller.
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// A WordPiece vocabulary of `size` entries (special tokens and filler),
/// written to `dir/vocab.txt`, so that random-weight models tokenize.
pub fn write_filler_vocab(dir: &Path, size: usize) -> Result<()> {
    let words = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "storage", "tank", "left", "of", "long", "bridge",
        "ship", "on", "right", "small", "large", "white", "vehicle", "near", "harbor", "airplane", "in", "top",
    ];
    let mut lines: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let mut i = 0;
    while lines.len() < size {
        lines.push(format!("filler{i}"));
        i += 1;
    }
    let path = dir.join("vocab.txt");
    std::fs::write(&path, lines.join("\n") + "\n").map_err(|source| crate::RsamError::Io { path, source })
}

/// Resident set size of this process, from /proc (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub name: String,
    pub batch: usize,
    pub iters: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
    /// Items (images or queries) per second at the median.
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub config: String,
    pub device: String,
    pub dtype: String,
    pub threads: usize,
    pub parameters: usize,
    pub load_seconds: f64,
    pub rss_after_load_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub timings: Vec<Timing>,
}

pub struct BenchOptions {
    pub config: RsamConfig,
    pub device: Device,
    pub dtype: DType,
    pub iters: usize,
    pub warmup: usize,
    pub encode_batches: Vec<usize>,
    pub decode_batches: Vec<usize>,
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn time<F: FnMut() -> Result<()>>(name: &str, batch: usize, warmup: usize, iters: usize, mut f: F) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    Ok(Timing {
        name: name.to_string(),
        batch,
        iters: samples.len(),
        min_ms: samples[0],
        median_ms: median,
        max_ms: samples[samples.len() - 1],
        per_second: batch as f64 / (median / 1e3),
    })
}

/// A deterministic synthetic test image of the model's size.
fn synthetic_image(size: u32, seed: u64) -> Rgb8Image {
    let mut rng = SplitMix64(seed);
    let data = (0..size * size * 3).map(|_| (rng.uniform() * 255.0) as u8).collect();
    Rgb8Image {
        width: size,
        height: size,
        data,
    }
}

pub fn run(options: &BenchOptions) -> Result<BenchReport> {
    let cfg = &options.config;
    // Write the random model to a directory and load it like a user would,
    // so that the memory figure includes the real loading path.
    let dir = tempdir_in_target()?;
    write_random_safetensors(cfg, 0, &dir.join("model.safetensors"))?;
    let config_path = dir.join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(cfg).expect("config serialises"),
    )
    .map_err(|source| crate::RsamError::Io {
        path: config_path,
        source,
    })?;
    write_filler_vocab(&dir, cfg.bert.vocab_size)?;

    let start = Instant::now();
    let model = Rsam::load(
        &dir,
        &LoadOptions {
            device: options.device.clone(),
            dtype: options.dtype,
            ..Default::default()
        },
    )?;
    let load_seconds = start.elapsed().as_secs_f64();
    let rss_after_load_mib = resident_bytes().map(|b| b as f64 / (1 << 20) as f64);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = TextTokenizer::max_tokens;

    let size = cfg.image_size as u32;
    let mut timings = Vec::new();
    for &batch in options.encode_batches.iter().filter(|&&b| b > 0) {
        let images: Vec<Rgb8Image> = (0..batch).map(|i| synthetic_image(size, i as u64)).collect();
        timings.push(time("encode", batch, options.warmup, options.iters, || {
            let feats = model.encode_images(&images)?;
            synchronize(&feats[0].embeddings.image_embed)
        })?);
    }
    let features = model.encode_image(&synthetic_image(size, 7))?;
    let sentences = [
        "the storage tank left of the long bridge",
        "a small white vehicle near the harbor",
        "the airplane in the top left",
        "the large ship on the right",
    ];
    for &batch in &options.decode_batches {
        let prompts: Vec<Prompt> = (0..batch)
            .map(|i| Prompt {
                text: Some(sentences[i % sentences.len()].to_string()),
                ..Default::default()
            })
            .collect();
        timings.push(time("decode_text", batch, options.warmup, options.iters, || {
            model.predict(&features, prompts.clone()).map(|_| ())
        })?);
    }
    let click = Prompt {
        text: Some(sentences[0].to_string()),
        points: vec![Point {
            x: size as f32 / 3.0,
            y: size as f32 / 2.0,
            label: 1,
        }],
        mask_input: Some(vec![0.5; cfg.low_res_size() * cfg.low_res_size()]),
        ..Default::default()
    };
    timings.push(time(
        "decode_text_click_mask",
        1,
        options.warmup,
        options.iters,
        || model.predict(&features, vec![click.clone()]).map(|_| ()),
    )?);
    timings.extend(decode_stages(&model, &features.embeddings, sentences[0], options)?);

    Ok(BenchReport {
        config: cfg.name.clone(),
        device: format!("{:?}", options.device),
        dtype: format!("{:?}", options.dtype),
        threads: candle_core::utils::get_num_threads(),
        parameters: model.load_report.num_parameters,
        load_seconds,
        rss_after_load_mib,
        rss_peak_mib: peak_rss_bytes().map(|b| b as f64 / (1 << 20) as f64),
        timings,
    })
}

/// One sentence's decode split into its stages: the text encoder (BERT and
/// its projection), the Two-Way Guidance Module, and the mask decoder with
/// the prompt encoder. Named `stage_*`; their sum is close to `decode_text`
/// at batch 1, which adds tokenising and post-processing.
fn decode_stages(
    model: &Rsam,
    features: &crate::models::image_encoder::ImageEmbeddings,
    sentence: &str,
    options: &BenchOptions,
) -> Result<Vec<Timing>> {
    let m = &model.model;
    let ids = model.tokenizer.encode(sentence)?;
    let texts = TextBatch::new(&[ids], m.device())?;
    let (warmup, iters) = (options.warmup, options.iters);
    let text_features = m.encode_text(&texts)?;
    let guided = m.guide(&features.image_embed, &text_features.to_dtype(m.dtype())?, &texts)?;
    let batch = DecodeBatch {
        // What a text-only prompt decodes with: the empty point input and
        // the padding point, both padding labels.
        sparse: SparseBatch::from_rows(&[vec![(0.0, 0.0, LABEL_PAD); 2]], m.device())?,
        text_rows: vec![Some(0)],
        texts: Some(texts.clone()),
        mask_inputs: vec![None],
    };
    Ok(vec![
        time("stage_text_encoder", 1, warmup, iters, || {
            synchronize(&m.encode_text(&texts)?)
        })?,
        time("stage_twgm", 1, warmup, iters, || {
            let (_, image) = m.guide(&features.image_embed, &text_features.to_dtype(m.dtype())?, &texts)?;
            synchronize(&image)
        })?,
        time("stage_mask_decoder", 1, warmup, iters, || {
            synchronize(&m.decode_guided(features, Some(&guided), &batch)?.low_res_logits)
        })?,
    ])
}

/// Waits for queued device work (CUDA is asynchronous) by reading one value.
fn synchronize(t: &Tensor) -> Result<()> {
    t.flatten_all()?
        .narrow(0, 0, 1)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(())
}

fn tempdir_in_target() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("rsam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| crate::RsamError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_random_weights_equal_in_memory_ones() {
        let config =
            RsamConfig::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/config.json"))
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_random_safetensors(&config, 3, &path).unwrap();
        let streamed = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let in_memory = random_weights(&config, 3).unwrap();
        assert_eq!(streamed.len(), in_memory.len());
        for (name, t) in &in_memory {
            let s = &streamed[name];
            assert_eq!(s.dims(), t.dims(), "{name}");
            let d = (s - t)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap_or(0.0);
            assert_eq!(d, 0.0, "{name}");
        }
    }
}
