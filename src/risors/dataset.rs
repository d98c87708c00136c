//! A dataset folder and the image names of one split: the split list, where
//! an image is, and the samples of one image's annotation file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::annotation::{parse_annotation, Sample};
use super::error::{Result, RisorsError};
use super::layout::{split_list_file, ANNOTATION_DIR, IMAGE_DIR};
use super::skipped::Skipped;

/// Extensions tried for an image after the official `.jpg`.
const OTHER_IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpeg", "JPG", "JPEG", "PNG", "tif", "tiff", "bmp", "webp"];

/// The usable samples of one image and the annotations left out.
#[derive(Debug, Default)]
pub struct ImageSamples {
    pub samples: Vec<Sample>,
    pub skipped: Vec<Skipped>,
}

/// A dataset folder and the image names of one split.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
    names: Vec<String>,
}

impl Dataset {
    /// Reads the split list `RISORS_{split}.txt` under `root`.
    pub fn open(root: &Path, split: &str) -> Result<Self> {
        let path = root.join(split_list_file(split));
        if !path.is_file() {
            return Err(RisorsError::SplitMissing {
                path,
                split: split.to_string(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| RisorsError::Read { path, source })?;
        Ok(Self {
            root: root.to_path_buf(),
            names: parse_split_list(&text),
        })
    }

    /// The split's image names, in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Keeps the first `n` images (for quick runs).
    pub fn truncate(&mut self, n: usize) {
        self.names.truncate(n);
    }

    pub fn annotation_path(&self, name: &str) -> PathBuf {
        self.root.join(ANNOTATION_DIR).join(format!("{name}.json"))
    }

    /// `JPEGImages/NAME.jpg` as the official loader opens it, or else the
    /// first of a few other extensions that exists.
    pub fn image_path(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(IMAGE_DIR);
        std::iter::once("jpg")
            .chain(OTHER_IMAGE_EXTENSIONS)
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
            .ok_or_else(|| RisorsError::Image {
                name: name.to_string(),
                reason: format!("no {IMAGE_DIR}/{name}.jpg (nor .png, .jpeg, .tif, .bmp, .webp)"),
            })
    }

    /// Reads and decodes the annotations of one image. Fails only when the
    /// file as a whole is unusable; single bad annotations are skipped.
    /// `max_pixels` bounds a mask's size like the image decoder's guard.
    pub fn load_samples(&self, name: &str, max_pixels: u64) -> Result<ImageSamples> {
        let path = self.annotation_path(name);
        let bytes = std::fs::read(&path).map_err(|source| RisorsError::Read {
            path: path.clone(),
            source,
        })?;
        let bad = |reason: String| RisorsError::Annotation {
            path: path.clone(),
            reason,
        };
        let root: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let list = root
            .get("annotations")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"annotations\" list".into()))?;
        let mut out = ImageSamples::default();
        for (index, value) in list.iter().enumerate() {
            match parse_annotation(value, index, max_pixels) {
                Ok(sample) => out.samples.push(sample),
                Err(skip) => out.skipped.push(Skipped {
                    image: name.to_string(),
                    id: Some(skip.id),
                    reason: skip.reason,
                    by_rule: skip.by_rule,
                }),
            }
        }
        Ok(out)
    }
}

/// Image names from a split list: one per line, blank lines ignored, and an
/// extension removed like the official `os.path.splitext(line.strip())[0]`.
fn parse_split_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| strip_extension(l).to_string())
        .collect()
}

/// Python's `os.path.splitext(s)[0]`: drops the last `.suffix` of the final
/// path component, ignoring the leading dots of that component.
fn strip_extension(s: &str) -> &str {
    let base_start = s.rfind('/').map_or(0, |i| i + 1);
    let base = &s[base_start..];
    let lead = base.len() - base.trim_start_matches('.').len();
    match base[lead..].rfind('.') {
        Some(dot) => &s[..base_start + lead + dot],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_like_splitext() {
        assert_eq!(strip_extension("a.jpg"), "a");
        assert_eq!(strip_extension("a.b.jpg"), "a.b");
        assert_eq!(strip_extension("name"), "name");
        assert_eq!(strip_extension(".hidden"), ".hidden");
        assert_eq!(strip_extension("dir.x/name"), "dir.x/name");
        assert_eq!(parse_split_list("a\n\n b.jpg \r\nc\n"), vec!["a", "b", "c"]);
    }
}
