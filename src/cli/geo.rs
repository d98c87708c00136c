//! `rsam geo`: hidden helper commands over the GeoTIFF library (info,
//! stretch, vectorize, mask-tiff, coords), used by the GDAL tests.

use std::path::Path;

use anyhow::{bail, Context};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use serde_json::json;

use super::args::{CoordsArgs, GeoArgs, GeoCommand, InfoArgs, MaskTiffArgs, StretchArgs, VectorizeArgs};
use super::output::{print_json, read_file, write_file};
use crate::geo::{
    feature_collection_bytes, mask_geotiff_bytes, read_rgb_from_path, GeoError, GeoRaster, MaskFeature, ReadOptions,
};
use crate::mask::BinaryMask;

/// Runs one `rsam geo` command, printing its JSON summary on stdout.
pub fn run(args: GeoArgs) -> anyhow::Result<()> {
    let summary = match args.command {
        GeoCommand::Info(a) => info(&a)?,
        GeoCommand::Stretch(a) => stretch(&a)?,
        GeoCommand::Vectorize(a) => vectorize(&a)?,
        GeoCommand::MaskTiff(a) => mask_tiff(&a)?,
        GeoCommand::Coords(a) => coords(&a)?,
    };
    print_json(&summary)
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
        write_file(out, &png)?;
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
    let bytes = read_file(path)?;
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
    let bytes = feature_collection_bytes(&features, raster.georef(), a.output.crs())?;
    write_file(out, &bytes)?;
    Ok(json!({"features": features.len(), "bytes": bytes.len()}))
}

fn mask_tiff(a: &MaskTiffArgs) -> anyhow::Result<serde_json::Value> {
    let raster = open(&a.image, a.max_pixels)?;
    let (width, height) = (raster.info().width, raster.info().height);
    let mask = read_mask(&a.mask, width, height)?;
    let bytes = mask_geotiff_bytes(&mask.data, width, height, raster.georef())?;
    write_file(&a.out, &bytes)?;
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
