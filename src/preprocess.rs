//! Image preprocessing that reproduces the official RSAM Python pipeline
//! bit for bit:
//!
//! ```text
//! img = PIL.Image.open(path).convert("RGB")
//! img = img.resize((S, S), PIL.Image.BILINEAR)        # aspect ratio ignored
//! x = torchvision.transforms.ToTensor()(img)           # u8 -> f32 in [0, 1], CHW
//! x = torchvision.transforms.Normalize(MEAN, STD)(x)
//! ```
//!
//! Three stages live here:
//!
//! 1. [`decode_image`]: file bytes to an 8-bit RGB image, with a
//!    decompression-bomb guard checked against the header *before* any pixel
//!    buffer is allocated.
//! 2. [`resize_bilinear_pil`]: a re-implementation of Pillow's
//!    fixed-point separable resampler. A "textbook" bilinear resize does not
//!    match PIL: PIL widens the filter by the scale factor when
//!    down-sampling (an antialiasing box-like triangle) and rounds its
//!    weights to 22-bit fixed point, so only an exact re-implementation gives
//!    identical pixels.
//! 3. [`to_model_input`] / [`to_model_tensor`]: the `ToTensor` + `Normalize`
//!    step, computed in `f32` in the same order as torchvision.

use std::borrow::Cow;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use crate::{Result, RsamError};

/// Per-channel mean used by `torchvision.transforms.Normalize` (ImageNet).
pub const IMAGE_MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// Per-channel standard deviation used by `torchvision.transforms.Normalize`.
pub const IMAGE_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Default upper bound on `width * height` accepted by [`decode_image`].
///
/// A small compressed file can declare a gigantic canvas (a "decompression
/// bomb"); this bound stops such files before their pixel buffer is
/// allocated. It matches the order of magnitude of PIL's own
/// `Image.MAX_IMAGE_PIXELS` guard and can be overridden per call.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// The largest number of bytes per pixel any supported decoder can produce
/// (RGBA with 32-bit float channels, e.g. from TIFF). Used to derive the
/// decoder's memory budget from the pixel budget.
const MAX_DECODED_BYTES_PER_PIXEL: u64 = 16;

/// Headroom on top of the decoded pixel buffer for decoder-internal state
/// (row buffers, Huffman tables, ICC / EXIF chunks, ...).
const DECODER_SCRATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Bits of fractional precision of Pillow's fixed-point resampling weights
/// (`PRECISION_BITS` in Pillow's `Resample.c`, 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// An 8-bit RGB image stored row-major, three bytes per pixel, no padding:
/// the byte for channel `c` of pixel `(x, y)` is
/// `data[(y * width + x) * 3 + c]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, RGB interleaved, row-major.
    pub data: Vec<u8>,
}

impl Rgb8Image {
    /// Number of bytes a consistent image of this size holds; `None` if that
    /// does not fit in `usize`.
    fn expected_len(&self) -> Option<usize> {
        (self.width as usize).checked_mul(self.height as usize)?.checked_mul(3)
    }
}

/// Decodes PNG, JPEG, TIFF, BMP or WebP file bytes into an 8-bit RGB image,
/// the way `PIL.Image.open(..).convert("RGB")` sees it.
///
/// * The EXIF orientation (JPEG, PNG `eXIf`, TIFF, WebP) is applied, so the
///   result is upright as a viewer would display it. This is a deliberate
///   difference: a bare `PIL.Image.open` does not apply it (that takes
///   `ImageOps.exif_transpose`).
/// * Grey and grey+alpha are expanded to R = G = B, palettes are expanded,
///   alpha is dropped (not composited, exactly like PIL's `convert("RGB")`).
/// * 16-bit samples are reduced as PIL does: RGB, RGBA and grey+alpha keep
///   their high byte (`v >> 8`); plain 16-bit grey, which PIL opens as mode
///   `I;16`, saturates (`min(v, 255)`), as PIL's `convert("RGB")` does.
/// * Float samples (TIFF) are clamped to [0, 1] and scaled to 0..=255.
///
/// `max_pixels` bounds `width * height`. It is checked against the
/// dimensions in the file header before any pixel is decoded, so an
/// over-large image costs almost nothing to reject
/// ([`RsamError::ImageTooLarge`]). The decoder additionally runs under
/// [`image::Limits`] derived from `max_pixels`, so a header that lies about
/// the data that follows cannot make it allocate without bound.
///
/// # Errors
///
/// [`RsamError::ImageTooLarge`] when the header declares more than
/// `max_pixels` pixels; [`RsamError::Image`], with a message naming the
/// problem, for every malformed input (empty, unknown or unsupported format,
/// corrupt or truncated data). No input panics.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<Rgb8Image> {
    decode_image_oriented(bytes, max_pixels, true)
}

/// [`decode_image`] with the choice of applying the EXIF orientation.
///
/// Served images are turned upright, as a viewer shows them (what a user
/// clicking on the image means). The official pipeline (`PIL.Image.open`)
/// does not apply EXIF orientation, and dataset annotations are drawn on the
/// stored pixel grid, so the evaluator decodes with `apply_orientation =
/// false`.
pub fn decode_image_oriented(bytes: &[u8], max_pixels: u64, apply_orientation: bool) -> Result<Rgb8Image> {
    if bytes.is_empty() {
        return Err(RsamError::Image("empty input: no image bytes".into()));
    }
    // Third-party decoders are meant never to panic on bad data, but a
    // panic on untrusted input would take the whole process down, so treat
    // one as just another decoding error. Only local data crosses the
    // boundary, so no broken invariant can leak out of the closure.
    match catch_unwind(AssertUnwindSafe(|| {
        decode_image_inner(bytes, max_pixels, apply_orientation)
    })) {
        Ok(result) => result,
        Err(_) => Err(RsamError::Image(
            "corrupt image data: the decoder failed unexpectedly".into(),
        )),
    }
}

fn decode_image_inner(bytes: &[u8], max_pixels: u64, apply_orientation: bool) -> Result<Rgb8Image> {
    let format = image::guess_format(bytes).map_err(|_| {
        RsamError::Image("not a recognised image format (expected PNG, JPEG, TIFF, BMP or WebP)".into())
    })?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::Bmp | ImageFormat::WebP
    ) {
        return Err(RsamError::Image(format!(
            "unsupported image format {format:?} (expected PNG, JPEG, TIFF, BMP or WebP)"
        )));
    }

    // The memory budget scales with the pixel budget: the decoded buffer of
    // an admissible image always fits, anything a lying header asks beyond
    // that is refused. No per-dimension limit yet: a decoder that rejected
    // the header on dimensions would hide the real size we want to report.
    let mut limits = Limits::default();
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(MAX_DECODED_BYTES_PER_PIXEL)
            .saturating_add(DECODER_SCRATCH_BYTES),
    );

    // Some decoders refuse an enormous header while being constructed, before
    // its dimensions can be queried: PNG with a bare "limits exceeded" when
    // the row or frame size overflows its arithmetic, BMP beyond 65535 pixels
    // a side. Reading those headers directly still lets such a bomb be
    // reported as what it is.
    if let Some((width, height)) = early_header_dimensions(format, bytes) {
        check_pixel_budget(width, height, max_pixels)?;
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    // Constructing the decoder parses the header only.
    let mut decoder = reader.into_decoder().map_err(image_error)?;

    let (width, height) = decoder.dimensions();
    check_pixel_budget(width, height, max_pixels)?;
    if width == 0 || height == 0 {
        return Err(RsamError::Image(format!("image has no pixels ({width}x{height})")));
    }

    // Malformed metadata should not reject pixels that decode fine, so an
    // unreadable orientation means "as stored".
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);

    // Now pin the decoder to the dimensions we accepted (a strict limit) and
    // charge the output buffer against the memory budget, as
    // `ImageReader::decode` does.
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.reserve(decoder.total_bytes()).map_err(image_error)?;
    decoder.set_limits(limits).map_err(image_error)?;

    let rgb = match format {
        ImageFormat::Jpeg => match decode_jpeg_like_pil(bytes, width, height)? {
            Some(rgb) => rgb,
            None => to_rgb8_like_pil(DynamicImage::from_decoder(decoder).map_err(image_error)?)?,
        },
        _ => to_rgb8_like_pil(DynamicImage::from_decoder(decoder).map_err(image_error)?)?,
    };
    let mut rgb = DynamicImage::ImageRgb8(rgb);
    if apply_orientation {
        rgb.apply_orientation(orientation);
    }
    let rgb = rgb.into_rgb8();
    Ok(Rgb8Image {
        width: rgb.width(),
        height: rgb.height(),
        data: rgb.into_raw(),
    })
}

/// Decodes a JPEG to RGB with libjpeg-turbo's algorithms (mozjpeg is a
/// libjpeg-turbo fork; its decoder is unchanged): the accurate integer IDCT
/// and "fancy" chroma upsampling, PIL's defaults. The `image` crate's pure
/// Rust decoder rounds its IDCT and upsampling differently and lands up to
/// 3 grey levels away from what the official pipeline feeds the model.
/// Returns `None` for CMYK / YCCK files, which libjpeg cannot turn into RGB
/// (the `image` crate decodes those).
fn decode_jpeg_like_pil(bytes: &[u8], width: u32, height: u32) -> Result<Option<image::RgbImage>> {
    use mozjpeg::{ColorSpace, DctMethod, Decompress};
    let fail = |e: std::io::Error| RsamError::Image(format!("corrupt or truncated image data: {e}"));
    let mut decompress = Decompress::new_mem(bytes).map_err(fail)?;
    if matches!(decompress.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK) {
        return Ok(None);
    }
    if (decompress.width(), decompress.height()) != (width as usize, height as usize) {
        return Err(RsamError::Image(format!(
            "corrupt JPEG: the header says {width}x{height}, the decoder {}x{}",
            decompress.width(),
            decompress.height()
        )));
    }
    decompress.dct_method(DctMethod::IntegerSlow);
    decompress.do_fancy_upsampling(true);
    let mut started = decompress.rgb().map_err(fail)?;
    let pixels: Vec<u8> = started.read_scanlines::<u8>().map_err(fail)?;
    started.finish().map_err(fail)?;
    image::RgbImage::from_raw(width, height, pixels)
        .map(Some)
        .ok_or_else(|| RsamError::Image("corrupt or truncated image data: too few scanlines".into()))
}

/// Rejects `width x height` if it exceeds the decompression-bomb budget.
fn check_pixel_budget(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    // u32 x u32 always fits in u64.
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(RsamError::ImageTooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    Ok(())
}

/// Width and height read straight from the fixed-position header of the
/// formats whose decoders may reject a huge header before reporting its
/// size. `None` for other formats or a malformed header (the decoder will
/// then report the problem).
fn early_header_dimensions(format: ImageFormat, bytes: &[u8]) -> Option<(u32, u32)> {
    let be32 = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le32 = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    match format {
        // The PNG specification requires IHDR first, after the 8-byte
        // signature: length (4) = 13 | "IHDR" | width (4, BE) | height (4, BE).
        ImageFormat::Png => {
            if be32(8)? != 13 || bytes.get(12..16)? != b"IHDR" {
                return None;
            }
            Some((be32(16)?, be32(20)?))
        }
        // "BM" | file header (12 bytes) | DIB header whose size comes first:
        // 12 = OS/2 core header with u16 sides, otherwise i32 sides where a
        // negative height only means "stored top-down".
        ImageFormat::Bmp => {
            if le32(14)? == 12 {
                Some((u32::from(le16(18)?), u32::from(le16(20)?)))
            } else {
                let width = u32::try_from(i32::from_le_bytes(bytes.get(18..22)?.try_into().ok()?)).ok()?;
                let height = i32::from_le_bytes(bytes.get(22..26)?.try_into().ok()?);
                Some((width, height.unsigned_abs()))
            }
        }
        _ => None,
    }
}

/// Turns an `image` crate error into our error, with a message that says
/// which kind of problem it was.
fn image_error(err: ImageError) -> RsamError {
    let msg = match &err {
        ImageError::Decoding(_) | ImageError::IoError(_) => {
            format!("corrupt or truncated image data: {err}")
        }
        ImageError::Limits(_) => format!("image exceeds the decoder's memory limits: {err}"),
        ImageError::Unsupported(_) => format!("unsupported image variant: {err}"),
        ImageError::Parameter(_) | ImageError::Encoding(_) => format!("invalid image: {err}"),
    };
    RsamError::Image(msg)
}

/// Converts any decoded pixel layout to RGB8 the way PIL's
/// `convert("RGB")` would see the file.
///
/// The `image` crate's own conversion rounds 16-bit samples
/// (`(v + 128) / 257`), which matches neither of PIL's two behaviours, so
/// the integer layouts are converted here by hand:
///
/// * PIL reads 16-bit RGB(A) and grey+alpha files through raw modes that keep
///   the high byte of each sample.
/// * PIL opens 16-bit grey as mode `I;16`, a 16-bit integer image, and its
///   `I;16` to `RGB` conversion clips each value to 255 rather than scaling
///   (so most 16-bit grey images come out nearly white). Reproducing that is
///   the point here: it is what the official model sees.
fn to_rgb8_like_pil(img: DynamicImage) -> Result<image::RgbImage> {
    let (width, height) = (img.width(), img.height());
    let high_byte = |v: u16| (v >> 8) as u8;
    let saturate = |v: u16| v.min(255) as u8;
    let data = match img {
        DynamicImage::ImageRgb8(buf) => return Ok(buf),
        DynamicImage::ImageLuma8(buf) => expand_to_rgb(buf.as_raw(), 1, |v| v),
        DynamicImage::ImageLumaA8(buf) => expand_to_rgb(buf.as_raw(), 2, |v| v),
        DynamicImage::ImageRgba8(buf) => expand_to_rgb(buf.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma16(buf) => expand_to_rgb(buf.as_raw(), 1, saturate),
        DynamicImage::ImageLumaA16(buf) => expand_to_rgb(buf.as_raw(), 2, high_byte),
        DynamicImage::ImageRgb16(buf) => expand_to_rgb(buf.as_raw(), 3, high_byte),
        DynamicImage::ImageRgba16(buf) => expand_to_rgb(buf.as_raw(), 4, high_byte),
        // Float layouts (and any future ones): the crate's conversion clamps
        // to [0, 1] and scales to 0..=255, the only sensible mapping.
        other => return Ok(other.to_rgb8()),
    };
    image::RgbImage::from_raw(width, height, data).ok_or_else(|| {
        RsamError::Image(format!(
            "decoder returned a pixel buffer that does not match {width}x{height}"
        ))
    })
}

/// Interleaved samples with `channels` per pixel (1 = grey, 2 = grey+alpha,
/// 3 = RGB, 4 = RGBA) to RGB8: grey is replicated, alpha dropped.
fn expand_to_rgb<T: Copy>(samples: &[T], channels: usize, to_u8: impl Fn(T) -> u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() / channels * 3);
    for px in samples.chunks_exact(channels) {
        if channels < 3 {
            let v = to_u8(px[0]);
            out.extend_from_slice(&[v, v, v]);
        } else {
            out.extend(px[..3].iter().map(|&v| to_u8(v)));
        }
    }
    out
}

/// Fixed-point resampling weights for one axis: output index `i` reads
/// `len` consecutive input samples starting at `start`, with weights
/// `weights[offset..offset + len]`.
struct AxisCoeffs {
    spans: Vec<Span>,
    weights: Vec<i32>,
}

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
    offset: usize,
}

/// Pillow's bilinear (triangle) filter, support 1.
fn triangle(t: f64) -> f64 {
    let t = t.abs();
    if t < 1.0 {
        1.0 - t
    } else {
        0.0
    }
}

/// Computes Pillow's resampling coefficients for one axis
/// (`precompute_coeffs` + `normalize_coeffs_8bpc` in `Resample.c`).
///
/// All steps (order of the weight sum, division by the sum, rounding to
/// fixed point) follow Pillow exactly because any deviation can flip a
/// rounding and change an output pixel by one grey level.
fn axis_coeffs(in_size: usize, out_size: usize) -> AxisCoeffs {
    let scale = in_size as f64 / out_size as f64;
    // When down-sampling, the filter is stretched to cover the whole source
    // footprint of an output pixel (this is what makes PIL antialias).
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support (1.0) * filterscale
    let ss = 1.0 / filterscale;
    let one = f64::from(1u32 << PRECISION_BITS);

    let mut spans = Vec::with_capacity(out_size);
    // Pillow reserves `ksize = 2 * ceil(support) + 1` weights per output;
    // only the first `len` of them are ever non-zero, so only those are kept.
    let mut weights = Vec::new();
    let mut float_w = Vec::new();
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero like C's `(int)` cast, and saturates
        // instead of overflowing.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let len = (xmax - xmin).max(0) as usize;
        let start = xmin as usize;

        float_w.clear();
        float_w.extend((0..len).map(|x| triangle(((x + start) as f64 - center + 0.5) * ss)));
        let total: f64 = float_w.iter().sum();

        let offset = weights.len();
        weights.extend(float_w.iter().map(|&w| {
            let w = if total != 0.0 { w / total } else { w };
            // Round half away from zero, then truncate, as Pillow does.
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        }));
        spans.push(Span { start, len, offset });
    }
    AxisCoeffs { spans, weights }
}

/// Pillow's accumulator start value: one half in fixed point, so that the
/// final shift rounds to nearest (halves up).
const ACC_INIT: i64 = 1 << (PRECISION_BITS - 1);

/// Turns a fixed-point accumulator into an output byte, as Pillow's `clip8`.
///
/// Pillow accumulates in a C `int`. The bilinear weights are non-negative and
/// sum to about 2^22, so for 8-bit input that cannot overflow in practice,
/// but the rounding slack of extremely wide kernels is not provably bounded;
/// accumulating in i64 gives identical results without the doubt.
#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB8 image exactly like Pillow's
/// `Image.resize((out_w, out_h), Image.BILINEAR)` (no `box`, no
/// `reducing_gap`).
///
/// Pillow's algorithm is separable: one pass per axis whose size changes,
/// each rounding to an intermediate 8-bit image, so the order of the passes
/// matters (by up to one grey level). Pillow up to 12 always ran the
/// horizontal pass first; Pillow 13 runs the vertical pass first when the
/// height shrinks by more than twice as many pixels as the width does. The
/// reference tensors of the official pipeline follow the Pillow 13 rule
/// (`tall.jpg`, 96x160 -> 128x128, only matches with the vertical pass
/// first), so that is the rule reproduced here.
///
/// Degenerate inputs never panic: a zero-sized output gives an empty image,
/// a zero-sized input gives a black image of the requested size, and a
/// `data` buffer shorter than `width * height * 3` is treated as padded
/// with black (extra bytes are ignored).
pub fn resize_bilinear_pil(img: &Rgb8Image, out_w: u32, out_h: u32) -> Rgb8Image {
    let (in_w, in_h) = (img.width as usize, img.height as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);

    if ow == 0 || oh == 0 || in_w == 0 || in_h == 0 {
        return Rgb8Image {
            width: out_w,
            height: out_h,
            data: vec![0; ow.saturating_mul(oh).saturating_mul(3)],
        };
    }

    // Work on a buffer of exactly the advertised size so indexing below is
    // always in bounds, whatever the caller put in the public fields.
    let expected = img.expected_len().unwrap_or(usize::MAX);
    let src: Cow<[u8]> = if img.data.len() == expected {
        Cow::Borrowed(&img.data)
    } else {
        let mut padded = img.data.clone();
        padded.resize(expected, 0);
        Cow::Owned(padded)
    };

    // Pillow 13's pass order (see above), in signed arithmetic as in C.
    let shrink_h = i64::from(img.height) - i64::from(out_h);
    let shrink_w = i64::from(img.width) - i64::from(out_w);
    let vertical_first = shrink_h > 0 && shrink_h > shrink_w * 2;

    let data = if vertical_first {
        let tmp = resample_vertical(src, in_w, in_h, oh);
        resample_horizontal(tmp, in_w, oh, ow)
    } else {
        let tmp = resample_horizontal(src, in_w, in_h, ow);
        resample_vertical(tmp, ow, in_h, oh)
    };

    Rgb8Image {
        width: out_w,
        height: out_h,
        data: data.into_owned(),
    }
}

/// Pillow's horizontal pass: `w x h` RGB8 in `src` to `out_w x h`. A no-op
/// (no rounding either) when the width does not change, as in Pillow.
fn resample_horizontal(src: Cow<[u8]>, w: usize, h: usize, out_w: usize) -> Cow<[u8]> {
    if out_w == w {
        return src;
    }
    let coeffs = axis_coeffs(w, out_w);
    let mut out = vec![0u8; out_w * h * 3];
    for (in_row, out_row) in src.chunks_exact(w * 3).zip(out.chunks_exact_mut(out_w * 3)) {
        for (span, out_px) in coeffs.spans.iter().zip(out_row.chunks_exact_mut(3)) {
            let k = &coeffs.weights[span.offset..span.offset + span.len];
            // `axis_coeffs` keeps every span inside the input row.
            let taps = &in_row[span.start * 3..(span.start + span.len) * 3];
            // Integer sums are exact, so accumulating the three channels
            // together gives Pillow's per-channel results.
            let mut acc = [ACC_INIT; 3];
            for (px, &k) in taps.chunks_exact(3).zip(k) {
                for (a, &v) in acc.iter_mut().zip(px) {
                    *a += i64::from(v) * i64::from(k);
                }
            }
            for (o, a) in out_px.iter_mut().zip(acc) {
                *o = clip8(a);
            }
        }
    }
    Cow::Owned(out)
}

/// Pillow's vertical pass: `w x h` RGB8 in `src` to `w x out_h`. A no-op
/// when the height does not change.
fn resample_vertical(src: Cow<[u8]>, w: usize, h: usize, out_h: usize) -> Cow<[u8]> {
    if out_h == h {
        return src;
    }
    let coeffs = axis_coeffs(h, out_h);
    let stride = w * 3;
    let mut out = vec![0u8; stride * out_h];
    // One accumulator per sample of an output row, fed a whole input row
    // per tap: contiguous memory that the compiler can vectorise. The sums
    // are exact integers, so the order does not change the result.
    let mut acc = vec![0i64; stride];
    for (span, out_row) in coeffs.spans.iter().zip(out.chunks_exact_mut(stride)) {
        let k = &coeffs.weights[span.offset..span.offset + span.len];
        acc.fill(ACC_INIT);
        for (i, &k) in k.iter().enumerate() {
            let row = &src[(span.start + i) * stride..][..stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i64::from(v) * i64::from(k);
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Cow::Owned(out)
}

/// Resizes to `size x size` (aspect ratio ignored, as the official pipeline
/// does) and normalises: returns `3 * size * size` floats in CHW order,
/// `((v / 255) - mean[c]) / std[c]`.
pub fn to_model_input(img: &Rgb8Image, size: u32) -> Vec<f32> {
    let resized = resize_bilinear_pil(img, size, size);

    // torchvision computes `v.float() / 255`, then `(x - mean) / std`, each
    // step rounded to f32; only 256 distinct inputs exist per channel, so a
    // table computed with exactly those operations is both exact and fast.
    let lut: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| ((v as f32) / 255.0 - IMAGE_MEAN[c]) / IMAGE_STD[c]));

    let plane = size as usize * size as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in resized.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = lut[c][px[c] as usize];
        }
    }
    out
}

/// [`to_model_input`] as a `(1, 3, size, size)` f32 tensor on `device`.
///
/// # Errors
///
/// [`RsamError::Candle`] if the tensor cannot be created on `device` (for
/// example, out of device memory).
pub fn to_model_tensor(img: &Rgb8Image, size: u32, device: &Device) -> Result<Tensor> {
    let s = size as usize;
    let data = to_model_input(img, size);
    Ok(Tensor::from_vec(data, (1, 3, s, s), device)?)
}
