//! Shared helpers for the integration tests: fixture paths and loading.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rsam::{LoadOptions, Rsam};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_dir() -> PathBuf {
    fixtures().join("rsam-tiny")
}

pub fn load_tiny() -> Rsam {
    Rsam::load(&tiny_dir(), &LoadOptions::default()).expect("tiny fixture model loads")
}

pub fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny_dir().join("expected.safetensors"), &Device::Cpu).expect("expected tensors")
}

pub fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(tiny_dir().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap();
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn max_abs_diff_vec(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A fixture case as a prompt (without its mask input).
pub fn case_prompt(case: &serde_json::Value) -> rsam::Prompt {
    let points = case
        .get("points")
        .and_then(|p| p.as_array())
        .map(|pts| {
            pts.iter()
                .map(|p| rsam::Point {
                    x: p[0].as_f64().unwrap() as f32,
                    y: p[1].as_f64().unwrap() as f32,
                    label: p[2].as_u64().unwrap() as u8,
                })
                .collect()
        })
        .unwrap_or_default();
    let bbox = case
        .get("box")
        .and_then(|b| b.as_array())
        .map(|b| [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap() as f32));
    rsam::Prompt {
        text: case.get("text").and_then(|t| t.as_str()).map(String::from),
        points,
        bbox,
        mask_input: None,
    }
}
