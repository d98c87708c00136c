//! Reading GeoTIFF (and Cloud-Optimized GeoTIFF) rasters window by window:
//! only the strips or tiles a window touches are decoded, one at a time into
//! one reused buffer, and only the requested bands are kept, each in its own
//! buffer. Decompression and predictors are the `tiff` crate's, except for
//! LZW (see [`super::lzw`]).
//!
//! Supported: striped or tiled; pixel-interleaved or planar; uncompressed,
//! deflate, LZW or PackBits, with or without a predictor; BigTIFF; u8, u16,
//! i16, u32, i32, f32 and f64 samples; 1..N bands (MinIsBlack, RGB or
//! Separated photometric interpretation). The first image of the file is
//! read (a COG's full resolution; its overviews follow it).

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde::Serialize;
use tiff::decoder::{ChunkType, Decoder, Limits};
use tiff::tags::{ByteOrder, Tag};
use tiff::{TiffError, TiffFormatError};

use super::error::{GeoError, GeoResult};
use super::georef::{read_georef, Georef};
use super::lzw::{self, ChunkCoding};
use super::samples::{BandData, BandStack, Sample, SampleType};

/// Largest decoded strip or tile accepted below a large `max_pixels`: a
/// header can declare one 65,535 x 65,535 tile over a tiny image.
const MIN_CHUNK_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

/// Largest tag value (e.g. the strip offsets) read from the header.
const IFD_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// What the header says about a raster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RasterInfo {
    pub width: u32,
    pub height: u32,
    /// Samples per pixel (GDAL's band count).
    pub band_count: u16,
    pub sample_type: SampleType,
    /// The GDAL_NODATA value, if the file has one.
    pub nodata: Option<f64>,
    pub tiled: bool,
    /// Tile size, or the image width x rows per strip.
    pub chunk_width: u32,
    pub chunk_height: u32,
    /// Planar (band-sequential) rather than pixel-interleaved.
    pub planar: bool,
}

/// A pixel rectangle of a raster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where the chunks (strips or tiles) lie and what one decoded chunk holds.
#[derive(Clone, Copy, Debug)]
struct ChunkGrid {
    chunk_width: u32,
    chunk_height: u32,
    across: u32,
    down: u32,
    planar: bool,
    /// Samples per pixel in a decoded chunk: 1 when planar.
    samples_per_pixel: usize,
    /// Bands the decoder hands out (see [`readable_bands`]).
    readable_bands: u16,
}

/// Where the LZW chunks lie in the file, and how they were coded.
struct LzwChunks {
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
    predictor: u16,
    big_endian: bool,
}

/// An open raster: the header parsed and checked, nothing decoded yet.
pub struct GeoRaster<R: Read + Seek> {
    decoder: Decoder<R>,
    info: RasterInfo,
    georef: Georef,
    grid: ChunkGrid,
    /// Set for LZW-compressed files, which are decoded here.
    lzw: Option<LzwChunks>,
    /// Largest decoded or compressed chunk accepted, in bytes.
    chunk_budget: u64,
    buffer: Vec<u8>,
    compressed: Vec<u8>,
}

impl GeoRaster<BufReader<File>> {
    /// Opens a file; only the header is read.
    pub fn open(path: &Path, max_pixels: u64) -> GeoResult<Self> {
        let file = File::open(path).map_err(|source| GeoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        GeoRaster::new(BufReader::new(file), max_pixels)
    }
}

impl<'a> GeoRaster<Cursor<&'a [u8]>> {
    /// Reads from bytes in memory.
    pub fn from_bytes(bytes: &'a [u8], max_pixels: u64) -> GeoResult<Self> {
        GeoRaster::new(Cursor::new(bytes), max_pixels)
    }
}

impl<R: Read + Seek> GeoRaster<R> {
    /// Parses and checks the header: the pixel budget (`width * height <=
    /// max_pixels`, before anything is allocated), the sample type, the
    /// layout and compression, the georeferencing tags and GDAL_NODATA.
    pub fn new(reader: R, max_pixels: u64) -> GeoResult<Self> {
        guarded(|| GeoRaster::open_reader(reader, max_pixels))
    }

    pub fn info(&self) -> &RasterInfo {
        &self.info
    }

    pub fn georef(&self) -> &Georef {
        &self.georef
    }

    /// The whole raster as a window.
    pub fn full_window(&self) -> Window {
        Window {
            x: 0,
            y: 0,
            width: self.info.width,
            height: self.info.height,
        }
    }

    /// Reads `bands` (1-based, GDAL's numbering, repeats allowed) of
    /// `window`, decoding only the chunks the window touches.
    pub fn read_window(&mut self, window: Window, bands: &[u16]) -> GeoResult<BandStack> {
        self.check_window(window)?;
        self.check_bands(bands)?;
        let data = guarded(|| match self.info.sample_type {
            SampleType::U8 => self.read_typed(window, bands).map(BandData::U8),
            SampleType::U16 => self.read_typed(window, bands).map(BandData::U16),
            SampleType::I16 => self.read_typed(window, bands).map(BandData::I16),
            SampleType::U32 => self.read_typed(window, bands).map(BandData::U32),
            SampleType::I32 => self.read_typed(window, bands).map(BandData::I32),
            SampleType::F32 => self.read_typed(window, bands).map(BandData::F32),
            SampleType::F64 => self.read_typed(window, bands).map(BandData::F64),
        })?;
        // The chunk buffers are only needed while reading.
        self.buffer = Vec::new();
        self.compressed = Vec::new();
        Ok(BandStack {
            width: window.width,
            height: window.height,
            bands: bands.to_vec(),
            data,
        })
    }

    fn open_reader(reader: R, max_pixels: u64) -> GeoResult<Self> {
        let mut decoder = Decoder::new(reader).map_err(|e| header_error(&e))?;
        let (width, height) = decoder.dimensions().map_err(|e| header_error(&e))?;
        check_pixel_budget(width, height, max_pixels)?;
        let layout = read_layout(&mut decoder)?;
        let grid = chunk_grid(&mut decoder, width, height, layout.band_count, layout.planar)?;
        let chunk_budget = chunk_budget(&grid, &layout, max_pixels)?;
        let mut limits = Limits::default();
        limits.ifd_value_size = IFD_VALUE_BYTES;
        limits.intermediate_buffer_size = usize::try_from(chunk_budget).unwrap_or(usize::MAX);
        limits.decoding_buffer_size = usize::try_from(chunk_budget).unwrap_or(usize::MAX);
        let mut decoder = decoder.with_limits(limits);

        let georef = read_georef(&mut decoder)?;
        let nodata = read_nodata(&mut decoder)?;
        let lzw = if layout.compression == LZW {
            Some(lzw_chunks(&mut decoder)?)
        } else {
            None
        };
        let info = RasterInfo {
            width,
            height,
            band_count: layout.band_count,
            sample_type: layout.sample_type,
            nodata,
            tiled: decoder.get_chunk_type() == ChunkType::Tile,
            chunk_width: grid.chunk_width,
            chunk_height: grid.chunk_height,
            planar: layout.planar,
        };
        Ok(GeoRaster {
            decoder,
            info,
            georef,
            grid,
            lzw,
            chunk_budget,
            buffer: Vec::new(),
            compressed: Vec::new(),
        })
    }

    fn check_window(&self, w: Window) -> GeoResult<()> {
        let inside = w.width > 0
            && w.height > 0
            && u64::from(w.x) + u64::from(w.width) <= u64::from(self.info.width)
            && u64::from(w.y) + u64::from(w.height) <= u64::from(self.info.height);
        if inside {
            return Ok(());
        }
        Err(GeoError::InvalidWindow {
            x: w.x,
            y: w.y,
            width: w.width,
            height: w.height,
            raster_width: self.info.width,
            raster_height: self.info.height,
        })
    }

    fn check_bands(&self, bands: &[u16]) -> GeoResult<()> {
        if bands.is_empty() {
            return Err(GeoError::InvalidBands("no band given".into()));
        }
        let count = self.info.band_count;
        for &band in bands {
            if band == 0 || band > count {
                return Err(GeoError::BandOutOfRange { band, count });
            }
            if band > self.grid.readable_bands {
                return Err(GeoError::UnsupportedLayout(format!(
                    "band {band} is an extra sample of a pixel-interleaved RGB TIFF, which the decoder drops \
                     (bands 1..{} are readable; rewrite the file with PHOTOMETRIC=MINISBLACK or INTERLEAVE=BAND)",
                    self.grid.readable_bands
                )));
            }
        }
        Ok(())
    }

    fn read_typed<T: Sample>(&mut self, window: Window, bands: &[u16]) -> GeoResult<Vec<Vec<T>>> {
        let pixels = window.width as usize * window.height as usize;
        let mut out: Vec<Vec<T>> = bands.iter().map(|_| vec![T::default(); pixels]).collect();
        let grid = self.grid;
        // Planar files store each band in its own chunks; an interleaved
        // chunk holds every band (plane 0).
        let mut planes: Vec<u16> = if grid.planar {
            bands.iter().map(|b| b - 1).collect()
        } else {
            vec![0]
        };
        planes.sort_unstable();
        planes.dedup();
        let (cx0, cx1) = (
            window.x / grid.chunk_width,
            (window.x + window.width - 1) / grid.chunk_width,
        );
        let (cy0, cy1) = (
            window.y / grid.chunk_height,
            (window.y + window.height - 1) / grid.chunk_height,
        );
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                for &plane in &planes {
                    self.copy_chunk(window, bands, plane, (cx, cy), &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Decodes chunk `(cx, cy)` of `plane` and copies its overlap with
    /// `window` into the buffers of the bands it holds.
    fn copy_chunk<T: Sample>(
        &mut self,
        window: Window,
        bands: &[u16],
        plane: u16,
        (cx, cy): (u32, u32),
        out: &mut [Vec<T>],
    ) -> GeoResult<()> {
        let grid = self.grid;
        let (ox, oy) = (cx * grid.chunk_width, cy * grid.chunk_height);
        let chunk_w = grid.chunk_width.min(self.info.width - ox) as usize;
        let chunk_h = grid.chunk_height.min(self.info.height - oy) as usize;
        let index = u32::from(plane) * grid.across * grid.down + cy * grid.across + cx;
        let pixel_bytes = grid.samples_per_pixel * std::mem::size_of::<T>();
        let row_pixels = if self.lzw.is_some() {
            self.decode_lzw_chunk(index, chunk_h, pixel_bytes)?
        } else {
            self.decode_chunk(index, (chunk_w, chunk_h), pixel_bytes)?
        };

        let x0 = window.x.max(ox);
        let x1 = (window.x + window.width).min(ox + chunk_w as u32);
        let y0 = window.y.max(oy);
        let y1 = (window.y + window.height).min(oy + chunk_h as u32);
        let run = (x1 - x0) as usize;
        for y in y0..y1 {
            let src_start = ((y - oy) as usize * row_pixels + (x0 - ox) as usize) * pixel_bytes;
            let src = &self.buffer[src_start..src_start + run * pixel_bytes];
            let dst_start = (y - window.y) as usize * window.width as usize + (x0 - window.x) as usize;
            for (values, &band) in out.iter_mut().zip(bands) {
                let sample = if grid.planar {
                    if band - 1 != plane {
                        continue;
                    }
                    0
                } else {
                    usize::from(band - 1) * std::mem::size_of::<T>()
                };
                let dst = &mut values[dst_start..dst_start + run];
                for (v, pixel) in dst.iter_mut().zip(src.chunks_exact(pixel_bytes)) {
                    *v = T::from_ne_slice(&pixel[sample..]);
                }
            }
        }
        Ok(())
    }

    /// Decodes chunk `index`, whose pixels inside the image are `chunk_w x
    /// chunk_h`, into the buffer; returns its row length in pixels (here
    /// `chunk_w`).
    fn decode_chunk(&mut self, index: u32, (chunk_w, chunk_h): (usize, usize), pixel_bytes: usize) -> GeoResult<usize> {
        // `tiff` 0.11 sizes the tiles of every plane after the first as if
        // they were not on the bottom edge (its padding uses the tile index
        // without the plane): such a tile decodes, padding rows included,
        // into the taller buffer the decoder asks for.
        let (decoded_w, decoded_h) = self.decoder.chunk_data_dimensions(index);
        if decoded_w as usize != chunk_w || (decoded_h as usize) < chunk_h {
            return Err(GeoError::Corrupt(format!(
                "strip or tile {index}: the decoder lays it out as {decoded_w}x{decoded_h} pixels, \
                 the image needs {chunk_w}x{chunk_h}"
            )));
        }
        self.buffer.resize(chunk_w * decoded_h as usize * pixel_bytes, 0);
        self.decoder
            .read_chunk_bytes(index, &mut self.buffer)
            .map_err(|e| chunk_error(&e, index))?;
        Ok(chunk_w)
    }

    /// Decodes LZW chunk `index` whole (a tile with its padding, a strip of
    /// `chunk_h` rows) into the buffer; returns its row length in pixels.
    fn decode_lzw_chunk(&mut self, index: u32, chunk_h: usize, pixel_bytes: usize) -> GeoResult<usize> {
        let Some(lzw) = &self.lzw else {
            return Err(GeoError::Corrupt(format!("strip or tile {index}: not LZW-compressed")));
        };
        let (offset, length) = match (lzw.offsets.get(index as usize), lzw.byte_counts.get(index as usize)) {
            (Some(&o), Some(&n)) => (o, n),
            _ => {
                return Err(GeoError::Corrupt(format!(
                    "strip or tile {index} has no offset or byte count"
                )))
            }
        };
        if length > self.chunk_budget {
            return Err(GeoError::UnsupportedLayout(format!(
                "strip or tile {index} holds {length} compressed bytes, over the {}-byte limit",
                self.chunk_budget
            )));
        }
        let (row_pixels, rows) = if self.info.tiled {
            (self.grid.chunk_width as usize, self.grid.chunk_height as usize)
        } else {
            (self.info.width as usize, chunk_h)
        };
        self.compressed.resize(length as usize, 0);
        let reader = self.decoder.inner();
        reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| reader.read_exact(&mut self.compressed))
            .map_err(|e| chunk_error(&TiffError::IoError(e), index))?;
        let coding = ChunkCoding {
            row_bytes: row_pixels * pixel_bytes,
            samples_per_pixel: self.grid.samples_per_pixel,
            bytes_per_sample: self.info.sample_type.bytes(),
            predictor: lzw.predictor,
            big_endian: lzw.big_endian,
        };
        self.buffer.resize(row_pixels * rows * pixel_bytes, 0);
        lzw::decode_chunk(&self.compressed, &coding, &mut self.buffer, index)?;
        Ok(row_pixels)
    }
}

/// The sample layout the header declares, checked against what we read.
struct Layout {
    band_count: u16,
    sample_type: SampleType,
    compression: u16,
    planar: bool,
}

fn read_layout<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<Layout> {
    let band_count: u16 = tag_or(decoder, Tag::SamplesPerPixel, 1)?;
    let bits: u16 = tag_or(decoder, Tag::BitsPerSample, 1)?;
    let sample_format: u16 = tag_or(decoder, Tag::SampleFormat, 1)?;
    let sample_type = SampleType::from_tiff(sample_format, bits)?;
    let compression: u16 = tag_or(decoder, Tag::Compression, 1)?;
    check_compression(compression)?;
    check_photometric(tag_or(decoder, Tag::PhotometricInterpretation, 1)?)?;
    let planar = tag_or::<R, u16>(decoder, Tag::PlanarConfiguration, 1)? == 2;
    Ok(Layout {
        band_count,
        sample_type,
        compression,
        planar,
    })
}

/// The largest strip or tile (decoded or compressed) accepted, in bytes:
/// what the pixel budget allows for a whole image, at least 64 MiB; a
/// header whose chunks are larger is refused before anything is read.
fn chunk_budget(grid: &ChunkGrid, layout: &Layout, max_pixels: u64) -> GeoResult<u64> {
    let sample_bytes = layout.sample_type.bytes() as u64;
    let chunk_bytes =
        u64::from(grid.chunk_width) * u64::from(grid.chunk_height) * grid.samples_per_pixel as u64 * sample_bytes;
    let budget = max_pixels
        .saturating_mul(u64::from(layout.band_count) * sample_bytes)
        .max(MIN_CHUNK_BUDGET_BYTES);
    if chunk_bytes > budget {
        return Err(GeoError::UnsupportedLayout(format!(
            "a strip or tile of {}x{} pixels ({chunk_bytes} bytes decoded) exceeds the {budget}-byte limit",
            grid.chunk_width, grid.chunk_height
        )));
    }
    Ok(budget)
}

/// The whole first image's chunk layout, checked against what the `tiff`
/// decoder will hand out.
fn chunk_grid<R: Read + Seek>(
    decoder: &mut Decoder<R>,
    width: u32,
    height: u32,
    band_count: u16,
    planar: bool,
) -> GeoResult<ChunkGrid> {
    let (chunk_width, rows) = decoder.chunk_dimensions();
    let tiled = decoder.get_chunk_type() == ChunkType::Tile;
    // A single strip often declares RowsPerStrip = 2^32 - 1.
    let chunk_height = if tiled { rows } else { rows.min(height) };
    if chunk_width == 0 || chunk_height == 0 {
        return Err(GeoError::Corrupt(format!(
            "strips or tiles of {chunk_width}x{chunk_height} pixels"
        )));
    }
    let readable_bands = if planar { band_count } else { readable_bands(decoder)? };
    Ok(ChunkGrid {
        chunk_width,
        chunk_height,
        across: width.div_ceil(chunk_width),
        down: height.div_ceil(chunk_height),
        planar,
        samples_per_pixel: if planar { 1 } else { usize::from(readable_bands) },
        readable_bands,
    })
}

/// Bands a pixel-interleaved chunk decodes to: the `tiff` crate hands out
/// the samples of the photometric colour type, so RGB with extra samples
/// that are not alpha (e.g. a fourth, near-infrared band) keeps only R, G, B.
fn readable_bands<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<u16> {
    let colour = decoder.colortype().map_err(|e| header_error(&e))?;
    Ok(colour.num_samples())
}

fn check_pixel_budget(width: u32, height: u32, max_pixels: u64) -> GeoResult<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(GeoError::TooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    Ok(())
}

/// TIFF Compression code of LZW.
const LZW: u16 = 5;

/// The offsets and byte counts of the chunks, the predictor and byte order.
fn lzw_chunks<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<LzwChunks> {
    let (offsets_tag, counts_tag) = match decoder.get_chunk_type() {
        ChunkType::Tile => (Tag::TileOffsets, Tag::TileByteCounts),
        ChunkType::Strip => (Tag::StripOffsets, Tag::StripByteCounts),
    };
    let mut read = |tag: Tag| {
        decoder
            .get_tag_u64_vec(tag)
            .map_err(|e| GeoError::Corrupt(format!("tag {tag:?}: {e}")))
    };
    let offsets = read(offsets_tag)?;
    let byte_counts = read(counts_tag)?;
    // The decoder has already refused predictors other than 1, 2 and 3.
    let predictor = tag_or(decoder, Tag::Predictor, 1)?;
    Ok(LzwChunks {
        offsets,
        byte_counts,
        predictor,
        big_endian: decoder.byte_order() == ByteOrder::BigEndian,
    })
}

fn check_compression(code: u16) -> GeoResult<()> {
    let name = match code {
        1 | 5 | 8 | 32946 | 32773 => return Ok(()),
        6 | 7 => "JPEG",
        34887 => "LERC",
        34925 => "LZMA",
        50000 => "ZSTD",
        50001 => "WebP",
        2..=4 => "CCITT fax",
        _ => "unknown",
    };
    Err(GeoError::UnsupportedLayout(format!(
        "{name} compression (Compression {code}); supported: none, deflate, LZW, PackBits"
    )))
}

fn check_photometric(code: u16) -> GeoResult<()> {
    let name = match code {
        1 | 2 | 5 => return Ok(()),
        0 => "MinIsWhite (inverted grey)",
        3 => "palette colour",
        4 => "transparency mask",
        6 => "YCbCr",
        8..=10 => "CIE Lab",
        _ => "unknown",
    };
    Err(GeoError::UnsupportedLayout(format!(
        "{name} photometric interpretation (PhotometricInterpretation {code}); \
         supported: MinIsBlack, RGB, Separated"
    )))
}

/// The first value of a SHORT tag, or `default` when absent.
fn tag_or<R: Read + Seek, T: TryFrom<u64>>(decoder: &mut Decoder<R>, tag: Tag, default: T) -> GeoResult<T> {
    match decoder.find_tag_unsigned_vec::<T>(tag) {
        Ok(Some(values)) => values
            .into_iter()
            .next()
            .ok_or_else(|| GeoError::Corrupt(format!("tag {tag:?} has no value"))),
        Ok(None) => Ok(default),
        Err(e) => Err(GeoError::Corrupt(format!("tag {tag:?}: {e}"))),
    }
}

fn read_nodata<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoResult<Option<f64>> {
    let Some(value) = decoder
        .find_tag(Tag::GdalNodata)
        .map_err(|e| GeoError::Corrupt(format!("GDAL_NODATA (42113): {e}")))?
    else {
        return Ok(None);
    };
    let text = value
        .into_string()
        .map_err(|e| GeoError::Corrupt(format!("GDAL_NODATA (42113): {e}")))?;
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    trimmed
        .parse::<f64>()
        .map(Some)
        .map_err(|_| GeoError::Nodata(trimmed.to_string()))
}

fn header_error(e: &TiffError) -> GeoError {
    match e {
        TiffError::FormatError(TiffFormatError::TiffSignatureNotFound | TiffFormatError::TiffSignatureInvalid) => {
            GeoError::NotTiff("no TIFF or BigTIFF signature".into())
        }
        TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            GeoError::Truncated("the file ends inside its header".into())
        }
        TiffError::UnsupportedError(u) => GeoError::UnsupportedLayout(u.to_string()),
        other => GeoError::Corrupt(other.to_string()),
    }
}

fn chunk_error(e: &TiffError, index: u32) -> GeoError {
    match e {
        TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            GeoError::Truncated(format!("strip or tile {index} ends past the end of the file"))
        }
        TiffError::UnsupportedError(u) => GeoError::UnsupportedLayout(format!("strip or tile {index}: {u}")),
        other => GeoError::Corrupt(format!("strip or tile {index}: {other}")),
    }
}

/// Runs decoder code, turning a panic on malformed input into an error: the
/// `tiff` crate asserts on some inconsistent headers, and a panic on
/// untrusted input must not take the server down.
fn guarded<T>(f: impl FnOnce() -> GeoResult<T>) -> GeoResult<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(GeoError::Corrupt("the decoder failed on inconsistent data".into())))
}

/// Whether `bytes` start with a TIFF or BigTIFF signature.
pub fn is_tiff(bytes: &[u8]) -> bool {
    matches!(bytes.get(..4), Some(b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+"))
}
