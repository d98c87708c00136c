//! Model-level behaviour on the tiny fixture model: checkpoint formats,
//! batching, image bytes end to end, and every loading and prompt error.

mod common;

use std::path::Path;

use candle_core::DType;
use common::*;
use rsam::{LoadOptions, Point, Prompt, Rsam, RsamError};

fn copy(src: &Path, dir: &Path, name: &str) {
    std::fs::copy(src, dir.join(name)).unwrap();
}

/// A model directory with the tiny config and tokenizer and the given weights file.
fn model_dir_with(weights: &Path, name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy(&tiny_dir().join("config.json"), dir.path(), "config.json");
    copy(&tiny_dir().join("tokenizer.json"), dir.path(), "tokenizer.json");
    copy(weights, dir.path(), name);
    dir
}

fn square_features(model: &Rsam) -> rsam::EncodedImage {
    let bytes = std::fs::read(tiny_dir().join("images/square.png")).unwrap();
    model.encode_bytes(&bytes).unwrap()
}

fn all_square_prompts() -> Vec<Prompt> {
    let expected = expected();
    cases()
        .iter()
        .filter(|c| c["image"] == "square.png")
        .map(|c| {
            let mut p = case_prompt(c);
            if let Some(src) = c.get("refine_of").and_then(|r| r.as_u64()) {
                let prev = &expected[&format!("case{src}.low_res_logits")];
                p.mask_input = Some(prev.flatten_all().unwrap().to_vec1().unwrap());
            }
            p
        })
        .collect()
}

#[test]
fn image_bytes_end_to_end_match_official() {
    // square.png is already 128 x 128: no resampling, so the official logits
    // are reproduced from the file itself.
    let model = load_tiny();
    let expected = expected();
    let feats = square_features(&model);
    let case = &cases()[0];
    let pred = model.predict(&feats, vec![case_prompt(case)]).unwrap().remove(0);
    let want: Vec<f32> = expected["case0.low_res_logits"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_abs_diff_vec(&pred.low_res_logits, &want) < 1e-4);
    // Upsampled to the original size and thresholded: the official area.
    let mask = pred.mask(feats.width, feats.height);
    assert_eq!(mask.area(), case["mask_area_orig"].as_u64().unwrap());
}

#[test]
fn torch_checkpoint_and_safetensors_give_identical_outputs() {
    let st = load_tiny();
    let pt_dir = model_dir_with(&tiny_dir().join("checkpoint.pt"), "checkpoint.pt");
    let pt = Rsam::load(pt_dir.path(), &LoadOptions::default()).unwrap();
    assert!(pt.weights_path.ends_with("checkpoint.pt"));
    assert_eq!(st.load_report.num_parameters, pt.load_report.num_parameters);
    assert_eq!(st.load_report.ignored_keys, pt.load_report.ignored_keys);
    let prompts = all_square_prompts();
    let a = st.predict(&square_features(&st), prompts.clone()).unwrap();
    let b = pt.predict(&square_features(&pt), prompts.clone()).unwrap();
    assert_eq!(a, b, "identical weights must give bit-identical outputs");
}

#[test]
fn training_only_keys_are_accepted_and_reported() {
    let model = load_tiny();
    let ignored = &model.load_report.ignored_keys;
    for key in [
        "mask_downsample.weight",
        "no_obj_ptr",
        "maskmem_tpos_enc",
        "obj_ptr_tpos_proj.weight",
    ] {
        assert!(
            ignored.iter().any(|k| k == key),
            "{key} should be ignored, got {ignored:?}"
        );
    }
    assert!(ignored.iter().any(|k| k.starts_with("obj_ptr_proj.")));
}

#[test]
fn batched_decode_equals_single_decode() {
    let model = load_tiny();
    let feats = square_features(&model);
    let prompts = all_square_prompts();
    // Texts of different lengths, clicks, boxes, mask prompts and no text at
    // all, in one batch.
    let batched = model.predict(&feats, prompts.clone()).unwrap();
    let mut worst = 0f32;
    for (prompt, b) in prompts.iter().zip(&batched) {
        let single = model.predict(&feats, vec![prompt.clone()]).unwrap().remove(0);
        let d = max_abs_diff_vec(&single.low_res_logits, &b.low_res_logits);
        worst = worst
            .max(d)
            .max((single.iou - b.iou).abs())
            .max((single.object_score_logit - b.object_score_logit).abs());
    }
    eprintln!("batched vs single: worst difference {worst:e}");
    assert!(worst <= 1e-5, "batching changed a result by {worst}");
}

#[test]
fn batched_encode_equals_single_encode() {
    let model = load_tiny();
    let images: Vec<_> = ["square.png", "wide.png", "tall.jpg"]
        .iter()
        .map(|n| {
            let bytes = std::fs::read(tiny_dir().join("images").join(n)).unwrap();
            rsam::preprocess::decode_image(&bytes, 1 << 30).unwrap()
        })
        .collect();
    let batch = model.encode_images(&images).unwrap();
    for (img, feats) in images.iter().zip(&batch) {
        let single = model.encode_image(img).unwrap();
        assert_eq!((feats.width, feats.height), (img.width, img.height));
        let d = max_abs_diff(&single.embeddings.image_embed, &feats.embeddings.image_embed)
            .max(max_abs_diff(
                &single.embeddings.high_res_s0,
                &feats.embeddings.high_res_s0,
            ))
            .max(max_abs_diff(
                &single.embeddings.high_res_s1,
                &feats.embeddings.high_res_s1,
            ));
        assert!(d <= 1e-5, "batched encode differs by {d}");
    }
}

#[test]
fn vocab_txt_and_tokenizer_json_agree() {
    let dir = tempfile::tempdir().unwrap();
    copy(&tiny_dir().join("vocab.txt"), dir.path(), "vocab.txt");
    let from_vocab = rsam::tokenizer::TextTokenizer::from_dir(dir.path(), 512).unwrap();
    let model = load_tiny();
    for text in [
        "the large storage tank on the left",
        "Bridge",
        "a small   white vehicle-near the bottom/right",
        "zzqx unknownword",
    ] {
        assert_eq!(
            from_vocab.encode(text).unwrap(),
            model.tokenizer.encode(text).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn caption_clean_up_matches_the_official_dataset() {
    use rsam::tokenizer::clean_caption;
    assert_eq!(clean_caption("  The Ship-Left/Right  "), "the ship left right");
    assert_eq!(clean_caption("a  b\t\tc d"), "a b c d");
    assert_eq!(clean_caption("<PERSON> near tank"), "person near tank");
}

#[test]
fn reference_bert_base_uncased_tokenizer_formats_agree() {
    // The bert-base-uncased files users bring (read from ../shared, never
    // copied into the project).
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/tokenizer_bert");
    if !reference.is_dir() {
        eprintln!("../shared/reference/tokenizer_bert is absent: nothing to compare");
        return;
    }
    let json = rsam::tokenizer::TextTokenizer::from_tokenizer_json(&reference.join("tokenizer.json"), 512).unwrap();
    let vocab = rsam::tokenizer::TextTokenizer::from_vocab(&reference.join("vocab.txt"), 512).unwrap();
    for text in [
        "the storage tank left of the long bridge",
        "Two ground-track fields",
        "überpass",
    ] {
        let ids = json.encode(text).unwrap();
        assert_eq!(ids.first(), Some(&101));
        assert_eq!(ids.last(), Some(&102));
        assert_eq!(ids, vocab.encode(text).unwrap(), "{text}");
    }
}

#[test]
fn low_precision_dtypes_run_and_stay_close() {
    let f32_model = load_tiny();
    let prompts = all_square_prompts();
    let reference = f32_model
        .predict(&square_features(&f32_model), prompts.clone())
        .unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let options = LoadOptions {
            dtype,
            ..Default::default()
        };
        let model = Rsam::load(&tiny_dir(), &options).unwrap();
        let out = model.predict(&square_features(&model), prompts.clone()).unwrap();
        let mut worst = 0f32;
        let mut worst_iou = 0f32;
        for (a, b) in reference.iter().zip(&out) {
            assert!(b.low_res_logits.iter().all(|v| v.is_finite()));
            worst = worst.max(max_abs_diff_vec(&a.low_res_logits, &b.low_res_logits));
            worst_iou = worst_iou.max((a.iou - b.iou).abs());
        }
        eprintln!("{dtype:?}: worst logit deviation {worst}, worst iou deviation {worst_iou}");
        // Random weights make the network chaotic; this bounds gross errors
        // (a wrong layer in low precision moves logits by tens).
        assert!(worst < 0.25, "{dtype:?} logits deviate by {worst}");
        assert!(worst_iou < 0.01, "{dtype:?} iou deviates by {worst_iou}");
    }
}

// ---------------------------------------------------------------- errors

fn load_err(dir: &Path) -> String {
    match Rsam::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_directory_and_files_are_named() {
    assert!(load_err(Path::new("/definitely/not/here")).contains("not a directory"));
    let dir = tempfile::tempdir().unwrap();
    assert!(load_err(dir.path()).contains("config.json"));
    copy(&tiny_dir().join("config.json"), dir.path(), "config.json");
    assert!(load_err(dir.path()).contains("no tokenizer"));
    copy(&tiny_dir().join("tokenizer.json"), dir.path(), "tokenizer.json");
    assert!(load_err(dir.path()).contains("no weights"));
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = model_dir_with(&tiny_dir().join("model.safetensors"), "model.safetensors");
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    assert!(load_err(dir.path()).contains("invalid JSON"));
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("config.json")).unwrap()).unwrap();
    cfg["image_size"] = 100.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    assert!(load_err(dir.path()).contains("image_size 100"));
    cfg["image_size"] = 128.into();
    cfg["hiera"]["window_spec"] = serde_json::json!([8, 4, 6]);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    assert!(load_err(dir.path()).contains("window_spec"));
}

#[test]
fn empty_truncated_and_foreign_weight_files_are_named() {
    let dir = model_dir_with(&tiny_dir().join("model.safetensors"), "model.safetensors");
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, b"").unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model.safetensors") && e.contains("empty"), "{e}");

    let full = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    std::fs::write(&weights, &full[..full.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    std::fs::write(&weights, std::fs::read(tiny_dir().join("images/square.png")).unwrap()).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("not a valid safetensors"), "{e}");

    let dir = model_dir_with(&tiny_dir().join("images/square.png"), "checkpoint.pt");
    let e = load_err(dir.path());
    assert!(
        e.contains("checkpoint.pt") && e.contains("not a PyTorch zip checkpoint"),
        "{e}"
    );

    let full = std::fs::read(tiny_dir().join("checkpoint.pt")).unwrap();
    std::fs::write(dir.path().join("checkpoint.pt"), &full[..full.len() / 3]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("checkpoint.pt"), "{e}");
}

#[test]
fn several_checkpoints_are_ambiguous() {
    let dir = model_dir_with(&tiny_dir().join("checkpoint.pt"), "a.pt");
    copy(&tiny_dir().join("checkpoint.pt"), dir.path(), "b.pth");
    assert!(load_err(dir.path()).contains("several checkpoints"));
}

#[test]
fn every_missing_unexpected_and_misshaped_key_is_listed() {
    let mut tensors =
        candle_core::safetensors::load(tiny_dir().join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    tensors.remove("text_proj.weight").unwrap();
    tensors.remove("image_encoder.trunk.pos_embed").unwrap();
    tensors.insert(
        "sam_mask_decoder.iou_token.weight".into(),
        candle_core::Tensor::zeros((2, 32), DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    tensors.insert(
        "some_new_head.weight".into(),
        candle_core::Tensor::zeros(3, DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    let path = tempfile::tempdir().unwrap();
    let file = path.path().join("w.safetensors");
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let dir = model_dir_with(&file, "model.safetensors");
    let e = load_err(dir.path());
    for needle in [
        "missing key text_proj.weight",
        "missing key image_encoder.trunk.pos_embed",
        "mis-shaped key sam_mask_decoder.iou_token.weight: expected [1, 32], found [2, 32]",
        "unexpected key some_new_head.weight",
    ] {
        assert!(e.contains(needle), "{needle:?} not in:\n{e}");
    }
    // Training-only tensors are not reported.
    assert!(!e.contains("mask_downsample"), "{e}");
}

#[test]
fn broken_tokenizer_is_named() {
    let dir = model_dir_with(&tiny_dir().join("model.safetensors"), "model.safetensors");
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("tokenizer.json") && e.contains("not a valid tokenizer.json"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("vocab.txt"), "a\nb\n").unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("vocab.txt") && e.contains("[CLS]"), "{e}");
}

fn prompt_err(model: &Rsam, prompt: Prompt) -> String {
    let feats = square_features(model);
    match model.predict(&feats, vec![prompt]) {
        Ok(_) => panic!("prompt should be rejected"),
        Err(e @ (RsamError::Prompt(_) | RsamError::MaskInput(_) | RsamError::Text(_))) => e.to_string(),
        Err(other) => panic!("wrong error kind: {other}"),
    }
}

#[test]
fn every_bad_prompt_is_rejected_by_name() {
    let model = load_tiny();
    let p = |x: f32, y: f32, label: u8| Prompt {
        points: vec![Point { x, y, label }],
        ..Default::default()
    };
    assert!(prompt_err(&model, p(200.0, 3.0, 1)).contains("outside the 128x128 image"));
    assert!(prompt_err(&model, p(-1.0, 3.0, 1)).contains("outside"));
    assert!(prompt_err(&model, p(f32::NAN, 3.0, 1)).contains("not a finite number"));
    assert!(prompt_err(&model, p(3.0, 3.0, 2)).contains("label 2"));
    let boxed = |b: [f32; 4]| Prompt {
        bbox: Some(b),
        ..Default::default()
    };
    assert!(prompt_err(&model, boxed([50.0, 10.0, 20.0, 90.0])).contains("inverted"));
    assert!(prompt_err(&model, boxed([0.0, 0.0, 300.0, 10.0])).contains("outside"));
    assert!(prompt_err(&model, boxed([0.0, f32::INFINITY, 3.0, 10.0])).contains("not a finite number"));
    let masked = |m: Vec<f32>| Prompt {
        mask_input: Some(m),
        ..Default::default()
    };
    assert!(prompt_err(&model, masked(vec![0.0; 10])).contains("expected 32x32"));
    let mut nan_mask = vec![0.0; 32 * 32];
    nan_mask[5] = f32::NAN;
    assert!(prompt_err(&model, masked(nan_mask)).contains("not finite"));
    assert!(prompt_err(&model, Prompt::text("   ")).starts_with("text: the text is empty"));
    assert!(prompt_err(&model, Prompt::text("tank ".repeat(600))).contains("over the model's limit of 512"));
    assert!(prompt_err(&model, Prompt::default()).contains("no prompt"));
}

/// A prompt is checked once, against one image size; decoding it on an
/// image of another size is refused rather than run with wrong coordinates.
#[test]
fn a_checked_prompt_runs_only_on_its_image_size() {
    let model = load_tiny();
    let feats = square_features(&model);
    let checked = model.check_prompt(Prompt::text("the tank"), 64, 64).unwrap();
    assert!(checked.token_ids().is_some_and(|ids| ids.len() > 2));
    let e = model.decode(&feats, &[checked]).unwrap_err().to_string();
    assert!(
        e.contains("checked against a 64x64 image cannot run on a 128x128 one"),
        "{e}"
    );
    let checked = model.check_prompt(Prompt::text("the tank"), 128, 128).unwrap();
    assert_eq!(model.decode(&feats, &[checked]).unwrap().len(), 1);
}

#[test]
fn device_and_dtype_specs_are_checked() {
    assert!(rsam::predictor::parse_device("cpu").is_ok());
    let e = rsam::predictor::parse_device("tpu").unwrap_err().to_string();
    assert!(e.contains("unknown device"), "{e}");
    #[cfg(not(feature = "cuda"))]
    {
        let e = rsam::predictor::parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("without the `cuda` feature"), "{e}");
    }
    let e = rsam::predictor::parse_device("cuda:x").unwrap_err().to_string();
    assert!(e.contains("cuda:N"), "{e}");
    assert_eq!(rsam::predictor::parse_dtype("bf16").unwrap(), DType::BF16);
    assert!(rsam::predictor::parse_dtype("int8")
        .unwrap_err()
        .to_string()
        .contains("unknown dtype"));
}

#[test]
fn long_sentences_are_truncated_like_the_official_collate() {
    let model = load_tiny();
    let long = "the large storage tank on the left ".repeat(10);
    let ids = model.tokenizer.encode(&long).unwrap();
    assert_eq!(ids.len(), 47, "[CLS] + 45 word pieces + [SEP]");
    let full = rsam::tokenizer::TextTokenizer::from_dir(&tiny_dir(), 512)
        .unwrap()
        .encode(&long)
        .unwrap();
    assert_eq!(&ids[..46], &full[..46]);
    assert_eq!(ids[46], *full.last().unwrap(), "[SEP] is kept");
    assert!(full.len() > 47);
    // Short sentences are untouched.
    assert_eq!(model.tokenizer.encode("bridge").unwrap().len(), 3);
}
