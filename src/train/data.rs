//! Training data: a RISORS-format split read the way the official
//! `RISORSDataset` + `MySegmentLoader` do, with the negatives kept.
//!
//! Annotations (sentences and RLE masks) are read once; images and masks are
//! decoded per batch, so a dataset far larger than memory (RISORS has 36k
//! images at 800 px) trains as well as a small synthetic one.
//!
//! Negatives (a sentence with an empty mask: "object present = false") come
//! from two places: annotations with `area` 0 (what `rsam synth` writes), and,
//! like the official loader with `negative_to_positive_ratio`, a Poisson
//! number of sentences borrowed from other images.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;
use serde_json::Value;

use super::error::TrainError;
use crate::mask::rle::{self, Rle};
use crate::preprocess;
use crate::risors::Dataset;
use crate::tokenizer::TextTokenizer;

/// One referring sentence of an image and its mask, still encoded.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub sentence: String,
    pub token_ids: Vec<u32>,
    /// `None` for a negative (nothing in the image matches).
    pub mask: Option<Rle>,
}

/// An image of the split with its annotations.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub name: String,
    pub image_path: PathBuf,
    pub annotations: Vec<Annotation>,
}

/// A split ready for sampling.
#[derive(Debug, Clone)]
pub struct TrainSet {
    pub images: Vec<ImageEntry>,
    /// Skipped annotation files, with the reason (reported, not fatal).
    pub skipped: Vec<String>,
}

impl TrainSet {
    /// Reads `RISORS_<split>.txt` and every annotation of it. Fails when
    /// the split is missing or has no usable sample at all.
    pub fn open(root: &Path, split: &str, tokenizer: &TextTokenizer) -> Result<Self, TrainError> {
        let dataset = Dataset::open(root, split)?;
        let mut images = Vec::new();
        let mut skipped = Vec::new();
        for name in dataset.names() {
            match read_image_entry(&dataset, name, tokenizer) {
                Ok(entry) if !entry.annotations.is_empty() => images.push(entry),
                Ok(_) => skipped.push(format!("{name}: no annotations")),
                Err(reason) => skipped.push(format!("{name}: {reason}")),
            }
        }
        if images.is_empty() {
            return Err(TrainError::EmptySplit {
                root: root.to_path_buf(),
                split: split.to_string(),
                detail: skipped
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "the split list is empty".into()),
            });
        }
        Ok(Self { images, skipped })
    }

    /// Number of sentences, positives and negatives.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.images.iter().flat_map(|i| &i.annotations);
        let positives = all.clone().filter(|a| a.mask.is_some()).count();
        (positives, all.count() - positives)
    }
}

fn read_image_entry(dataset: &Dataset, name: &str, tokenizer: &TextTokenizer) -> Result<ImageEntry, String> {
    let path = dataset.annotation_path(name);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let root: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let list = root
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or("no \"annotations\" list")?;
    let image_path = dataset.image_path(name).map_err(|e| e.to_string())?;
    let mut annotations = Vec::with_capacity(list.len());
    for value in list {
        let Some(sentence) = value.get("description").and_then(Value::as_str) else {
            continue;
        };
        let token_ids = tokenizer.encode(sentence).map_err(|e| e.to_string())?;
        let area = value.get("area").and_then(Value::as_f64).unwrap_or(0.0);
        let mask = if area > 0.0 {
            let seg = value
                .get("segmentation")
                .ok_or("an annotation without \"segmentation\"")?;
            Some(serde_json::from_value::<Rle>(seg.clone()).map_err(|e| format!("bad segmentation: {e}"))?)
        } else {
            None
        };
        annotations.push(Annotation {
            sentence: sentence.to_string(),
            token_ids,
            mask,
        });
    }
    Ok(ImageEntry {
        name: name.to_string(),
        image_path,
        annotations,
    })
}

/// One sentence of a batch, decoded at the model's input size.
#[derive(Debug, Clone)]
pub struct Target {
    pub token_ids: Vec<u32>,
    /// S x S, row-major, 0 / 1.
    pub mask: Vec<u8>,
}

/// One image of a batch: the normalised 3 x S x S input and its sentences.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub pixels: Vec<f32>,
    pub targets: Vec<Target>,
}

/// Which sentences of an image a step trains on.
#[derive(Debug, Clone)]
pub struct Pick {
    pub image: usize,
    /// (image, annotation) pairs; a borrowed negative points at another image.
    pub sentences: Vec<(usize, usize, bool)>,
}

/// Chooses up to `max_sentences` annotations of `image` (as the official
/// sampler chooses up to `max_num_objects`), plus Poisson(`negative_ratio`)
/// sentences of other images as negatives.
pub fn pick<R: Rng>(set: &TrainSet, image: usize, max_sentences: usize, negative_ratio: f64, rng: &mut R) -> Pick {
    let own = set.images[image].annotations.len();
    let mut order: Vec<usize> = (0..own).collect();
    order.shuffle(rng);
    let mut sentences: Vec<(usize, usize, bool)> = order
        .into_iter()
        .take(max_sentences)
        .map(|a| (image, a, false))
        .collect();
    if negative_ratio > 0.0 && set.images.len() > 1 {
        let count = Poisson::new(negative_ratio).map_or(0.0, |p| p.sample(rng)) as usize;
        for _ in 0..count {
            let other = rng.random_range(0..set.images.len());
            if other == image {
                continue; // as the official loader: a self-draw adds nothing
            }
            let candidates = &set.images[other].annotations;
            let a = rng.random_range(0..candidates.len());
            if candidates[a].mask.is_some() {
                sentences.push((other, a, true));
            }
        }
    }
    Pick { image, sentences }
}

/// Decodes the images and masks of a batch (in parallel).
pub fn load_batch(
    set: &TrainSet,
    picks: &[Pick],
    size: usize,
    max_pixels: u64,
) -> Result<Vec<LoadedImage>, TrainError> {
    picks.par_iter().map(|p| load_one(set, p, size, max_pixels)).collect()
}

fn load_one(set: &TrainSet, pick: &Pick, size: usize, max_pixels: u64) -> Result<LoadedImage, TrainError> {
    let entry = &set.images[pick.image];
    let bad = |reason: String| TrainError::Sample {
        name: entry.name.clone(),
        reason,
    };
    let bytes = std::fs::read(&entry.image_path).map_err(|e| bad(format!("{}: {e}", entry.image_path.display())))?;
    // As `rsam eval`: the stored pixel grid, which is what the masks annotate.
    let image = preprocess::decode_image_oriented(&bytes, max_pixels, false).map_err(|e| bad(e.to_string()))?;
    let pixels = preprocess::to_model_input(&image, size as u32);
    let targets = pick
        .sentences
        .iter()
        .map(|&(img, a, borrowed)| {
            let ann = &set.images[img].annotations[a];
            let mask = match (&ann.mask, borrowed) {
                (Some(rle), false) => resize_nearest(rle, size).map_err(&bad)?,
                _ => vec![0; size * size],
            };
            Ok(Target {
                token_ids: ann.token_ids.clone(),
                mask,
            })
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    Ok(LoadedImage { pixels, targets })
}

/// Decodes an RLE mask and resamples it to `size x size` by nearest
/// neighbour at pixel centres (the mask is binary: no interpolation).
fn resize_nearest(rle: &Rle, size: usize) -> Result<Vec<u8>, String> {
    let (h, w) = (rle.size[0] as usize, rle.size[1] as usize);
    if h == 0 || w == 0 {
        return Err("an empty mask size".into());
    }
    let mask = rle::decode(rle).map_err(|e| e.to_string())?;
    let src = |dst: usize, len: usize| (((dst as f64 + 0.5) * len as f64 / size as f64) as usize).min(len - 1);
    let cols: Vec<usize> = (0..size).map(|x| src(x, w)).collect();
    let mut out = vec![0u8; size * size];
    for y in 0..size {
        let row = &mask[src(y, h) * w..][..w];
        for (x, &c) in cols.iter().enumerate() {
            out[y * size + x] = u8::from(row[c] != 0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn set(images: usize, per_image: usize) -> TrainSet {
        let full = rle::encode(&[1, 1, 1, 1], 2, 2);
        TrainSet {
            images: (0..images)
                .map(|i| ImageEntry {
                    name: format!("img{i}"),
                    image_path: PathBuf::new(),
                    annotations: (0..per_image)
                        .map(|a| Annotation {
                            sentence: format!("s{i}.{a}"),
                            token_ids: vec![2, 3],
                            mask: Some(full.clone()),
                        })
                        .collect(),
                })
                .collect(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn picks_at_most_the_limit_of_own_sentences_and_borrows_negatives_elsewhere() {
        let train = set(5, 6);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut borrowed = 0;
        for _ in 0..200 {
            let p = pick(&train, 2, 4, 1.0, &mut rng);
            let own: Vec<_> = p.sentences.iter().filter(|s| !s.2).collect();
            assert_eq!(own.len(), 4);
            assert!(own.iter().all(|s| s.0 == 2));
            let mut ids: Vec<usize> = own.iter().map(|s| s.1).collect();
            ids.dedup();
            assert_eq!(ids.len(), 4, "no sentence twice");
            for s in p.sentences.iter().filter(|s| s.2) {
                assert_ne!(s.0, 2, "a negative comes from another image");
                borrowed += 1;
            }
        }
        // Poisson(1) per pick, minus self-draws (1 in 5): about 160.
        assert!((100..240).contains(&borrowed), "{borrowed} negatives borrowed");
        // Ratio 0: none; fewer sentences than the limit: all of them.
        let p = pick(&set(3, 2), 0, 4, 0.0, &mut rng);
        assert_eq!(p.sentences.len(), 2);
    }

    #[test]
    fn nearest_resize_keeps_a_block_where_it_was() {
        // 4 x 4 mask with its top-left 2 x 2 set, to 8 x 8: top-left 4 x 4.
        let mut m = vec![0u8; 16];
        for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            m[y * 4 + x] = 1;
        }
        let rle = rle::encode(&m, 4, 4);
        let out = resize_nearest(&rle, 8).unwrap();
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(out[y * 8 + x], u8::from(y < 4 && x < 4), "at {y},{x}");
            }
        }
        // And down to 2 x 2: one pixel.
        assert_eq!(resize_nearest(&rle, 2).unwrap(), vec![1, 0, 0, 0]);
    }
}
