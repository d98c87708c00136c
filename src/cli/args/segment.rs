//! `rsam segment` flags.

use std::path::PathBuf;

use super::{Coords, DeviceArgs, GeoOutputArgs, RasterArgs};
use crate::image_input::SentPrompt;
use crate::predictor::{Point, Prompt};

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Model directory (config.json, weights, tokenizer); default: the bundled weights/rsam-demo.
    #[arg(long, env = "RSAM_MODEL")]
    pub model: Option<PathBuf>,
    /// Image file (PNG, JPEG, TIFF / GeoTIFF, BMP, WebP).
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub raster: RasterArgs,
    /// Units of --point and --box: pixel (image pixels) or map (the raster's CRS units).
    #[arg(long, value_enum, default_value_t = Coords::Pixel)]
    pub coords: Coords,
    /// The referring sentence.
    #[arg(long)]
    pub text: Option<String>,
    /// A click X,Y,LABEL in image pixels, or map units with --coords map (label 1 positive, 0 negative); repeatable.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<PointArg>,
    /// A box X0,Y0,X1,Y1 in image pixels, or map units with --coords map.
    #[arg(long = "box", value_parser = parse_box)]
    pub bbox: Option<[f64; 4]>,
    /// Earlier low-resolution logits (.npy, S/4 x S/4 float32) as the mask prompt.
    #[arg(long)]
    pub mask_input: Option<PathBuf>,
    /// Write the low-resolution logits (S/4 x S/4 float32 .npy).
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Write the preprocessed 3 x S x S float32 model input (.npy).
    #[arg(long)]
    pub input_out: Option<PathBuf>,
    /// Write the mask at the image's size: a PNG (0 / 255), or with a .tif /
    /// .tiff name a u8 GeoTIFF with the input's georeferencing.
    #[arg(long)]
    pub mask_out: Option<PathBuf>,
    #[command(flatten)]
    pub geo_output: GeoOutputArgs,
    /// SAM 2 models: return the three candidate masks (JSON `candidates`;
    /// --logits-out holds 3 x S/4 x S/4 logits in the model's order).
    #[arg(long)]
    pub multimask: bool,
    #[command(flatten)]
    pub window: super::WindowArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl SegmentArgs {
    /// The sentence, clicks and box as typed (map units keep their f64
    /// digits until they become pixels), with `mask_input`.
    pub fn sent_prompt(&self, mask_input: Option<Vec<f32>>) -> SentPrompt {
        SentPrompt {
            points: self.points.iter().map(|p| [p.x, p.y]).collect(),
            bbox: self.bbox,
            prompt: Prompt {
                text: self.text.clone(),
                points: self.points.iter().map(|p| p.to_point()).collect(),
                bbox: self.bbox.map(|b| b.map(|v| v as f32)),
                mask_input,
            },
        }
    }
}

/// `N` comma-separated finite numbers.
fn parse_floats<const N: usize>(s: &str, what: &str) -> Result<[f64; N], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != N {
        return Err(format!("{what} needs {N} comma-separated numbers, got {s:?}"));
    }
    let mut out = [0f64; N];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse::<f64>().map_err(|_| format!("{what}: {p:?} is not a number"))?;
        if !o.is_finite() {
            return Err(format!("{what}: {p:?} is not a finite number"));
        }
    }
    Ok(out)
}

/// A `--point` as typed: f64, so that map units keep their digits until
/// they become pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointArg {
    pub x: f64,
    pub y: f64,
    pub label: u8,
}

impl PointArg {
    /// The point in f32 image pixels, as the model takes it.
    pub fn to_point(self) -> Point {
        Point {
            x: self.x as f32,
            y: self.y as f32,
            label: self.label,
        }
    }
}

fn parse_point(s: &str) -> Result<PointArg, String> {
    let [x, y, label] = parse_floats::<3>(s, "--point X,Y,LABEL")?;
    if label != 0.0 && label != 1.0 {
        return Err(format!(
            "--point label must be 1 (positive) or 0 (negative), got {label}"
        ));
    }
    Ok(PointArg {
        x,
        y,
        label: label as u8,
    })
}

fn parse_box(s: &str) -> Result<[f64; 4], String> {
    parse_floats::<4>(s, "--box X0,Y0,X1,Y1")
}
