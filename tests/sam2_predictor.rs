//! `Sam2Predictor` as a library: loading errors, batched encoding, bad
//! images and prompts, and the RSAM presets of the four SAM 2 sizes.

mod sam2_support;

use rsam::config::{HieraSize, RsamConfig};
use rsam::sam2::{Sam2Config, Sam2Predictor, Sam2Prompt, Sam2Version};
use rsam::{LoadOptions, Point, RsamError};
use sam2_support::*;

fn load_error(dir: &std::path::Path) -> String {
    Sam2Predictor::load(dir, &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn loading_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_error(&dir.path().join("missing")).contains("not a directory"));

    // An RSAM directory.
    let rsam_tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
    let err = load_error(&rsam_tiny);
    assert!(err.contains("kind \"rsam\"") && err.contains("not \"sam2\""), "{err}");

    // A config whose architecture is not the checkpoint's: every key named.
    let model = dir.path().join("wrong");
    std::fs::create_dir_all(&model).unwrap();
    let mut config = Sam2Config::from_file(&sam2_dir().join("config.json")).unwrap();
    config.hiera.stages = vec![1, 1, 3, 1];
    std::fs::write(model.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    std::fs::copy(sam2_dir().join("checkpoint.pt"), model.join("checkpoint.pt")).unwrap();
    let err = load_error(&model);
    assert!(err.contains("missing key image_encoder.trunk.blocks.5"), "{err}");

    // No weights at all.
    std::fs::remove_file(model.join("checkpoint.pt")).unwrap();
    assert!(load_error(&model).contains("no weights"));
}

/// bf16 on the CPU (bf16 product weights, f32 activations) stays close to
/// f32: the same candidates' logits correlate to better than 0.999.
#[test]
fn bf16_on_the_cpu_follows_f32() {
    let bf16 = LoadOptions {
        dtype: candle_core::DType::BF16,
        ..Default::default()
    };
    let logits = |options: &LoadOptions| -> Vec<f32> {
        let model = Sam2Predictor::load(&sam2_dir(), options).unwrap();
        let image =
            rsam::preprocess::decode_image(&std::fs::read(sam2_dir().join("images/s256.png")).unwrap(), u64::MAX)
                .unwrap();
        let features = model.encode_image(&image).unwrap();
        let prompt = rsam::sam2::Sam2Prompt {
            points: vec![rsam::Point {
                x: 79.36,
                y: 107.52,
                label: 1,
            }],
            ..Default::default()
        };
        let prediction = model.decode(&features, &[prompt], true).unwrap().remove(0);
        prediction
            .masks
            .iter()
            .flat_map(|m| m.unclamped_logits().to_vec())
            .collect()
    };
    let (a, b) = (logits(&LoadOptions::default()), logits(&bf16));
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let cov: f64 = a.iter().zip(&b).map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb)).sum();
    let va: f64 = a.iter().map(|&x| (x as f64 - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|&y| (y as f64 - mb).powi(2)).sum();
    let r = cov / (va * vb).sqrt();
    assert!(r > 0.999, "bf16 vs f32 correlation {r}");
}

#[test]
fn the_official_checkpoint_loads_with_its_video_tensors_ignored() {
    let model = load_sam2();
    let ignored = &model.load_report.ignored_keys;
    assert!(
        ignored.iter().any(|k| k.starts_with("memory_attention.")),
        "{ignored:?}"
    );
    assert!(ignored.iter().any(|k| k == "maskmem_tpos_enc"));
    assert!(!ignored.iter().any(|k| k == "no_mem_embed"), "no_mem_embed is used");
    assert_eq!(model.low_res_size(), 64);
}

#[test]
fn batched_encoding_equals_one_by_one_and_bad_images_are_errors() {
    let model = load_sam2();
    let images: Vec<_> = ["s256.png", "w384x200.jpg"]
        .iter()
        .map(|n| rsam::preprocess::decode_image(&image_bytes(n), u64::MAX).unwrap())
        .collect();
    let batch = model.encode_images(&images).unwrap();
    for (image, batched) in images.iter().zip(&batch) {
        let single = model.encode_image(image).unwrap();
        assert_eq!((batched.width, batched.height), (image.width, image.height));
        let d = max_abs_diff(
            &flat(&single.embeddings.image_embed),
            &flat(&batched.embeddings.image_embed),
        );
        assert!(d <= 1e-5, "batched encode differs by {d}");
    }
    assert!(model.encode_images(&[]).unwrap().is_empty());

    let err = model.encode_bytes(b"not an image").unwrap_err();
    assert!(matches!(err, RsamError::Image(_)), "{err}");
    let mut limited = load_sam2();
    limited.max_pixels = 1000;
    let err = limited.encode_bytes(&image_bytes("s256.png")).unwrap_err();
    assert!(matches!(err, RsamError::ImageTooLarge { .. }), "{err}");
}

#[test]
fn a_bad_prompt_in_a_batch_fails_the_batch_with_its_reason() {
    let model = load_sam2();
    let feats = model.encode_bytes(&image_bytes("w384x200.jpg")).unwrap();
    assert!(model.decode(&feats, &[], false).unwrap().is_empty());
    let good = Sam2Prompt {
        points: vec![Point {
            x: 10.0,
            y: 10.0,
            label: 1,
        }],
        ..Default::default()
    };
    let outside = Sam2Prompt {
        points: vec![Point {
            x: 385.0,
            y: 10.0,
            label: 1,
        }],
        ..Default::default()
    };
    let err = model.decode(&feats, &[good.clone(), outside], false).unwrap_err();
    assert!(err.to_string().contains("outside the 384x200 image"), "{err}");
    let prediction = model.decode(&feats, &[good], false).unwrap().remove(0);
    assert_eq!(prediction.masks.len(), 1);
    let mask = &prediction.masks[0];
    assert_eq!(mask.low_res_logits().len(), 64 * 64);
    assert_eq!(mask.upsampled_logits(384, 200).len(), 384 * 200);
    assert!(mask.low_res_logits().iter().all(|v| v.abs() <= 32.0));
}

/// `rsam train --config SIZE-800` starts from the image encoder of the
/// official SAM 2 size: the presets' image encoders have exactly the tensors
/// of the SAM 2 checkpoints.
#[test]
fn rsam_presets_cover_the_four_sam2_sizes() {
    for (name, size) in [
        ("tiny", HieraSize::Tiny),
        ("small", HieraSize::Small),
        ("base-plus", HieraSize::BasePlus),
        ("large", HieraSize::Large),
    ] {
        for pixels in [800, 1024] {
            let config = RsamConfig::preset(&format!("{name}-{pixels}")).expect("a preset");
            config.validate().unwrap();
            assert_eq!(config.image_size, pixels);
            assert_eq!(config.hiera, size.hiera());
            let rsam_encoder: Vec<_> = rsam::bench::parameter_shapes(&config)
                .unwrap()
                .into_iter()
                .filter(|(k, _)| k.starts_with("image_encoder."))
                .collect();
            let sam2 = Sam2Config::preset(size, Sam2Version::Sam2_1);
            let mut sam2_encoder: Vec<_> =
                rsam::bench::shapes_in_build_order(|vb| rsam::sam2::network::Sam2Network::new(&sam2, vb))
                    .unwrap()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("image_encoder."))
                    .collect();
            sam2_encoder.sort();
            assert_eq!(rsam_encoder, sam2_encoder, "{name}-{pixels}");
        }
    }
    assert_eq!(RsamConfig::preset("b+-800"), RsamConfig::preset("base-plus-800"));
    assert!(RsamConfig::preset("huge-800").is_none() && RsamConfig::preset("tiny-900").is_none());
}
