//! Parity with the official PyTorch implementation on the tiny fixture model:
//! every case's logits, IoU and object score, and the layer-by-layer tensors.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use rsam::EncodedImage;

const TOL: f32 = 1e-4;

/// Encodes the official preprocessed input of an image as given, so that the
/// model is checked independently of image decoding and resizing.
fn encode_fixture_input(
    model: &rsam::Rsam,
    expected: &std::collections::HashMap<String, Tensor>,
    image: &str,
    w: u32,
    h: u32,
) -> (EncodedImage, rsam::models::rsam::EncoderTrace) {
    let input = &expected[&format!("input.{image}")];
    let (embeddings, trace) = model.model.encode_traced(input).unwrap();
    (
        EncodedImage {
            embeddings,
            width: w,
            height: h,
        },
        trace,
    )
}

#[test]
fn encoder_layers_match_official() {
    let model = load_tiny();
    let expected = expected();
    let (_, trace) = encode_fixture_input(&model, &expected, "square.png", 128, 128);
    for (k, t) in trace.trunk.iter().enumerate() {
        let d = max_abs_diff(t, &expected[&format!("image0.trunk_stage{k}")]);
        eprintln!("trunk_stage{k}: max abs diff {d:e}");
        assert!(d < TOL, "trunk stage {k} differs by {d}");
    }
    for (k, t) in trace.fpn.iter().enumerate() {
        let d = max_abs_diff(t, &expected[&format!("image0.backbone_fpn{k}")]);
        eprintln!("backbone_fpn{k}: max abs diff {d:e}");
        assert!(d < TOL, "fpn level {k} differs by {d}");
    }
    let d = max_abs_diff(model.model.dense_pe(), &expected["dense_pe"]);
    assert!(d < 1e-5, "dense pe differs by {d}");
}

#[test]
fn every_case_matches_official() {
    let model = load_tiny();
    let expected = expected();
    let mut features = std::collections::HashMap::new();
    let mut worst = 0f32;
    for case in cases() {
        let i = case["index"].as_u64().unwrap();
        let image = case["image"].as_str().unwrap().to_string();
        let [w, h] = [0, 1].map(|k| case["orig_size_wh"][k].as_u64().unwrap() as u32);
        let feats = features
            .entry(image.clone())
            .or_insert_with(|| encode_fixture_input(&model, &expected, &image, w, h).0)
            .clone();
        let mut prompt = case_prompt(&case);
        if let Some(src) = case.get("refine_of").and_then(|r| r.as_u64()) {
            let prev = &expected[&format!("case{src}.low_res_logits")];
            prompt.mask_input = Some(prev.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        if prompt.text.is_some() {
            let ids = model.tokenizer.encode(prompt.text.as_deref().unwrap()).unwrap();
            let want: Vec<i64> = expected[&format!("case{i}.input_ids")]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(
                ids.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                want,
                "case {i} token ids"
            );
        }
        let pred = model.predict(&feats, vec![prompt]).unwrap().remove(0);
        let want_logits: Vec<f32> = expected[&format!("case{i}.low_res_logits")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let d = max_abs_diff_vec(&pred.low_res_logits, &want_logits);
        let want_iou = expected[&format!("case{i}.iou")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let want_obj = expected[&format!("case{i}.object_score_logit")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        eprintln!(
            "case {i}: logits max diff {d:e}, iou {} vs {want_iou}, obj {} vs {want_obj}",
            pred.iou, pred.object_score_logit
        );
        worst = worst.max(d);
        assert!(d < TOL, "case {i}: logits differ by {d}");
        assert!(
            (pred.iou - want_iou).abs() < TOL,
            "case {i}: iou {} vs {want_iou}",
            pred.iou
        );
        assert!(
            (pred.object_score_logit - want_obj).abs() < TOL,
            "case {i}: object score"
        );
    }
    eprintln!("worst logit difference over all cases: {worst:e}");
}

#[test]
fn text_path_layers_match_official() {
    let model = load_tiny();
    let expected = expected();
    let ids = model.tokenizer.encode("the large storage tank on the left").unwrap();
    let texts = rsam::models::rsam::TextBatch::new(&[ids], model.device()).unwrap();
    let hidden = model
        .model
        .text_encoder
        .forward(&texts.input_ids, &texts.attention_mask)
        .unwrap();
    let d = max_abs_diff(&hidden, &expected["case0.bert_hidden"]);
    assert!(d < TOL, "bert hidden differs by {d}");
    let feats = model.model.encode_text(&texts).unwrap();
    let d = max_abs_diff(&feats, &expected["case0.text_features"]);
    assert!(d < TOL, "text features differ by {d}");
    let input = &expected["input.square.png"];
    let emb = model.model.encode(input).unwrap();
    let (len, dm) = (feats.dim(1).unwrap(), feats.dim(2).unwrap());
    let text_pe = model.model.prompt_encoder.text_pe(len, model.device()).unwrap();
    let (tokens, image) = model
        .model
        .description_transformer
        .forward(&emb.image_embed, model.model.dense_pe(), &feats, &text_pe, None)
        .unwrap();
    assert_eq!(tokens.dims(), &[1, len, dm]);
    let d = max_abs_diff(&tokens, &expected["case0.twgm_text"]);
    assert!(d < TOL, "twgm text differs by {d}");
    let d = max_abs_diff(&image, &expected["case0.twgm_image"]);
    assert!(d < TOL, "twgm image differs by {d}");
    let _ = DType::F32;
}
