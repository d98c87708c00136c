//! `rsam synth`: a procedural RISORS-format referring dataset.
//!
//! Each image is an aerial-looking scene (textured ground, water, roads,
//! trees and houses) with two to six objects of the RISORS categories, drawn
//! as recognisable top-down shapes, and one or two referring sentences per
//! object that identify it and nothing else (see [`grammar`]). Every image
//! also gets a sentence about something absent, with an empty mask, like the
//! negatives of the official training.
//!
//! The point is a dataset that a small model can learn from in an hour on a
//! CPU, with masks that are exactly right: every mask is the object's own
//! pixels (see `placement`), and every sentence is checked against the scene.
//!
//! - [`geometry`], [`category`], [`object`], [`layout`]: what a scene is
//!   made of (shapes as signed distances, categories and colours, annotated
//!   objects, the background and the finished scene).
//! - `scene` builds one: `background` lays out the ground, `placement` finds
//!   room for the objects (whose geometry is in `shapes`), `render` draws.
//! - [`grammar`]: the referring sentences and their check.
//! - [`random`]: the per-image random stream.
//!
//! Output (what [`crate::risors`] reads): `JPEGImages/NAME.jpg`,
//! `Annotations/NAME.json`, `RISORS_{train,val,test}.txt`, plus `vocab.txt`
//! (a BERT WordPiece vocabulary covering every generated word) and
//! `synth.json` (generator version, arguments, counts).
//!
//! Image `i` is generated from its own random stream (the seed, stream `i`),
//! so a dataset is the same whatever the number of threads, and any image
//! can be regenerated alone with [`generate`].

mod background;
pub mod category;
pub mod geometry;
pub mod grammar;
pub mod layout;
pub mod object;
mod placement;
pub mod random;
mod render;
mod scene;
mod shapes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::mask::rle::{self, Rle};
use crate::risors;
pub use grammar::vocabulary;
use grammar::{Descriptor, Facts};
use layout::Scene;
use random::{image_rng, SynthRng};

/// Bumped whenever the same arguments would produce different files.
pub const GENERATOR_VERSION: u32 = 1;
/// The split names `rsam eval` and the trainer know.
pub const SPLIT_NAMES: [&str; 3] = ["train", "val", "test"];
pub use crate::cli::args::DEFAULT_SPLITS;
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 4096;
/// JPEG quality of the images (RISORS images are high-quality JPEGs).
const JPEG_QUALITY: u8 = 92;
/// Annotation ids are `image index * ID_STRIDE + k`: unique in the dataset
/// and independent of the other images.
pub const ID_STRIDE: u64 = 100;

/// A flag that does not describe a dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthError {
    #[error("--images 0: at least one image is needed")]
    NoImages,
    #[error("--size {0} is out of range: the image side must be {MIN_SIZE} to {MAX_SIZE} pixels")]
    Size(u32),
    #[error("--splits {spec:?}: {reason}")]
    Splits { spec: String, reason: String },
}

/// Fractions of train, val and test, in [`SPLIT_NAMES`] order.
pub type SplitFractions = [f64; 3];

/// Parses `train=0.8,val=0.1,test=0.1`. Splits not named get 0; each
/// fraction must be a number >= 0 and all must sum to 1 (within 1e-6).
pub fn parse_splits(spec: &str) -> Result<SplitFractions, SynthError> {
    let bad = |reason: String| SynthError::Splits {
        spec: spec.to_string(),
        reason,
    };
    if spec.trim().is_empty() {
        return Err(bad("no splits given (expected e.g. train=0.8,val=0.1,test=0.1)".into()));
    }
    let mut fractions = [0.0f64; 3];
    let mut seen = [false; 3];
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad("an entry is empty".into()));
        }
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("entry {item:?} is not NAME=FRACTION")))?;
        let name = name.trim();
        let k = SPLIT_NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| bad(format!("unknown split {name:?} (known: {})", SPLIT_NAMES.join(", "))))?;
        if seen[k] {
            return Err(bad(format!("split {name} is given twice")));
        }
        seen[k] = true;
        let value = value.trim();
        let f: f64 = value
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite())
            .ok_or_else(|| bad(format!("fraction {value:?} of {name} is not a number")))?;
        if f < 0.0 {
            return Err(bad(format!("fraction of {name} is negative ({f})")));
        }
        fractions[k] = f;
    }
    let sum: f64 = fractions.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(bad(format!("fractions sum to {sum}, not 1")));
    }
    Ok(fractions)
}

impl crate::cli::args::SynthArgs {
    /// Checks every flag; the split fractions on success.
    pub fn validate(&self) -> Result<SplitFractions, SynthError> {
        if self.images == 0 {
            return Err(SynthError::NoImages);
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(SynthError::Size(self.size));
        }
        parse_splits(&self.splits)
    }
}

/// Images per split for `n` images: floors of the fractions, the rest given
/// to the largest remainders (earlier split on ties), so they sum to `n`.
pub fn split_counts(n: usize, fractions: &SplitFractions) -> [usize; 3] {
    let exact: Vec<f64> = fractions.iter().map(|f| f * n as f64).collect();
    let mut counts = [0usize; 3];
    for k in 0..3 {
        counts[k] = exact[k].floor() as usize;
    }
    let mut left = n.saturating_sub(counts.iter().sum());
    let mut order: Vec<usize> = (0..3).filter(|&k| fractions[k] > 0.0).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &k in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[k] += 1;
        left -= 1;
    }
    counts
}

/// The split (index into [`SPLIT_NAMES`]) of every image: a seeded shuffle
/// cut by [`split_counts`].
pub fn assign_splits(n: usize, seed: u64, fractions: &SplitFractions) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SynthRng::seed_from_u64(seed);
    // A stream no image uses.
    rng.set_stream(u64::MAX);
    order.shuffle(&mut rng);
    let counts = split_counts(n, fractions);
    let mut out = vec![0usize; n];
    let mut at = 0;
    for (k, &c) in counts.iter().enumerate() {
        for &i in &order[at..at + c] {
            out[i] = k;
        }
        at += c;
    }
    out
}

/// The file stem of image `index`.
pub fn image_name(index: usize) -> String {
    format!("synth_{index:06}")
}

/// One sentence of an image: its meaning, its text, and the object it
/// names (`None` for a negative).
#[derive(Debug, Clone)]
pub struct Referring {
    pub descriptor: Descriptor,
    pub text: String,
    pub target: Option<usize>,
}

/// Everything about one generated image.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub scene: Scene,
    /// Row-major 8-bit RGB, `size * size * 3`.
    pub rgb: Vec<u8>,
    pub facts: Facts,
    pub referrings: Vec<Referring>,
}

/// Generates image `index` of the dataset with this seed and size; the same
/// arguments always give the same image and sentences.
pub fn generate(seed: u64, index: u64, size: usize) -> GeneratedImage {
    let mut rng = image_rng(seed, index);
    let (scene, canvas) = scene::build(&mut rng, size);
    let noise_seed: u32 = rng.random();
    let rgb = render::render(&scene, canvas, noise_seed);
    let facts = Facts::from_scene(&scene);
    let mut referrings = Vec::new();
    for t in 0..facts.objects.len() {
        for d in grammar::describe(&facts, t, &mut rng) {
            referrings.push(Referring {
                text: d.text(),
                descriptor: d,
                target: Some(t),
            });
        }
    }
    let negatives = 1 + usize::from(rng.random_bool(0.2));
    for _ in 0..negatives {
        if let Some(d) = grammar::negative(&facts, &mut rng) {
            if !referrings.iter().any(|r| r.text == d.text()) {
                referrings.push(Referring {
                    text: d.text(),
                    descriptor: d,
                    target: None,
                });
            }
        }
    }
    GeneratedImage {
        scene,
        rgb,
        facts,
        referrings,
    }
}

#[derive(Serialize)]
struct ImageInfo {
    image_id: u64,
    file_name: String,
    width: usize,
    height: usize,
    seed: u64,
}

#[derive(Serialize)]
struct AnnotationOut {
    id: u64,
    name: &'static str,
    description: String,
    area: usize,
    bbox: [usize; 4],
    segmentation: Rle,
    object_present: bool,
}

#[derive(Serialize)]
struct AnnotationFile {
    image: ImageInfo,
    annotations: Vec<AnnotationOut>,
}

/// The SA-1B style annotation file of a generated image.
fn annotation_json(g: &GeneratedImage, seed: u64, index: usize) -> serde_json::Result<Vec<u8>> {
    let size = g.scene.size;
    let rles: Vec<Rle> = g
        .scene
        .objects
        .iter()
        .map(|o| rle::encode(&o.mask.full(size), size, size))
        .collect();
    let empty = rle::encode(&[], size, size);
    let annotations = g
        .referrings
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let id = index as u64 * ID_STRIDE + k as u64;
            let name = r.descriptor.category.name();
            match r.target {
                Some(t) => {
                    let o = &g.scene.objects[t];
                    AnnotationOut {
                        id,
                        name,
                        description: r.text.clone(),
                        area: o.mask.area(),
                        bbox: o.mask.bbox(),
                        segmentation: rles[t].clone(),
                        object_present: true,
                    }
                }
                None => AnnotationOut {
                    id,
                    name,
                    description: r.text.clone(),
                    area: 0,
                    bbox: [0; 4],
                    segmentation: empty.clone(),
                    object_present: false,
                },
            }
        })
        .collect();
    let file = AnnotationFile {
        image: ImageInfo {
            image_id: index as u64,
            file_name: format!("{}.jpg", image_name(index)),
            width: size,
            height: size,
            seed,
        },
        annotations,
    };
    let mut bytes = serde_json::to_vec(&file)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Encodes 8-bit RGB as a JPEG.
pub fn encode_jpeg(rgb: &[u8], size: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let side = u32::try_from(size).context("image too large")?;
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY)
        .encode(rgb, side, side, image::ExtendedColorType::Rgb8)
        .context("cannot encode the JPEG")?;
    Ok(buf)
}

/// Counts of one split.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SplitStats {
    pub images: usize,
    pub objects: usize,
    pub sentences: usize,
    pub negatives: usize,
}

/// Counts of one category.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CategoryStats {
    pub objects: usize,
    /// Positive sentences (about an object of the category).
    pub sentences: usize,
    /// Sentences naming the category where none fits.
    pub negatives: usize,
    /// Objects no sentence could single out (left unannotated).
    pub undescribed: usize,
}

/// Arguments recorded in `synth.json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ManifestArgs {
    pub images: usize,
    pub size: u32,
    pub seed: u64,
    pub splits: BTreeMap<String, f64>,
}

/// `synth.json`: what generated the dataset and what is in it. Holds
/// nothing that varies between runs with the same arguments.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Manifest {
    pub generator: &'static str,
    pub version: u32,
    pub args: ManifestArgs,
    pub images: usize,
    pub objects: usize,
    pub sentences: usize,
    pub negatives: usize,
    pub vocabulary: usize,
    pub splits: BTreeMap<String, SplitStats>,
    pub categories: BTreeMap<String, CategoryStats>,
}

/// What `rsam synth` prints: the manifest, where it went, how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub seconds: f64,
    #[serde(flatten)]
    pub manifest: Manifest,
}

/// Per-image counts, merged in image order.
struct ImageStats {
    split: usize,
    objects: Vec<&'static str>,
    sentences: Vec<&'static str>,
    negatives: Vec<&'static str>,
    undescribed: Vec<&'static str>,
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Generates the dataset described by `args`.
pub fn run(args: &crate::cli::args::SynthArgs) -> anyhow::Result<Summary> {
    let fractions = args.validate()?;
    let started = std::time::Instant::now();
    let size = args.size as usize;
    let images_dir = args.out.join(risors::IMAGE_DIR);
    let annotations_dir = args.out.join(risors::ANNOTATION_DIR);
    for dir in [&images_dir, &annotations_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let splits = assign_splits(args.images, args.seed, &fractions);
    let stats: Vec<ImageStats> = (0..args.images)
        .into_par_iter()
        .map(|index| -> anyhow::Result<ImageStats> {
            let g = generate(args.seed, index as u64, size);
            let name = image_name(index);
            write(&images_dir.join(format!("{name}.jpg")), &encode_jpeg(&g.rgb, size)?)?;
            let json = annotation_json(&g, args.seed, index).context("cannot serialise an annotation")?;
            write(&annotations_dir.join(format!("{name}.json")), &json)?;
            let described: Vec<usize> = g.referrings.iter().filter_map(|r| r.target).collect();
            Ok(ImageStats {
                split: splits[index],
                objects: g.scene.objects.iter().map(|o| o.category.name()).collect(),
                sentences: g
                    .referrings
                    .iter()
                    .filter(|r| r.target.is_some())
                    .map(|r| r.descriptor.category.name())
                    .collect(),
                negatives: g
                    .referrings
                    .iter()
                    .filter(|r| r.target.is_none())
                    .map(|r| r.descriptor.category.name())
                    .collect(),
                undescribed: g
                    .scene
                    .objects
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !described.contains(i))
                    .map(|(_, o)| o.category.name())
                    .collect(),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let mut lists = vec![String::new(); SPLIT_NAMES.len()];
    let mut split_stats: BTreeMap<String, SplitStats> = SPLIT_NAMES
        .iter()
        .map(|n| (n.to_string(), SplitStats::default()))
        .collect();
    let mut categories: BTreeMap<String, CategoryStats> = category::Category::ALL
        .iter()
        .map(|c| (c.name().to_string(), CategoryStats::default()))
        .collect();
    for (index, s) in stats.iter().enumerate() {
        lists[s.split].push_str(&image_name(index));
        lists[s.split].push('\n');
        let entry = split_stats.entry(SPLIT_NAMES[s.split].to_string()).or_default();
        entry.images += 1;
        entry.objects += s.objects.len();
        entry.sentences += s.sentences.len();
        entry.negatives += s.negatives.len();
        for &c in &s.objects {
            categories.entry(c.to_string()).or_default().objects += 1;
        }
        for &c in &s.sentences {
            categories.entry(c.to_string()).or_default().sentences += 1;
        }
        for &c in &s.negatives {
            categories.entry(c.to_string()).or_default().negatives += 1;
        }
        for &c in &s.undescribed {
            categories.entry(c.to_string()).or_default().undescribed += 1;
        }
    }
    for (name, list) in SPLIT_NAMES.iter().zip(&lists) {
        write(&args.out.join(risors::split_list_file(name)), list.as_bytes())?;
    }
    let vocab = grammar::vocabulary();
    let mut vocab_text = vocab.join("\n");
    vocab_text.push('\n');
    write(&args.out.join("vocab.txt"), vocab_text.as_bytes())?;

    let manifest = Manifest {
        generator: "rsam synth",
        version: GENERATOR_VERSION,
        args: ManifestArgs {
            images: args.images,
            size: args.size,
            seed: args.seed,
            splits: SPLIT_NAMES
                .iter()
                .zip(fractions)
                .map(|(n, f)| (n.to_string(), f))
                .collect(),
        },
        images: args.images,
        objects: stats.iter().map(|s| s.objects.len()).sum(),
        sentences: stats.iter().map(|s| s.sentences.len()).sum(),
        negatives: stats.iter().map(|s| s.negatives.len()).sum(),
        vocabulary: vocab.len(),
        splits: split_stats,
        categories,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).context("cannot serialise synth.json")?;
    json.push(b'\n');
    write(&args.out.join("synth.json"), &json)?;
    Ok(Summary {
        out: args.out.clone(),
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_sum_to_n() {
        for n in [1usize, 2, 3, 7, 10, 12, 99, 1000] {
            for f in [[0.8, 0.1, 0.1], [1.0, 0.0, 0.0], [0.34, 0.33, 0.33], [0.0, 0.5, 0.5]] {
                let c = split_counts(n, &f);
                assert_eq!(c.iter().sum::<usize>(), n, "{n} {f:?}");
                for k in 0..3 {
                    assert!((c[k] as f64 - f[k] * n as f64).abs() < 1.0 + 1e-9, "{n} {f:?} {c:?}");
                    if f[k] == 0.0 {
                        assert_eq!(c[k], 0);
                    }
                }
            }
        }
    }

    #[test]
    fn splits_parse() {
        assert_eq!(parse_splits(DEFAULT_SPLITS), Ok([0.8, 0.1, 0.1]));
        assert_eq!(parse_splits(" test=0.5 , train=0.5 "), Ok([0.5, 0.0, 0.5]));
        for (spec, needle) in [
            ("", "no splits"),
            ("train=0.5,,val=0.5", "empty"),
            ("train", "NAME=FRACTION"),
            ("training=1", "unknown split \"training\""),
            ("train=0.5,train=0.5", "twice"),
            ("train=abc", "not a number"),
            ("train=nan", "not a number"),
            ("train=1.5,val=-0.5", "negative"),
            ("train=0.8,val=0.1", "sum to"),
        ] {
            let e = parse_splits(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec:?}: {e}");
        }
    }
}
