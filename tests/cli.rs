//! The `rsam` command line: segment, inspect, convert, and argument errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(args)
        .output()
        .expect("rsam runs")
}

fn last_json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap()
}

fn tiny() -> String {
    tiny_dir().display().to_string()
}

fn image(name: &str) -> String {
    tiny_dir().join("images").join(name).display().to_string()
}

fn expected_vec(name: &str) -> Vec<f32> {
    expected()[name].flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn segment_prints_summary_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.npy");
    let mask = dir.path().join("mask.png");
    let input = dir.path().join("input.npy");
    let out = rsam(&[
        "segment",
        "--model",
        &tiny(),
        "--image",
        &image("square.png"),
        "--text",
        "the large storage tank on the left",
        "--logits-out",
        logits.to_str().unwrap(),
        "--mask-out",
        mask.to_str().unwrap(),
        "--input-out",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = last_json_line(&out);
    for key in [
        "width",
        "height",
        "iou_prediction",
        "object_score_logit",
        "area",
        "bbox",
        "rle",
    ] {
        assert!(summary.get(key).is_some(), "missing {key} in {summary}");
    }
    assert_eq!(summary["width"], 128);
    let case = &cases()[0];
    assert_eq!(summary["area"], case["mask_area_orig"]);
    assert!((summary["iou_prediction"].as_f64().unwrap() - case["iou"].as_f64().unwrap()).abs() < 1e-4);

    let (shape, values) = rsam::npy::read_f32(&std::fs::read(&logits).unwrap()).unwrap();
    assert_eq!(shape, vec![32, 32]);
    assert!(max_abs_diff_vec(&values, &expected_vec("case0.low_res_logits")) < 1e-4);

    let (shape, values) = rsam::npy::read_f32(&std::fs::read(&input).unwrap()).unwrap();
    assert_eq!(shape, vec![3, 128, 128]);
    assert!(max_abs_diff_vec(&values, &expected_vec("input.square.png")) < 1e-5);

    let png = rsam::mask::BinaryMask::from_png(&std::fs::read(&mask).unwrap()).unwrap();
    let rle: rsam::mask::rle::Rle = serde_json::from_value(summary["rle"].clone()).unwrap();
    assert_eq!(rsam::mask::rle::decode(&rle).unwrap(), png.data);
}

#[test]
fn refine_with_mask_input_reproduces_the_official_correction_click() {
    // Case 8: case 0's text, a negative click, and case 0's logits fed back.
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.npy");
    let second = dir.path().join("second.npy");
    let text = "the large storage tank on the left";
    let out = rsam(&[
        "segment",
        "--model",
        &tiny(),
        "--image",
        &image("square.png"),
        "--text",
        text,
        "--logits-out",
        first.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = rsam(&[
        "segment",
        "--model",
        &tiny(),
        "--image",
        &image("square.png"),
        "--text",
        text,
        "--point",
        "60,70,0",
        "--mask-input",
        first.to_str().unwrap(),
        "--logits-out",
        second.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, values) = rsam::npy::read_f32(&std::fs::read(&second).unwrap()).unwrap();
    assert!(max_abs_diff_vec(&values, &expected_vec("case8.low_res_logits")) < 1e-4);
    assert_eq!(last_json_line(&out)["area"], cases()[8]["mask_area_orig"]);
}

#[test]
fn box_and_points_on_a_resized_image() {
    // wide.png is 200 x 150: coordinates are scaled to the 128 x 128 input.
    let out = rsam(&[
        "segment",
        "--model",
        &tiny(),
        "--image",
        &image("wide.png"),
        "--text",
        "the airplane parked at the top of the airport",
        "--point",
        "150,30,1",
        "--box",
        "120,10,190,60",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = last_json_line(&out);
    assert_eq!(
        (summary["width"].as_u64(), summary["height"].as_u64()),
        (Some(200), Some(150))
    );
    assert_eq!(summary["rle"]["size"], serde_json::json!([150, 200]));
}

fn assert_one_line_failure(out: &Output, needle: &str) {
    assert!(!out.status.success(), "should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line reason expected, got:\n{stderr}"
    );
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

#[test]
fn bad_arguments_exit_nonzero_with_one_line() {
    let sq = image("square.png");
    let t = tiny();
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", &sq, "--point", "1,2"]),
        "needs 3",
    );
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", &sq, "--point", "1,2,5"]),
        "label",
    );
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", &sq, "--box", "1,2,x,4"]),
        "not a number",
    );
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", &sq, "--point", "1,nan,1"]),
        "finite",
    );
    assert_one_line_failure(&rsam(&["segment", "--model", &t]), "--image");
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", "/no/such.png", "--text", "x"]),
        "/no/such.png",
    );
    assert_one_line_failure(
        &rsam(&["segment", "--model", "/no/model", "--image", &sq, "--text", "x"]),
        "not a directory",
    );
    assert_one_line_failure(&rsam(&["segment", "--model", &t, "--image", &sq]), "no prompt");
    assert_one_line_failure(
        &rsam(&["segment", "--model", &t, "--image", &sq, "--point", "500,2,1"]),
        "outside",
    );
    assert_one_line_failure(
        &rsam(&[
            "segment", "--model", &t, "--image", &sq, "--text", "x", "--device", "tpu",
        ]),
        "unknown device",
    );
    assert_one_line_failure(
        &rsam(&[
            "segment", "--model", &t, "--image", &sq, "--text", "x", "--dtype", "int4",
        ]),
        "unknown dtype",
    );
    let bad_npy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_npy.path(), b"not numpy").unwrap();
    assert_one_line_failure(
        &rsam(&[
            "segment",
            "--model",
            &t,
            "--image",
            &sq,
            "--text",
            "x",
            "--mask-input",
            bad_npy.path().to_str().unwrap(),
        ]),
        "magic",
    );
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), rsam::npy::write_f32(&[16, 16], &[0.0; 256])).unwrap();
    assert_one_line_failure(
        &rsam(&[
            "segment",
            "--model",
            &t,
            "--image",
            &sq,
            "--text",
            "x",
            "--mask-input",
            wrong.path().to_str().unwrap(),
        ]),
        "expected 32x32",
    );
    let not_image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_image.path(), b"hello").unwrap();
    assert_one_line_failure(
        &rsam(&[
            "segment",
            "--model",
            &t,
            "--image",
            not_image.path().to_str().unwrap(),
            "--text",
            "x",
        ]),
        "image",
    );
    assert_one_line_failure(&rsam(&["frobnicate"]), "frobnicate");
}

#[test]
fn inspect_reports_parameters_and_ignored_keys() {
    let out = rsam(&["inspect", "--model", &tiny()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["parameters"].as_u64().unwrap();
    let by_component: u64 = v["parameters_by_component"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, by_component);
    assert!(v["parameters_by_component"]["text_encoder"].as_u64().unwrap() > 0);
    assert!(v["ignored_keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "mask_downsample.weight"));
    assert_eq!(v["config"]["image_size"], 128);
}

#[test]
fn convert_turns_a_training_checkpoint_into_a_model_directory() {
    let out_dir = tempfile::tempdir().unwrap();
    for (dtype, name) in [("f32", "f32"), ("f16", "f16")] {
        let target = out_dir.path().join(name);
        let out = rsam(&[
            "convert",
            "--checkpoint",
            tiny_dir().join("checkpoint.pt").to_str().unwrap(),
            "--config",
            tiny_dir().join("config.json").to_str().unwrap(),
            "--tokenizer",
            tiny_dir().join("vocab.txt").to_str().unwrap(),
            "--out",
            target.to_str().unwrap(),
            "--dtype",
            dtype,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for f in ["config.json", "model.safetensors", "vocab.txt"] {
            assert!(target.join(f).is_file(), "{f} missing");
        }
        let tensors =
            candle_core::safetensors::load(target.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
        assert!(
            !tensors.contains_key("mask_downsample.weight"),
            "training-only keys are dropped"
        );
        let want = if dtype == "f16" {
            candle_core::DType::F16
        } else {
            candle_core::DType::F32
        };
        assert!(tensors.values().all(|t| t.dtype() == want));
    }
    // The f32 conversion gives exactly the original model's output.
    let seg = |model: &Path| {
        last_json_line(&rsam(&[
            "segment",
            "--model",
            model.to_str().unwrap(),
            "--image",
            &image("square.png"),
            "--text",
            "bridge",
        ]))
    };
    assert_eq!(seg(&out_dir.path().join("f32")), seg(&tiny_dir()));
}

#[test]
fn convert_rejects_a_checkpoint_that_does_not_match_the_config() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = rsam(&[
        "convert",
        "--checkpoint",
        tiny_dir().join("checkpoint.pt").to_str().unwrap(),
        "--preset",
        "base-plus-800",
        "--tokenizer",
        tiny_dir().to_str().unwrap(),
        "--out",
        out_dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mis-shaped key image_encoder.trunk.pos_embed"),
        "{stderr}"
    );
    assert!(stderr.contains("missing key image_encoder.trunk.blocks.23"), "{stderr}");
    assert!(!out_dir.path().join("m").join("model.safetensors").exists());
    let out = rsam(&[
        "convert",
        "--checkpoint",
        "x.pt",
        "--preset",
        "nope",
        "--tokenizer",
        "t",
        "--out",
        "o",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown preset"));
}

/// `rsam bench` on the tiny model's config: every measurement is reported
/// with sane statistics (speed itself is recorded in BENCHMARKS.md, never
/// asserted), including the per-stage split of a decode.
#[test]
fn bench_reports_every_measurement() {
    let config = tiny_dir().join("config.json");
    let out = rsam(&[
        "bench",
        "--config",
        config.to_str().unwrap(),
        "--iters",
        "2",
        "--warmup",
        "0",
        "--decode-batches",
        "1,2",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(String, u64)> = report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["batch"].as_u64().unwrap()))
        .collect();
    let expected = [
        ("encode", 1),
        ("decode_text", 1),
        ("decode_text", 2),
        ("decode_text_click_mask", 1),
        ("stage_text_encoder", 1),
        ("stage_twgm", 1),
        ("stage_mask_decoder", 1),
    ];
    let expected: Vec<(String, u64)> = expected.iter().map(|(n, b)| (n.to_string(), *b)).collect();
    assert_eq!(names, expected);
    for t in report["timings"].as_array().unwrap() {
        let (min, median, max) = (
            t["min_ms"].as_f64().unwrap(),
            t["median_ms"].as_f64().unwrap(),
            t["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= median && median <= max, "{t}");
        assert_eq!(t["iters"], 2);
    }
    assert!(report["parameters"].as_u64().unwrap() > 0);
}
