//! The correction-click sampler of the paper's interactive protocol
//! (Table 14): the official evaluation's "center" sampling
//! (`sample_one_point_from_error_center` in `rsam/modeling/sam2_utils.py`,
//! itself RITM's clicker), ported from its definition:
//!
//! 1. false negatives (GT and not predicted) and false positives (predicted
//!    and not GT) are two error maps;
//! 2. each is padded with a one-pixel zero border and given its exact
//!    Euclidean distance transform (`cv2.distanceTransform(.., DIST_L2,
//!    DIST_MASK_PRECISE)`), so an error pixel on the image edge is at
//!    distance 1, like one next to correct pixels;
//! 3. in each map the farthest pixel is taken, the first one in row-major
//!    order on ties (`np.argmax` of the flattened map);
//! 4. the click is positive at the false-negative maximum if that distance is
//!    strictly greater than the false-positive one, negative at the
//!    false-positive maximum otherwise (so equal distances give a negative
//!    click);
//! 5. the click is placed at `(x, y) = (column, row)` of that pixel, with no
//!    half-pixel offset (the official code writes `idx % W` and `idx // W`).
//!
//! The official evaluation samples on masks resized to the model's square
//! input (S x S); here, as for the metrics, the error is taken at the
//! annotation's resolution and the click scaled to image pixels, so that
//! clicks and scores refer to the same pixels the user annotated.
//!
//! When there is no error at all the official code would still place a
//! negative click at pixel (0, 0) (the argmax of an all-zero map); we place
//! none instead ([`next_click`] returns `None`), since a prediction that is
//! already exact has nothing to correct and a click there could only spoil it.
//!
//! Distances are compared as exact integer squared distances. OpenCV returns
//! `f32` square roots of the same integers; these keep distinct integers
//! distinct (and so give the same choice) as long as distances stay below
//! 2048 pixels, i.e. for any error region less than 4096 pixels across.

/// A correction click at a pixel of the ground-truth grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Click {
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// True for a positive click (add this region), false for a negative one.
    pub positive: bool,
}

/// The next click for a prediction against its ground truth (row-major
/// `height x width` masks, nonzero = foreground), or `None` when the
/// prediction has no error. Masks shorter than `width * height` read as
/// background where they have no pixels.
pub fn next_click(pred: &[u8], gt: &[u8], width: usize, height: usize) -> Option<Click> {
    let n = width.checked_mul(height)?;
    let at = |m: &[u8], i: usize| m.get(i).is_some_and(|&v| v != 0);
    let false_neg: Vec<bool> = (0..n).map(|i| at(gt, i) && !at(pred, i)).collect();
    let false_pos: Vec<bool> = (0..n).map(|i| !at(gt, i) && at(pred, i)).collect();
    let (fn_idx, fn_d) = first_argmax(&squared_edt(&false_neg, width, height));
    let (fp_idx, fp_d) = first_argmax(&squared_edt(&false_pos, width, height));
    if fn_d == 0 && fp_d == 0 {
        return None;
    }
    let positive = fn_d > fp_d;
    let idx = if positive { fn_idx } else { fp_idx };
    Some(Click {
        x: (idx % width) as u32,
        y: (idx / width) as u32,
        positive,
    })
}

/// Index and value of the first largest element (`np.argmax`); (0, 0) for
/// an empty slice.
fn first_argmax(values: &[u64]) -> (usize, u64) {
    let mut best = (0, 0);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Exact squared Euclidean distance from every pixel of a row-major
/// `height x width` map to the nearest `false` pixel, where everything
/// outside the map counts as `false` (the one-pixel zero border of the
/// official sampler). `false` pixels get 0.
///
/// Hand-written (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
/// Functions", 2012) because the protocol needs exactly this variant - exact
/// squared distances, a zero border, integer results comparable without
/// float error - and no maintained Rust crate offers it: image-processing
/// crates ship chamfer / L1 / L-infinity transforms or float-only results.
/// Linear time: one pass down the columns, one lower envelope of parabolas
/// per row, all in integers (intersections compared as exact fractions).
pub fn squared_edt(foreground: &[bool], width: usize, height: usize) -> Vec<u64> {
    let (pw, ph) = (width + 2, height + 2);
    let inside = |x: usize, y: usize| {
        (1..=width).contains(&x)
            && (1..=height).contains(&y)
            && foreground.get((y - 1) * width + (x - 1)) == Some(&true)
    };
    // Column pass on the padded grid: squared distance to the nearest zero in
    // the same column (finite because the border rows are zero).
    let mut column = vec![0i64; pw * ph];
    for x in 0..pw {
        let mut last_zero: Option<usize> = None;
        for y in 0..ph {
            if !inside(x, y) {
                last_zero = Some(y);
            }
            column[y * pw + x] = last_zero.map_or(i64::MAX, |z| (y - z) as i64);
        }
        let mut next_zero: Option<usize> = None;
        for y in (0..ph).rev() {
            if !inside(x, y) {
                next_zero = Some(y);
            }
            let down = next_zero.map_or(i64::MAX, |z| (z - y) as i64);
            let d = column[y * pw + x].min(down);
            column[y * pw + x] = d.saturating_mul(d);
        }
    }
    // Row pass on the inner rows, cropped back to the map.
    let mut out = Vec::with_capacity(width * height);
    let mut envelope = Envelope::default();
    let mut row_out = vec![0i64; pw];
    for y in 1..=height {
        envelope.transform(&column[y * pw..(y + 1) * pw], &mut row_out);
        out.extend(row_out[1..=width].iter().map(|&d| d as u64));
    }
    out
}

/// An exact rational `num / den` with `den > 0`.
#[derive(Debug, Clone, Copy)]
struct Frac {
    num: i128,
    den: i128,
}

impl Frac {
    fn le(self, other: Frac) -> bool {
        self.num * other.den <= other.num * self.den
    }

    fn lt_int(self, q: i128) -> bool {
        self.num < q * self.den
    }
}

/// Scratch space for the 1-D transform `d(q) = min_v (q - v)^2 + f(v)`.
#[derive(Debug, Default)]
struct Envelope {
    /// Apexes of the parabolas on the lower envelope.
    apex: Vec<usize>,
    /// `bound[i]`: where parabola `apex[i + 1]` starts to be lowest.
    bound: Vec<Frac>,
}

impl Envelope {
    /// `f` must be finite (the padded column pass guarantees it: the border
    /// columns are zero).
    fn transform(&mut self, f: &[i64], out: &mut [i64]) {
        self.apex.clear();
        self.bound.clear();
        if f.is_empty() {
            return;
        }
        self.apex.push(0);
        for q in 1..f.len() {
            loop {
                let p = *self.apex.last().unwrap_or(&0);
                let s = intersection(f, p, q);
                // Parabola p is hidden when the new one overtakes it before
                // p itself became lowest; the first parabola is never hidden.
                match self.bound.last() {
                    Some(&start) if s.le(start) => {
                        self.apex.pop();
                        self.bound.pop();
                    }
                    _ => {
                        self.bound.push(s);
                        self.apex.push(q);
                        break;
                    }
                }
            }
        }
        let mut k = 0;
        for (q, d) in out.iter_mut().enumerate().take(f.len()) {
            while k < self.bound.len() && self.bound[k].lt_int(q as i128) {
                k += 1;
            }
            let v = self.apex[k];
            let dq = q as i64 - v as i64;
            *d = dq * dq + f[v];
        }
    }
}

/// Where the parabolas with apexes `p < q` cross:
/// `((f[q] + q^2) - (f[p] + p^2)) / (2 (q - p))`.
fn intersection(f: &[i64], p: usize, q: usize) -> Frac {
    let (pi, qi) = (p as i128, q as i128);
    Frac {
        num: (i128::from(f[q]) + qi * qi) - (i128::from(f[p]) + pi * pi),
        den: 2 * (qi - pi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_pixel_and_border() {
        // A 1x1 error pixel is one pixel from the zero border.
        assert_eq!(squared_edt(&[true], 1, 1), vec![1]);
        // A full 3x3 map: the centre is 2 from the border.
        let d = squared_edt(&[true; 9], 3, 3);
        assert_eq!(d, vec![1, 1, 1, 1, 4, 1, 1, 1, 1]);
    }

    #[test]
    fn no_error_no_click() {
        assert_eq!(next_click(&[1, 0], &[1, 0], 2, 1), None);
    }
}
