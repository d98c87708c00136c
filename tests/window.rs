//! The windowed search (`rsam::window`) on scenes larger than the model,
//! built from `rsam synth` scenes: a mosaic where a sentence names one
//! object of the whole mosaic (the right window must win and the stitched
//! mask match the ground truth), an object placed across a window border
//! (it must come back whole, merged from both windows), a GeoTIFF read
//! window by window (the same pixels as read whole), batched decoding
//! across windows (the same as window by window) and a cache that makes a
//! second sentence decode-only.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsam::geo::{read_rgb_from_bytes, GeoRaster, ReadOptions, Stretch, Window};
use rsam::loaded_model::LoadedModel;
use rsam::mask::BinaryMask;
use rsam::predictor::{EncodedImage, ModelImage};
use rsam::preprocess::Rgb8Image;
use rsam::risors::Dataset;
use rsam::window::{
    crop, encode_windows, search, FnFeatures, GeoTiffSource, ImageSource, ModelFeatures, SearchOptions, WindowError,
    WindowFeatures, WindowGrid, WindowSource, WindowSpec,
};
use rsam::{LoadOptions, Point, Prompt};

/// A seed the demo model's training data never used.
const SEED: u64 = 4_217;
const SCENES: usize = 6;
const SIDE: u32 = 256;

struct Scene {
    image: Rgb8Image,
    samples: Vec<(String, BinaryMask)>,
}

fn demo() -> LoadedModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(rsam::predictor::DEMO_MODEL_DIR);
    LoadedModel::load(&dir, &LoadOptions::default()).unwrap()
}

fn synth_scenes(dir: &Path) -> Vec<Scene> {
    let out: PathBuf = dir.join("synth");
    rsam::synth::run(&rsam::cli::args::SynthArgs {
        out: out.clone(),
        images: SCENES,
        size: SIDE,
        seed: SEED,
        splits: "test=1".into(),
    })
    .unwrap();
    let dataset = Dataset::open(&out, "test").unwrap();
    dataset
        .names()
        .iter()
        .map(|name| {
            let bytes = std::fs::read(dataset.image_path(name).unwrap()).unwrap();
            let image = rsam::preprocess::decode_image(&bytes, u64::MAX).unwrap();
            let samples = dataset.load_samples(name, u64::MAX).unwrap().samples;
            Scene {
                image,
                samples: samples.into_iter().map(|s| (s.sentence, s.gt)).collect(),
            }
        })
        .collect()
}

/// Pastes `image` into `canvas` at `(x0, y0)`, clipped to the canvas.
fn paste(canvas: &mut Rgb8Image, image: &Rgb8Image, x0: u32, y0: u32) {
    for y in 0..image.height.min(canvas.height.saturating_sub(y0)) {
        for x in 0..image.width.min(canvas.width.saturating_sub(x0)) {
            let from = ((y * image.width + x) * 3) as usize;
            let to = (((y + y0) * canvas.width + x + x0) * 3) as usize;
            canvas.data[to..to + 3].copy_from_slice(&image.data[from..from + 3]);
        }
    }
}

/// `mask` (one scene's size) placed at `(x0, y0)` of a `width x height` mask.
fn placed(mask: &BinaryMask, width: u32, height: u32, x0: u32, y0: u32) -> BinaryMask {
    let mut out = BinaryMask {
        width,
        height,
        data: vec![0; (width * height) as usize],
    };
    for y in 0..mask.height {
        for x in 0..mask.width {
            out.data[((y + y0) * width + x + x0) as usize] = mask.data[(y * mask.width + x) as usize];
        }
    }
    out
}

fn iou(a: &BinaryMask, b: &BinaryMask) -> f64 {
    let both = a.data.iter().zip(&b.data).filter(|(x, y)| **x != 0 && **y != 0).count();
    let either = a.data.iter().zip(&b.data).filter(|(x, y)| **x != 0 || **y != 0).count();
    both as f64 / either.max(1) as f64
}

/// The samples the demo model segments with IoU >= 0.9 in their own scene
/// and whose sentence no other scene of the mosaic has: `(scene, sample)`.
fn found_alone(model: &LoadedModel, scenes: &[Scene]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, scene) in scenes.iter().enumerate() {
        let encoded = model.encode_image(&scene.image).unwrap();
        for (j, (sentence, gt)) in scene.samples.iter().enumerate() {
            let elsewhere = scenes
                .iter()
                .enumerate()
                .any(|(k, s)| k != i && s.samples.iter().any(|(t, _)| t == sentence));
            if elsewhere {
                continue;
            }
            let prediction = model
                .predict(&encoded, vec![Prompt::text(sentence)], false)
                .unwrap()
                .remove(0);
            if prediction.object_present() && iou(&prediction.mask(SIDE, SIDE), gt) >= 0.9 {
                out.push((i, j));
            }
        }
    }
    out
}

fn spec(size: u32, overlap: u32) -> SearchOptions {
    SearchOptions {
        spec: WindowSpec {
            size: Some(size),
            overlap: Some(overlap),
        },
        ..SearchOptions::default()
    }
}

#[test]
fn the_window_holding_the_named_object_wins_and_its_mask_matches_the_ground_truth() {
    let model = demo();
    let tmp = tempfile::tempdir().unwrap();
    let scenes = synth_scenes(tmp.path());
    let targets = found_alone(&model, &scenes);
    assert!(
        targets.len() >= 2,
        "too few sentences the demo model finds alone: {targets:?}"
    );

    // Scenes in a 3 x 2 mosaic; 256 px windows every 128 px start at every
    // scene's corner.
    let (width, height) = (3 * SIDE, 2 * SIDE);
    let mut mosaic = Rgb8Image {
        width,
        height,
        data: vec![0; (width * height * 3) as usize],
    };
    let origin = |i: usize| ((i as u32 % 3) * SIDE, (i as u32 / 3) * SIDE);
    for (i, scene) in scenes.iter().enumerate() {
        let (x, y) = origin(i);
        paste(&mut mosaic, &scene.image, x, y);
    }
    let options = spec(SIDE, SIDE / 2);
    let mut features = ModelFeatures::cached(&model);
    let mut won = 0;
    for &(i, j) in targets.iter().take(4) {
        let (sentence, gt) = &scenes[i].samples[j];
        let mut source = ImageSource::new(&mosaic);
        let outcome = search(
            &model,
            &mut source,
            &Prompt::text(sentence),
            &options,
            &mut features,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(outcome.grid.len(), 5 * 3);
        let (x, y) = origin(i);
        let own = outcome.grid.windows.iter().position(|w| (w.x, w.y) == (x, y)).unwrap();
        let best = outcome.best().expect("a candidate");
        let truth = placed(gt, width, height, x, y);
        let score = iou(&outcome.best_mask(), &truth);
        eprintln!(
            "{sentence:?} (scene {i}): best windows {:?}, own {own}, IoU {score:.3}, {} candidates",
            best.window_indices,
            outcome.candidates.len()
        );
        assert!(outcome.candidates.len() <= 5);
        if best.window_indices.contains(&own) {
            assert!(score >= 0.9, "{sentence:?}: stitched mask IoU {score:.3} < 0.9");
            won += 1;
        }
    }
    // The model is small and the mosaic has six scenes of look-alike objects:
    // most, not every, target must win outright.
    let tried = targets.len().min(4);
    assert!(2 * won > tried, "the right window won {won} of {tried} searches");
    assert!(features.kept_windows() == 15, "every window encoded once and kept");
}

#[test]
fn an_object_across_a_window_border_comes_back_whole() {
    let model = demo();
    let tmp = tempfile::tempdir().unwrap();
    let scenes = synth_scenes(tmp.path());
    // Windows [0, 256) and [224, 480) of a 480 px wide scene: an object wider
    // than 40 px centred on x = 240 fits in neither.
    let (width, height, border) = (480u32, SIDE, 240u32);
    let options = spec(SIDE, 32);
    let wide: Vec<(usize, usize)> = found_alone(&model, &scenes)
        .into_iter()
        .filter(|&(i, j)| {
            let [x, _, w, _] = scenes[i].samples[j].1.bbox();
            w >= 40.0 && x + w / 2.0 >= 16.0 && x + w / 2.0 <= f64::from(border)
        })
        .collect();
    assert!(!wide.is_empty(), "no wide object the demo model finds alone");
    let mut whole = 0;
    for &(i, j) in wide.iter().take(3) {
        let (sentence, gt) = &scenes[i].samples[j];
        let [bx, _, bw, _] = gt.bbox();
        let x0 = (f64::from(border) - (bx + bw / 2.0)).round() as u32;
        // The background: the next scene repeated; the target's scene on top.
        let background = &scenes[(i + 1) % scenes.len()].image;
        let mut canvas = Rgb8Image {
            width,
            height,
            data: vec![0; (width * height * 3) as usize],
        };
        paste(&mut canvas, background, 0, 0);
        paste(&mut canvas, background, SIDE, 0);
        paste(&mut canvas, &scenes[i].image, x0, 0);
        let truth = placed(gt, width, height, x0, 0);
        let [tx, _, tw, _] = truth.bbox();
        assert!(tx < 224.0 && tx + tw > 256.0, "the object spans both borders");

        let outcome = search(
            &model,
            &mut ImageSource::new(&canvas),
            &Prompt::text(sentence),
            &options,
            &mut ModelFeatures::uncached(&model),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(outcome.grid.len(), 2);
        let best = outcome.best().expect("a candidate");
        let score = iou(&outcome.best_mask(), &truth);
        eprintln!(
            "{sentence:?} across the border: windows {:?}, IoU {score:.3}",
            best.window_indices
        );
        if best.windows.len() == 2 && score >= 0.8 {
            whole += 1;
        }
    }
    assert!(whole >= 1, "no object across the border came back whole");
}

#[test]
fn clicks_search_only_the_windows_that_hold_them() {
    let model = demo();
    let tmp = tempfile::tempdir().unwrap();
    let scenes = synth_scenes(tmp.path());
    let mut mosaic = Rgb8Image {
        width: 2 * SIDE,
        height: SIDE,
        data: vec![0; (2 * SIDE * SIDE * 3) as usize],
    };
    paste(&mut mosaic, &scenes[0].image, 0, 0);
    paste(&mut mosaic, &scenes[1].image, SIDE, 0);
    let (_, gt) = &scenes[1].samples[0];
    // A click on the object's pixel nearest its box's centre, in mosaic pixels.
    let [bx, by, bw, bh] = gt.bbox();
    let (cx, cy) = (bx + bw / 2.0, by + bh / 2.0);
    let (px, py) = (0..SIDE * SIDE)
        .filter(|&i| gt.data[i as usize] != 0)
        .map(|i| (f64::from(i % SIDE) + 0.5, f64::from(i / SIDE) + 0.5))
        .min_by(|a, b| {
            let d = |p: &(f64, f64)| (p.0 - cx).powi(2) + (p.1 - cy).powi(2);
            d(a).total_cmp(&d(b))
        })
        .unwrap();
    let x = px + f64::from(SIDE);
    let prompt = Prompt {
        points: vec![Point {
            x: x as f32,
            y: py as f32,
            label: 1,
        }],
        ..Default::default()
    };
    let options = spec(SIDE, SIDE / 2);
    let mut windows_seen = Vec::new();
    let outcome = search(
        &model,
        &mut ImageSource::new(&mosaic),
        &prompt,
        &options,
        &mut ModelFeatures::uncached(&model),
        &mut |p| windows_seen.push(p),
    )
    .unwrap();
    assert_eq!(outcome.grid.len(), 3);
    let holding: Vec<usize> = (0..3)
        .filter(|&i| {
            let win = outcome.grid.windows[i];
            f64::from(win.x) <= x && x <= f64::from(win.x + win.width)
        })
        .collect();
    assert_eq!(outcome.searched, holding);
    assert_eq!(outcome.encoded, holding.len());
    assert_eq!(windows_seen.last().map(|p| p.done), Some(holding.len()));
    let truth = placed(gt, 2 * SIDE, SIDE, SIDE, 0);
    let score = iou(&outcome.best_mask(), &truth);
    assert!(score >= 0.7, "click prompt IoU {score:.3}");
}

#[test]
fn a_second_sentence_on_a_cached_scene_encodes_nothing() {
    let model = demo();
    let tmp = tempfile::tempdir().unwrap();
    let scenes = synth_scenes(tmp.path());
    let image = &scenes[0].image;
    let options = spec(128, 32);
    let mut features = ModelFeatures::cached(&model);
    let run = |sentence: &str, features: &mut ModelFeatures| {
        search(
            &model,
            &mut ImageSource::new(image),
            &Prompt::text(sentence),
            &options,
            features,
            &mut |_| {},
        )
        .unwrap()
    };
    let first = run(&scenes[0].samples[0].0, &mut features);
    assert_eq!((first.grid.len(), first.encoded), (9, 9));
    let kept = features.kept_bytes();
    assert!(kept > 0);
    let second = run(&scenes[0].samples[1 % scenes[0].samples.len()].0, &mut features);
    assert_eq!((second.searched.len(), second.encoded), (9, 0));
    assert_eq!(features.kept_bytes(), kept);
    // Cached features give what encoding again gives.
    let again = run(&scenes[0].samples[0].0, &mut ModelFeatures::uncached(&model));
    assert_eq!(again.best_mask(), first.best_mask());
    assert_eq!(again.candidates.len(), first.candidates.len());
}

#[test]
fn decoding_across_windows_gives_what_each_window_gives_alone() {
    let rsam = common::load_tiny();
    let side = rsam.image_size() as u32;
    let images: Vec<Rgb8Image> = (0..3u8)
        .map(|k| Rgb8Image {
            width: side,
            height: side,
            data: (0..side * side * 3)
                .map(|i| (i as u8).wrapping_mul(7).wrapping_add(40 * k))
                .collect(),
        })
        .collect();
    let encoded = rsam.encode_images(&images).unwrap();
    let prompts: Vec<_> = (0..3)
        .map(|_| rsam.check_prompt(Prompt::text("the red ship"), side, side).unwrap())
        .collect();
    let refs: Vec<_> = encoded.iter().collect();
    let across = rsam.decode_across(&refs, &prompts).unwrap();
    for (k, (image, prompt)) in encoded.iter().zip(&prompts).enumerate() {
        let alone = rsam.decode(image, std::slice::from_ref(prompt)).unwrap().remove(0);
        let diff = common::max_abs_diff_vec(&across[k].low_res_logits, &alone.low_res_logits);
        assert!(diff < 1e-3, "window {k}: logits differ by {diff}");
        assert!((across[k].iou - alone.iou).abs() < 1e-4);
        assert!((across[k].object_score_logit - alone.object_score_logit).abs() < 1e-3);
    }
    // One prompt per image, of one size.
    let err = rsam.decode_across(&refs[..2], &prompts).unwrap_err();
    assert!(err.to_string().contains("2 images but 3 prompts"), "{err}");
}

#[test]
fn a_geotiff_read_window_by_window_gives_the_pixels_of_the_whole_read() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/u16_rgb_nir_pixel.tif");
    let bytes = std::fs::read(&path).unwrap();
    let options = ReadOptions {
        bands: Some(vec![3, 2, 1]),
        stretch: Some(Stretch::Percentile),
        ..Default::default()
    };
    let whole = read_rgb_from_bytes(&bytes, &options).unwrap();
    let raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let mut source = GeoTiffSource::new(raster, Some(vec![3, 2, 1]), Some(Stretch::Percentile)).unwrap();
    assert!(source.georef().is_some_and(|g| g.is_georeferenced()));
    let spec = WindowSpec {
        size: Some(16),
        overlap: Some(4),
    };
    let grid = WindowGrid::plan(source.width(), source.height(), spec, 256, 1000).unwrap();
    assert_eq!(grid.len(), 3 * 2, "a 37 x 23 raster");
    for &window in &grid.windows {
        assert_eq!(source.read(window).unwrap(), crop(&whole.image, window), "{window:?}");
    }
    let outside = Window {
        x: source.width() - 4,
        y: 0,
        width: 8,
        height: 8,
    };
    assert!(source.read(outside).is_err());
    // Bad bands are named before anything is read.
    let raster = GeoRaster::from_bytes(&bytes, 1_000_000).unwrap();
    let err = GeoTiffSource::new(raster, Some(vec![1, 9, 2]), None).err().unwrap();
    assert!(err.to_string().contains('9'), "{err}");
}

/// A window's rectangle as a cache key.
type WindowKey = (u32, u32, u32, u32);

#[test]
fn a_caller_cache_given_as_closures_serves_later_searches() {
    let model = LoadedModel::load(&common::tiny_dir(), &LoadOptions::default()).unwrap();
    let (width, height) = (300u32, 200u32);
    let scene = Rgb8Image {
        width,
        height,
        data: (0..width * height * 3).map(|i| (i % 251) as u8).collect(),
    };
    let options = spec(128, 32);
    let cache: RefCell<HashMap<WindowKey, Arc<EncodedImage>>> = RefCell::default();
    let encoder_runs = RefCell::new(0usize);
    let mut features = FnFeatures {
        get: |_: usize, w: Window| cache.borrow().get(&(w.x, w.y, w.width, w.height)).cloned(),
        encode: |windows: &[(usize, Window)], images: Vec<ModelImage>| -> Result<Vec<Arc<EncodedImage>>, WindowError> {
            *encoder_runs.borrow_mut() += 1;
            let encoded = model.encode_batch(&images)?;
            let mut out = Vec::new();
            for (&(_, w), e) in windows.iter().zip(encoded) {
                let e = Arc::new(e);
                cache.borrow_mut().insert((w.x, w.y, w.width, w.height), Arc::clone(&e));
                out.push(e);
            }
            Ok(out)
        },
    };
    let run = |sentence: &str, features: &mut dyn WindowFeatures| {
        search(
            &model,
            &mut ImageSource::new(&scene),
            &Prompt::text(sentence),
            &options,
            features,
            &mut |_| {},
        )
    };
    // Pre-encoding (what /v1/images with a window does): every window once.
    let mut heard = Vec::new();
    let (grid, encoded) = encode_windows(
        &model,
        &mut ImageSource::new(&scene),
        &options,
        &mut features,
        &mut |p| heard.push(p.done),
    )
    .unwrap();
    assert_eq!((grid.len(), encoded, heard), (6, 6, vec![4, 6]));
    assert_eq!(*encoder_runs.borrow(), 2, "6 windows in batches of 4");
    let first = run("the airplane", &mut features).unwrap();
    assert_eq!((first.grid.len(), first.encoded), (6, 0));
    let second = run("the ship", &mut features).unwrap();
    assert_eq!((second.searched.len(), second.encoded), (6, 0));
    assert_eq!(*encoder_runs.borrow(), 2);
    assert_eq!(cache.borrow().len(), 6);

    // A cache that loses windows is an error, not a panic or a silent gap.
    let mut lossy = FnFeatures {
        get: |_: usize, _: Window| None,
        encode: |_: &[(usize, Window)], images: Vec<ModelImage>| -> Result<Vec<Arc<EncodedImage>>, WindowError> {
            let mut out: Vec<Arc<EncodedImage>> = model.encode_batch(&images)?.into_iter().map(Arc::new).collect();
            out.pop();
            Ok(out)
        },
    };
    let err = run("the airplane", &mut lossy).unwrap_err();
    assert!(
        err.to_string().contains("encoded 3 windows but was asked for 4"),
        "{err}"
    );
}
