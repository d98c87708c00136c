//! `rsam synth`: the generated dataset is deterministic, readable by the
//! evaluator, and every sentence means exactly what its mask shows.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use rsam::cli::args::SynthArgs;
use rsam::mask::rle::{self, Rle};
use rsam::risors::Dataset;
use rsam::synth;
use rsam::synth::grammar::{self, Descriptor};
use serde_json::Value;

const SEED: u64 = 11;

fn args(out: &Path, images: usize, size: u32, seed: u64) -> SynthArgs {
    SynthArgs {
        out: out.to_path_buf(),
        images,
        size,
        seed,
        splits: synth::DEFAULT_SPLITS.to_string(),
    }
}

/// A dataset of `images` images at `size` in a fresh temporary folder.
fn dataset(images: usize, size: u32, seed: u64) -> (tempfile::TempDir, synth::Summary) {
    let dir = tempfile::tempdir().unwrap();
    let summary = synth::run(&args(dir.path(), images, size, seed)).unwrap();
    (dir, summary)
}

/// Every file under `root`, relative path -> bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn annotations(root: &Path, name: &str) -> Value {
    let path = root.join("Annotations").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn all_names(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for split in synth::SPLIT_NAMES {
        names.extend(Dataset::open(root, split).unwrap().names().iter().cloned());
    }
    names.sort();
    names
}

fn rle_of(ann: &Value) -> Rle {
    serde_json::from_value(ann["segmentation"].clone()).unwrap()
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_does_not() {
    let (a, _) = dataset(12, 128, SEED);
    let (b, _) = dataset(12, 128, SEED);
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(
        fa.len(),
        12 * 2 + 3 + 2,
        "images, annotations, 3 split lists, vocab.txt, synth.json"
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(bytes == &fb[path], "{} differs between two runs", path.display());
    }

    // One thread or many: the same bytes.
    let c = tempfile::tempdir().unwrap();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| synth::run(&args(c.path(), 12, 128, SEED)))
        .unwrap();
    assert!(files(c.path()) == fa, "a single-threaded run differs");

    let (d, _) = dataset(12, 128, SEED + 1);
    let fd = files(d.path());
    let differing = fa
        .iter()
        .filter(|(p, bytes)| p.starts_with("JPEGImages") && fd.get(*p) != Some(bytes))
        .count();
    assert_eq!(differing, 12, "every image changes with the seed");
    assert_ne!(fa[Path::new("RISORS_train.txt")], fd[Path::new("RISORS_train.txt")]);
}

#[test]
fn every_sentence_identifies_exactly_its_object() {
    let size = 128;
    let (dir, _) = dataset(16, size, SEED);
    let mut positives = 0;
    let mut negatives = 0;
    let mut forms = HashSet::new();
    for name in all_names(dir.path()) {
        let index: u64 = name.trim_start_matches("synth_").parse().unwrap();
        let json = annotations(dir.path(), &name);
        // Regenerate the scene and re-evaluate the sentence, read back from
        // its text, on every object.
        let g = synth::generate(SEED, index, size as usize);
        let object_rles: Vec<Rle> = g
            .scene
            .objects
            .iter()
            .map(|o| rle::encode(&o.mask.full(size as usize), size as usize, size as usize))
            .collect();
        for ann in json["annotations"].as_array().unwrap() {
            let text = ann["description"].as_str().unwrap();
            assert_eq!(text, text.to_lowercase());
            assert!(text.split(' ').count() <= grammar::MAX_WORDS, "{text}");
            let d: Descriptor = grammar::parse(text).unwrap_or_else(|| panic!("{name}: cannot parse {text:?}"));
            assert_eq!(ann["name"], d.category.name(), "{text}");
            forms.insert((
                d.select.is_some(),
                d.region.is_some(),
                d.relation.is_some(),
                d.colour.is_some(),
            ));
            if ann["object_present"] == true {
                let t = grammar::unique_referent(&d, &g.facts)
                    .unwrap_or_else(|| panic!("{name}: {text:?} does not single out one object"));
                assert_eq!(rle_of(ann), object_rles[t], "{name}: {text:?} names another object");
                positives += 1;
            } else {
                assert!(
                    grammar::matches_nothing(&d, &g.facts),
                    "{name}: negative {text:?} matches something"
                );
                negatives += 1;
            }
        }
    }
    assert!(positives > 16 * 2, "{positives} positives");
    assert!(negatives >= 16, "{negatives} negatives: at least one per image");
    // Several sentence forms occur (plain, colour, position, rank, relation).
    assert!(forms.len() >= 4, "{forms:?}");
}

#[test]
fn masks_decode_and_match_area_and_bbox() {
    let size = 128usize;
    let (dir, _) = dataset(12, size as u32, SEED);
    let mut ids = HashSet::new();
    for name in all_names(dir.path()) {
        let json = annotations(dir.path(), &name);
        assert_eq!(json["image"]["file_name"], format!("{name}.jpg"));
        assert_eq!(json["image"]["width"], size);
        assert_eq!(json["image"]["height"], size);
        assert_eq!(json["image"]["seed"], SEED);
        let image = image::open(dir.path().join("JPEGImages").join(format!("{name}.jpg"))).unwrap();
        assert_eq!((image.width(), image.height()), (size as u32, size as u32));
        assert!(matches!(image, image::DynamicImage::ImageRgb8(_)));
        let mut object_masks: Vec<Vec<u8>> = Vec::new();
        for ann in json["annotations"].as_array().unwrap() {
            assert!(ids.insert(ann["id"].as_i64().unwrap()), "duplicate id {}", ann["id"]);
            let rle = rle_of(ann);
            assert_eq!(rle.size, [size as u32, size as u32]);
            let mask = rle::decode(&rle).unwrap();
            let area = mask.iter().filter(|&&v| v != 0).count();
            assert_eq!(ann["area"], area);
            let bbox: Vec<usize> = serde_json::from_value(ann["bbox"].clone()).unwrap();
            if ann["object_present"] == false {
                assert_eq!(area, 0, "a negative has an empty mask");
                assert_eq!(bbox, vec![0, 0, 0, 0]);
                continue;
            }
            assert!(area > 0);
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for y in 0..size {
                for x in 0..size {
                    if mask[y * size + x] != 0 {
                        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                    }
                }
            }
            assert_eq!(bbox, vec![x0, y0, x1 - x0, y1 - y0]);
            if !object_masks.contains(&mask) {
                object_masks.push(mask);
            }
        }
        // Objects never overlap: each pixel belongs to one object at most.
        for (i, a) in object_masks.iter().enumerate() {
            for b in &object_masks[i + 1..] {
                assert!(
                    a.iter().zip(b).all(|(p, q)| *p == 0 || *q == 0),
                    "{name}: masks overlap"
                );
            }
        }
    }
}

#[test]
fn objects_are_large_enough_and_scenes_busy_enough() {
    // At 256 px no object's box is thinner than ~14 px.
    let mut counts = Vec::new();
    for index in 0..10 {
        let g = synth::generate(3, index, 256);
        counts.push(g.scene.objects.len());
        for o in &g.scene.objects {
            let [_, _, w, h] = o.mask.bbox();
            assert!(w.min(h) >= 13, "image {index}: a {} of {w}x{h} px", o.category.name());
        }
        let negatives = g.referrings.iter().filter(|r| r.target.is_none()).count();
        assert!((1..=2).contains(&negatives), "image {index}: {negatives} negatives");
    }
    assert!(counts.iter().all(|&n| (1..=6).contains(&n)), "{counts:?}");
    assert!(counts.iter().sum::<usize>() >= 2 * counts.len(), "{counts:?}");
}

#[test]
fn splits_partition_the_images_by_the_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path(), 12, 128, SEED);
    a.splits = "train=0.5,val=0.25,test=0.25".into();
    let summary = synth::run(&a).unwrap();
    let mut seen = BTreeSet::new();
    let mut sizes = Vec::new();
    for split in synth::SPLIT_NAMES {
        let names = Dataset::open(dir.path(), split).unwrap().names().to_vec();
        sizes.push(names.len());
        assert_eq!(summary.manifest.splits[split].images, names.len());
        for n in names {
            assert!(seen.insert(n.clone()), "{n} is in two splits");
        }
    }
    assert_eq!(sizes, vec![6, 3, 3]);
    let expected: BTreeSet<String> = (0..12).map(synth::image_name).collect();
    assert_eq!(seen, expected);

    // A split with fraction 0 is an empty list, still readable.
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path(), 5, 64, SEED);
    a.splits = "train=1".into();
    synth::run(&a).unwrap();
    assert_eq!(Dataset::open(dir.path(), "train").unwrap().names().len(), 5);
    assert!(Dataset::open(dir.path(), "test").unwrap().names().is_empty());
}

#[test]
fn bad_arguments_are_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let cases: Vec<(SynthArgs, &str)> = vec![
        (args(&out, 0, 128, 0), "--images 0"),
        (args(&out, 4, 63, 0), "--size 63"),
        (args(&out, 4, 4097, 0), "--size 4097"),
        (
            SynthArgs {
                splits: "train=0.7,val=0.1,test=0.1".into(),
                ..args(&out, 4, 128, 0)
            },
            "sum to",
        ),
        (
            SynthArgs {
                splits: "train=1.2,val=-0.2".into(),
                ..args(&out, 4, 128, 0)
            },
            "negative",
        ),
        (
            SynthArgs {
                splits: "train=0.9,dev=0.1".into(),
                ..args(&out, 4, 128, 0)
            },
            "unknown split \"dev\"",
        ),
        (
            SynthArgs {
                splits: "train=x".into(),
                ..args(&out, 4, 128, 0)
            },
            "not a number",
        ),
        (
            SynthArgs {
                splits: "train".into(),
                ..args(&out, 4, 128, 0)
            },
            "NAME=FRACTION",
        ),
    ];
    for (a, needle) in cases {
        let e = synth::run(&a).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    }
    assert!(!out.exists(), "nothing is written for bad arguments");

    // An output path that cannot be a folder.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = format!("{:#}", synth::run(&args(&file, 2, 64, 0)).unwrap_err());
    assert!(e.contains("cannot create"), "{e}");
}

#[test]
fn the_evaluator_reads_the_dataset() {
    let (dir, summary) = dataset(12, 128, SEED);
    let mut samples = 0;
    let mut skipped = 0;
    for split in synth::SPLIT_NAMES {
        let ds = Dataset::open(dir.path(), split).unwrap();
        for name in ds.names() {
            ds.image_path(name).unwrap();
            let s = ds.load_samples(name, 1 << 30).unwrap();
            for sample in &s.samples {
                assert!(sample.gt.area() > 0);
                assert_eq!((sample.gt.width, sample.gt.height), (128, 128));
            }
            // Only the negatives are left out, by the area-0 rule.
            assert!(s.skipped.iter().all(|k| k.by_rule), "{:?}", s.skipped);
            samples += s.samples.len();
            skipped += s.skipped.len();
        }
    }
    assert_eq!(samples, summary.manifest.sentences);
    assert_eq!(skipped, summary.manifest.negatives);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("synth.json")).unwrap()).unwrap();
    assert_eq!(manifest["sentences"], samples);
    assert_eq!(manifest["version"], synth::GENERATOR_VERSION);
    let per_category: u64 = manifest["categories"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["sentences"].as_u64().unwrap())
        .sum();
    assert_eq!(per_category as usize, samples);
}

#[test]
fn the_vocabulary_tokenizes_every_sentence_without_unk() {
    let (dir, _) = dataset(12, 128, SEED);
    let path = dir.path().join("vocab.txt");
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, synth::vocabulary());
    assert_eq!(&lines[..5], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
    let tok = rsam::tokenizer::TextTokenizer::from_vocab(&path, 512).unwrap();
    assert_eq!(tok.vocab_size(), lines.len());
    let unk = 1u32;
    let mut sentences = 0;
    for name in all_names(dir.path()) {
        for ann in annotations(dir.path(), &name)["annotations"].as_array().unwrap() {
            let text = ann["description"].as_str().unwrap();
            let ids = tok.encode(text).unwrap();
            assert!(!ids.contains(&unk), "{text:?} has an unknown word: {ids:?}");
            // Whole words only: one token per word, plus [CLS] and [SEP].
            assert_eq!(ids.len(), text.split(' ').count() + 2, "{text:?}");
            sentences += 1;
        }
    }
    assert!(sentences > 24);
}

/// Many images at several sizes, checked in memory: every sentence reads
/// back to its meaning and singles out its object, negatives match nothing,
/// objects keep apart. 40 images per size by default (a few seconds);
/// SYNTH_STRESS_IMAGES sets the count per size for a longer run.
#[test]
fn stress_many_images() {
    let n: u64 = std::env::var("SYNTH_STRESS_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut sentences = 0usize;
    for size in [64usize, 128, 256, 512] {
        for index in 0..n {
            let g = synth::generate(77, index, size);
            assert!((2..=6).contains(&g.scene.objects.len()), "{size}/{index}");
            for r in &g.referrings {
                assert_eq!(
                    grammar::parse(&r.text),
                    Some(r.descriptor),
                    "{size}/{index}: {}",
                    r.text
                );
                match r.target {
                    Some(t) => assert_eq!(
                        grammar::unique_referent(&r.descriptor, &g.facts),
                        Some(t),
                        "{size}/{index}: {}",
                        r.text
                    ),
                    None => assert!(grammar::matches_nothing(&r.descriptor, &g.facts), "{}", r.text),
                }
                sentences += 1;
            }
            let masks: Vec<Vec<u8>> = g.scene.objects.iter().map(|o| o.mask.full(size)).collect();
            for (i, a) in masks.iter().enumerate() {
                assert!(a.iter().any(|&v| v != 0), "{size}/{index}: empty object mask");
                for b in &masks[i + 1..] {
                    assert!(
                        a.iter().zip(b).all(|(p, q)| *p == 0 || *q == 0),
                        "{size}/{index}: overlap"
                    );
                }
            }
        }
    }
    assert!(sentences as u64 > 4 * n * 3);
}
