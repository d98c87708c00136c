//! Shared helpers for the SAM 2 tests: the sam2-tiny fixture (a small SAM 2.1
//! with the official predictor's outputs) and its cases.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rsam::sam2::{Sam2Predictor, Sam2Prompt};
use rsam::{LoadOptions, Point};

/// `tests/fixtures/sam2-tiny`: `config.json` + the official `checkpoint.pt`
/// make it a model directory as it is.
pub fn sam2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam2-tiny")
}

pub fn load_sam2() -> Sam2Predictor {
    Sam2Predictor::load(&sam2_dir(), &LoadOptions::default()).expect("sam2-tiny fixture loads")
}

pub fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(sam2_dir().join("expected.safetensors"), &Device::Cpu).expect("expected tensors")
}

pub fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(sam2_dir().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

pub fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(sam2_dir().join("images").join(name)).unwrap()
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A fixture case as a prompt; its mask input is the first mask of the
/// official low-res logits of the case it names.
pub fn case_prompt(case: &serde_json::Value, expected: &HashMap<String, Tensor>) -> Sam2Prompt {
    let points = case["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Point {
            x: p[0].as_f64().unwrap() as f32,
            y: p[1].as_f64().unwrap() as f32,
            label: p[2].as_u64().unwrap() as u8,
        })
        .collect();
    let bbox = case["box"]
        .as_array()
        .map(|b| [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap() as f32));
    let mask_input = case["mask_input_from"].as_str().map(|src| {
        let low = &expected[&format!("{src}.low_res")];
        flat(&low.narrow(0, 0, 1).unwrap())
    });
    Sam2Prompt {
        points,
        bbox,
        mask_input,
    }
}
pub mod torch_zip;
