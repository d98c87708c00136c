//! `rsam segment --window`: a scene larger than the model searched window
//! by window (see [`crate::window`]). The JSON line holds what `rsam
//! segment` prints for the best candidate's mask at the scene's full size,
//! plus the grid and the top-k `candidates`. A TIFF is read window by
//! window through the GeoTIFF reader with one stretch for the whole scene;
//! any other image is decoded whole and cut in memory.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::args::SegmentArgs;
use super::output::{mask_file, print_json, read_file, write_file};
use crate::geo::{self, GeoRaster, Georef, MaskFeature};
use crate::image_input::{self, InputImage};
use crate::loaded_model::LoadedModel;
use crate::mask::BinaryMask;
use crate::predictor::Prompt;
use crate::window::{
    candidate_reports, search, GeoTiffSource, ImageSource, ModelFeatures, SearchOptions, SearchOutcome, WindowSource,
};

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    refuse_single_input_flags(&args)?;
    let options = args.device.load_options()?;
    let model_dir = args.model.clone().unwrap_or_else(crate::predictor::default_model_dir);
    let model = LoadedModel::load(&model_dir, &options)?;
    let search_options = SearchOptions {
        spec: args.window.window.unwrap_or_default(),
        max_windows: args.window.max_windows,
        top_k: args.window.top_k,
        batch: args.window.window_batch,
        ..SearchOptions::default()
    };
    let prompt = args.sent_prompt(None);
    let raster = args.raster.options();
    let (outcome, georef) = if is_tiff_file(&args.image)? {
        let tiff = GeoRaster::open(&args.image, options.max_pixels)?;
        let mut source = GeoTiffSource::new(tiff, raster.bands.clone(), raster.stretch)
            .with_context(|| format!("{}", args.image.display()))?;
        let georef = source.georef().cloned().unwrap_or_default();
        let prompt = prompt.into_pixels(args.coords, &georef).context("--coords map")?;
        (run_search(&model, &mut source, &prompt, &search_options)?, georef)
    } else {
        let InputImage { image, georef } = image_input::decode(&read_file(&args.image)?, &raster, options.max_pixels)
            .with_context(|| format!("{}", args.image.display()))?;
        let prompt = prompt.into_pixels(args.coords, &georef).context("--coords map")?;
        (
            run_search(&model, &mut ImageSource::new(&image), &prompt, &search_options)?,
            georef,
        )
    };
    let mask = outcome.best_mask();
    if let Some(path) = &args.mask_out {
        write_file(path, &mask_file(path, &mask, &georef)?)?;
    }
    if let Some(path) = &args.geo_output.geojson_out {
        write_file(path, &geojson(&args, &outcome, &mask, &georef)?)?;
    }
    print_json(&summary(&outcome, &mask, &georef)?)
}

/// `--geojson-out`: the best candidate's mask as `rsam segment` writes one.
fn geojson(args: &SegmentArgs, outcome: &SearchOutcome, mask: &BinaryMask, georef: &Georef) -> anyhow::Result<Vec<u8>> {
    let crs = args.geo_output.crs();
    let best = outcome.best();
    let feature = MaskFeature {
        mask: &mask.data,
        width: mask.width,
        height: mask.height,
        text: args.text.as_deref(),
        result_id: None,
        iou_prediction: best.map_or(0.0, |c| c.iou),
        object_score_logit: best.map_or(f32::NEG_INFINITY, |c| c.object_score_logit),
        object_present: best.is_some_and(|c| c.object_present()),
    };
    Ok(geo::feature_collection_bytes(&[feature], georef, crs)?)
}

/// Flags that belong to one model input have no meaning across windows.
fn refuse_single_input_flags(args: &SegmentArgs) -> anyhow::Result<()> {
    let flags = [
        (args.mask_input.is_some(), "--mask-input"),
        (args.logits_out.is_some(), "--logits-out"),
        (args.input_out.is_some(), "--input-out"),
        (args.multimask, "--multimask"),
    ];
    if let Some((_, flag)) = flags.iter().find(|(set, _)| *set) {
        bail!("{flag} belongs to one model input and cannot be used with --window (each window is its own input)");
    }
    Ok(())
}

/// The search with a progress bar over windows on a terminal.
fn run_search(
    model: &LoadedModel,
    source: &mut dyn WindowSource,
    prompt: &Prompt,
    options: &SearchOptions,
) -> anyhow::Result<SearchOutcome> {
    let mut features = ModelFeatures::uncached(model);
    let bar = progress_bar();
    let outcome = search(model, source, prompt, options, &mut features, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    Ok(outcome)
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("windows {bar:30} {pos}/{len} [{elapsed} < {eta}]") {
        bar.set_style(style);
    }
    bar
}

fn is_tiff_file(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let n = file
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(geo::is_tiff(&head[..n]))
}

/// The JSON line: the best candidate's fields as `rsam segment` prints a
/// mask's (an empty mask and no object when nothing was found), the grid,
/// and the top-k candidates.
fn summary(outcome: &SearchOutcome, mask: &BinaryMask, georef: &Georef) -> anyhow::Result<Value> {
    let best = outcome.best();
    let grid = &outcome.grid;
    Ok(json!({
        "width": grid.scene_width,
        "height": grid.scene_height,
        "object_score_logit": best.map(|c| c.object_score_logit),
        "object_present": best.is_some_and(|c| c.object_present()),
        "iou_prediction": best.map(|c| c.iou),
        "georeferenced": georef.is_georeferenced(),
        "area": mask.area(),
        "bbox": mask.bbox(),
        "rle": mask.to_rle(),
        "window": {
            "size": grid.size,
            "overlap": grid.overlap,
            "windows": grid.len(),
            "searched": outcome.searched.len(),
            "encoded": outcome.encoded,
        },
        "candidates": candidate_reports(&outcome.candidates, Some(georef))?,
    }))
}
