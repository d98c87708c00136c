//! Parity with the official SAM 2 image predictor (`build_sam2()` +
//! `SAM2ImagePredictor`, PyTorch on the CPU) on the sam2-tiny fixture: the
//! model input (`SAM2Transforms`), the cached features, and every case's
//! low-resolution logits, IoUs and upsampled mask logits.
//! `cargo test --test sam2_parity -- --nocapture` prints the differences.

mod sam2_support;

use std::collections::HashMap;

use rsam::preprocess::decode_image;
use rsam::sam2::{transforms, Sam2Predictor};
use rsam::EncodedImage;
use sam2_support::*;

const TOL: f32 = 1e-4;

/// The features of an image computed from the official model input as
/// given, so that the network is checked apart from the preprocessing.
fn features_of_official_input(
    model: &Sam2Predictor,
    expected: &HashMap<String, candle_core::Tensor>,
    image: &str,
) -> EncodedImage {
    let decoded = decode_image(&image_bytes(image), u64::MAX).unwrap();
    let input = expected[&format!("input.{image}")].unsqueeze(0).unwrap();
    EncodedImage {
        embeddings: model.network.encode(&input).unwrap(),
        width: decoded.width,
        height: decoded.height,
    }
}

#[test]
fn model_input_matches_official_transforms() {
    let expected = expected();
    for image in ["s256.png", "w384x200.jpg"] {
        let decoded = decode_image(&image_bytes(image), u64::MAX).unwrap();
        let ours = transforms::model_input(&decoded, 256);
        let d = max_abs_diff(&ours, &flat(&expected[&format!("input.{image}")]));
        eprintln!(
            "input.{image} ({}x{}): max abs diff {d:e}",
            decoded.width, decoded.height
        );
        assert!(d <= 1e-6, "{image}: model input differs by {d}");
    }
}

/// A 1 x C x H x W tensor's values in channels-last memory order (H, W, C).
fn channels_last(t: &candle_core::Tensor) -> Vec<f32> {
    flat(&t.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap())
}

/// The fixture stores each cached feature's memory as PyTorch laid it out,
/// not its logical NCHW order: `image_embed` (after `permute(1, 2, 0).view`)
/// and `high_res_1` (the CPU convolution's output) are channels-last there,
/// `high_res_0` is contiguous NCHW (checked against the official predictor's
/// `_features` and their strides, (32, 1, 512, 32), (8, 1, 256, 8) and
/// (16384, 4096, 64, 1), in the session that measured these tests).
#[test]
fn cached_features_match_official() {
    let model = load_sam2();
    let expected = expected();
    for image in ["s256.png", "w384x200.jpg"] {
        let feats = features_of_official_input(&model, &expected, image).embeddings;
        for (name, ours, stored_channels_last) in [
            ("image_embed", &feats.image_embed, true),
            ("high_res_0", &feats.high_res_s0, false),
            ("high_res_1", &feats.high_res_s1, true),
        ] {
            let want = &expected[&format!("features.{image}.{name}")];
            assert_eq!(ours.dims(), want.dims(), "{image} {name} shape");
            let ours = if stored_channels_last {
                channels_last(ours)
            } else {
                flat(ours)
            };
            let d = max_abs_diff(&ours, &flat(want));
            eprintln!("features.{image}.{name}: max abs diff {d:e}");
            assert!(d < TOL, "{image} {name} differs by {d}");
        }
    }
}

#[test]
fn every_case_matches_official() {
    let model = load_sam2();
    let expected = expected();
    let mut features = HashMap::new();
    let mut worst = 0f32;
    for case in cases() {
        let id = case["id"].as_str().unwrap();
        let image = case["image"].as_str().unwrap().to_string();
        let feats = features
            .entry(image.clone())
            .or_insert_with(|| features_of_official_input(&model, &expected, &image));
        let multimask = case["multimask"].as_bool().unwrap();
        let prompt = case_prompt(&case, &expected);
        let pred = model.decode(feats, &[prompt], multimask).unwrap().remove(0);
        let n = if multimask { 3 } else { 1 };
        assert_eq!(pred.masks.len(), n, "{id}: number of masks");

        let low: Vec<f32> = pred.masks.iter().flat_map(|m| m.low_res_logits()).collect();
        let d_low = max_abs_diff(&low, &flat(&expected[&format!("{id}.low_res")]));
        let ious: Vec<f32> = pred.masks.iter().map(|m| m.iou).collect();
        let d_iou = max_abs_diff(&ious, &flat(&expected[&format!("{id}.iou")]));
        let up: Vec<f32> = pred
            .masks
            .iter()
            .flat_map(|m| m.upsampled_logits(feats.width, feats.height))
            .collect();
        let d_up = max_abs_diff(&up, &flat(&expected[&format!("{id}.mask_logits")]));
        let tokens: Vec<usize> = pred.masks.iter().map(|m| m.token).collect();
        eprintln!(
            "{id}: low-res logits {d_low:e}, iou {d_iou:e}, mask_logits {d_up:e} (tokens {tokens:?}, object score {})",
            pred.object_score_logit
        );
        worst = worst.max(d_low).max(d_up);
        assert!(d_low < TOL, "{id}: low-res logits differ by {d_low}");
        assert!(d_iou < TOL, "{id}: ious differ by {d_iou}");
        assert!(d_up < TOL, "{id}: upsampled logits differ by {d_up}");
    }
    eprintln!("worst logit difference over all cases: {worst:e}");
}

/// The same cases end to end from the image files: our decoding and
/// `SAM2Transforms`, then the network.
#[test]
fn cases_match_official_from_the_image_files() {
    let model = load_sam2();
    let expected = expected();
    let mut features = HashMap::new();
    let mut worst = 0f32;
    for case in cases() {
        let id = case["id"].as_str().unwrap();
        let image = case["image"].as_str().unwrap().to_string();
        let feats = features
            .entry(image.clone())
            .or_insert_with(|| model.encode_bytes(&image_bytes(&image)).unwrap());
        let multimask = case["multimask"].as_bool().unwrap();
        let pred = model
            .decode(feats, &[case_prompt(&case, &expected)], multimask)
            .unwrap()
            .remove(0);
        let low: Vec<f32> = pred.masks.iter().flat_map(|m| m.low_res_logits()).collect();
        let d = max_abs_diff(&low, &flat(&expected[&format!("{id}.low_res")]));
        eprintln!("{id} from {image}: low-res logits {d:e}");
        worst = worst.max(d);
        assert!(d < TOL, "{id}: low-res logits differ by {d}");
    }
    eprintln!("worst from the files: {worst:e}");
}

#[test]
fn batched_decode_equals_one_by_one() {
    let model = load_sam2();
    let expected = expected();
    let feats = features_of_official_input(&model, &expected, "s256.png");
    let mut prompts: Vec<_> = cases()
        .iter()
        .filter(|c| c["image"] == "s256.png")
        .map(|c| case_prompt(c, &expected))
        .collect();
    // A mask prompt alone (no sparse token) in the same batch as clicks and boxes.
    let mask_only = rsam::sam2::Sam2Prompt {
        mask_input: prompts.iter().find_map(|p| p.mask_input.clone()),
        ..Default::default()
    };
    prompts.push(mask_only);
    let mut worst = 0f32;
    for multimask in [false, true] {
        let batched = model.decode(&feats, &prompts, multimask).unwrap();
        for (prompt, b) in prompts.iter().zip(&batched) {
            let single = model
                .decode(&feats, std::slice::from_ref(prompt), multimask)
                .unwrap()
                .remove(0);
            assert_eq!(single.masks.len(), b.masks.len());
            for (s, m) in single.masks.iter().zip(&b.masks) {
                assert_eq!(s.token, m.token, "batching changed the chosen token");
                worst = worst
                    .max(max_abs_diff(&s.low_res_logits(), &m.low_res_logits()))
                    .max((s.iou - m.iou).abs());
            }
            worst = worst.max((single.object_score_logit - b.object_score_logit).abs());
        }
    }
    eprintln!("batched vs one by one: worst difference {worst:e}");
    assert!(worst <= 1e-5, "batching changed a result by {worst}");
}
