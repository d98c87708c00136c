//! Polygons with holes from a binary mask, the way GDAL's polygonize and
//! `rasterio.features.shapes` draw them: vertices on pixel *corners* (ring
//! edges run along pixel edges), one polygon per 4-connected foreground
//! component, collinear vertices removed. Filling the polygons by the
//! pixel-centre rule gives back exactly the mask.
//!
//! Boundary edges are walked with the foreground on the right. At a corner
//! where two foreground pixels touch only diagonally (a saddle) the walk
//! turns right, hugging the current pixel, so diagonal neighbours stay apart
//! (4-connectivity). A ring that comes back to a saddle it already passed is
//! cut there into two simple rings, so no ring touches itself (OGC-valid).
//! Rings are then told apart by their signed area: foreground inside is an
//! exterior, background inside a hole.
//!
//! Coordinates are pixel corners `(x, y)`, x right and y down. Exterior rings
//! run clockwise on screen, holes counter-clockwise; GeoJSON output fixes
//! the orientation again after mapping (a north-up transform flips it).

use std::collections::HashMap;

/// A closed ring of pixel-corner vertices; the first vertex is not repeated.
pub type Ring = Vec<(u32, u32)>;

/// One 4-connected component: its outline and its holes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelPolygon {
    pub exterior: Ring,
    pub holes: Vec<Ring>,
}

/// The polygons of `mask` (`width x height`, row-major, nonzero is
/// foreground; missing bytes are background), in raster order of each
/// component's first pixel. An empty mask gives no polygon.
pub fn polygons(mask: &[u8], width: usize, height: usize) -> Vec<PixelPolygon> {
    let grid = Grid { mask, width, height };
    let rings: Vec<Vec<Vertex>> = trace_rings(&grid).iter().map(|r| drop_collinear(r)).collect();
    let components = Components::label(&grid);
    let mut exteriors: Vec<Vec<(Vec<Vertex>, i128)>> = vec![Vec::new(); components.count];
    let mut holes: Vec<Vec<Vec<Vertex>>> = vec![Vec::new(); components.count];
    for ring in rings {
        let area = twice_signed_area(&ring);
        let (x, y) = pixel_right_of_start(&ring);
        let component = components.of(x, y);
        if area > 0 {
            exteriors[component].push((ring, area));
        } else {
            holes[component].push(ring);
        }
    }
    exteriors
        .into_iter()
        .zip(holes)
        .flat_map(|(outer, inner)| assemble(outer, inner))
        .collect()
}

type Vertex = (i64, i64);

/// Directions on screen (y down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    East,
    South,
    West,
    North,
}

impl Dir {
    fn step(self) -> Vertex {
        match self {
            Dir::East => (1, 0),
            Dir::South => (0, 1),
            Dir::West => (-1, 0),
            Dir::North => (0, -1),
        }
    }

    /// A clockwise turn on screen.
    fn right(self) -> Dir {
        match self {
            Dir::East => Dir::South,
            Dir::South => Dir::West,
            Dir::West => Dir::North,
            Dir::North => Dir::East,
        }
    }

    fn left(self) -> Dir {
        self.right().right().right()
    }
}

/// A mask view where everything outside reads as background.
struct Grid<'a> {
    mask: &'a [u8],
    width: usize,
    height: usize,
}

impl Grid<'_> {
    fn fg(&self, x: i64, y: i64) -> bool {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return false;
        }
        self.mask
            .get(y as usize * self.width + x as usize)
            .is_some_and(|&v| v != 0)
    }

    /// Whether a boundary edge leaves corner `v` in direction `d` with the
    /// foreground on its right.
    fn has_edge(&self, (x, y): Vertex, d: Dir) -> bool {
        match d {
            Dir::East => self.fg(x, y) && !self.fg(x, y - 1),
            Dir::South => self.fg(x - 1, y) && !self.fg(x, y),
            Dir::West => self.fg(x - 1, y - 1) && !self.fg(x - 1, y),
            Dir::North => self.fg(x, y - 1) && !self.fg(x - 1, y - 1),
        }
    }

    /// Two foreground pixels meet only diagonally at corner `v`.
    fn is_saddle(&self, (x, y): Vertex) -> bool {
        let (nw, ne) = (self.fg(x - 1, y - 1), self.fg(x, y - 1));
        let (sw, se) = (self.fg(x - 1, y), self.fg(x, y));
        nw == se && ne == sw && nw != ne
    }
}

/// Every boundary ring, each starting on a horizontal edge. Horizontal
/// edges are marked as walked (every ring has some), so each ring is traced
/// once.
fn trace_rings(grid: &Grid) -> Vec<Vec<Vertex>> {
    let mut walked = Bits::new(grid.width * (grid.height + 1));
    let mut rings = Vec::new();
    for y in 0..=grid.height as i64 {
        for x in 0..grid.width as i64 {
            let (below, above) = (grid.fg(x, y), grid.fg(x, y - 1));
            if below == above || walked.get(y as usize * grid.width + x as usize) {
                continue;
            }
            let start = if below {
                ((x, y), Dir::East)
            } else {
                ((x + 1, y), Dir::West)
            };
            trace(grid, start, &mut walked, &mut rings);
        }
    }
    rings
}

/// Walks one boundary from `start` until it returns, cutting off a simple
/// ring at every saddle corner the walk passes a second time.
fn trace(grid: &Grid, (start, start_dir): (Vertex, Dir), walked: &mut Bits, rings: &mut Vec<Vec<Vertex>>) {
    let mut path = vec![start];
    let mut open_saddles: HashMap<Vertex, usize> = HashMap::new();
    if grid.is_saddle(start) {
        open_saddles.insert(start, 0);
    }
    let (mut v, mut d) = (start, start_dir);
    loop {
        mark_walked(grid, walked, v, d);
        v = (v.0 + d.step().0, v.1 + d.step().1);
        // Right first: at a saddle both right and left continue the
        // boundary, and right keeps to the current pixel.
        let Some(next) = [d.right(), d, d.left()].into_iter().find(|&n| grid.has_edge(v, n)) else {
            // Every boundary corner has an outgoing edge; stop rather than
            // loop should that ever fail.
            rings.push(path);
            return;
        };
        if v == start && next == start_dir {
            rings.push(path);
            return;
        }
        if grid.is_saddle(v) {
            if let Some(i) = open_saddles.get(&v).copied() {
                let ring = path.split_off(i);
                for p in &ring[1..] {
                    open_saddles.remove(p);
                }
                rings.push(ring);
            }
            open_saddles.insert(v, path.len());
        }
        path.push(v);
        d = next;
    }
}

fn mark_walked(grid: &Grid, walked: &mut Bits, (x, y): Vertex, d: Dir) {
    let left_x = match d {
        Dir::East => x,
        Dir::West => x - 1,
        Dir::North | Dir::South => return,
    };
    walked.set(y as usize * grid.width + left_x as usize);
}

/// One bit per horizontal pixel edge (12.5 MB for a 10,000 x 10,000 mask).
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

/// The ring without vertices in the middle of straight runs.
fn drop_collinear(ring: &[Vertex]) -> Vec<Vertex> {
    let n = ring.len();
    (0..n)
        .filter(|&i| {
            let (p, c, q) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
            !((p.0 == c.0 && c.0 == q.0) || (p.1 == c.1 && c.1 == q.1))
        })
        .map(|i| ring[i])
        .collect()
}

/// Twice the signed area (shoelace, x right, y down): positive for a ring
/// running clockwise on screen.
fn twice_signed_area(ring: &[Vertex]) -> i128 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            i128::from(a.0) * i128::from(b.1) - i128::from(b.0) * i128::from(a.1)
        })
        .sum()
}

/// Unit direction of the ring's first edge.
fn first_step(ring: &[Vertex]) -> Vertex {
    let (a, b) = (ring[0], ring[1 % ring.len()]);
    ((b.0 - a.0).signum(), (b.1 - a.1).signum())
}

/// The pixel to the right of the ring's first unit step: foreground.
fn pixel_right_of_start(ring: &[Vertex]) -> Vertex {
    let (x, y) = ring[0];
    match first_step(ring) {
        (1, 0) => (x, y),
        (0, 1) => (x - 1, y),
        (-1, 0) => (x - 1, y - 1),
        _ => (x, y - 1),
    }
}

/// The pixel to the left of the ring's first unit step: background (inside
/// a hole ring).
fn pixel_left_of_start(ring: &[Vertex]) -> Vertex {
    let (x, y) = ring[0];
    match first_step(ring) {
        (1, 0) => (x, y - 1),
        (0, 1) => (x, y),
        (-1, 0) => (x - 1, y),
        _ => (x - 1, y - 1),
    }
}

/// Whether the centre of pixel `(px, py)` lies inside `ring` (even-odd; a
/// centre is never on an edge, which runs along pixel edges).
fn contains_pixel_centre(ring: &[Vertex], (px, py): Vertex) -> bool {
    // Doubled coordinates keep the centre (px + 0.5, py + 0.5) integral.
    let (cx, cy) = (2 * px + 1, 2 * py + 1);
    let n = ring.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        let (ax, ay, by) = (2 * a.0, 2 * a.1, 2 * b.1);
        // Only vertical edges cross a horizontal ray through a centre.
        if a.0 == b.0 && (ay > cy) != (by > cy) && ax > cx {
            inside = !inside;
        }
    }
    inside
}

/// A component's polygons: one exterior with every hole, or (should a
/// component ever give several exteriors) each hole with the smallest
/// exterior around it.
fn assemble(exteriors: Vec<(Vec<Vertex>, i128)>, holes: Vec<Vec<Vertex>>) -> Vec<PixelPolygon> {
    let mut polygons: Vec<PixelPolygon> = exteriors
        .iter()
        .map(|(ring, _)| PixelPolygon {
            exterior: to_ring(ring),
            holes: Vec::new(),
        })
        .collect();
    match polygons.len() {
        0 => return polygons,
        1 => {
            // The usual case: no containment test needed.
            polygons[0].holes = holes.iter().map(|h| to_ring(h)).collect();
            return polygons;
        }
        _ => {}
    }
    for hole in holes {
        let inside = pixel_left_of_start(&hole);
        let owner = exteriors
            .iter()
            .enumerate()
            .filter(|(_, (ring, _))| contains_pixel_centre(ring, inside))
            .min_by_key(|(_, (_, area))| *area)
            .map_or(0, |(i, _)| i);
        polygons[owner].holes.push(to_ring(&hole));
    }
    polygons
}

fn to_ring(ring: &[Vertex]) -> Ring {
    // Corners lie in 0..=width and 0..=height, both at most u32::MAX for
    // any mask a u32-sized image gives.
    ring.iter().map(|&(x, y)| (x as u32, y as u32)).collect()
}

/// 4-connected foreground components, labelled run by run (memory grows
/// with the number of runs, not of pixels).
struct Components {
    /// Runs `[x0, x1)` of each row, rows one after another.
    runs: Vec<(i64, i64)>,
    /// Index in `runs` of each row's first run; `height + 1` entries.
    row_start: Vec<usize>,
    /// Component of each run, numbered in raster order.
    label: Vec<usize>,
    count: usize,
}

impl Components {
    fn label(grid: &Grid) -> Components {
        let mut runs = Vec::new();
        let mut row_start = vec![0];
        for y in 0..grid.height as i64 {
            let mut x = 0;
            while x < grid.width as i64 {
                if grid.fg(x, y) {
                    let x0 = x;
                    while x < grid.width as i64 && grid.fg(x, y) {
                        x += 1;
                    }
                    runs.push((x0, x));
                } else {
                    x += 1;
                }
            }
            row_start.push(runs.len());
        }
        let mut parent: Vec<usize> = (0..runs.len()).collect();
        for y in 1..grid.height {
            // Both rows' runs are sorted: walk them together, stepping past
            // whichever run ends first.
            let (mut a, mut b) = (row_start[y - 1], row_start[y]);
            while a < row_start[y] && b < row_start[y + 1] {
                if runs[a].0 < runs[b].1 && runs[b].0 < runs[a].1 {
                    union(&mut parent, a, b);
                }
                if runs[a].1 < runs[b].1 {
                    a += 1;
                } else {
                    b += 1;
                }
            }
        }
        let mut ids: HashMap<usize, usize> = HashMap::new();
        let mut label = Vec::with_capacity(runs.len());
        for run in 0..runs.len() {
            let root = find(&mut parent, run);
            let next = ids.len();
            label.push(*ids.entry(root).or_insert(next));
        }
        Components {
            runs,
            row_start,
            label,
            count: ids.len(),
        }
    }

    /// The component of foreground pixel `(x, y)`.
    fn of(&self, x: i64, y: i64) -> usize {
        let Some(row) = usize::try_from(y)
            .ok()
            .and_then(|y| Some(self.row_start[y]..*self.row_start.get(y + 1)?))
        else {
            return 0;
        };
        let offset = self.runs[row.clone()].partition_point(|&(_, x1)| x1 <= x);
        self.label.get(row.start + offset).copied().unwrap_or(0)
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The smaller root wins, so labels follow raster order.
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills the polygons by the pixel-centre rule (even-odd over all rings).
    fn rasterize(polygons: &[PixelPolygon], width: usize, height: usize) -> Vec<u8> {
        let mut out = vec![0u8; width * height];
        for y in 0..height {
            for x in 0..width {
                let centre = (x as i64, y as i64);
                let mut inside = false;
                for p in polygons {
                    for ring in std::iter::once(&p.exterior).chain(&p.holes) {
                        let ring: Vec<Vertex> = ring.iter().map(|&(a, b)| (i64::from(a), i64::from(b))).collect();
                        inside ^= contains_pixel_centre(&ring, centre);
                    }
                }
                out[y * width + x] = u8::from(inside);
            }
        }
        out
    }

    fn parse(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let mask = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (mask, rows[0].len(), rows.len())
    }

    fn ring_area(ring: &Ring) -> i128 {
        let r: Vec<Vertex> = ring.iter().map(|&(a, b)| (i64::from(a), i64::from(b))).collect();
        twice_signed_area(&r)
    }

    /// Vertices of every ring are corners (no straight run through them).
    fn assert_no_collinear(ring: &Ring) {
        let r: Vec<Vertex> = ring.iter().map(|&(a, b)| (i64::from(a), i64::from(b))).collect();
        assert_eq!(drop_collinear(&r), r, "collinear vertices in {ring:?}");
    }

    fn round_trip(mask: &[u8], width: usize, height: usize) -> Vec<PixelPolygon> {
        let polys = polygons(mask, width, height);
        let expected: Vec<u8> = mask.iter().map(|&v| u8::from(v != 0)).collect();
        assert_eq!(
            rasterize(&polys, width, height),
            expected,
            "round trip of {width}x{height}"
        );
        for p in &polys {
            assert!(ring_area(&p.exterior) > 0, "exterior clockwise on screen");
            assert_no_collinear(&p.exterior);
            for h in &p.holes {
                assert!(ring_area(h) < 0, "hole counter-clockwise on screen");
                assert_no_collinear(h);
            }
        }
        polys
    }

    #[test]
    fn single_pixel_is_a_unit_square() {
        let polys = round_trip(&[1], 1, 1);
        assert_eq!(
            polys,
            [PixelPolygon {
                exterior: vec![(0, 0), (1, 0), (1, 1), (0, 1)],
                holes: vec![]
            }]
        );
        assert!(polygons(&[0, 0, 0, 0], 2, 2).is_empty());
    }

    #[test]
    fn square_with_a_hole() {
        let (mask, w, h) = parse(&["#####", "#...#", "#.#.#", "#...#", "#####"]);
        let polys = round_trip(&mask, w, h);
        // The ring and the island in its hole: two components.
        assert_eq!(polys.len(), 2);
        assert_eq!(polys[0].exterior, [(0, 0), (5, 0), (5, 5), (0, 5)]);
        assert_eq!(polys[0].holes, [vec![(1, 1), (1, 4), (4, 4), (4, 1)]]);
        assert_eq!(polys[1].exterior, [(2, 2), (3, 2), (3, 3), (2, 3)]);
    }

    #[test]
    fn diagonal_pixels_are_separate_components() {
        let (mask, w, h) = parse(&["#.", ".#"]);
        let polys = round_trip(&mask, w, h);
        assert_eq!(polys.len(), 2);
        assert_eq!(polys[0].exterior, [(0, 0), (1, 0), (1, 1), (0, 1)]);
        assert_eq!(polys[1].exterior, [(1, 1), (2, 1), (2, 2), (1, 2)]);
    }

    #[test]
    fn hole_touching_the_outline_at_a_corner_is_cut_off_as_a_hole() {
        // The background inside touches the outside only diagonally (at the
        // corner (3, 1)): one component, a hole meeting the exterior at a point.
        let (mask, w, h) = parse(&["###..", "#.#..", "#..#.", "####."]);
        let polys = round_trip(&mask, w, h);
        assert_eq!(polys.len(), 1);
        assert_eq!(polys[0].holes.len(), 1);
    }

    #[test]
    fn random_masks_round_trip() {
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for case in 0..300 {
            let (w, h) = (1 + case % 13, 1 + (case * 7) % 11);
            let density = [3, 5, 7][case % 3];
            let mask: Vec<u8> = (0..w * h)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    u8::from(s % 10 < density)
                })
                .collect();
            let polys = round_trip(&mask, w, h);
            // One polygon per 4-connected component.
            assert_eq!(
                polys.len(),
                Components::label(&Grid {
                    mask: &mask,
                    width: w,
                    height: h
                })
                .count
            );
        }
    }

    #[test]
    fn holes_go_to_the_exterior_around_them_when_a_component_has_several() {
        let square =
            |x0: i64, y0: i64, side: i64| vec![(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)];
        let (a, b) = (square(0, 0, 10), square(20, 0, 10));
        let hole: Vec<Vertex> = square(22, 2, 2).into_iter().rev().collect();
        assert!(twice_signed_area(&hole) < 0);
        let polys = assemble(
            vec![(a.clone(), twice_signed_area(&a)), (b.clone(), twice_signed_area(&b))],
            vec![hole],
        );
        assert_eq!(polys.len(), 2);
        assert!(polys[0].holes.is_empty());
        assert_eq!(polys[1].holes, [vec![(22, 4), (24, 4), (24, 2), (22, 2)]]);
    }

    #[test]
    fn short_mask_reads_as_background() {
        let polys = polygons(&[1], 3, 3);
        assert_eq!(polys.len(), 1);
        assert_eq!(polys[0].exterior, [(0, 0), (1, 0), (1, 1), (0, 1)]);
    }
}
