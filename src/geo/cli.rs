//! `rsam geo`: hidden helper commands over the GeoTIFF library, used by the
//! GDAL tests (`tests/geo/test_gdal.py`) and meant to be folded into
//! `rsam segment`. [`RasterArgs`] and [`GeoOutputArgs`] are the flags the
//! issue names for `rsam segment` (`--bands`, `--stretch`, `--geojson-out`,
//! `--wgs84`; `--coords` is [`Coords`]), ready to be flattened into it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use serde_json::json;

use super::{
    feature_collection_bytes, mask_geotiff_bytes, read_rgb_from_path, GeoError, GeoRaster, MaskFeature, OutputCrs,
    ReadOptions, Stretch,
};
use crate::postprocess::BinaryMask;
use crate::preprocess::DEFAULT_MAX_PIXELS;

#[derive(clap::Args, Debug)]
pub struct GeoArgs {
    #[command(subcommand)]
    pub command: GeoCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GeoCommand {
    /// Print a raster's size, bands, sample type, nodata and georeferencing as JSON.
    Info(InfoArgs),
    /// Write the 8-bit RGB the model would see (bands + stretch) as a PNG.
    Stretch(StretchArgs),
    /// Turn a mask PNG (at the raster's size) into a GeoJSON FeatureCollection.
    Vectorize(VectorizeArgs),
    /// Write a mask PNG (at the raster's size) as a georeferenced u8 0/255 GeoTIFF.
    MaskTiff(MaskTiffArgs),
    /// Convert a map point to a pixel position (--map) or back (--pixel).
    Coords(CoordsArgs),
}

/// How a GeoTIFF becomes the model's RGB (`rsam segment` flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RasterArgs {
    /// Bands for R,G,B (1-based, as GDAL numbers them), or one band for grey; default 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<u16>>,
    /// percentile (2nd..98th), minmax or none; default none for 8-bit rasters, percentile otherwise.
    #[arg(long, value_parser = parse_stretch)]
    pub stretch: Option<Stretch>,
}

/// Georeferenced outputs (`rsam segment` flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GeoOutputArgs {
    /// Write the result as a GeoJSON FeatureCollection (polygons on pixel corners).
    #[arg(long)]
    pub geojson_out: Option<PathBuf>,
    /// GeoJSON in WGS 84 longitude/latitude instead of the raster's CRS.
    #[arg(long)]
    pub wgs84: bool,
}

/// The unit of point and box prompts (`rsam segment --coords`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coords {
    /// Image pixels.
    #[default]
    Pixel,
    /// The raster's CRS units, through the inverse of its transform.
    Map,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The raster (GeoTIFF or plain TIFF).
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

#[derive(clap::Args, Debug)]
pub struct StretchArgs {
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub raster: RasterArgs,
    /// Where to write the RGB PNG (without it, the raster is only read and
    /// stretched: the timing of that is in the summary).
    #[arg(long)]
    pub png_out: Option<PathBuf>,
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

#[derive(clap::Args, Debug)]
pub struct VectorizeArgs {
    /// The raster whose georeferencing the mask takes.
    #[arg(long)]
    pub image: PathBuf,
    /// The mask PNG (nonzero is foreground); repeat for several results.
    #[arg(long = "mask", required = true)]
    pub masks: Vec<PathBuf>,
    /// The `text` property of every feature.
    #[arg(long)]
    pub text: Option<String>,
    #[command(flatten)]
    pub output: GeoOutputArgs,
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

#[derive(clap::Args, Debug)]
pub struct MaskTiffArgs {
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long)]
    pub mask: PathBuf,
    /// Where to write the mask GeoTIFF.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

#[derive(clap::Args, Debug)]
pub struct CoordsArgs {
    #[arg(long)]
    pub image: PathBuf,
    /// A map point X,Y in the raster's CRS units.
    #[arg(long, value_parser = parse_pair, conflicts_with = "pixel", required_unless_present = "pixel")]
    pub map: Option<(f64, f64)>,
    /// A pixel position COL,ROW (corner-based: 0.5,0.5 is the first pixel's centre).
    #[arg(long, value_parser = parse_pair)]
    pub pixel: Option<(f64, f64)>,
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, env = "RSAM_MAX_PIXELS")]
    pub max_pixels: u64,
}

/// `--stretch` values.
pub fn parse_stretch(s: &str) -> Result<Stretch, String> {
    s.parse().map_err(|e: super::GeoError| e.to_string())
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let parts: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|_| format!("{p:?} is not a number")))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [a, b] if a.is_finite() && b.is_finite() => Ok((a, b)),
        _ => Err(format!("expected two finite numbers A,B, got {s:?}")),
    }
}

/// Runs one `rsam geo` command, printing its JSON summary on stdout.
pub fn run(args: GeoArgs) -> anyhow::Result<()> {
    let summary = match args.command {
        GeoCommand::Info(a) => info(&a)?,
        GeoCommand::Stretch(a) => stretch(&a)?,
        GeoCommand::Vectorize(a) => vectorize(&a)?,
        GeoCommand::MaskTiff(a) => mask_tiff(&a)?,
        GeoCommand::Coords(a) => coords(&a)?,
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{summary}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Opens a raster; errors name the file once.
fn open(path: &Path, max_pixels: u64) -> anyhow::Result<GeoRaster<std::io::BufReader<std::fs::File>>> {
    match GeoRaster::open(path, max_pixels) {
        Ok(raster) => Ok(raster),
        Err(e @ GeoError::Io { .. }) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
}

fn info(a: &InfoArgs) -> anyhow::Result<serde_json::Value> {
    let raster = open(&a.image, a.max_pixels)?;
    let georef = raster.georef();
    Ok(json!({
        "raster": raster.info(),
        "georeferenced": georef.is_georeferenced(),
        "transform": georef.transform,
        "epsg": georef.epsg(),
        "projected": georef.is_projected(),
    }))
}

fn stretch(a: &StretchArgs) -> anyhow::Result<serde_json::Value> {
    let options = ReadOptions {
        bands: a.raster.bands.clone(),
        stretch: a.raster.stretch,
        max_pixels: a.max_pixels,
    };
    let start = std::time::Instant::now();
    let read = match read_rgb_from_path(&a.image, &options) {
        Err(e @ GeoError::Io { .. }) => return Err(e.into()),
        other => other.with_context(|| a.image.display().to_string())?,
    };
    let read_ms = start.elapsed().as_secs_f64() * 1e3;
    if let Some(out) = &a.png_out {
        let mut png = Vec::new();
        PngEncoder::new(&mut png).write_image(
            &read.image.data,
            read.image.width,
            read.image.height,
            ExtendedColorType::Rgb8,
        )?;
        write(out, &png)?;
    }
    Ok(json!({
        "width": read.image.width,
        "height": read.image.height,
        "rendering": read.rendering,
        "read_ms": read_ms,
    }))
}

/// A mask PNG that must have the raster's size.
fn read_mask(path: &Path, width: u32, height: u32) -> anyhow::Result<BinaryMask> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mask = BinaryMask::from_png(&bytes).with_context(|| path.display().to_string())?;
    if (mask.width, mask.height) != (width, height) {
        bail!(
            "{}: mask is {}x{} but the raster is {width}x{height}",
            path.display(),
            mask.width,
            mask.height
        );
    }
    Ok(mask)
}

fn vectorize(a: &VectorizeArgs) -> anyhow::Result<serde_json::Value> {
    let Some(out) = &a.output.geojson_out else {
        bail!("give --geojson-out FILE");
    };
    let raster = open(&a.image, a.max_pixels)?;
    let (width, height) = (raster.info().width, raster.info().height);
    let masks = a
        .masks
        .iter()
        .map(|p| read_mask(p, width, height))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let features: Vec<MaskFeature> = masks
        .iter()
        .map(|m| MaskFeature {
            mask: &m.data,
            width,
            height,
            text: a.text.as_deref(),
            result_id: None,
            iou_prediction: 1.0,
            object_score_logit: 0.0,
            object_present: m.area() > 0,
        })
        .collect();
    let crs = if a.output.wgs84 {
        OutputCrs::Wgs84
    } else {
        OutputCrs::Raster
    };
    let bytes = feature_collection_bytes(&features, raster.georef(), crs)?;
    write(out, &bytes)?;
    Ok(json!({"features": features.len(), "bytes": bytes.len()}))
}

fn mask_tiff(a: &MaskTiffArgs) -> anyhow::Result<serde_json::Value> {
    let raster = open(&a.image, a.max_pixels)?;
    let (width, height) = (raster.info().width, raster.info().height);
    let mask = read_mask(&a.mask, width, height)?;
    let bytes = mask_geotiff_bytes(&mask.data, width, height, raster.georef())?;
    write(&a.out, &bytes)?;
    Ok(json!({"width": width, "height": height, "area": mask.area()}))
}

fn coords(a: &CoordsArgs) -> anyhow::Result<serde_json::Value> {
    let raster = open(&a.image, a.max_pixels)?;
    let georef = raster.georef();
    Ok(match (a.map, a.pixel) {
        (Some((x, y)), _) => {
            let (col, row) = georef.pixel_from_map(x, y)?;
            json!({"col": col, "row": row})
        }
        (None, Some((col, row))) => {
            let (x, y) = georef.map_from_pixel(col, row)?;
            json!({"x": x, "y": y})
        }
        (None, None) => bail!("give --map X,Y or --pixel COL,ROW"),
    })
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
