//! Turning mask logits into outputs: bilinear upsampling that matches
//! PyTorch, binary masks (area, bounding box, COCO RLE, PNG), and NumPy
//! `.npy` files for raw logits.

use std::borrow::Cow;

use image::DynamicImage;

use crate::rle::{self, Rle};
use crate::{Result, RsamError};

// ---------------------------------------------------------------------------
// Bilinear upsampling
// ---------------------------------------------------------------------------

/// The two source taps and their weights for one output coordinate.
#[derive(Debug, Clone, Copy)]
struct Taps {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// Source taps along one axis, computed the way PyTorch's CPU kernel does
/// (`compute_source_index_and_lambda` with `align_corners=False`), in `f32`
/// so that the results agree with PyTorch to the last few ulps.
///
/// `in_len` must be nonzero.
fn axis_taps(in_len: usize, out_len: usize) -> Vec<Taps> {
    if in_len == out_len {
        // PyTorch special-cases equal sizes as a plain copy; doing the same
        // makes that axis an exact identity.
        return (0..out_len)
            .map(|i| Taps {
                i0: i,
                i1: i,
                l0: 1.0,
                l1: 0.0,
            })
            .collect();
    }
    let last = in_len - 1;
    // PyTorch computes the ratio in the op's math type (f32 for f32 input).
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            // Half-pixel centres; negative positions clamp to the first pixel.
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            // `src` is finite and >= 0, so the float-to-int cast is exact
            // for the floor; `min` guards against rounding past the end.
            let i0 = (src.floor() as usize).min(last);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            Taps {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

/// Resizes a single-channel row-major `in_h x in_w` image to
/// `out_h x out_w`, exactly like PyTorch's
/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False,
/// antialias=False)` on the CPU.
///
/// Each output is `h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)` in `f32`,
/// with the first product of each sum fused into the addition the way
/// PyTorch's vectorised CPU builds compute it; on the reference fixtures the
/// result is bit-identical to PyTorch. An axis whose size does not change is
/// copied exactly.
///
/// This never panics: if `src` is shorter than `in_h * in_w` the missing
/// samples read as `0.0`, an empty input axis gives all zeros, and an output
/// size that cannot be allocated (`out_h * out_w` overflowing) gives an empty
/// vector. Callers are expected to pass consistent shapes.
pub fn upsample_bilinear(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let Some(out_len) = out_h.checked_mul(out_w) else {
        return Vec::new();
    };
    let Some(in_len) = in_h.checked_mul(in_w).filter(|&n| n > 0) else {
        return vec![0.0; out_len];
    };
    // Pad a short input once so the hot loop can index without checks
    // failing; the common, well-formed case borrows.
    let src: Cow<[f32]> = if src.len() >= in_len {
        Cow::Borrowed(&src[..in_len])
    } else {
        let mut padded = src.to_vec();
        padded.resize(in_len, 0.0);
        Cow::Owned(padded)
    };
    if in_h == out_h && in_w == out_w {
        return src.into_owned();
    }

    let ys = axis_taps(in_h, out_h);
    let xs = axis_taps(in_w, out_w);
    let mut out = Vec::with_capacity(out_len);
    for ty in &ys {
        let row0 = &src[ty.i0 * in_w..(ty.i0 + 1) * in_w];
        let row1 = &src[ty.i1 * in_w..(ty.i1 + 1) * in_w];
        for tx in &xs {
            // PyTorch's kernel evaluates `t0 * w0 + t1 * w1` per axis, and
            // its AVX2/AVX-512 builds contract that into `fma(t0, w0, t1 *
            // w1)`. Doing the same (Rust's `mul_add` is always fused) makes
            // the result bit-identical to PyTorch on such CPUs, which keeps
            // pixels whose logit is within an ulp of 0 on the same side of
            // the threshold.
            let top = row0[tx.i0].mul_add(tx.l0, row0[tx.i1] * tx.l1);
            let bottom = row1[tx.i0].mul_add(tx.l0, row1[tx.i1] * tx.l1);
            out.push(top.mul_add(ty.l0, bottom * ty.l1));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Binary masks
// ---------------------------------------------------------------------------

/// A binary mask, row-major (`data[y * width + x]`), each byte 0 or 1.
///
/// The methods read `data` as exactly `width * height` pixels: missing bytes
/// count as background and extra bytes are ignored, so an inconsistent mask
/// never causes a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl BinaryMask {
    /// Thresholds row-major logits at 0 (foreground where `logit > 0.0`, so
    /// NaN is background), as SAM does. Missing logits are background.
    pub fn from_logits(logits: &[f32], height: u32, width: u32) -> BinaryMask {
        let len = height as usize * width as usize;
        let mut data: Vec<u8> = logits.iter().take(len).map(|&v| u8::from(v > 0.0)).collect();
        data.resize(len, 0);
        BinaryMask { width, height, data }
    }

    /// Number of pixels in the mask, `width * height`, as `usize`.
    fn len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().take(self.len()).filter(|&&v| v != 0).count() as u64
    }

    /// Tight bounding box `[x, y, w, h]` of the foreground, as pycocotools'
    /// `toBbox` gives it: `w = x_max - x_min + 1`, likewise `h`, and all
    /// zeros for an empty mask.
    pub fn bbox(&self) -> [f64; 4] {
        let width = self.width as usize;
        if width == 0 {
            return [0.0; 4];
        }
        let mut min = (usize::MAX, usize::MAX);
        let mut max = (0usize, 0usize);
        let mut any = false;
        for (y, row) in self.data.chunks(width).take(self.height as usize).enumerate() {
            // Only the first and last foreground pixel of a row matter.
            let Some(first) = row.iter().position(|&v| v != 0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
            any = true;
            min = (min.0.min(first), min.1.min(y));
            max = (max.0.max(last), max.1.max(y));
        }
        if !any {
            return [0.0; 4];
        }
        [
            min.0 as f64,
            min.1 as f64,
            (max.0 - min.0 + 1) as f64,
            (max.1 - min.1 + 1) as f64,
        ]
    }

    /// COCO compressed RLE of the mask, identical to pycocotools' string.
    pub fn to_rle(&self) -> Rle {
        rle::encode(&self.data, self.height as usize, self.width as usize)
    }

    /// Encodes the mask as an 8-bit greyscale PNG (background 0, foreground
    /// 255).
    ///
    /// PNG cannot represent an image with a zero dimension; for such a mask
    /// this returns an empty vector rather than panicking.
    pub fn to_png(&self) -> Vec<u8> {
        let pixels: Vec<u8> = (0..self.len())
            .map(|i| match self.data.get(i) {
                Some(&v) if v != 0 => 255,
                _ => 0,
            })
            .collect();
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        // Writing into a Vec cannot hit I/O errors; the only possible
        // failure is the zero-dimension case documented above.
        let written = encoder
            .write_header()
            .and_then(|mut writer| {
                writer.write_image_data(&pixels)?;
                writer.finish()
            })
            .is_ok();
        if written {
            out
        } else {
            Vec::new()
        }
    }

    /// Decodes a mask from any PNG (greyscale, RGB, palette, with or without
    /// alpha, 1- to 16-bit). A pixel is foreground when its first channel is
    /// nonzero: the grey value, or the red component (of the palette colour,
    /// for palette images). Alpha is ignored.
    pub fn from_png(bytes: &[u8]) -> Result<BinaryMask> {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
            .map_err(|e| RsamError::MaskInput(format!("cannot decode mask PNG: {e}")))?;
        let (width, height) = (img.width(), img.height());
        let data = match &img {
            DynamicImage::ImageLuma8(b) => first_channel_nonzero(b.as_raw(), 1),
            DynamicImage::ImageLumaA8(b) => first_channel_nonzero(b.as_raw(), 2),
            DynamicImage::ImageRgb8(b) => first_channel_nonzero(b.as_raw(), 3),
            DynamicImage::ImageRgba8(b) => first_channel_nonzero(b.as_raw(), 4),
            DynamicImage::ImageLuma16(b) => first_channel_nonzero(b.as_raw(), 1),
            DynamicImage::ImageLumaA16(b) => first_channel_nonzero(b.as_raw(), 2),
            DynamicImage::ImageRgb16(b) => first_channel_nonzero(b.as_raw(), 3),
            DynamicImage::ImageRgba16(b) => first_channel_nonzero(b.as_raw(), 4),
            // The PNG decoder does not produce other layouts today, but the
            // enum is non-exhaustive: convert to a known one. 16 bits keep
            // every nonzero PNG sample nonzero.
            other => first_channel_nonzero(other.to_rgba16().as_raw(), 4),
        };
        Ok(BinaryMask { width, height, data })
    }
}

/// 0/1 per pixel: whether the first of `channels` interleaved samples is
/// nonzero.
fn first_channel_nonzero<T: Copy + Default + PartialEq>(raw: &[T], channels: usize) -> Vec<u8> {
    raw.chunks_exact(channels)
        .map(|px| u8::from(px[0] != T::default()))
        .collect()
}

// ---------------------------------------------------------------------------
// NumPy .npy files
// ---------------------------------------------------------------------------

/// Every .npy file starts with these bytes.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// NumPy pads the header so that the data starts on this boundary.
const NPY_ALIGN: usize = 64;
/// NumPy leaves room after the dict for the first axis to grow to this many
/// digits (its `GROWTH_AXIS_MAX_DIGITS`), so a file can be appended to in
/// place. Reproduced so that our files are byte-identical to `numpy.save`.
const NPY_GROWTH_DIGITS: usize = 21;
/// Deepest nesting of tuples/lists/dicts accepted in a header; real headers
/// nest at most twice, and the limit keeps hostile input off the stack.
const NPY_MAX_DEPTH: usize = 16;

/// Formats a shape the way Python's `repr(tuple)` does: `()`, `(5,)`,
/// `(1, 2)`.
fn py_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let items: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", items.join(", "))
        }
    }
}

/// Serialises a C-order float32 array as a `.npy` file, byte-identical to
/// what `numpy.save` writes (format 1.0, or 2.0 for a header over 64 KiB).
///
/// The data is written as given; `data.len()` should equal the product of
/// `shape` (an empty `shape` means a scalar, one element), otherwise
/// [`read_npy_f32`] will reject the file.
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        py_tuple(shape)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(NPY_GROWTH_DIGITS.saturating_sub(digits)));
    }
    // NumPy always adds at least one space (a full block when already
    // aligned) before the closing newline.
    let with_newline = dict.len() + 1;
    let padding = |prefix: usize| NPY_ALIGN - (prefix + with_newline) % NPY_ALIGN;
    // magic + 2 version bytes + u16 length for 1.0, u32 length for 2.0.
    let v1_len = with_newline + padding(NPY_MAGIC.len() + 4);
    let (major, header_len, pad) = match u16::try_from(v1_len) {
        Ok(_) => (1u8, v1_len, padding(NPY_MAGIC.len() + 4)),
        Err(_) => {
            let pad = padding(NPY_MAGIC.len() + 6);
            (2u8, with_newline + pad, pad)
        }
    };

    let mut out = Vec::with_capacity(NPY_MAGIC.len() + 6 + header_len + data.len() * 4);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        // Checked above to fit.
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        // A shape dict over 4 GiB is impossible in practice; saturate
        // rather than panic.
        let len = u32::try_from(header_len).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a `.npy` file (format 1.0, 2.0 or 3.0) holding a little-endian
/// C-order `float32` (`'<f4'`) or `float64` (`'<f8'`, converted to `f32`)
/// array. Returns the shape (empty for a scalar) and the data.
///
/// Anything else fails with [`RsamError::MaskInput`] naming the problem: bad
/// magic, unsupported version, truncated or malformed header, big-endian or
/// other dtypes, Fortran order, or data whose length does not match the
/// shape.
pub fn read_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    let err = |msg: String| RsamError::MaskInput(format!(".npy: {msg}"));
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(err("bad magic: not a NumPy .npy file".into()));
    }
    let rest = &bytes[NPY_MAGIC.len()..];
    let (major, minor) = match rest {
        [major, minor, ..] => (*major, *minor),
        _ => return Err(err("truncated header: missing format version".into())),
    };
    // Format 1.0 has a u16 header length; 2.0 and 3.0 a u32 one. 3.0 only
    // differs in allowing UTF-8 in the header.
    let len_size = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(err(format!(
                "unsupported format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            )))
        }
    };
    let len_start = NPY_MAGIC.len() + 2;
    let header_start = len_start + len_size;
    let len_bytes = bytes
        .get(len_start..header_start)
        .ok_or_else(|| err("truncated header: missing header length".into()))?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            err(format!(
                "truncated header: it declares {header_len} bytes but only {} follow",
                bytes.len() - header_start.min(bytes.len())
            ))
        })?;
    let raw_header = &bytes[header_start..data_start];
    let header: String = if major == 3 {
        std::str::from_utf8(raw_header)
            .map_err(|_| err("header is not valid UTF-8".into()))?
            .to_owned()
    } else {
        // Formats 1.0 and 2.0 are Latin-1: every byte is one char.
        raw_header.iter().map(|&b| char::from(b)).collect()
    };

    let header = parse_npy_header(&header).map_err(|e| err(format!("malformed header: {e}")))?;
    let item_size = match header.descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        d if d.starts_with('>') => {
            return Err(err(format!(
                "big-endian dtype '{d}' is not supported (expected '<f4' or '<f8')"
            )))
        }
        d => {
            return Err(err(format!(
                "unsupported dtype '{d}' (expected '<f4' float32 or '<f8' float64)"
            )))
        }
    };
    if header.fortran_order {
        return Err(err(
            "fortran_order True (column-major) arrays are not supported; save a C-order array".into(),
        ));
    }

    let shape = header.shape;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(item_size).map(|bytes| (n, bytes)));
    let Some((count, expected)) = count else {
        return Err(err(format!(
            "shape {} is too large (element count overflows)",
            py_tuple(&shape)
        )));
    };
    let data = &bytes[data_start..];
    if data.len() < expected {
        return Err(err(format!(
            "truncated data: shape {} of '{}' needs {expected} bytes but only {} are present",
            py_tuple(&shape),
            header.descr,
            data.len()
        )));
    }
    if data.len() > expected {
        return Err(err(format!(
            "data length mismatch: shape {} of '{}' needs {expected} bytes but {} are present",
            py_tuple(&shape),
            header.descr,
            data.len()
        )));
    }

    let values: Vec<f32> = if item_size == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                // Narrowing is the documented conversion for '<f8' input.
                f64::from_le_bytes(b) as f32
            })
            .collect()
    };
    debug_assert_eq!(values.len(), count);
    Ok((shape, values))
}

/// The three keys of a `.npy` header that matter.
#[derive(Debug)]
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// The subset of Python literals that can appear in a `.npy` header.
#[derive(Debug)]
enum PyLit {
    Str(String),
    Bool(bool),
    None,
    Int(i128),
    /// Tuples and lists: both are sequences for our purposes.
    Seq(Vec<PyLit>),
    Dict(Vec<(String, PyLit)>),
}

impl PyLit {
    /// Short Python-ish name for error messages.
    fn kind(&self) -> &'static str {
        match self {
            PyLit::Str(_) => "a string",
            PyLit::Bool(_) => "a bool",
            PyLit::None => "None",
            PyLit::Int(_) => "an integer",
            PyLit::Seq(_) => "a tuple/list",
            PyLit::Dict(_) => "a dict",
        }
    }
}

/// Parses a `.npy` header dict and extracts `descr`, `fortran_order` and
/// `shape`. Unknown keys are ignored; a missing or mistyped key is an error.
fn parse_npy_header(text: &str) -> std::result::Result<NpyHeader, String> {
    let mut parser = LitParser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.chars.len() {
        return Err(format!(
            "unexpected text after the header dict at character {}",
            parser.pos
        ));
    }
    let PyLit::Dict(entries) = value else {
        return Err(format!("expected a dict, found {}", value.kind()));
    };

    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let slot_taken = match key.as_str() {
            "descr" => match value {
                PyLit::Str(s) => descr.replace(s).is_some(),
                PyLit::Seq(_) => return Err("structured dtypes (a list 'descr') are not supported".into()),
                other => return Err(format!("'descr' is {}, expected a string", other.kind())),
            },
            "fortran_order" => match value {
                PyLit::Bool(b) => fortran_order.replace(b).is_some(),
                other => return Err(format!("'fortran_order' is {}, expected True or False", other.kind())),
            },
            "shape" => {
                let PyLit::Seq(items) = value else {
                    return Err(format!("'shape' is {}, expected a tuple", value.kind()));
                };
                let dims = items
                    .iter()
                    .map(|item| match item {
                        PyLit::Int(n) => {
                            usize::try_from(*n).map_err(|_| format!("'shape' has an invalid dimension {n}"))
                        }
                        other => Err(format!("'shape' has {} where a dimension was expected", other.kind())),
                    })
                    .collect::<std::result::Result<Vec<usize>, String>>()?;
                shape.replace(dims).is_some()
            }
            // Tolerate keys future writers might add.
            _ => false,
        };
        if slot_taken {
            return Err(format!("key '{key}' appears twice"));
        }
    }
    Ok(NpyHeader {
        descr: descr.ok_or("missing key 'descr'")?,
        fortran_order: fortran_order.ok_or("missing key 'fortran_order'")?,
        shape: shape.ok_or("missing key 'shape'")?,
    })
}

/// A small recursive-descent parser for Python literals.
struct LitParser {
    chars: Vec<char>,
    pos: usize,
}

impl LitParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Consumes `expected` after optional whitespace, or fails naming it.
    fn expect(&mut self, expected: char) -> std::result::Result<(), String> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == expected => {
                self.pos += 1;
                Ok(())
            }
            Some(c) => Err(format!("expected {expected:?} at character {}, found {c:?}", self.pos)),
            None => Err(format!("expected {expected:?}, found the end of the header")),
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<PyLit, String> {
        if depth > NPY_MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.skip_ws();
        match self.peek() {
            None => Err("unexpected end of the header".into()),
            Some('\'' | '"') => self.string().map(PyLit::Str),
            Some('(') => self.sequence(')', depth).map(PyLit::Seq),
            Some('[') => self.sequence(']', depth).map(PyLit::Seq),
            Some('{') => self.dict(depth).map(PyLit::Dict),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.int().map(PyLit::Int),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "True" => Ok(PyLit::Bool(true)),
                    "False" => Ok(PyLit::Bool(false)),
                    "None" => Ok(PyLit::None),
                    _ => Err(format!("unknown name {word:?} at character {start}")),
                }
            }
            Some(c) => Err(format!("unexpected {c:?} at character {}", self.pos)),
        }
    }

    /// A quoted string; a backslash takes the next character literally,
    /// which is all a dtype string ever needs.
    fn string(&mut self) -> std::result::Result<String, String> {
        let start = self.pos;
        let Some(quote) = self.peek() else {
            return Err("unexpected end of the header".into());
        };
        self.pos += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("unterminated string starting at character {start}"));
            };
            self.pos += 1;
            match c {
                _ if c == quote => return Ok(s),
                '\\' => {
                    let Some(next) = self.peek() else {
                        return Err(format!("unterminated string starting at character {start}"));
                    };
                    self.pos += 1;
                    s.push(next);
                }
                _ => s.push(c),
            }
        }
    }

    /// A decimal integer, with an optional Python 2 `L` suffix (old NumPy
    /// wrote shapes like `(3L, 4L)`).
    fn int(&mut self) -> std::result::Result<i128, String> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        text.parse::<i128>()
            .map_err(|_| format!("invalid integer {text:?} at character {start}"))
    }

    /// `(a, b, ...)` or `[a, b, ...]`, with an optional trailing comma.
    fn sequence(&mut self, close: char, depth: usize) -> std::result::Result<Vec<PyLit>, String> {
        self.pos += 1; // the opening bracket
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
            } else {
                self.expect(close)?;
                return Ok(items);
            }
        }
    }

    /// `{'key': value, ...}` with string keys and an optional trailing comma.
    fn dict(&mut self, depth: usize) -> std::result::Result<Vec<(String, PyLit)>, String> {
        self.pos += 1; // the opening brace
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok(entries);
                }
                Some('\'' | '"') => {}
                Some(c) => return Err(format!("expected a string key at character {}, found {c:?}", self.pos)),
                None => return Err("unterminated dict".into()),
            }
            let key = self.string()?;
            self.expect(':')?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
            } else {
                self.expect('}')?;
                return Ok(entries);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parser_accepts_variants() {
        let h = parse_npy_header("{\"descr\":\"<f8\",'shape':(3L,4L),'fortran_order':False,'extra':[1,(2,)]}").unwrap();
        assert_eq!(h.descr, "<f8");
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![3, 4]);
    }

    #[test]
    fn header_parser_rejects_deep_nesting() {
        let deep = format!("{{'x': {}{}}}", "(".repeat(100), ")".repeat(100));
        assert!(parse_npy_header(&deep).unwrap_err().contains("deep"));
    }

    #[test]
    fn taps_identity_and_edges() {
        let t = axis_taps(3, 3);
        assert!(t.iter().enumerate().all(|(i, t)| t.i0 == i && t.l1 == 0.0));
        // Upsampling 2 -> 4: first output clamps to the first pixel, the
        // last one to the last pixel.
        let t = axis_taps(2, 4);
        assert_eq!((t[0].i0, t[0].l1), (0, 0.0));
        assert_eq!((t[3].i0, t[3].i1), (1, 1));
    }

    #[test]
    fn zero_sized_png_is_empty() {
        let m = BinaryMask {
            width: 0,
            height: 3,
            data: vec![],
        };
        assert!(m.to_png().is_empty());
    }
}
