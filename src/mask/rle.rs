//! COCO compressed run-length encoding (RLE), bit-for-bit compatible with
//! `pycocotools.mask.encode` / `decode`.
//!
//! The COCO format stores a binary mask as alternating run lengths over the
//! pixels in **column-major** (Fortran) order, always starting with a
//! background run (which may be empty). The run lengths are then packed into
//! a printable string: each run (from the fourth on, delta-coded against the
//! run two places earlier, i.e. the previous run of the same colour) is
//! written as little-endian groups of 5 bits, one character per group, with
//! bit 5 of the group meaning "another group follows" and the top data bit of
//! the last group being the sign. Adding 48 (`'0'`) to each 6-bit group keeps
//! the characters in the printable range `'0'..='o'`.

use serde::{Deserialize, Serialize};

use crate::{Result, RsamError};

/// A COCO compressed RLE, as stored in COCO JSON annotations and returned by
/// `pycocotools.mask.encode` (with `counts` decoded from bytes to a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]` of the mask, in COCO's order.
    pub size: [u32; 2],
    /// The compressed run lengths.
    pub counts: String,
}

/// Offset added to every 6-bit group so that it becomes a printable character.
const CHAR_OFFSET: u8 = 48;
/// Bit meaning "more groups follow" in a 6-bit group.
const MORE_BIT: u8 = 0x20;
/// Top data bit of a 5-bit group; on the last group it carries the sign.
const SIGN_BIT: u8 = 0x10;
/// Largest number of 5-bit groups one run value may use when decoding: 12
/// groups are 60 bits, which covers every run of a `u32 x u32` mask that a
/// 64-bit encoder (like pycocotools' `long`) can emit, and keeps the shifts
/// below inside `i64`.
const MAX_GROUPS: u32 = 12;

/// Encodes a row-major mask (`mask[y * width + x]`, nonzero = foreground) as
/// a COCO compressed RLE, producing exactly the string pycocotools produces.
///
/// The mask is treated as `height x width`: pixels missing at the end of a
/// too-short `mask` count as background and extra trailing bytes are ignored,
/// so this never panics. COCO sizes are `u32`; a dimension above `u32::MAX`
/// (not a real image) is clamped to it, both in `size` and in the runs, so
/// the result is always self-consistent.
pub fn encode(mask: &[u8], height: usize, width: usize) -> Rle {
    let h = u32::try_from(height).unwrap_or(u32::MAX);
    let w = u32::try_from(width).unwrap_or(u32::MAX);

    // Runs over the column-major order, starting with a background run that
    // may be empty (pycocotools' `rleEncode` starts with `p = 0`).
    let mut runs: Vec<u64> = Vec::new();
    let mut current = false;
    let mut len: u64 = 0;
    for x in 0..w as usize {
        for y in 0..h as usize {
            // Out-of-range pixels (short mask, or an index that would
            // overflow) read as background.
            let fg = y
                .checked_mul(width)
                .and_then(|row| row.checked_add(x))
                .and_then(|i| mask.get(i))
                .is_some_and(|&v| v != 0);
            if fg != current {
                runs.push(len);
                len = 0;
                current = fg;
            }
            len += 1;
        }
    }
    runs.push(len);

    Rle {
        size: [h, w],
        counts: compress_runs(&runs),
    }
}

/// Packs run lengths into the COCO string form (pycocotools' `rleToString`).
fn compress_runs(runs: &[u64]) -> String {
    let mut out = String::with_capacity(runs.len() * 2);
    for (i, &run) in runs.iter().enumerate() {
        // i128 holds every u64 run and every difference of two of them
        // exactly; for values that fit in i64 (all real masks) the arithmetic
        // shifts below give the same bits pycocotools' `long` gives.
        let mut x = i128::from(run);
        // pycocotools delta-codes from the fourth run on (`i > 2`), not the
        // third: keep that quirk or strings differ.
        if i > 2 {
            x -= i128::from(runs[i - 2]);
        }
        loop {
            // `x & 0x1f` is always in 0..32, so the cast is lossless.
            let mut c = (x & 0x1f) as u8;
            // Arithmetic shift: negative deltas converge to -1, not 0.
            x >>= 5;
            let more = if c & SIGN_BIT != 0 { x != -1 } else { x != 0 };
            if more {
                c |= MORE_BIT;
            }
            out.push(char::from(c + CHAR_OFFSET));
            if !more {
                break;
            }
        }
    }
    out
}

/// Unpacks the COCO string form into run lengths (pycocotools'
/// `rleFrString`), rejecting anything pycocotools would misread.
fn decompress_runs(counts: &str) -> Result<Vec<u64>> {
    let mut runs: Vec<u64> = Vec::new();
    let mut chars = counts.char_indices().peekable();
    while let Some(&(start, _)) = chars.peek() {
        let mut x: i64 = 0;
        let mut groups: u32 = 0;
        loop {
            let Some((pos, ch)) = chars.next() else {
                return Err(RsamError::MaskInput(format!(
                    "RLE counts are truncated: the run value starting at byte {start} \
                     ends with a continuation character"
                )));
            };
            let c = u8::try_from(ch)
                .ok()
                .and_then(|b| b.checked_sub(CHAR_OFFSET))
                .filter(|&c| c < 64)
                .ok_or_else(|| {
                    RsamError::MaskInput(format!(
                        "RLE counts contain an invalid character {ch:?} at byte {pos} \
                         (allowed: '0'..='o')"
                    ))
                })?;
            if groups == MAX_GROUPS {
                return Err(RsamError::MaskInput(format!(
                    "RLE counts: the run value starting at byte {start} is longer than \
                     {MAX_GROUPS} characters (too large)"
                )));
            }
            x |= i64::from(c & 0x1f) << (5 * groups);
            groups += 1;
            if c & MORE_BIT == 0 {
                // Sign-extend from the top data bit of the last group.
                if c & SIGN_BIT != 0 {
                    x |= -1i64 << (5 * groups);
                }
                break;
            }
        }
        // Same `> 2` delta rule as the encoder.
        let run = if runs.len() > 2 {
            let base = runs[runs.len() - 2];
            i128::from(x) + i128::from(base)
        } else {
            i128::from(x)
        };
        let run = u64::try_from(run).map_err(|_| {
            RsamError::MaskInput(format!(
                "RLE counts: run {} (starting at byte {start}) has the invalid length {run}",
                runs.len()
            ))
        })?;
        runs.push(run);
    }
    Ok(runs)
}

/// Decodes a COCO compressed RLE into a row-major mask of 0/1 bytes
/// (`mask[y * width + x]`), the inverse of [`encode`].
///
/// Fails with [`RsamError::MaskInput`] when `counts` holds a character
/// outside `'0'..='o'`, ends inside a run value, encodes a negative or
/// oversized run, or when the runs do not sum exactly to `height * width`.
/// Nothing is allocated for the mask until the runs have been validated, and
/// the allocation itself is fallible, so a hostile size cannot abort.
pub fn decode(rle: &Rle) -> Result<Vec<u8>> {
    let [h, w] = rle.size;
    let (h, w) = (u64::from(h), u64::from(w));
    // Two u32 values multiply without overflow in u64.
    let total = h * w;

    let runs = decompress_runs(&rle.counts)?;
    let sum = runs
        .iter()
        .try_fold(0u64, |acc, &r| acc.checked_add(r))
        .ok_or_else(|| {
            RsamError::MaskInput(format!(
                "RLE runs sum to more than 2^64 pixels, but size [{h}, {w}] has {total} pixels"
            ))
        })?;
    if sum != total {
        return Err(RsamError::MaskInput(format!(
            "RLE runs sum to {sum} pixels, but size [{h}, {w}] has {total} pixels"
        )));
    }

    let too_large = || RsamError::MaskInput(format!("RLE size [{h}, {w}] ({total} pixels) is too large to allocate"));
    let len = usize::try_from(total).map_err(|_| too_large())?;
    let mut mask: Vec<u8> = Vec::new();
    mask.try_reserve_exact(len).map_err(|_| too_large())?;
    mask.resize(len, 0);

    // Both fit in usize because their product does (and neither is 0 when
    // there is any pixel to write).
    let (h, w) = (h as usize, w as usize);
    // Walk the runs in column-major order; only foreground runs need writing
    // since the buffer starts as background.
    let mut pos: usize = 0;
    for (i, &run) in runs.iter().enumerate() {
        // Each run is at most `total`, which fits in usize.
        let run = run as usize;
        if i % 2 == 1 {
            for p in pos..pos + run {
                let (x, y) = (p / h, p % h);
                mask[y * w + x] = 1;
            }
        }
        pos += run;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_full() {
        // pycocotools: a 2x3 all-background mask is one run of 6 -> "6".
        let rle = encode(&[0; 6], 2, 3);
        assert_eq!(rle.counts, "6");
        assert_eq!(rle.size, [2, 3]);
        assert_eq!(decode(&rle).unwrap(), vec![0; 6]);
        // All foreground: an empty background run, then 6.
        let rle = encode(&[1; 6], 2, 3);
        assert_eq!(rle.counts, "06");
        assert_eq!(decode(&rle).unwrap(), vec![1; 6]);
    }

    #[test]
    fn zero_sized_mask() {
        let rle = encode(&[], 0, 0);
        assert_eq!(rle.counts, "0");
        assert_eq!(decode(&rle).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn column_major_order() {
        // Row-major 2x2 [[0, 1], [0, 1]]: in column-major order that is
        // 0,0,1,1 -> runs [2, 2] -> "22".
        let rle = encode(&[0, 1, 0, 1], 2, 2);
        assert_eq!(rle.counts, "22");
        assert_eq!(decode(&rle).unwrap(), vec![0, 1, 0, 1]);
    }

    #[test]
    fn large_and_negative_values_round_trip() {
        // Runs that need several groups and negative deltas.
        let runs = [100_000u64, 3, 40, 1, 7, 123_456, 0, 5];
        let s = compress_runs(&runs);
        assert_eq!(decompress_runs(&s).unwrap(), runs);
    }

    #[test]
    fn short_mask_reads_as_background() {
        let rle = encode(&[1], 2, 2);
        assert_eq!(decode(&rle).unwrap(), vec![1, 0, 0, 0]);
    }
}
