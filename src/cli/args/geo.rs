//! `rsam geo` flags (hidden helper commands over the GeoTIFF library, used
//! by the GDAL tests), and the raster, output and coordinate flags
//! `rsam segment` flattens in.

use std::path::PathBuf;

use crate::geo::{GeoError, OutputCrs, Stretch};
pub use crate::image_input::Coords;
use crate::image_input::RasterOptions;
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

impl RasterArgs {
    /// The rendering these flags ask for.
    pub fn options(&self) -> RasterOptions {
        RasterOptions {
            bands: self.bands.clone(),
            stretch: self.stretch,
        }
    }
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

impl GeoOutputArgs {
    /// The CRS of the GeoJSON written.
    pub fn crs(&self) -> OutputCrs {
        match self.wgs84 {
            true => OutputCrs::Wgs84,
            false => OutputCrs::Raster,
        }
    }
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
    s.parse().map_err(|e: GeoError| e.to_string())
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
