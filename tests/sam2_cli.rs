//! The `rsam` command line on SAM 2 models: `convert --sam2`, `segment`
//! (clicks, boxes, mask prompts, `--multimask`), `inspect`, and their errors.

mod sam2_support;

use std::path::Path;
use std::process::{Command, Output};

use rsam::npy::read_f32;
use sam2_support::*;

fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(args)
        .output()
        .expect("rsam runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_line(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image(name: &str) -> String {
    sam2_dir().join("images").join(name).display().to_string()
}

fn npy(p: &Path) -> (Vec<usize>, Vec<f32>) {
    read_f32(&std::fs::read(p).unwrap()).unwrap()
}

/// Pixels > 0 of the official upsampled logits of mask `k` of a case.
fn official_area(id: &str, k: usize) -> u64 {
    let logits = expected()[&format!("{id}.mask_logits")].get(k).unwrap();
    flat(&logits).iter().filter(|&&v| v > 0.0).count() as u64
}

#[test]
fn multimask_click_gives_three_candidates_in_the_models_order() {
    let dir = tempfile::tempdir().unwrap();
    let (logits, input, mask) = (
        dir.path().join("l.npy"),
        dir.path().join("i.npy"),
        dir.path().join("m.png"),
    );
    let out = rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("s256.png"),
        "--point",
        "79.36,107.52,1",
        "--multimask",
        "--logits-out",
        path(&logits),
        "--input-out",
        path(&input),
        "--mask-out",
        path(&mask),
    ]);
    let summary = json_line(&out);
    let expected = expected();
    let candidates = summary["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 3);
    let official_ious = flat(&expected["s256_click.iou"]);
    for (k, c) in candidates.iter().enumerate() {
        assert!((c["iou_prediction"].as_f64().unwrap() as f32 - official_ious[k]).abs() < 1e-4);
        assert_eq!(c["area"], official_area("s256_click", k), "candidate {k} area");
        assert!(c["rle"]["counts"].is_string() && c["bbox"].is_array());
    }
    // The top level describes the candidate with the highest predicted IoU.
    let best = (0..3)
        .max_by(|&a, &b| official_ious[a].total_cmp(&official_ious[b]))
        .unwrap();
    assert_eq!(summary["best_candidate"], best);
    assert_eq!(summary["area"], candidates[best]["area"]);
    assert_eq!(summary["rle"], candidates[best]["rle"]);
    assert_eq!(summary["iou_prediction"], candidates[best]["iou_prediction"]);
    assert_eq!(
        (summary["width"].as_u64(), summary["height"].as_u64()),
        (Some(256), Some(256))
    );

    let (shape, values) = npy(&logits);
    assert_eq!(shape, vec![3, 64, 64]);
    assert!(max_abs_diff(&values, &flat(&expected["s256_click.low_res"])) < 1e-4);
    let (shape, values) = npy(&input);
    assert_eq!(shape, vec![3, 256, 256]);
    assert_eq!(values, flat(&expected["input.s256.png"]));
    let png = rsam::mask::BinaryMask::from_png(&std::fs::read(&mask).unwrap()).unwrap();
    assert_eq!(png.area(), official_area("s256_click", best));
}

#[test]
fn box_and_click_then_mask_prompt_chain_like_the_official_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.npy");
    // w384x200_box_click: a box and a negative click, one output.
    let out = rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("w384x200.jpg"),
        "--box",
        "38.400000000000006,40.0,211.20000000000002,160.0",
        "--point",
        "153.60000000000002,100.0,0",
        "--logits-out",
        path(&first),
    ]);
    let summary = json_line(&out);
    assert!(summary.get("candidates").is_none(), "one mask without --multimask");
    assert_eq!(
        (summary["width"].as_u64(), summary["height"].as_u64()),
        (Some(384), Some(200))
    );
    assert_eq!(summary["area"], official_area("w384x200_box_click", 0));
    let (shape, values) = npy(&first);
    assert_eq!(shape, vec![64, 64]);
    let expected = expected();
    assert!(max_abs_diff(&values, &flat(&expected["w384x200_box_click.low_res"])) < 1e-4);

    // w384x200_mask_click: the logits of w384x200_clicks_single fed back.
    let clicks = dir.path().join("clicks.npy");
    json_line(&rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("w384x200.jpg"),
        "--point",
        "119.03999999999999,84.0,1",
        "--point",
        "268.79999999999995,40.0,0",
        "--point",
        "192.0,132.0,1",
        "--logits-out",
        path(&clicks),
    ]));
    let refined = dir.path().join("refined.npy");
    let summary = json_line(&rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("w384x200.jpg"),
        "--mask-input",
        path(&clicks),
        "--point",
        "230.39999999999998,60.0,1",
        "--logits-out",
        path(&refined),
    ]));
    assert_eq!(summary["area"], official_area("w384x200_mask_click", 0));
    let (_, values) = npy(&refined);
    assert!(max_abs_diff(&values, &flat(&expected["w384x200_mask_click.low_res"])) < 1e-4);
}

#[test]
fn convert_recognises_the_architecture_or_takes_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = sam2_dir().join("checkpoint.pt");
    // The fixture is no official size: the error names the first tensor.
    let out = rsam(&[
        "convert",
        "--sam2",
        path(&checkpoint),
        "--out",
        path(&dir.path().join("x")),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("fits no SAM 2 size: image_encoder.trunk.patch_embed.proj.weight has shape [8, 3, 7, 7]"),
        "{err}"
    );
    assert!(
        err.contains("tiny [96, 3, 7, 7]") && err.contains("give --config"),
        "{err}"
    );
    assert!(!dir.path().join("x").join("model.safetensors").exists());

    let converted = dir.path().join("converted");
    let summary = json_line(&rsam(&[
        "convert",
        "--sam2",
        path(&checkpoint),
        "--config",
        path(&sam2_dir().join("config.json")),
        "--out",
        path(&converted),
    ]));
    assert_eq!(summary["kind"], "sam2");
    assert_eq!(summary["version"], "2.1");
    assert!(
        summary["dropped_keys"].as_u64().unwrap() > 0,
        "video-only tensors left out"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(converted.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kind"], "sam2");
    let tensors =
        candle_core::safetensors::load(converted.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert!(tensors.contains_key("no_mem_embed"));
    assert!(tensors.keys().all(|k| rsam::sam2::convert::is_predictor_key(k)));
    assert!(!tensors.keys().any(|k| k.starts_with("memory_attention.")));

    // The converted directory segments exactly like the official checkpoint.
    let seg = |model: &Path| {
        json_line(&rsam(&[
            "segment",
            "--model",
            path(model),
            "--image",
            &image("s256.png"),
            "--box",
            "25.6,51.2,140.8,204.8",
        ]))
    };
    assert_eq!(seg(&converted), seg(&sam2_dir()));

    let out = rsam(&["inspect", "--model", path(&converted)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["kind"], "sam2");
    assert_eq!(inspect["prompts"], serde_json::json!(["points", "box", "mask_input"]));
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let convert = |checkpoint: &Path| {
        let out = rsam(&[
            "convert",
            "--sam2",
            path(checkpoint),
            "--out",
            path(&dir.path().join("out")),
        ]);
        assert!(!out.status.success());
        stderr(&out)
    };
    // An RSAM checkpoint.
    let rsam_checkpoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny/checkpoint.pt");
    assert!(convert(&rsam_checkpoint).contains("an RSAM checkpoint, not a SAM 2 one"));
    // Some other state dict.
    let other = dir.path().join("other.pt");
    torch_zip::write_torch_zip(&other, &[("fc.weight".into(), vec![2, 2], vec![0.5; 4])]);
    let err = convert(&other);
    assert!(
        err.contains("not a SAM 2 checkpoint: it has no image_encoder.trunk.patch_embed.proj.weight"),
        "{err}"
    );
    assert!(err.contains("fc.weight"), "{err}");
    // A truncated download.
    let bytes = std::fs::read(sam2_dir().join("checkpoint.pt")).unwrap();
    let truncated = dir.path().join("truncated.pt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = convert(&truncated);
    assert!(err.contains("truncated.pt") && err.contains("zip"), "{err}");
    // An empty file, a missing file.
    let empty = dir.path().join("empty.pt");
    std::fs::write(&empty, b"").unwrap();
    assert!(convert(&empty).contains("the file is empty"));
    assert!(convert(&dir.path().join("missing.pt")).contains("cannot read"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn text_and_rsam_only_flags_are_refused() {
    let out = rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("s256.png"),
        "--text",
        "the ship",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("text prompts are not supported"),
        "{}",
        stderr(&out)
    );

    let out = rsam(&["segment", "--model", path(&sam2_dir()), "--image", &image("s256.png")]);
    assert!(stderr(&out).contains("no prompt: give points, a box or a mask input"));

    let rsam_tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
    let out = rsam(&[
        "segment",
        "--model",
        path(&rsam_tiny),
        "--image",
        &image("s256.png"),
        "--text",
        "a ship",
        "--multimask",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--multimask needs a SAM 2 model"),
        "{}",
        stderr(&out)
    );

    // A SAM 2 directory given to a command that needs an RSAM model.
    let out = rsam(&["bench", "--config", path(&sam2_dir().join("config.json"))]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kind \"sam2\""), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let mask = dir.path().join("m.npy");
    std::fs::write(&mask, rsam::npy::write_f32(&[32, 32], &[0.0; 1024])).unwrap();
    let out = rsam(&[
        "segment",
        "--model",
        path(&sam2_dir()),
        "--image",
        &image("s256.png"),
        "--mask-input",
        path(&mask),
    ]);
    assert!(
        stderr(&out).contains("expected 64x64 low-resolution logits"),
        "{}",
        stderr(&out)
    );
}
