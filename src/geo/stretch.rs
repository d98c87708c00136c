//! From raster samples to the 8-bit RGB the model sees, exactly as issue 16
//! defines it. Per band, valid values (not nodata, not NaN) map through
//!
//! ```text
//! v -> clamp(floor((v - lo) * 255 / (hi - lo) + 0.5), 0, 255)     (f64)
//! ```
//!
//! with `lo, hi` = numpy's `percentile(valid, 2, method="lower")` and
//! `percentile(valid, 98, method="higher")` (`percentile`), the minimum and
//! maximum (`minmax`), or no mapping at all (`none`: values must already lie
//! in 0..=255 and are rounded the same way). `hi == lo` maps every valid value
//! to 0; nodata and NaN become 0.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{GeoError, GeoResult};
use super::order_stats::{min_max, rank_higher, rank_lower, select_ranks};
use super::samples::{with_bands, BandStack, Sample, SampleType};
use crate::preprocess::Rgb8Image;

/// The lower and upper percentiles of the `percentile` stretch.
pub const PERCENTILES: (f64, f64) = (2.0, 98.0);

/// How band values become bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stretch {
    /// Per band, the 2nd..98th percentile of the valid values to 0..255.
    Percentile,
    /// Per band, the minimum..maximum of the valid values to 0..255.
    Minmax,
    /// Values used as they are; they must lie in 0..=255.
    None,
}

impl Stretch {
    /// u8 rasters are used as they are; every other type is stretched.
    pub fn default_for(sample_type: SampleType) -> Stretch {
        match sample_type {
            SampleType::U8 => Stretch::None,
            _ => Stretch::Percentile,
        }
    }
}

impl FromStr for Stretch {
    type Err = GeoError;

    fn from_str(s: &str) -> GeoResult<Stretch> {
        match s {
            "percentile" => Ok(Stretch::Percentile),
            "minmax" => Ok(Stretch::Minmax),
            "none" => Ok(Stretch::None),
            other => Err(GeoError::InvalidStretch(format!(
                "{other:?} is not one of percentile, minmax, none"
            ))),
        }
    }
}

/// How one band's valid values become bytes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BandMapping {
    /// `lo..hi` to `0..255` (the formula above), `hi > lo`.
    Linear { lo: f64, hi: f64 },
    /// `floor(v + 0.5)`: the values already are bytes.
    Identity,
    /// Every value to 0 (`hi == lo`, or no valid value at all).
    Zero,
}

impl BandMapping {
    /// The byte for a valid value.
    pub fn apply(self, v: f64) -> u8 {
        let scaled = match self {
            BandMapping::Linear { lo, hi } => (v - lo) * 255.0 / (hi - lo),
            BandMapping::Identity => v,
            BandMapping::Zero => return 0,
        };
        // clamp(floor(t), 0, 255) without a libm `floor` call (5 % of a
        // 10,000 x 10,000 read in perf): truncation is the floor for t >= 0,
        // and NaN maps to 0 like every value below 0.
        let t = scaled + 0.5;
        if t.is_nan() || t < 0.0 {
            0
        } else if t >= 255.0 {
            255
        } else {
            t as u8
        }
    }
}

/// The mapping `stretch` gives band number `band` (for messages) holding
/// `values`.
pub fn band_mapping<T: Sample>(values: &[T], nodata: Option<T>, stretch: Stretch, band: u16) -> GeoResult<BandMapping> {
    let linear = |lo: T, hi: T| {
        let (lo, hi) = (lo.to_f64(), hi.to_f64());
        if hi > lo {
            BandMapping::Linear { lo, hi }
        } else {
            BandMapping::Zero
        }
    };
    match stretch {
        Stretch::Percentile => {
            let (q_lo, q_hi) = PERCENTILES;
            let ranks = select_ranks(values, nodata, |n| vec![rank_lower(n, q_lo), rank_higher(n, q_hi)]);
            Ok(ranks.map_or(BandMapping::Zero, |r| linear(r[0], r[1])))
        }
        Stretch::Minmax => Ok(min_max(values, nodata).map_or(BandMapping::Zero, |(lo, hi)| linear(lo, hi))),
        Stretch::None => match min_max(values, nodata) {
            Some((lo, _)) if lo.to_f64() < 0.0 => Err(GeoError::OutOfByteRange {
                band,
                value: lo.to_f64(),
            }),
            Some((_, hi)) if hi.to_f64() > 255.0 => Err(GeoError::OutOfByteRange {
                band,
                value: hi.to_f64(),
            }),
            _ => Ok(BandMapping::Identity),
        },
    }
}

/// The mapping of every band of `stack`; `nodata` is the raster's GDAL_NODATA.
pub fn band_mappings(stack: &BandStack, nodata: Option<f64>, stretch: Stretch) -> GeoResult<Vec<BandMapping>> {
    with_bands!(&stack.data, bands => bands
        .iter()
        .zip(&stack.bands)
        .map(|(values, &band)| band_mapping(values, nodata.and_then(Sample::nodata), stretch, band))
        .collect())
}

/// 8-bit RGB from a stack of 3 bands (R, G, B) or 1 band (grey: R = G = B),
/// through the given per-band mappings (from [`band_mappings`], possibly of
/// a larger area than this window).
pub fn apply_mappings(stack: &BandStack, nodata: Option<f64>, mappings: &[BandMapping]) -> GeoResult<Rgb8Image> {
    let channels: [usize; 3] = match (stack.bands.len(), mappings.len()) {
        (1, 1) => [0, 0, 0],
        (3, 3) => [0, 1, 2],
        (bands, maps) => {
            return Err(GeoError::InvalidBands(format!(
                "{bands} band(s) with {maps} mapping(s): RGB needs 3 bands, or 1 for grey"
            )))
        }
    };
    let pixels = stack.width as usize * stack.height as usize;
    let mut data = vec![0u8; pixels * 3];
    with_bands!(&stack.data, bands => {
        for (channel, &band) in channels.iter().enumerate() {
            fill_channel(&mut data, channel, &bands[band], nodata.and_then(Sample::nodata), mappings[band]);
        }
    });
    Ok(Rgb8Image {
        width: stack.width,
        height: stack.height,
        data,
    })
}

/// [`band_mappings`] then [`apply_mappings`].
pub fn stretch_to_rgb(stack: &BandStack, nodata: Option<f64>, stretch: Stretch) -> GeoResult<Rgb8Image> {
    if !matches!(stack.bands.len(), 1 | 3) {
        return Err(GeoError::InvalidBands(format!(
            "{} bands given: RGB needs 3 bands, or 1 for grey",
            stack.bands.len()
        )));
    }
    let mappings = band_mappings(stack, nodata, stretch)?;
    apply_mappings(stack, nodata, &mappings)
}

fn fill_channel<T: Sample>(rgb: &mut [u8], channel: usize, values: &[T], nodata: Option<T>, mapping: BandMapping) {
    for (pixel, &v) in rgb.chunks_exact_mut(3).zip(values) {
        pixel[channel] = if v.is_valid(nodata) {
            mapping.apply(v.to_f64())
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::samples::BandData;

    fn stack(bands: Vec<Vec<u16>>, width: u32) -> BandStack {
        let height = bands[0].len() as u32 / width;
        BandStack {
            width,
            height,
            bands: (1..=bands.len() as u16).collect(),
            data: BandData::U16(bands),
        }
    }

    #[test]
    fn linear_mapping_rounds_half_up_and_clamps() {
        let m = BandMapping::Linear { lo: 10.0, hi: 20.0 };
        assert_eq!(m.apply(10.0), 0);
        assert_eq!(m.apply(20.0), 255);
        assert_eq!(m.apply(15.0), 128); // 127.5 + 0.5 = 128
        assert_eq!(m.apply(9.0), 0);
        assert_eq!(m.apply(1e9), 255);
        assert_eq!(BandMapping::Identity.apply(12.5), 13);
        assert_eq!(BandMapping::Zero.apply(99.0), 0);
        assert_eq!(BandMapping::Identity.apply(f64::NAN), 0);
        assert_eq!(BandMapping::Identity.apply(-0.6), 0);
        assert_eq!(BandMapping::Identity.apply(254.49), 254);
        assert_eq!(BandMapping::Identity.apply(254.5), 255);
        // The same as clamp(floor(v + 0.5), 0, 255) everywhere in between.
        for i in -3000..3000 {
            let v = f64::from(i) * 0.1 - 0.05;
            let want = (v + 0.5).floor().clamp(0.0, 255.0) as u8;
            assert_eq!(BandMapping::Identity.apply(v), want, "{v}");
        }
    }

    #[test]
    fn percentile_uses_numpy_lower_and_higher_ranks() {
        // 0..=100: the 2nd percentile (lower) is 2, the 98th (higher) is 98;
        // the nodata value 1000 is left out and written as 0.
        let mut values: Vec<u16> = (0..=100).collect();
        values.push(1000);
        let s = stack(vec![values], 102);
        let mappings = band_mappings(&s, Some(1000.0), Stretch::Percentile).unwrap();
        assert_eq!(mappings, [BandMapping::Linear { lo: 2.0, hi: 98.0 }]);
        let rgb = stretch_to_rgb(&s, Some(1000.0), Stretch::Percentile).unwrap();
        let grey: Vec<u8> = rgb.data.chunks(3).map(|p| p[0]).collect();
        assert!(rgb.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_eq!(grey[2], 0);
        assert_eq!(grey[50], ((48.0f64 * 255.0 / 96.0 + 0.5).floor()) as u8);
        assert_eq!(grey[98], 255);
        assert_eq!(grey[101], 0, "nodata");
    }

    #[test]
    fn minmax_none_and_flat_bands() {
        let s = stack(vec![vec![100, 200, 300], vec![5, 5, 5], vec![0, 255, 7]], 3);
        let m = band_mappings(&s, None, Stretch::Minmax).unwrap();
        assert_eq!(m[0], BandMapping::Linear { lo: 100.0, hi: 300.0 });
        assert_eq!(m[1], BandMapping::Zero, "hi == lo");
        let rgb = stretch_to_rgb(&s, None, Stretch::Minmax).unwrap();
        assert_eq!(rgb.data, [0, 0, 0, 128, 0, 255, 255, 0, 7]);
        let e = stretch_to_rgb(&s, None, Stretch::None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stretch none: band 1 holds the value 300, outside 0..255 (use the percentile or minmax stretch)"
        );
        // Nodata is exempt from the range check.
        let s = stack(vec![vec![0, 65535, 255]], 3);
        let rgb = stretch_to_rgb(&s, Some(65535.0), Stretch::None).unwrap();
        assert_eq!(rgb.data, [0, 0, 0, 0, 0, 0, 255, 255, 255]);
    }

    #[test]
    fn all_nodata_band_is_black() {
        let s = stack(vec![vec![9, 9, 9]], 3);
        for stretch in [Stretch::Percentile, Stretch::Minmax, Stretch::None] {
            assert_eq!(stretch_to_rgb(&s, Some(9.0), stretch).unwrap().data, [0; 9]);
        }
    }

    #[test]
    fn band_count_must_be_one_or_three() {
        let s = stack(vec![vec![1], vec![2]], 1);
        let e = stretch_to_rgb(&s, None, Stretch::Minmax).unwrap_err();
        assert!(
            e.to_string()
                .contains("2 bands given: RGB needs 3 bands, or 1 for grey"),
            "{e}"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("minmax".parse::<Stretch>().unwrap(), Stretch::Minmax);
        let e = "linear".parse::<Stretch>().unwrap_err();
        assert!(
            e.to_string()
                .contains("\"linear\" is not one of percentile, minmax, none"),
            "{e}"
        );
        assert_eq!(Stretch::default_for(SampleType::U8), Stretch::None);
        assert_eq!(Stretch::default_for(SampleType::F32), Stretch::Percentile);
    }
}
