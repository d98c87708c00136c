//! `--dtype bf16` on the CPU: f32 activations, bf16 weights for the matrix
//! products, bf16 operands with f32 accumulation (AVX512-BF16 where the CPU
//! has it). The tiny fixture must follow its f32 run closely, and the
//! demo model must segment held-out scenes as well as in f32.

mod bf16_support;

use bf16_support::*;
use candle_core::DType;
use rsam::kernels::choice::{bf16_products, cpu_has_avx512_bf16, Bf16Products};

#[test]
fn bf16_logits_correlate_with_f32_on_the_at_size_image() {
    let expected_path = if cpu_has_avx512_bf16() {
        Bf16Products::Avx512Bf16
    } else {
        Bf16Products::Widened
    };
    assert_eq!(bf16_products(), expected_path);
    let reference = square_predictions(&load_tiny_as(DType::F32));
    let worst = assert_close_to_f32(&reference, &square_predictions(&load_tiny_as(DType::BF16)), 0.999);
    eprintln!("bf16 ({expected_path:?}): worst correlation {worst:.6}");
}

/// The products' weights are bf16, everything the network computes with
/// stays f32, and the model reports f32 activations.
#[test]
fn bf16_stores_product_weights_in_bf16() {
    let model = load_tiny_as(DType::BF16);
    assert_eq!(model.model.text_proj.weight().dtype(), DType::BF16);
    assert_eq!(model.dtype(), DType::F32);
    assert_eq!(model.model.dense_pe().dtype(), DType::F32);
    let bytes = std::fs::read(tiny_dir().join("images/square.png")).unwrap();
    let features = model.encode_bytes(&bytes).unwrap();
    assert_eq!(features.embeddings.image_embed.dtype(), DType::F32);
    assert_eq!(features.embeddings.high_res_s0.dtype(), DType::F32);
}

/// The demo model in bf16 segments a small held-out sample as in f32: the
/// same mIoU from the sentence and after two clicks within 0.01, and each
/// sentence's text-only mask nearly the same. (On the 300-scene held-out
/// set of BENCHMARKS.md, `rsam eval --dtype bf16` is within 0.005.)
#[test]
fn demo_model_in_bf16_segments_like_f32() {
    use rsam::eval::progress::Progress;
    use rsam::eval::runner::{self, Source};
    use rsam::risors::Dataset;

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("held-out");
    rsam::synth::run(&rsam::cli::args::SynthArgs {
        out: out.clone(),
        images: 8,
        size: 256,
        seed: 4_242,
        splits: "test=1".into(),
    })
    .unwrap();
    let dataset = Dataset::open(&out, "test").unwrap();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rsam::predictor::DEMO_MODEL_DIR);
    let run = |dtype: DType| {
        let options = rsam::LoadOptions {
            dtype,
            ..Default::default()
        };
        let model = rsam::Rsam::load(&demo, &options).unwrap();
        let source = Source::Model {
            model: &model,
            clicks: 2,
            batch: 16,
            keep_masks: true,
        };
        runner::evaluate(
            &dataset,
            &source,
            rsam::preprocess::DEFAULT_MAX_PIXELS,
            &Progress::hidden(),
        )
    };
    let (reference, low) = (run(DType::F32), run(DType::BF16));
    assert!(reference.report.count >= 15, "only {} samples", reference.report.count);
    assert_eq!(reference.report.count, low.report.count);
    for clicks in [0, 2] {
        let (a, b) = (
            reference.report.clicks[clicks].metrics.miou,
            low.report.clicks[clicks].metrics.miou,
        );
        eprintln!("{clicks} clicks: mIoU f32 {a:.4}, bf16 {b:.4}");
        assert!((a - b).abs() <= 0.01, "{clicks} clicks: mIoU {b} in bf16 vs {a} in f32");
    }
    // Mask by mask: the IoU of the bf16 mask with the f32 one.
    assert_eq!(reference.predictions.len(), low.predictions.len());
    let mut total = 0f64;
    for (a, b) in reference.predictions.iter().zip(&low.predictions) {
        assert_eq!((&a.image, &a.id), (&b.image, &b.id));
        let (ma, mb) = (
            rsam::mask::rle::decode(&a.segmentation).unwrap(),
            rsam::mask::rle::decode(&b.segmentation).unwrap(),
        );
        let inter = ma.iter().zip(&mb).filter(|(x, y)| **x > 0 && **y > 0).count();
        let union = ma.iter().zip(&mb).filter(|(x, y)| **x > 0 || **y > 0).count();
        total += if union == 0 { 1.0 } else { inter as f64 / union as f64 };
    }
    let agreement = total / reference.predictions.len() as f64;
    eprintln!("text-only masks: mean IoU of bf16 with f32 {agreement:.4}");
    assert!(agreement >= 0.95, "bf16 masks agree with f32 only {agreement}");
}
