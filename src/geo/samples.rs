//! Raster sample types and the per-band buffers a window read fills.

use serde::Serialize;

use super::error::{GeoError, GeoResult};

/// The sample types the reader supports (TIFF SampleFormat x BitsPerSample).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleType {
    U8,
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
}

impl SampleType {
    /// From the TIFF SampleFormat (1 unsigned, 2 signed, 3 IEEE float) and
    /// BitsPerSample; anything else (i8, 64-bit integers, f16, complex,
    /// 1/4/12-bit samples) is an error naming it.
    pub(crate) fn from_tiff(sample_format: u16, bits: u16) -> GeoResult<SampleType> {
        match (sample_format, bits) {
            (1, 8) => Ok(SampleType::U8),
            (1, 16) => Ok(SampleType::U16),
            (2, 16) => Ok(SampleType::I16),
            (1, 32) => Ok(SampleType::U32),
            (2, 32) => Ok(SampleType::I32),
            (3, 32) => Ok(SampleType::F32),
            (3, 64) => Ok(SampleType::F64),
            (format, bits) => {
                let kind = match format {
                    1 => "unsigned integer",
                    2 => "signed integer",
                    3 => "floating point",
                    4 => "untyped (void)",
                    5 => "complex integer",
                    6 => "complex floating point",
                    _ => "unknown",
                };
                Err(GeoError::UnsupportedSampleFormat(format!(
                    "{bits}-bit {kind} samples (SampleFormat {format})"
                )))
            }
        }
    }

    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            SampleType::U8 => 1,
            SampleType::U16 | SampleType::I16 => 2,
            SampleType::U32 | SampleType::I32 | SampleType::F32 => 4,
            SampleType::F64 => 8,
        }
    }
}

/// A sample type the reader decodes into and the stretch reads.
pub trait Sample: Copy + Default + PartialEq + Send + Sync + 'static {
    /// Width of [`Sample::order_key`] in bits.
    const KEY_BITS: u32;

    /// The sample stored in native byte order at the start of `bytes`.
    fn from_ne_slice(bytes: &[u8]) -> Self;
    fn to_f64(self) -> f64;
    /// A key whose unsigned order is the order of the values (for floats,
    /// -0.0 sorts before 0.0 and NaN is never asked for).
    fn order_key(self) -> u64;
    fn from_order_key(key: u64) -> Self;
    fn is_nan(self) -> bool {
        false
    }
    /// The sample equal to the nodata value, if the type can hold it
    /// exactly; otherwise no sample is nodata.
    fn nodata(value: f64) -> Option<Self>;

    /// Whether `self` is a valid (not nodata, not NaN) value.
    fn is_valid(self, nodata: Option<Self>) -> bool {
        !self.is_nan() && Some(self) != nodata
    }
}

macro_rules! integer_sample {
    ($t:ty, $bits:expr, $unsigned:ty, $flip:expr) => {
        impl Sample for $t {
            const KEY_BITS: u32 = $bits;

            fn from_ne_slice(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..std::mem::size_of::<$t>()]);
                <$t>::from_ne_bytes(raw)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn order_key(self) -> u64 {
                u64::from((self as $unsigned) ^ $flip)
            }
            fn from_order_key(key: u64) -> Self {
                ((key as $unsigned) ^ $flip) as $t
            }
            fn nodata(value: f64) -> Option<Self> {
                let fits = value.fract() == 0.0 && value >= <$t>::MIN as f64 && value <= <$t>::MAX as f64;
                fits.then(|| value as $t)
            }
        }
    };
}

integer_sample!(u8, 8, u8, 0);
integer_sample!(u16, 16, u16, 0);
integer_sample!(i16, 16, u16, 0x8000);
integer_sample!(u32, 32, u32, 0);
integer_sample!(i32, 32, u32, 0x8000_0000);

macro_rules! float_sample {
    ($t:ty, $bits:expr, $unsigned:ty) => {
        impl Sample for $t {
            const KEY_BITS: u32 = $bits;

            fn from_ne_slice(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..std::mem::size_of::<$t>()]);
                <$t>::from_ne_bytes(raw)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn order_key(self) -> u64 {
                const SIGN: $unsigned = 1 << ($bits - 1);
                let bits = self.to_bits();
                // Negative values: all bits flipped (larger magnitude sorts
                // first); positive ones: the sign bit set (above negatives).
                u64::from(if bits & SIGN != 0 { !bits } else { bits | SIGN })
            }
            fn from_order_key(key: u64) -> Self {
                const SIGN: $unsigned = 1 << ($bits - 1);
                let key = key as $unsigned;
                <$t>::from_bits(if key & SIGN != 0 { key & !SIGN } else { !key })
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn nodata(value: f64) -> Option<Self> {
                // NaN nodata needs no match: NaN is never a valid value.
                (!value.is_nan()).then_some(value as $t)
            }
        }
    };
}

float_sample!(f32, 32, u32);
float_sample!(f64, 64, u64);

/// Samples of a window, one row-major buffer per requested band, in the
/// raster's own sample type.
#[derive(Clone, Debug, PartialEq)]
pub enum BandData {
    U8(Vec<Vec<u8>>),
    U16(Vec<Vec<u16>>),
    I16(Vec<Vec<i16>>),
    U32(Vec<Vec<u32>>),
    I32(Vec<Vec<i32>>),
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
}

/// Runs `$body` with `$bands` bound to the typed `Vec<Vec<T>>` of any
/// [`BandData`] variant.
macro_rules! with_bands {
    ($data:expr, $bands:ident => $body:expr) => {
        match $data {
            $crate::geo::samples::BandData::U8($bands) => $body,
            $crate::geo::samples::BandData::U16($bands) => $body,
            $crate::geo::samples::BandData::I16($bands) => $body,
            $crate::geo::samples::BandData::U32($bands) => $body,
            $crate::geo::samples::BandData::I32($bands) => $body,
            $crate::geo::samples::BandData::F32($bands) => $body,
            $crate::geo::samples::BandData::F64($bands) => $body,
        }
    };
}
pub(crate) use with_bands;

/// A window of selected bands: `width x height` pixels, `bands[i]` (1-based,
/// GDAL's numbering) stored in `data`'s `i`-th buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct BandStack {
    pub width: u32,
    pub height: u32,
    pub bands: Vec<u16>,
    pub data: BandData,
}

impl BandStack {
    pub fn sample_type(&self) -> SampleType {
        match &self.data {
            BandData::U8(_) => SampleType::U8,
            BandData::U16(_) => SampleType::U16,
            BandData::I16(_) => SampleType::I16,
            BandData::U32(_) => SampleType::U32,
            BandData::I32(_) => SampleType::I32,
            BandData::F32(_) => SampleType::F32,
            BandData::F64(_) => SampleType::F64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_order_preserving<T: Sample + PartialOrd + std::fmt::Debug>(mut values: Vec<T>) {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for pair in values.windows(2) {
            assert!(pair[0].order_key() <= pair[1].order_key(), "{pair:?}");
        }
        for v in values {
            assert_eq!(T::from_order_key(v.order_key()), v);
            assert!(T::KEY_BITS == 64 || v.order_key() >> T::KEY_BITS == 0);
        }
    }

    #[test]
    fn order_keys_sort_like_the_values_and_invert() {
        assert_order_preserving(vec![0u8, 1, 127, 128, 255]);
        assert_order_preserving(vec![0u16, 1, 65535, 300]);
        assert_order_preserving(vec![i16::MIN, -1, 0, 1, i16::MAX]);
        assert_order_preserving(vec![0u32, u32::MAX, 7]);
        assert_order_preserving(vec![i32::MIN, -5, 0, 5, i32::MAX]);
        assert_order_preserving(vec![
            f32::NEG_INFINITY,
            -1e30,
            -1.5,
            -0.0,
            0.0,
            1e-40,
            2.5,
            f32::MAX,
            f32::INFINITY,
        ]);
        assert_order_preserving(vec![f64::MIN, -1.0, -0.0, 0.0, 5e-324, 1.0, f64::MAX]);
    }

    #[test]
    fn nodata_matches_only_values_the_type_holds_exactly() {
        assert_eq!(u16::nodata(65535.0), Some(65535));
        assert_eq!(u16::nodata(-1.0), None);
        assert_eq!(u16::nodata(1.5), None);
        assert_eq!(i16::nodata(-9999.0), Some(-9999));
        assert_eq!(u8::nodata(256.0), None);
        assert_eq!(f32::nodata(-9999.0), Some(-9999.0));
        assert_eq!(f32::nodata(f64::NAN), None);
        assert!(!f32::NAN.is_valid(None));
        assert!(!7u16.is_valid(Some(7)));
        assert!(8u16.is_valid(Some(7)));
    }

    #[test]
    fn unsupported_formats_are_named() {
        let cases = [
            ((2, 8), "8-bit signed integer samples (SampleFormat 2)"),
            ((3, 16), "16-bit floating point"),
            ((6, 64), "complex floating point"),
            ((1, 12), "12-bit unsigned integer"),
            ((1, 64), "64-bit unsigned integer"),
        ];
        for ((format, bits), expected) in cases {
            let e = SampleType::from_tiff(format, bits).unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
            assert!(
                e.to_string().contains("supported: u8, u16, i16, u32, i32, f32, f64"),
                "{e}"
            );
        }
    }
}
