//! What commands read and write: files with their path in the error, and
//! lines on stdout that a closed pipe does not turn into an error.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::geo::{self, Georef};
use crate::mask::BinaryMask;

/// Prints a line to stdout; a closed pipe (`rsam inspect | head`) is not an error.
pub fn print_line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Prints a value as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print_line(&serde_json::to_string(value)?)
}

pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// `--mask-out`: a .tif / .tiff name gets a u8 GeoTIFF with the input's
/// georeferencing, any other a PNG.
pub fn mask_file(path: &Path, mask: &BinaryMask, georef: &Georef) -> anyhow::Result<Vec<u8>> {
    let tiff = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
    Ok(match tiff {
        true => geo::mask_geotiff_bytes(&mask.data, mask.width, mask.height, georef)?,
        false => mask.to_png(),
    })
}
