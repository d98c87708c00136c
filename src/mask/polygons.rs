//! Outer contours of a binary mask as COCO-style polygons
//! (`[x0, y0, x1, y1, ...]` in image pixels), the way
//! `cv2.findContours(mask, RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)` gives them:
//! one polygon per 8-connected object, holes ignored, objects lying inside
//! another object's hole left out, straight runs reduced to their ends.
//! Contours of fewer than 3 points (single pixels, one-pixel lines) are
//! dropped, as COCO tools reject such polygons.

/// Neighbour offsets, clockwise on screen (y down), starting east.
const DIRS: [(isize, isize); 8] = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)];
/// Index of west in [`DIRS`].
const WEST: usize = 4;

/// A row-major mask view with out-of-bounds reading as background.
struct Grid<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
}

impl Grid<'_> {
    fn at(&self, x: isize, y: isize) -> bool {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return false;
        }
        self.data[y as usize * self.width + x as usize] != 0
    }
}

/// Outer polygons of `mask` (`height x width`, row-major, nonzero is
/// foreground). A short `mask` reads as background where missing.
pub fn outer_polygons(mask: &[u8], width: usize, height: usize) -> Vec<Vec<f64>> {
    let len = width * height;
    let mut data = vec![0u8; len];
    for (d, &m) in data.iter_mut().zip(mask) {
        *d = u8::from(m != 0);
    }
    fill_holes(&mut data, width, height);
    let grid = Grid {
        data: &data,
        width,
        height,
    };
    let mut seen = vec![false; len];
    let mut polygons = Vec::new();
    for start in 0..len {
        if data[start] == 0 || seen[start] {
            continue;
        }
        // Raster order: the first pixel of an object has background to its
        // west, which is where outer-border following starts.
        let (x, y) = ((start % width) as isize, (start / width) as isize);
        let contour = simplify(&trace(&grid, (x, y)));
        mark_object(&grid, &mut seen, start);
        if contour.len() >= 3 {
            polygons.push(contour.iter().flat_map(|&(x, y)| [x as f64, y as f64]).collect());
        }
    }
    polygons
}

/// Sets every background pixel not 4-connected to the border (the holes).
fn fill_holes(data: &mut [u8], width: usize, height: usize) {
    const OUTSIDE: u8 = 2;
    let mut stack: Vec<usize> = Vec::new();
    let border = (0..width).flat_map(|x| [x, (height.saturating_sub(1)) * width + x]);
    let sides = (0..height).flat_map(|y| [y * width, y * width + width.saturating_sub(1)]);
    for i in border.chain(sides) {
        if i < data.len() && data[i] == 0 {
            data[i] = OUTSIDE;
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = (i % width, i / width);
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < width).then(|| i + 1),
            (y > 0).then(|| i - width),
            (y + 1 < height).then(|| i + width),
        ];
        for n in neighbours.into_iter().flatten() {
            if data[n] == 0 {
                data[n] = OUTSIDE;
                stack.push(n);
            }
        }
    }
    for v in data.iter_mut() {
        *v = u8::from(*v != OUTSIDE);
    }
}

/// Marks the 8-connected object containing `start` as seen.
fn mark_object(grid: &Grid, seen: &mut [bool], start: usize) {
    let mut stack = vec![start];
    seen[start] = true;
    while let Some(i) = stack.pop() {
        let (x, y) = ((i % grid.width) as isize, (i / grid.width) as isize);
        for (dx, dy) in DIRS {
            let (nx, ny) = (x + dx, y + dy);
            if grid.at(nx, ny) {
                let n = ny as usize * grid.width + nx as usize;
                if !seen[n] {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
    }
}

fn step((x, y): (isize, isize), d: usize) -> (isize, isize) {
    (x + DIRS[d].0, y + DIRS[d].1)
}

fn direction(from: (isize, isize), to: (isize, isize)) -> usize {
    let delta = (to.0 - from.0, to.1 - from.1);
    DIRS.iter().position(|&d| d == delta).unwrap_or(WEST)
}

/// Suzuki & Abe outer border following from `start`, whose west neighbour
/// is background. Returns the border pixels in order.
fn trace(grid: &Grid, start: (isize, isize)) -> Vec<(isize, isize)> {
    // Clockwise from west: the first foreground neighbour.
    let Some(first) = (0..8)
        .map(|k| step(start, (WEST + k) % 8))
        .find(|&(x, y)| grid.at(x, y))
    else {
        return vec![start];
    };
    let mut contour = Vec::new();
    let (mut prev, mut cur) = (first, start);
    // Each border pixel is visited at most 4 times; the bound only guards
    // against a logic error turning into an endless loop.
    let limit = 4 * grid.width * grid.height + 8;
    for _ in 0..limit {
        contour.push(cur);
        // Counter-clockwise from the pixel after `prev`.
        let back = direction(cur, prev);
        let next = (1..=8)
            .map(|k| step(cur, (back + 8 - k) % 8))
            .find(|&(x, y)| grid.at(x, y))
            .unwrap_or(prev);
        if next == start && cur == first {
            break;
        }
        prev = cur;
        cur = next;
    }
    contour
}

/// Keeps only the points where the chain changes direction.
fn simplify(contour: &[(isize, isize)]) -> Vec<(isize, isize)> {
    let n = contour.len();
    if n < 3 {
        return contour.to_vec();
    }
    (0..n)
        .filter(|&i| {
            let (p, c, q) = (contour[(i + n - 1) % n], contour[i], contour[(i + 1) % n]);
            (c.0 - p.0, c.1 - p.1) != (q.0 - c.0, q.1 - c.1)
        })
        .map(|i| contour[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (data, w, rows.len())
    }

    fn points(poly: &[f64]) -> Vec<(i64, i64)> {
        poly.chunks(2).map(|c| (c[0] as i64, c[1] as i64)).collect()
    }

    #[test]
    fn rectangle_gives_its_four_corners() {
        let (m, w, h) = mask(&["......", ".####.", ".####.", ".####.", "......"]);
        let polys = outer_polygons(&m, w, h);
        assert_eq!(polys.len(), 1);
        let mut pts = points(&polys[0]);
        pts.sort();
        assert_eq!(pts, vec![(1, 1), (1, 3), (4, 1), (4, 3)]);
    }

    #[test]
    fn holes_are_ignored_and_nested_objects_dropped() {
        let (m, w, h) = mask(&[
            "#######", "#.....#", "#.###.#", "#.###.#", "#.###.#", "#.....#", "#######",
        ]);
        let polys = outer_polygons(&m, w, h);
        assert_eq!(polys.len(), 1, "{polys:?}");
        let mut pts = points(&polys[0]);
        pts.sort();
        assert_eq!(pts, vec![(0, 0), (0, 6), (6, 0), (6, 6)]);
    }

    #[test]
    fn separate_objects_and_tiny_ones() {
        let (m, w, h) = mask(&["##....#", "##.....", ".......", "....###", "....###"]);
        let polys = outer_polygons(&m, w, h);
        // The single pixel at the top right is too small for a polygon.
        assert_eq!(polys.len(), 2, "{polys:?}");
        assert!(polys.iter().all(|p| p.len() >= 6 && p.len().is_multiple_of(2)));
    }

    #[test]
    fn diagonal_pixels_are_one_object() {
        let (m, w, h) = mask(&["#...", ".#..", "..#.", "...#", "..##"]);
        let polys = outer_polygons(&m, w, h);
        assert_eq!(polys.len(), 1, "{polys:?}");
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert!(outer_polygons(&[], 0, 0).is_empty());
        assert!(outer_polygons(&[0; 12], 4, 3).is_empty());
        assert!(outer_polygons(&[1; 3], 4, 3).is_empty(), "a 3-pixel line has no area");
        let full = outer_polygons(&[1; 12], 4, 3);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), 8);
    }
}
