//! `rsam segment`: one image, one prompt, the result as a JSON line and
//! optionally the mask, the logits and the model input as files.

use anyhow::Context;

use super::args::SegmentArgs;
use super::output::{print_json, read_file, write_file};
use crate::npy;
use crate::{Prompt, Rsam};

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    let options = args.device.load_options()?;
    let model_dir = args.model.clone().unwrap_or_else(crate::predictor::default_model_dir);
    let model = Rsam::load(&model_dir, &options)?;
    let bytes = read_file(&args.image)?;
    let image = crate::preprocess::decode_image(&bytes, options.max_pixels)
        .with_context(|| format!("{}", args.image.display()))?;
    let side = model.low_res_size();
    let mask_input = match &args.mask_input {
        Some(path) => {
            let logits = npy::read_low_res_logits(&read_file(path)?, side);
            Some(logits.with_context(|| format!("{}", path.display()))?)
        }
        None => None,
    };
    let prompt = Prompt {
        text: args.text.clone(),
        points: args.points.clone(),
        bbox: args.bbox,
        mask_input,
    };
    let prompt = model.check_prompt(prompt, image.width, image.height)?;
    if let Some(path) = &args.input_out {
        let s = model.image_size();
        let input = crate::preprocess::to_model_input(&image, s as u32);
        write_file(path, &npy::write_f32(&[3, s, s], &input))?;
    }
    let encoded = model.encode_image(&image)?;
    let prediction = model.decode(&encoded, &[prompt])?.remove(0);
    if let Some(path) = &args.logits_out {
        write_file(path, &npy::write_f32(&[side, side], &prediction.low_res_logits))?;
    }
    let mask = prediction.mask(image.width, image.height);
    if let Some(path) = &args.mask_out {
        write_file(path, &mask.to_png())?;
    }
    print_json(&serde_json::json!({
        "width": image.width,
        "height": image.height,
        "iou_prediction": prediction.iou,
        "object_score_logit": prediction.object_score_logit,
        "object_present": prediction.object_present(),
        "area": mask.area(),
        "bbox": mask.bbox(),
        "rle": mask.to_rle(),
    }))
}
