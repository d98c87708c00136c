//! Exact order statistics of a band's valid values without copying them:
//! radix selection on order-preserving keys, one histogram of 16 key bits
//! per pass (one pass for 8- and 16-bit samples, two for 32-bit, four for
//! f64). A sort or `select_nth_unstable` would need a copy of the valid
//! values, another 200 MB for one band of a 10,000 x 10,000 u16 raster.

use super::samples::Sample;

/// Key bits resolved per pass over the data.
const DIGIT_BITS: u32 = 16;

/// The values at the 0-based `ranks` that `ranks_for(n)` gives for `n`
/// valid values (sorted ascending, nodata and NaN left out); `None` when no
/// value is valid. Every rank must be below `n`.
pub(crate) fn select_ranks<T: Sample>(
    data: &[T],
    nodata: Option<T>,
    ranks_for: impl FnOnce(u64) -> Vec<u64>,
) -> Option<Vec<T>> {
    let mut consumed = 0;
    // (rank still to find inside the prefix's bucket, key prefix so far)
    let mut targets: Vec<(u64, u64)> = Vec::new();
    let mut ranks_for = Some(ranks_for);
    while consumed < T::KEY_BITS {
        let digit_bits = DIGIT_BITS.min(T::KEY_BITS - consumed);
        let shift = T::KEY_BITS - consumed - digit_bits;
        let prefixes = distinct_prefixes(&targets);
        let histograms = histograms(data, nodata, consumed, shift, digit_bits, &prefixes);
        if let Some(ranks_for) = ranks_for.take() {
            let n: u64 = histograms[0].iter().sum();
            if n == 0 {
                return None;
            }
            targets = ranks_for(n).into_iter().map(|rank| (rank.min(n - 1), 0)).collect();
        }
        for (rank, prefix) in &mut targets {
            let histogram = &histograms[prefixes.iter().position(|p| p == prefix).unwrap_or(0)];
            let (digit, below) = bucket_of(histogram, *rank);
            *rank -= below;
            *prefix = (*prefix << digit_bits) | digit;
        }
        consumed += digit_bits;
    }
    Some(targets.into_iter().map(|(_, key)| T::from_order_key(key)).collect())
}

/// The smallest and the largest valid value; `None` when none is valid.
pub(crate) fn min_max<T: Sample>(data: &[T], nodata: Option<T>) -> Option<(T, T)> {
    let mut keys = data.iter().filter(|v| v.is_valid(nodata)).map(|v| v.order_key());
    let first = keys.next()?;
    let (lo, hi) = keys.fold((first, first), |(lo, hi), k| (lo.min(k), hi.max(k)));
    Some((T::from_order_key(lo), T::from_order_key(hi)))
}

/// numpy's `percentile(a, q, method="lower")` rank: `floor((n - 1) * q / 100)`
/// with `q / 100` rounded to f64 first, as numpy divides.
pub(crate) fn rank_lower(n: u64, q: f64) -> u64 {
    ((n - 1) as f64 * (q / 100.0)).floor() as u64
}

/// numpy's `method="higher"` rank: `ceil((n - 1) * q / 100)`.
pub(crate) fn rank_higher(n: u64, q: f64) -> u64 {
    ((n - 1) as f64 * (q / 100.0)).ceil() as u64
}

fn distinct_prefixes(targets: &[(u64, u64)]) -> Vec<u64> {
    let mut prefixes: Vec<u64> = targets.iter().map(|&(_, p)| p).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    if prefixes.is_empty() {
        prefixes.push(0);
    }
    prefixes
}

/// One histogram of the next `digit_bits` key bits (below `shift`) per
/// prefix, counting the valid values whose higher bits equal the prefix.
fn histograms<T: Sample>(
    data: &[T],
    nodata: Option<T>,
    consumed: u32,
    shift: u32,
    digit_bits: u32,
    prefixes: &[u64],
) -> Vec<Vec<u64>> {
    let mask = (1u64 << digit_bits) - 1;
    let mut histograms = vec![vec![0u64; 1 << digit_bits]; prefixes.len()];
    for &v in data {
        if !v.is_valid(nodata) {
            continue;
        }
        let key = v.order_key();
        // On the first pass every key has the empty prefix (and a shift by
        // the key's full width would overflow).
        let high = if consumed == 0 { 0 } else { key >> (shift + digit_bits) };
        let digit = ((key >> shift) & mask) as usize;
        for (prefix, histogram) in prefixes.iter().zip(histograms.iter_mut()) {
            if *prefix == high {
                histogram[digit] += 1;
            }
        }
    }
    histograms
}

/// The bucket holding the value of 0-based `rank`, and the count of values
/// in the buckets below it.
fn bucket_of(histogram: &[u64], rank: u64) -> (u64, u64) {
    let mut below = 0;
    for (digit, &count) in histogram.iter().enumerate() {
        if rank < below + count {
            return (digit as u64, below);
        }
        below += count;
    }
    // Unreachable while rank < the histogram's total.
    (histogram.len() as u64 - 1, below)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: sort a copy and index it.
    fn sorted_valid<T: Sample + PartialOrd>(data: &[T], nodata: Option<T>) -> Vec<T> {
        let mut v: Vec<T> = data.iter().copied().filter(|v| v.is_valid(nodata)).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    fn check<T: Sample + PartialOrd + std::fmt::Debug>(data: &[T], nodata: Option<T>) {
        let sorted = sorted_valid(data, nodata);
        let n = sorted.len() as u64;
        let got = select_ranks(data, nodata, |count| {
            assert_eq!(count, n);
            (0..count).collect()
        });
        if n == 0 {
            assert!(got.is_none());
            return;
        }
        assert_eq!(got.unwrap(), sorted);
        assert_eq!(min_max(data, nodata), Some((sorted[0], sorted[sorted.len() - 1])));
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn noise(len: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            })
            .collect()
    }

    #[test]
    fn every_rank_matches_a_sort_for_every_type() {
        let r = noise(300, 7);
        check(&r.iter().map(|&v| v as u8).collect::<Vec<_>>(), Some(3));
        check(&r.iter().map(|&v| (v % 50) as u16).collect::<Vec<_>>(), Some(0));
        check(&r.iter().map(|&v| v as i16).collect::<Vec<_>>(), None);
        check(&r.iter().map(|&v| (v >> 20) as u32).collect::<Vec<_>>(), None);
        check(&r.iter().map(|&v| v as i32).collect::<Vec<_>>(), Some(5));
        let floats: Vec<f32> = r.iter().map(|&v| (v as i64 as f64 / 1e15) as f32).collect();
        let mut with_nan = floats.clone();
        with_nan[3] = f32::NAN;
        with_nan[9] = -9999.0;
        check(&with_nan, Some(-9999.0));
        check(&r.iter().map(|&v| v as i64 as f64 * 1e-300).collect::<Vec<_>>(), None);
    }

    #[test]
    fn all_nodata_has_no_statistics() {
        check(&[7u16, 7, 7], Some(7));
        assert!(min_max(&[f32::NAN], None).is_none());
    }

    #[test]
    fn numpy_ranks() {
        // numpy.percentile(np.arange(n), q, method="lower"/"higher") for
        // n = 1, 2, 51, 101, 1000: the index is the value.
        let lower: Vec<u64> = [1, 2, 51, 101, 1000].iter().map(|&n| rank_lower(n, 2.0)).collect();
        let higher: Vec<u64> = [1, 2, 51, 101, 1000].iter().map(|&n| rank_higher(n, 98.0)).collect();
        assert_eq!(lower, [0, 0, 1, 2, 19]);
        assert_eq!(higher, [0, 1, 49, 98, 980]);
    }
}
