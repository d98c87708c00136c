//! Builders for small RISORS-format datasets and helpers to run `rsam eval`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

/// A RISORS-format dataset in a temporary folder.
pub struct DatasetDir {
    pub dir: tempfile::TempDir,
}

impl DatasetDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("JPEGImages")).unwrap();
        std::fs::create_dir_all(dir.path().join("Annotations")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn split(&self, split: &str, names: &[&str]) {
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(self.file(&format!("RISORS_{split}.txt")), text).unwrap();
    }

    pub fn annotations(&self, name: &str, annotations: Vec<Value>) {
        let doc = json!({"image": {"file_name": format!("{name}.jpg")}, "annotations": annotations});
        std::fs::write(self.file(&format!("Annotations/{name}.json")), doc.to_string()).unwrap();
    }

    pub fn raw_annotation_file(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.file(&format!("Annotations/{name}.json")), bytes).unwrap();
    }

    /// A synthetic RGB image written with the `image` crate (format from the extension).
    pub fn image(&self, name: &str, ext: &str, width: u32, height: u32) {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) * 3 % 256) as u8])
        });
        img.save(self.file(&format!("JPEGImages/{name}.{ext}"))).unwrap();
    }

    pub fn copy_image(&self, src: &Path, name: &str, ext: &str) {
        std::fs::copy(src, self.file(&format!("JPEGImages/{name}.{ext}"))).unwrap();
    }

    pub fn raw_image(&self, name: &str, ext: &str, bytes: &[u8]) {
        std::fs::write(self.file(&format!("JPEGImages/{name}.{ext}")), bytes).unwrap();
    }
}

/// A row-major `h x w` mask with the pixels for which `f(x, y)` holds.
pub fn mask(w: usize, h: usize, f: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    (0..h * w).map(|i| u8::from(f(i % w, i / w))).collect()
}

/// `{"size", "counts"}` of a row-major mask, from our pycocotools-compatible encoder.
pub fn segmentation(m: &[u8], h: usize, w: usize) -> Value {
    serde_json::to_value(rsam::mask::rle::encode(m, h, w)).unwrap()
}

/// An SA-1B style annotation with `area` = the mask's pixel count.
pub fn annotation(id: i64, category: &str, sentence: &str, m: &[u8], h: usize, w: usize) -> Value {
    let area = m.iter().filter(|&&v| v != 0).count();
    json!({
        "id": id,
        "name": category,
        "description": sentence,
        "area": area,
        "bbox": [0, 0, w, h],
        "segmentation": segmentation(m, h, w),
        "point_coords": [[0.0, 0.0]],
        "point_labels": [1],
        "predicted_iou": 0.9,
    })
}

pub fn prediction(image: &str, id: i64, m: &[u8], h: usize, w: usize) -> Value {
    json!({"image": image, "id": id, "segmentation": segmentation(m, h, w)})
}

/// Runs the `rsam` binary with a clean environment for its env-backed flags.
pub fn rsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsam"))
        .args(args)
        .env_remove("RSAM_DEVICE")
        .env_remove("RSAM_DTYPE")
        .env_remove("RSAM_MAX_PIXELS")
        .env_remove("RSAM_MODEL")
        .output()
        .expect("rsam runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns the summary: the last stdout line, as JSON.
pub fn summary(o: &Output) -> Value {
    assert!(o.status.success(), "rsam eval failed: {}", stderr(o));
    let out = stdout(o);
    let last = out.lines().last().expect("a summary line");
    serde_json::from_str(last).expect("the last stdout line is JSON")
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn close(actual: &Value, expected: f64) {
    let a = actual.as_f64().unwrap_or_else(|| panic!("{actual} is not a number"));
    assert!((a - expected).abs() < 1e-12, "got {a}, expected {expected}");
}
