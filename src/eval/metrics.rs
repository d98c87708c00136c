//! The referring-segmentation metrics of the paper (Tables 5-9, 14) and the
//! official meters, which count per-sample true positives, false positives
//! and false negatives and define IoU = tp / (tp + fp + fn):
//!
//! - **oIoU**: total intersection over total union, summed over all samples
//!   (large objects weigh more);
//! - **mIoU**: the mean of the per-sample IoUs;
//! - **P@t** for t in 0.5 ... 0.9: the fraction of samples whose IoU is
//!   strictly greater than t;
//! - oIoU and mIoU per category (Tables 7 and 9).
//!
//! **Empty prediction vs empty ground truth** (union 0): the official
//! `get_IoUs` divides 0 by 0 and gets NaN, which would poison every mean, so
//! it has no usable definition. We count such a sample as IoU 1 (the
//! prediction is exactly right) and it adds nothing to the oIoU totals. It
//! cannot arise from a RISORS annotation the loader keeps (area > 0), only
//! from an annotation whose `area` disagrees with its mask.
//!
//! Everything is counted in integers; thresholds are compared exactly
//! (`10 * I > k * U`), so a sample with IoU exactly 0.7 never passes P@0.7
//! through float rounding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The thresholds of P@t, in tenths.
pub const THRESHOLD_TENTHS: [u64; 5] = [5, 6, 7, 8, 9];

/// Intersection and union of one prediction with its ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleScore {
    pub intersection: u64,
    pub union: u64,
}

impl SampleScore {
    /// Scores two row-major masks of the same size (nonzero = foreground);
    /// a shorter mask counts as background where it has no pixels.
    pub fn of(pred: &[u8], gt: &[u8]) -> Self {
        let n = pred.len().max(gt.len());
        let at = |m: &[u8], i: usize| m.get(i).is_some_and(|&v| v != 0);
        let (mut intersection, mut union) = (0u64, 0u64);
        for i in 0..n {
            let (p, g) = (at(pred, i), at(gt, i));
            intersection += u64::from(p && g);
            union += u64::from(p || g);
        }
        Self { intersection, union }
    }

    /// IoU, with an empty union counting as a perfect 1 (see the module doc).
    pub fn iou(&self) -> f64 {
        if self.union == 0 {
            1.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }

    /// Whether IoU > tenths / 10, exactly.
    pub fn passes(&self, tenths: u64) -> bool {
        if self.union == 0 {
            return true;
        }
        10 * u128::from(self.intersection) > u128::from(tenths) * u128::from(self.union)
    }
}

/// Running totals for one group of samples.
#[derive(Debug, Clone, Default)]
struct Totals {
    count: u64,
    intersection: u128,
    union: u128,
    iou_sum: f64,
    passed: [u64; THRESHOLD_TENTHS.len()],
}

impl Totals {
    fn add(&mut self, s: SampleScore) {
        self.count += 1;
        self.intersection += u128::from(s.intersection);
        self.union += u128::from(s.union);
        self.iou_sum += s.iou();
        for (p, &t) in self.passed.iter_mut().zip(&THRESHOLD_TENTHS) {
            *p += u64::from(s.passes(t));
        }
    }

    /// oIoU; an all-empty set (no union at all) is perfect like one sample.
    fn oiou(&self) -> f64 {
        if self.union == 0 {
            if self.count == 0 {
                0.0
            } else {
                1.0
            }
        } else {
            self.intersection as f64 / self.union as f64
        }
    }

    fn fraction(&self, n: f64) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            n / self.count as f64
        }
    }

    fn category(&self) -> CategoryMetrics {
        CategoryMetrics {
            count: self.count,
            oiou: self.oiou(),
            miou: self.fraction(self.iou_sum),
        }
    }
}

/// oIoU / mIoU of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryMetrics {
    pub count: u64,
    #[serde(rename = "oIoU")]
    pub oiou: f64,
    #[serde(rename = "mIoU")]
    pub miou: f64,
}

/// All metrics of a set of samples, as fractions in [0, 1]. An empty set
/// reports zeros with `count` 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub count: u64,
    #[serde(rename = "oIoU")]
    pub oiou: f64,
    #[serde(rename = "mIoU")]
    pub miou: f64,
    #[serde(rename = "P@0.5")]
    pub p50: f64,
    #[serde(rename = "P@0.6")]
    pub p60: f64,
    #[serde(rename = "P@0.7")]
    pub p70: f64,
    #[serde(rename = "P@0.8")]
    pub p80: f64,
    #[serde(rename = "P@0.9")]
    pub p90: f64,
    pub per_category: BTreeMap<String, CategoryMetrics>,
}

impl Metrics {
    /// P@0.5 ... P@0.9 in threshold order.
    pub fn precisions(&self) -> [f64; 5] {
        [self.p50, self.p60, self.p70, self.p80, self.p90]
    }
}

/// Accumulates sample scores overall and per category.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    all: Totals,
    per_category: BTreeMap<String, Totals>,
}

impl Meter {
    pub fn add(&mut self, category: &str, score: SampleScore) {
        self.all.add(score);
        self.per_category.entry(category.to_string()).or_default().add(score);
    }

    pub fn count(&self) -> u64 {
        self.all.count
    }

    pub fn metrics(&self) -> Metrics {
        let t = &self.all;
        let p = t.passed.map(|n| t.fraction(n as f64));
        Metrics {
            count: t.count,
            oiou: t.oiou(),
            miou: t.fraction(t.iou_sum),
            p50: p[0],
            p60: p[1],
            p70: p[2],
            p80: p[3],
            p90: p[4],
            per_category: self
                .per_category
                .iter()
                .map(|(k, v)| (k.clone(), v.category()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_thresholds() {
        let s = SampleScore {
            intersection: 7,
            union: 10,
        };
        assert!(s.passes(6));
        assert!(!s.passes(7), "IoU exactly 0.7 is not > 0.7");
        let empty = SampleScore::default();
        assert_eq!(empty.iou(), 1.0);
        assert!(empty.passes(9));
    }

    #[test]
    fn score_of_masks() {
        let s = SampleScore::of(&[1, 1, 0, 0], &[0, 1, 1, 0]);
        assert_eq!(
            s,
            SampleScore {
                intersection: 1,
                union: 3
            }
        );
    }
}
