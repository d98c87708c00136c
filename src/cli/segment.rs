//! `rsam segment`: one image, one prompt, the result as a JSON line and
//! optionally the mask, the logits and the model input as files. Works on
//! either kind of model directory (RSAM, SAM 2).

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::args::SegmentArgs;
use super::output::{mask_file, print_json, read_file, write_file};
use crate::geo::{self, MaskFeature};
use crate::image_input::{self, InputImage};
use crate::loaded_model::LoadedModel;
use crate::mask::BinaryMask;
use crate::npy;
use crate::predictor::Prediction;

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    if args.window.window.is_some() {
        return super::segment_windowed::run(args);
    }
    if let Some(flag) = args.window.stray_flag() {
        bail!("{flag} needs --window");
    }
    let options = args.device.load_options()?;
    let model_dir = args.model.clone().unwrap_or_else(crate::predictor::default_model_dir);
    let model = LoadedModel::load(&model_dir, &options)?;
    if args.multimask && model.kind() != crate::model_kind::ModelKind::Sam2 {
        bail!(
            "--multimask needs a SAM 2 model: {} is an RSAM model, which gives one mask per prompt",
            model_dir.display()
        );
    }
    let bytes = read_file(&args.image)?;
    let raster = args.raster.options();
    let InputImage { image, georef } = image_input::decode(&bytes, &raster, options.max_pixels)
        .with_context(|| format!("{}", args.image.display()))?;
    let side = model.low_res_size();
    let mask_input = match &args.mask_input {
        Some(path) => {
            let logits = npy::read_low_res_logits(&read_file(path)?, side);
            Some(logits.with_context(|| format!("{}", path.display()))?)
        }
        None => None,
    };
    let prompt = args
        .sent_prompt(mask_input)
        .into_pixels(args.coords, &georef)
        .context("--coords map")?;
    let prompt = model.check_prompt(prompt, image.width, image.height)?;
    if let Some(path) = &args.input_out {
        let s = model.image_size();
        write_file(path, &npy::write_f32(&[3, s, s], &model.model_input(&image)))?;
    }
    let encoded = model.encode_image(&image)?;
    let prediction = model.decode(&encoded, &[prompt], args.multimask)?.remove(0);
    if let Some(path) = &args.logits_out {
        write_file(path, &logits_npy(&prediction))?;
    }
    let mask = prediction.mask(image.width, image.height);
    if let Some(path) = &args.mask_out {
        write_file(path, &mask_file(path, &mask, &georef)?)?;
    }
    if let Some(path) = &args.geo_output.geojson_out {
        let crs = args.geo_output.crs();
        let feature = MaskFeature {
            mask: &mask.data,
            width: mask.width,
            height: mask.height,
            text: args.text.as_deref(),
            result_id: None,
            iou_prediction: prediction.iou,
            object_score_logit: prediction.object_score_logit,
            object_present: prediction.object_present(),
        };
        write_file(path, &geo::feature_collection_bytes(&[feature], &georef, crs)?)?;
    }
    let mut line = summary(&prediction, &mask, image.width, image.height);
    line["georeferenced"] = json!(georef.is_georeferenced());
    print_json(&line)
}

/// The returned logits: S/4 x S/4, or the candidates' C x S/4 x S/4 in the
/// model's order.
fn logits_npy(prediction: &Prediction) -> Vec<u8> {
    let side = prediction.low_res_size;
    if prediction.candidates.is_empty() {
        return npy::write_f32(&[side, side], &prediction.returned_logits());
    }
    let all: Vec<f32> = prediction
        .candidates
        .iter()
        .flat_map(|c| prediction.returned_candidate_logits(c).into_owned())
        .collect();
    npy::write_f32(&[prediction.candidates.len(), side, side], &all)
}

/// `iou_prediction`, `area`, `bbox` and `rle` of a mask.
fn mask_fields(iou: f32, mask: &BinaryMask) -> Value {
    json!({
        "iou_prediction": iou,
        "area": mask.area(),
        "bbox": mask.bbox(),
        "rle": mask.to_rle(),
    })
}

/// The JSON line: the (best) mask's fields, the object score, and with
/// several candidates `candidates` in the model's order.
fn summary(prediction: &Prediction, mask: &BinaryMask, width: u32, height: u32) -> Value {
    let mut line = json!({
        "width": width,
        "height": height,
        "object_score_logit": prediction.object_score_logit,
        "object_present": prediction.object_present(),
    });
    let fields = line.as_object_mut().expect("a JSON object");
    if let Value::Object(best) = mask_fields(prediction.iou, mask) {
        fields.extend(best);
    }
    if !prediction.candidates.is_empty() {
        let candidates: Vec<Value> = prediction
            .candidates
            .iter()
            .map(|c| mask_fields(c.iou, &prediction.candidate_mask(c, width, height)))
            .collect();
        let best = prediction.candidates.iter().enumerate().fold(0, |best, (i, c)| {
            if c.iou > prediction.candidates[best].iou {
                i
            } else {
                best
            }
        });
        fields.insert("best_candidate".into(), json!(best));
        fields.insert("candidates".into(), Value::Array(candidates));
    }
    line
}
