//! NumPy `.npy` files: the low-resolution logits `--logits-out` writes and
//! `--mask-input` / `mask_input` read back, and the model input
//! `--input-out` writes. Parsing and writing are `npyz`'s; this module only
//! pins what rsam accepts (float32 or float64, either byte order, C order,
//! exactly the declared number of values) and says what is wrong otherwise.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use npyz::{DType, NpyFile, Order, WriterBuilder};

use crate::{Result, RsamError};

/// Serialises a C-order float32 array (`shape` empty for a scalar).
///
/// `data.len()` should equal the product of `shape`; [`read_f32`] rejects
/// files where it does not.
pub fn write_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::with_capacity(128 + data.len() * 4);
    // Writing into a Vec cannot fail: no I/O, and the dtype is the default
    // one of f32.
    let written = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .and_then(|mut writer| {
            writer.extend(data.iter().copied())?;
            writer.finish()
        });
    debug_assert!(written.is_ok(), "writing .npy into memory failed: {written:?}");
    out
}

/// Reads a `.npy` file holding a C-order float32 or float64 array (float64
/// is narrowed to f32). Returns the shape (empty for a scalar) and the values.
///
/// Anything else fails with [`RsamError::MaskInput`] naming the problem: not
/// a `.npy` file, a malformed or truncated header, another dtype, Fortran
/// order, or data whose length does not match the shape.
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    let err = |msg: String| RsamError::MaskInput(format!(".npy: {msg}"));
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(err("bad magic: not a NumPy .npy file".into()));
    }
    let mut cursor = Cursor::new(bytes);
    // npyz multiplies the declared dimensions unchecked: a hostile header
    // overflows (a panic in debug builds, a wrapped count in release). The
    // shape is checked below; this keeps the panic from escaping.
    let header = catch_unwind(AssertUnwindSafe(|| npyz::NpyHeader::from_reader(&mut cursor)))
        .map_err(|_| err("malformed header: the shape is too large".into()))?
        .map_err(|e| err(format!("malformed header: {e}")))?;
    let npy = NpyFile::with_header(header, &bytes[cursor.position() as usize..]);
    let descr = match npy.dtype() {
        DType::Plain(ty) => ty.to_string(),
        other => {
            return Err(err(format!(
                "unsupported dtype {} (expected float32 or float64)",
                other.descr()
            )))
        }
    };
    let item_size: u64 = match &descr[1..] {
        "f4" => 4,
        "f8" => 8,
        _ => {
            return Err(err(format!(
                "unsupported dtype '{descr}' (expected '<f4' float32 or '<f8' float64)"
            )))
        }
    };
    if npy.order() == Order::Fortran {
        return Err(err(
            "fortran_order True (column-major) arrays are not supported; save a C-order array".into(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let expected = npy
        .shape()
        .iter()
        .try_fold(item_size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} is too large (its element count overflows)")))?;
    let present = (bytes.len() as u64).saturating_sub(cursor.position());
    if expected != present {
        return Err(err(format!(
            "data length mismatch: shape {shape:?} of '{descr}' needs {expected} bytes but {present} are present"
        )));
    }
    let values = if item_size == 4 {
        npy.into_vec::<f32>()
    } else {
        // Narrowing is the documented conversion for float64 input.
        npy.into_vec::<f64>().map(|v| v.into_iter().map(|x| x as f32).collect())
    };
    let values = values.map_err(|e| err(format!("cannot read the data: {e}")))?;
    Ok((shape, values))
}

/// Reads low-resolution logits for a `side` x `side` mask prompt: a float
/// `.npy` of that shape, leading 1-dimensions allowed (`1 x 1 x S/4 x S/4`
/// as the official code saves them).
pub fn read_low_res_logits(bytes: &[u8], side: usize) -> Result<Vec<f32>> {
    let (shape, data) = read_f32(bytes)?;
    let squeezed: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
    if squeezed != [side, side] && !(side == 1 && squeezed.is_empty()) {
        return Err(RsamError::MaskInput(format!(
            "the .npy has shape {shape:?}: expected {side}x{side} low-resolution logits"
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_big_endian() {
        let data = [1.5f32, -2.0, 0.25, 7.0, f32::NAN, 0.0];
        let (shape, back) = read_f32(&write_f32(&[2, 3], &data)).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(back[..4], data[..4]);
        assert!(back[4].is_nan());
        // A big-endian float64 file (NumPy writes one for `astype('>f8')`).
        let mut big = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }";
        let len = 128 - 10;
        big.extend_from_slice(&(len as u16).to_le_bytes());
        big.extend_from_slice(format!("{dict:<width$}\n", width = len - 1).as_bytes());
        for v in [1.5f64, -2.0] {
            big.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(read_f32(&big).unwrap(), (vec![2], vec![1.5, -2.0]));
    }
}
