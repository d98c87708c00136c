//! Scene layout: what is where in one synthetic image.
//!
//! A scene is planned (which categories, how many of each), then a background
//! is laid out (ground, river or lake, roads, parking lots) and rendered, and
//! then objects are placed one by one by rejection sampling against an
//! occupancy map. An object's *footprint* (its body, its shadow or wake, plus
//! a margin) may not touch any other footprint, so that every mask is exactly
//! the object's own visible pixels: nothing is ever drawn over an object
//! except its own details, and clutter (trees, houses) is placed last, only
//! where no footprint is.
//!
//! Geometry is kept analytic (signed distance functions of a few primitives
//! in the object's own frame) so that the mask and the drawing come from the
//! same function: a pixel is in the mask exactly when its centre is inside,
//! and the drawing antialiases around that same boundary.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::render::{self, Canvas};

/// The generator's random stream (one per image, see [`super::image_rng`]).
pub type SynthRng = ChaCha8Rng;

/// Scenes are designed at 256 px; every length is multiplied by `size / 256`.
pub const DESIGN_SIZE: f32 = 256.0;

// ---------------------------------------------------------------------------
// Vectors, frames and primitives
// ---------------------------------------------------------------------------

/// A 2-D point or vector in pixels (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct V2 {
    pub x: f32,
    pub y: f32,
}

impl V2 {
    pub const ZERO: V2 = V2 { x: 0.0, y: 0.0 };

    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
    /// Unit vector at `angle` radians from the x axis.
    pub fn from_angle(angle: f32) -> Self {
        Self::new(angle.cos(), angle.sin())
    }
    pub fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }
    pub fn len(self) -> f32 {
        self.dot(self).sqrt()
    }
    /// The vector turned by +90 degrees.
    pub fn perp(self) -> V2 {
        V2::new(-self.y, self.x)
    }
    pub fn scale(self, k: f32) -> V2 {
        V2::new(self.x * k, self.y * k)
    }
    pub fn normalized(self) -> V2 {
        let l = self.len();
        if l > 0.0 {
            self.scale(1.0 / l)
        } else {
            V2::new(1.0, 0.0)
        }
    }
    pub fn angle(self) -> f32 {
        self.y.atan2(self.x)
    }
}

impl std::ops::Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        V2::new(self.x + o.x, self.y + o.y)
    }
}

impl std::ops::Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        V2::new(self.x - o.x, self.y - o.y)
    }
}

impl std::ops::Neg for V2 {
    type Output = V2;
    fn neg(self) -> V2 {
        V2::new(-self.x, -self.y)
    }
}

/// An object's own coordinate frame: origin and rotation. Local x is the
/// object's main axis (a ship's bow, an airplane's nose).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub origin: V2,
    pub cos: f32,
    pub sin: f32,
}

impl Frame {
    pub fn new(origin: V2, angle: f32) -> Self {
        Self {
            origin,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }
    pub fn angle(&self) -> f32 {
        self.sin.atan2(self.cos)
    }
    pub fn to_local(&self, p: V2) -> V2 {
        let d = p - self.origin;
        V2::new(d.x * self.cos + d.y * self.sin, -d.x * self.sin + d.y * self.cos)
    }
    /// A local direction in world coordinates.
    pub fn dir_to_world(&self, l: V2) -> V2 {
        V2::new(l.x * self.cos - l.y * self.sin, l.x * self.sin + l.y * self.cos)
    }
    pub fn to_world(&self, l: V2) -> V2 {
        self.origin + self.dir_to_world(l)
    }
    /// A world direction in local coordinates.
    pub fn dir_to_local(&self, w: V2) -> V2 {
        V2::new(w.x * self.cos + w.y * self.sin, -w.x * self.sin + w.y * self.cos)
    }
}

/// A primitive shape in a frame's local coordinates, as a signed distance
/// (negative inside, in pixels).
#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    Circle {
        c: V2,
        r: f32,
    },
    /// Axis-aligned (in the local frame) rectangle with half extents `h` and
    /// rounded corners; `outline > 0` makes it a line of that half width
    /// along the boundary instead of a filled area.
    Rect {
        c: V2,
        h: V2,
        round: f32,
        outline: f32,
    },
    /// A simple polygon (either winding).
    Poly(Vec<V2>),
    /// A thick line segment (capsule) of half width `r`.
    Segment {
        a: V2,
        b: V2,
        r: f32,
    },
    /// A circular line of half width `hw`; `side` 0 keeps the whole circle,
    /// +1 / -1 only the half with `x - c.x` of that sign.
    Ring {
        c: V2,
        r: f32,
        hw: f32,
        side: f32,
    },
}

impl Prim {
    pub fn rect(c: V2, h: V2, round: f32) -> Prim {
        Prim::Rect {
            c,
            h,
            round,
            outline: 0.0,
        }
    }

    pub fn sdf(&self, p: V2) -> f32 {
        match self {
            Prim::Circle { c, r } => (p - *c).len() - r,
            Prim::Rect { c, h, round, outline } => {
                let round = round.min(h.x).min(h.y).max(0.0);
                let q = p - *c;
                let dx = q.x.abs() - (h.x - round);
                let dy = q.y.abs() - (h.y - round);
                let outside = V2::new(dx.max(0.0), dy.max(0.0)).len();
                let d = outside + dx.max(dy).min(0.0) - round;
                if *outline > 0.0 {
                    d.abs() - outline
                } else {
                    d
                }
            }
            Prim::Poly(pts) => poly_sdf(pts, p),
            Prim::Segment { a, b, r } => segment_distance(p, *a, *b) - r,
            Prim::Ring { c, r, hw, side } => {
                let q = p - *c;
                let d = (q.len() - r).abs() - hw;
                if *side != 0.0 {
                    d.max(-q.x * side)
                } else {
                    d
                }
            }
        }
    }

    /// Largest `p . dir` over the shape (its extent along a unit direction).
    pub fn support(&self, dir: V2) -> f32 {
        match self {
            Prim::Circle { c, r } => c.dot(dir) + r,
            Prim::Rect { c, h, outline, .. } => c.dot(dir) + h.x * dir.x.abs() + h.y * dir.y.abs() + outline,
            Prim::Poly(pts) => pts.iter().map(|p| p.dot(dir)).fold(f32::MIN, f32::max),
            Prim::Segment { a, b, r } => a.dot(dir).max(b.dot(dir)) + r,
            Prim::Ring { c, r, hw, .. } => c.dot(dir) + r + hw,
        }
    }

    /// Largest distance of a point of the shape from the local origin.
    pub fn radius(&self) -> f32 {
        match self {
            Prim::Circle { c, r } => c.len() + r,
            Prim::Rect { c, h, outline, .. } => c.len() + h.len() + outline,
            Prim::Poly(pts) => pts.iter().map(|p| p.len()).fold(0.0, f32::max),
            Prim::Segment { a, b, r } => a.len().max(b.len()) + r,
            Prim::Ring { c, r, hw, .. } => c.len() + r + hw,
        }
    }
}

/// Distance from `p` to the segment `a..b`.
pub fn segment_distance(p: V2, a: V2, b: V2) -> f32 {
    segment_projection(p, a, b).0
}

/// Distance from `p` to the segment `a..b` and the position of the nearest
/// point along it (0 at `a`, 1 at `b`).
pub fn segment_projection(p: V2, a: V2, b: V2) -> (f32, f32) {
    let ab = b - a;
    let l2 = ab.dot(ab);
    let t = if l2 > 0.0 {
        ((p - a).dot(ab) / l2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((p - (a + ab.scale(t))).len(), t)
}

/// Exact signed distance to a polygon (Inigo Quilez's formulation).
fn poly_sdf(v: &[V2], p: V2) -> f32 {
    if v.len() < 3 {
        return f32::INFINITY;
    }
    let mut d = (p - v[0]).dot(p - v[0]);
    let mut s = 1.0f32;
    let mut j = v.len() - 1;
    for i in 0..v.len() {
        let e = v[j] - v[i];
        let w = p - v[i];
        let t = (w.dot(e) / e.dot(e).max(1e-12)).clamp(0.0, 1.0);
        let b = w - e.scale(t);
        d = d.min(b.dot(b));
        let c1 = p.y >= v[i].y;
        let c2 = p.y < v[j].y;
        let c3 = e.x * w.y > e.y * w.x;
        if (c1 && c2 && c3) || (!c1 && !c2 && !c3) {
            s = -s;
        }
        j = i;
    }
    s * d.sqrt()
}

/// A union of primitives in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub frame: Frame,
    pub prims: Vec<Prim>,
}

impl Shape {
    pub fn new(frame: Frame, prims: Vec<Prim>) -> Self {
        Self { frame, prims }
    }

    pub fn sdf_local(&self, l: V2) -> f32 {
        self.prims.iter().map(|p| p.sdf(l)).fold(f32::INFINITY, f32::min)
    }

    pub fn sdf(&self, p: V2) -> f32 {
        self.sdf_local(self.frame.to_local(p))
    }

    /// Extent of the shape along a world direction, from the frame origin.
    pub fn support(&self, dir: V2) -> f32 {
        let local = self.frame.dir_to_local(dir);
        self.prims.iter().map(|p| p.support(local)).fold(f32::MIN, f32::max)
    }

    /// The same shape moved by `d` (world pixels).
    pub fn translated(&self, d: V2) -> Shape {
        let mut s = self.clone();
        s.frame.origin = s.frame.origin + d;
        s
    }

    /// Pixel box `[x0, y0, x1, y1)` that holds every pixel whose centre is
    /// within `pad` of the shape, clamped to a `size` x `size` image.
    pub fn pixel_box(&self, pad: f32, size: usize) -> [usize; 4] {
        let mut lo = V2::new(f32::MAX, f32::MAX);
        let mut hi = V2::new(f32::MIN, f32::MIN);
        for dir in [V2::new(1.0, 0.0), V2::new(0.0, 1.0)] {
            let plus = self.support(dir);
            let minus = self.support(-dir);
            let o = self.frame.origin.dot(dir);
            if dir.x > 0.0 {
                lo.x = o - minus;
                hi.x = o + plus;
            } else {
                lo.y = o - minus;
                hi.y = o + plus;
            }
        }
        let clamp = |v: f32| -> usize { v.max(0.0).min(size as f32) as usize };
        [
            clamp((lo.x - pad - 1.0).floor()),
            clamp((lo.y - pad - 1.0).floor()),
            clamp((hi.x + pad + 2.0).ceil()),
            clamp((hi.y + pad + 2.0).ceil()),
        ]
    }
}

/// Whether the shape lies inside a `size` x `size` image, at least `pad`
/// pixels from every border.
pub fn inside(shape: &Shape, size: usize, pad: f32) -> bool {
    let s = size as f32;
    let o = shape.frame.origin;
    o.x - shape.support(V2::new(-1.0, 0.0)) >= pad
        && o.x + shape.support(V2::new(1.0, 0.0)) <= s - pad
        && o.y - shape.support(V2::new(0.0, -1.0)) >= pad
        && o.y + shape.support(V2::new(0.0, 1.0)) <= s - pad
}

/// Centre of pixel `(x, y)`.
pub fn pixel_centre(x: usize, y: usize) -> V2 {
    V2::new(x as f32 + 0.5, y as f32 + 0.5)
}

// ---------------------------------------------------------------------------
// Categories, colours, sizes
// ---------------------------------------------------------------------------

/// The RISORS categories the generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    StorageTank,
    Vehicle,
    Airplane,
    Ship,
    Bridge,
    TennisCourt,
    BasketballCourt,
    GroundTrackField,
    Windmill,
    Chimney,
}

/// Named colours. Each has one base RGB far from the others, so that a
/// colour word always means something visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    White,
    Grey,
    Black,
    Red,
    Blue,
    Green,
    Orange,
    Yellow,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::White,
        Colour::Grey,
        Colour::Black,
        Colour::Red,
        Colour::Blue,
        Colour::Green,
        Colour::Orange,
        Colour::Yellow,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Colour::White => "white",
            Colour::Grey => "grey",
            Colour::Black => "black",
            Colour::Red => "red",
            Colour::Blue => "blue",
            Colour::Green => "green",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
        }
    }

    pub fn rgb(self) -> [f32; 3] {
        match self {
            Colour::White => [234.0, 234.0, 228.0],
            Colour::Grey => [138.0, 140.0, 142.0],
            Colour::Black => [34.0, 34.0, 38.0],
            Colour::Red => [186.0, 50.0, 42.0],
            Colour::Blue => [46.0, 92.0, 184.0],
            Colour::Green => [52.0, 146.0, 70.0],
            Colour::Orange => [226.0, 128.0, 40.0],
            Colour::Yellow => [230.0, 200.0, 56.0],
        }
    }
}

/// The size class an object was drawn in. The bands leave gaps between
/// them, so "small" and "large" are never borderline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeBand {
    Small,
    Medium,
    Large,
}

/// What the generator knows about a category.
#[derive(Debug, Clone, Copy)]
pub struct CategoryInfo {
    /// The RISORS name (annotation `name`).
    pub name: &'static str,
    /// Nouns for sentences; the first is the RISORS name, the others are
    /// occasional synonyms ("tank", "car", "plane", "boat").
    pub nouns: &'static [&'static str],
    /// Colours objects of this category come in.
    pub colours: &'static [Colour],
    /// Range of the characteristic length at 256 px (diameter, length,
    /// rotor span, height; a bridge's deck width).
    pub length: (f32, f32),
    /// Whether the range is wide enough for "small" / "large".
    pub sizable: bool,
    /// Most objects of this category in one image.
    pub max_count: usize,
    /// Relative frequency when planning a scene.
    pub weight: f32,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::StorageTank,
        Category::Vehicle,
        Category::Airplane,
        Category::Ship,
        Category::Bridge,
        Category::TennisCourt,
        Category::BasketballCourt,
        Category::GroundTrackField,
        Category::Windmill,
        Category::Chimney,
    ];

    pub fn info(self) -> CategoryInfo {
        use Colour::*;
        let (name, nouns, colours, length, sizable, max_count, weight): (
            _,
            &'static [&'static str],
            &'static [Colour],
            _,
            _,
            _,
            _,
        ) = match self {
            Category::StorageTank => (
                "storage tank",
                &["storage tank", "tank"],
                &[White, Grey, Red],
                (22.0, 64.0),
                true,
                3,
                1.2,
            ),
            Category::Vehicle => (
                "vehicle",
                &["vehicle", "car"],
                &[White, Black, Red, Blue],
                (28.0, 36.0),
                false,
                4,
                1.2,
            ),
            Category::Airplane => (
                "airplane",
                &["airplane", "plane"],
                &[White, Grey],
                (44.0, 92.0),
                true,
                3,
                1.0,
            ),
            Category::Ship => (
                "ship",
                &["ship", "boat"],
                &[White, Grey, Red],
                (56.0, 104.0),
                true,
                3,
                1.0,
            ),
            Category::Bridge => ("bridge", &["bridge"], &[Grey, White, Red], (14.0, 22.0), false, 1, 0.7),
            Category::TennisCourt => (
                "tennis court",
                &["tennis court"],
                &[Green, Blue, Red],
                (40.0, 76.0),
                true,
                3,
                1.0,
            ),
            Category::BasketballCourt => (
                "basketball court",
                &["basketball court"],
                &[Orange, Yellow, Grey],
                (40.0, 72.0),
                true,
                2,
                0.9,
            ),
            Category::GroundTrackField => (
                "ground track field",
                &["ground track field"],
                &[Red, Blue],
                (84.0, 116.0),
                false,
                1,
                0.6,
            ),
            Category::Windmill => ("windmill", &["windmill"], &[White], (48.0, 80.0), true, 3, 0.9),
            Category::Chimney => ("chimney", &["chimney"], &[Red, Grey, White], (44.0, 84.0), true, 3, 0.9),
        };
        CategoryInfo {
            name,
            nouns,
            colours,
            length,
            sizable,
            max_count,
            weight,
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }
}

// ---------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------

/// How an effect shape is drawn. Effects are part of an object's footprint
/// but not of its mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Darkens what is below by this much (0..1).
    Shadow(f32),
    /// A ship's wake: white foam fading away from the stern at local x.
    Wake { stern: f32, length: f32 },
}

/// A mask cropped to its bounding box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
    /// Row-major, `width * height`, 0 or 1.
    pub data: Vec<u8>,
}

impl Mask {
    /// Pixels in the mask.
    pub fn area(&self) -> usize {
        self.data.iter().filter(|&&v| v != 0).count()
    }

    /// The whole-image row-major mask.
    pub fn full(&self, size: usize) -> Vec<u8> {
        let mut out = vec![0u8; size * size];
        for y in 0..self.height {
            let row = (self.y0 + y) * size + self.x0;
            out[row..row + self.width].copy_from_slice(&self.data[y * self.width..(y + 1) * self.width]);
        }
        out
    }

    /// `[x, y, w, h]` of the set pixels (COCO order), `[0, 0, 0, 0]` if empty.
    pub fn bbox(&self) -> [usize; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.data[y * self.width + x] != 0 {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        if x0 == usize::MAX {
            return [0, 0, 0, 0];
        }
        [self.x0 + x0, self.y0 + y0, x1 - x0, y1 - y0]
    }

    /// Mean position of the set pixels (pixel centres).
    pub fn centroid(&self) -> V2 {
        let (mut sx, mut sy, mut n) = (0.0f64, 0.0f64, 0usize);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.data[y * self.width + x] != 0 {
                    sx += (self.x0 + x) as f64 + 0.5;
                    sy += (self.y0 + y) as f64 + 0.5;
                    n += 1;
                }
            }
        }
        if n == 0 {
            return V2::ZERO;
        }
        V2::new((sx / n as f64) as f32, (sy / n as f64) as f32)
    }

    /// Set pixels that touch an unset one (or the crop border): enough to
    /// measure the gap between two masks.
    pub fn boundary(&self) -> Vec<V2> {
        let at = |x: isize, y: isize| -> bool {
            x >= 0
                && y >= 0
                && (x as usize) < self.width
                && (y as usize) < self.height
                && self.data[y as usize * self.width + x as usize] != 0
        };
        let mut out = Vec::new();
        for y in 0..self.height as isize {
            for x in 0..self.width as isize {
                if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                    out.push(pixel_centre(self.x0 + x as usize, self.y0 + y as usize));
                }
            }
        }
        out
    }
}

/// One annotated object.
#[derive(Debug, Clone)]
pub struct Object {
    pub category: Category,
    pub colour: Colour,
    /// The drawn colour: the named colour with a little jitter.
    pub rgb: [f32; 3],
    pub band: SizeBand,
    /// Characteristic length in pixels (see [`CategoryInfo::length`]).
    pub length: f32,
    /// The object's pixels; its mask is `body.sdf < 0` at pixel centres.
    pub body: Shape,
    /// Shadows and wakes: drawn, kept free of other things, not in the mask.
    pub effects: Vec<(Shape, Effect)>,
    /// A per-object style number in 0..1 (roof type, stripe count, ...).
    pub variant: f32,
    /// Filled in once the object is placed.
    pub mask: Mask,
}

impl Object {
    fn translate(&mut self, d: V2) {
        self.body = self.body.translated(d);
        for (s, _) in &mut self.effects {
            *s = s.translated(d);
        }
    }

    fn set_origin(&mut self, p: V2) {
        let d = p - self.body.frame.origin;
        self.translate(d);
    }

    /// Extent of the footprint (body and effects) along a world direction,
    /// measured from the body's origin.
    fn support(&self, dir: V2) -> f32 {
        let o = self.body.frame.origin.dot(dir);
        std::iter::once(&self.body)
            .chain(self.effects.iter().map(|(s, _)| s))
            .map(|s| s.support(dir) + s.frame.origin.dot(dir) - o)
            .fold(f32::MIN, f32::max)
    }

    /// Rasterises the body: a pixel is in when its centre is inside.
    fn rasterize(&self, size: usize) -> Mask {
        let [x0, y0, x1, y1] = self.body.pixel_box(0.0, size);
        let (w, h) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
        let mut data = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                if self.body.sdf(pixel_centre(x0 + x, y0 + y)) < 0.0 {
                    data[y * w + x] = 1;
                }
            }
        }
        Mask {
            x0,
            y0,
            width: w,
            height: h,
            data,
        }
    }
}

/// Non-category things drawn to make the ground less empty.
#[derive(Debug, Clone)]
pub enum Clutter {
    Tree { centre: V2, r: f32, shade: f32 },
    House { shape: Shape, roof: [f32; 3], ridge: bool },
}

// ---------------------------------------------------------------------------
// Background
// ---------------------------------------------------------------------------

/// What the ground at a pixel is, for placement rules.
pub mod surface {
    pub const LAND: u8 = 0;
    pub const WATER: u8 = 1;
    pub const BANK: u8 = 2;
    pub const ROAD: u8 = 3;
    pub const LOT: u8 = 4;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroundKind {
    Grass,
    Soil,
    Desert,
    Urban,
}

/// A polyline with cumulative arc length, for roads and rivers.
#[derive(Debug, Clone)]
pub struct Path {
    pub points: Vec<V2>,
    /// Arc length at each point.
    pub arc: Vec<f32>,
    pub width: f32,
}

impl Path {
    fn new(points: Vec<V2>, width: f32) -> Self {
        let mut arc = Vec::with_capacity(points.len());
        let mut s = 0.0;
        for (i, p) in points.iter().enumerate() {
            if i > 0 {
                s += (*p - points[i - 1]).len();
            }
            arc.push(s);
        }
        Self { points, arc, width }
    }

    pub fn length(&self) -> f32 {
        *self.arc.last().unwrap_or(&0.0)
    }

    /// Point and unit tangent at arc length `s`.
    pub fn at(&self, s: f32) -> (V2, V2) {
        let s = s.clamp(0.0, self.length());
        let i = self.arc.partition_point(|&a| a < s).clamp(1, self.points.len() - 1);
        let (a, b) = (self.points[i - 1], self.points[i]);
        let seg = (self.arc[i] - self.arc[i - 1]).max(1e-6);
        let t = ((s - self.arc[i - 1]) / seg).clamp(0.0, 1.0);
        (a + (b - a).scale(t), (b - a).normalized())
    }

    /// Distance to the centre line and the arc length of the nearest point,
    /// for every pixel within `reach` of it (others: infinity).
    pub fn distance_field(&self, size: usize, reach: f32) -> (Vec<f32>, Vec<f32>) {
        let mut dist = vec![f32::INFINITY; size * size];
        let mut arc = vec![0.0f32; size * size];
        for i in 1..self.points.len() {
            let (a, b) = (self.points[i - 1], self.points[i]);
            let seg = Shape::new(Frame::new(V2::ZERO, 0.0), vec![Prim::Segment { a, b, r: reach }]);
            let [x0, y0, x1, y1] = seg.pixel_box(0.0, size);
            for y in y0..y1 {
                for x in x0..x1 {
                    let (d, t) = segment_projection(pixel_centre(x, y), a, b);
                    let k = y * size + x;
                    if d < dist[k] {
                        dist[k] = d;
                        arc[k] = self.arc[i - 1] + t * (self.arc[i] - self.arc[i - 1]);
                    }
                }
            }
        }
        (dist, arc)
    }
}

/// A lake: a wobbly disc.
#[derive(Debug, Clone)]
pub struct Lake {
    pub centre: V2,
    pub radius: f32,
    /// `(amplitude, frequency, phase)` of the radius' wobble terms.
    pub wobble: Vec<(f32, f32, f32)>,
}

impl Lake {
    /// Approximate signed distance to the shore (negative in the water).
    pub fn sdf(&self, p: V2) -> f32 {
        let d = p - self.centre;
        let a = d.angle();
        let r = self.radius
            * (1.0
                + self
                    .wobble
                    .iter()
                    .map(|(amp, f, ph)| amp * (f * a + ph).sin())
                    .sum::<f32>());
        d.len() - r
    }
}

/// A paved parking lot with stalls across its long side.
#[derive(Debug, Clone)]
pub struct Lot {
    pub shape: Shape,
    /// Stall centres in the lot's frame, along local x.
    pub stalls: Vec<V2>,
    pub stall_width: f32,
    pub depth: f32,
}

/// A rectangular field patch tinting the ground.
#[derive(Debug, Clone)]
pub struct Field {
    pub shape: Shape,
    pub tint: [f32; 3],
}

/// Everything under the objects.
#[derive(Debug, Clone)]
pub struct Background {
    pub size: usize,
    pub kind: GroundKind,
    /// The two ground colours blended by low-frequency noise.
    pub ground: [[f32; 3]; 2],
    pub noise_seed: u32,
    pub fields: Vec<Field>,
    pub river: Option<Path>,
    pub lake: Option<Lake>,
    pub water: [f32; 3],
    pub bank_width: f32,
    pub roads: Vec<Path>,
    pub lots: Vec<Lot>,
    /// Per-pixel surface class ([`surface`]).
    pub surface: Vec<u8>,
    /// Signed distance to the nearest shore (negative in water; infinity
    /// with no water), used by the renderer for the water's shading.
    pub water_sdf: Vec<f32>,
    /// Distance to each road's centre line and arc length there.
    pub road_fields: Vec<(Vec<f32>, Vec<f32>)>,
}

/// One finished scene.
#[derive(Debug, Clone)]
pub struct Scene {
    pub size: usize,
    /// Unit vector of the direction shadows fall in.
    pub sun: V2,
    pub background: Background,
    pub objects: Vec<Object>,
    pub clutter: Vec<Clutter>,
}

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

/// How many objects of which categories a scene should get.
fn plan(rng: &mut SynthRng) -> Vec<(Category, usize)> {
    let total = rng.random_range(2..=6usize);
    let kinds = *[1usize, 2, 2, 2, 3, 3, 3, 4].choose(rng).unwrap_or(&2);
    let kinds = kinds.min(total);
    let mut chosen: Vec<Category> = Vec::new();
    while chosen.len() < kinds {
        let pool: Vec<Category> = Category::ALL.into_iter().filter(|c| !chosen.contains(c)).collect();
        let sum: f32 = pool.iter().map(|c| c.info().weight).sum();
        let mut pick = rng.random_range(0.0..sum);
        let mut cat = pool[pool.len() - 1];
        for c in &pool {
            pick -= c.info().weight;
            if pick < 0.0 {
                cat = *c;
                break;
            }
        }
        chosen.push(cat);
    }
    let mut counts: Vec<(Category, usize)> = chosen.iter().map(|&c| (c, 1)).collect();
    let mut left = total - kinds;
    let mut guard = 0;
    while left > 0 && guard < 64 {
        guard += 1;
        let i = rng.random_range(0..counts.len());
        if counts[i].1 < counts[i].0.info().max_count {
            counts[i].1 += 1;
            left -= 1;
        }
    }
    // Big and special things first: they need the most room.
    counts.sort_by_key(|(c, _)| match c {
        Category::Bridge => 0,
        Category::GroundTrackField => 1,
        Category::Ship => 2,
        Category::Vehicle => 3,
        _ => 4,
    });
    counts
}

// ---------------------------------------------------------------------------
// Building a scene
// ---------------------------------------------------------------------------

/// Lays out, places and rasterises one scene. Returns the scene and the
/// rendered background (ground, water, roads, lots) that objects and clutter
/// are then drawn on.
///
/// A layout where fewer than two objects found room is drawn again (from
/// the same stream, so still deterministic); after a few tries the fullest
/// one is kept.
pub fn build(rng: &mut SynthRng, size: usize) -> (Scene, Canvas) {
    const TRIES: usize = 8;
    let mut best: Option<(Scene, Canvas)> = None;
    for _ in 0..TRIES {
        let (scene, canvas) = build_once(rng, size);
        if scene.objects.len() >= 2 {
            return (scene, canvas);
        }
        if best.as_ref().is_none_or(|(b, _)| scene.objects.len() > b.objects.len()) {
            best = Some((scene, canvas));
        }
    }
    best.expect("at least one try")
}

fn build_once(rng: &mut SynthRng, size: usize) -> (Scene, Canvas) {
    let u = size as f32 / DESIGN_SIZE;
    let counts = plan(rng);
    let has = |c: Category| counts.iter().any(|(k, _)| *k == c);
    let vehicles_on_lot = has(Category::Vehicle) && rng.random_bool(0.5);
    let background = layout_background(rng, size, &counts, vehicles_on_lot);
    let canvas = render::background(&background);
    let sun = V2::from_angle(rng.random_range(0.0..std::f32::consts::TAU));
    let shadow_k = rng.random_range(0.6..1.0f32);
    let mut placer = Placer {
        size,
        u,
        margin: (3.0 * u).max(1.5),
        occupied: vec![0u8; size * size],
        surface: &background.surface,
        canvas: &canvas,
        sun,
        shadow_k,
    };
    let mut objects = Vec::new();
    for &(cat, n) in &counts {
        let placed = match cat {
            Category::Vehicle => placer.place_vehicles(rng, n, &background),
            Category::Bridge => placer.place_bridge(rng, &background),
            Category::Ship => placer.place_ships(rng, n, &background),
            _ => placer.place_group(rng, cat, n),
        };
        objects.extend(placed);
    }
    let clutter = placer.place_clutter(rng, &background);
    for o in &mut objects {
        o.mask = o.rasterize(size);
    }
    (
        Scene {
            size,
            sun,
            background,
            objects,
            clutter,
        },
        canvas,
    )
}

/// Samples the ground, water, roads and lots, and computes the surface map.
fn layout_background(
    rng: &mut SynthRng,
    size: usize,
    counts: &[(Category, usize)],
    vehicles_on_lot: bool,
) -> Background {
    let u = size as f32 / DESIGN_SIZE;
    let s = size as f32;
    let has = |c: Category| counts.iter().any(|(k, _)| *k == c);
    let kind = *[
        GroundKind::Grass,
        GroundKind::Grass,
        GroundKind::Soil,
        GroundKind::Desert,
        GroundKind::Urban,
    ]
    .choose(rng)
    .unwrap_or(&GroundKind::Grass);
    let jitter = |rng: &mut SynthRng, c: [f32; 3], k: f32| -> [f32; 3] {
        let j = rng.random_range(-k..k);
        [c[0] + j, c[1] + j * 0.9, c[2] + j * 0.8]
    };
    let ground = match kind {
        GroundKind::Grass => [
            jitter(rng, [88.0, 118.0, 60.0], 10.0),
            jitter(rng, [118.0, 134.0, 78.0], 10.0),
        ],
        GroundKind::Soil => [
            jitter(rng, [132.0, 112.0, 86.0], 10.0),
            jitter(rng, [158.0, 138.0, 104.0], 10.0),
        ],
        GroundKind::Desert => [
            jitter(rng, [196.0, 176.0, 138.0], 8.0),
            jitter(rng, [214.0, 194.0, 152.0], 8.0),
        ],
        GroundKind::Urban => [
            jitter(rng, [150.0, 146.0, 136.0], 8.0),
            jitter(rng, [172.0, 166.0, 154.0], 8.0),
        ],
    };
    let noise_seed = rng.random::<u32>();

    let mut fields = Vec::new();
    if matches!(kind, GroundKind::Grass | GroundKind::Soil) {
        for _ in 0..rng.random_range(0..4) {
            let c = V2::new(rng.random_range(0.0..s), rng.random_range(0.0..s));
            let h = V2::new(rng.random_range(0.12..0.35) * s, rng.random_range(0.08..0.25) * s);
            let k = rng.random_range(0.82..1.12f32);
            let g = rng.random_range(0.9..1.1f32);
            fields.push(Field {
                shape: Shape::new(
                    Frame::new(c, rng.random_range(-0.5..0.5f32)),
                    vec![Prim::rect(V2::ZERO, h, 0.0)],
                ),
                tint: [k, k * g, k],
            });
        }
    }

    // Water: a river when a bridge needs one (and often for ships), a lake
    // for ships otherwise, sometimes water just as scenery.
    let want_river = has(Category::Bridge) || (has(Category::Ship) && rng.random_bool(0.6)) || rng.random_bool(0.15);
    let want_lake = !want_river && (has(Category::Ship) || rng.random_bool(0.1));
    let bank_width = 4.0 * u;
    let river = want_river.then(|| {
        let horizontal = rng.random_bool(0.5);
        let base = if horizontal { 0.0 } else { std::f32::consts::FRAC_PI_2 };
        let angle = base + rng.random_range(-0.5..0.5f32);
        let dir = V2::from_angle(angle);
        let normal = dir.perp();
        let centre = V2::new(s * 0.5, s * 0.5) + normal.scale(rng.random_range(-0.18..0.18) * s);
        let amp = rng.random_range(0.0..0.08) * s;
        let freq = rng.random_range(0.5..1.6) * std::f32::consts::TAU / s;
        let phase = rng.random_range(0.0..std::f32::consts::TAU);
        let width = rng.random_range(0.17..0.24) * s;
        let pts = (0..=48)
            .map(|i| {
                let t = (i as f32 / 48.0 - 0.5) * 2.0 * s;
                centre + dir.scale(t) + normal.scale(amp * (freq * t + phase).sin())
            })
            .collect();
        Path::new(pts, width)
    });
    let lake = want_lake.then(|| Lake {
        centre: V2::new(rng.random_range(0.3..0.7) * s, rng.random_range(0.3..0.7) * s),
        radius: rng.random_range(0.24..0.32) * s,
        wobble: (0..3)
            .map(|i| {
                (
                    rng.random_range(0.02..0.08f32),
                    (i + 2) as f32,
                    rng.random_range(0.0..std::f32::consts::TAU),
                )
            })
            .collect(),
    });
    let water = *[[38.0, 72.0, 96.0], [42.0, 86.0, 84.0], [30.0, 60.0, 88.0]]
        .choose(rng)
        .unwrap_or(&[38.0, 72.0, 96.0]);

    let mut surface = vec![surface::LAND; size * size];
    let mut water_sdf = vec![f32::INFINITY; size * size];
    if let Some(r) = &river {
        let (d, _) = r.distance_field(size, r.width * 0.5 + bank_width + 4.0);
        for (w, d) in water_sdf.iter_mut().zip(d) {
            *w = w.min(d - r.width * 0.5);
        }
    }
    if let Some(l) = &lake {
        for y in 0..size {
            for x in 0..size {
                let k = y * size + x;
                water_sdf[k] = water_sdf[k].min(l.sdf(pixel_centre(x, y)));
            }
        }
    }
    for (s, &w) in surface.iter_mut().zip(&water_sdf) {
        if w < 0.0 {
            *s = surface::WATER;
        } else if w < bank_width {
            *s = surface::BANK;
        }
    }

    // Roads: one for vehicles that drive, sometimes one or two as scenery.
    // A road never crosses water (there would have to be a bridge).
    let want_roads = if has(Category::Vehicle) && !vehicles_on_lot {
        1 + usize::from(rng.random_bool(0.25))
    } else {
        usize::from(rng.random_bool(0.45))
    };
    let mut roads = Vec::new();
    let mut road_fields = Vec::new();
    for _ in 0..want_roads {
        for _attempt in 0..12 {
            let width = rng.random_range(0.13..0.16) * s;
            let road = random_road(rng, s, width);
            let (d, a) = road.distance_field(size, width * 0.5 + 2.0);
            let wet = d
                .iter()
                .zip(&surface)
                .any(|(&d, &k)| d < width * 0.5 + 2.0 * u && (k == surface::WATER || k == surface::BANK));
            if wet {
                continue;
            }
            for (k, &d) in surface.iter_mut().zip(&d) {
                if d < width * 0.5 {
                    *k = surface::ROAD;
                }
            }
            roads.push(road);
            road_fields.push((d, a));
            break;
        }
    }

    // A parking lot with stalls for parked vehicles.
    let mut lots = Vec::new();
    let n_vehicles = counts
        .iter()
        .find(|(c, _)| *c == Category::Vehicle)
        .map_or(0, |(_, n)| *n);
    if n_vehicles > 0 && (vehicles_on_lot || roads.is_empty()) {
        let stalls = n_vehicles + rng.random_range(1..=3usize);
        // Room for the widest vehicle, its shadow and the footprint margins
        // on both sides, so that neighbouring stalls can both be taken.
        let stall_width = 30.0 * u;
        let depth = 44.0 * u;
        for _attempt in 0..40 {
            let half = V2::new(stalls as f32 * stall_width * 0.5 + 4.0 * u, depth * 0.5 + 3.0 * u);
            let c = V2::new(rng.random_range(0.1..0.9) * s, rng.random_range(0.1..0.9) * s);
            let angle = if rng.random_bool(0.6) {
                *[0.0f32, std::f32::consts::FRAC_PI_2].choose(rng).unwrap_or(&0.0)
            } else {
                rng.random_range(0.0..std::f32::consts::PI)
            };
            let shape = Shape::new(Frame::new(c, angle), vec![Prim::rect(V2::ZERO, half, 2.0 * u)]);
            if !inside(&shape, size, 2.0 * u) {
                continue;
            }
            let [x0, y0, x1, y1] = shape.pixel_box(0.0, size);
            let mut ok = true;
            'scan: for y in y0..y1 {
                for x in x0..x1 {
                    if shape.sdf(pixel_centre(x, y)) < 3.0 * u && surface[y * size + x] != surface::LAND {
                        ok = false;
                        break 'scan;
                    }
                }
            }
            if !ok {
                continue;
            }
            for y in y0..y1 {
                for x in x0..x1 {
                    if shape.sdf(pixel_centre(x, y)) < 0.0 {
                        surface[y * size + x] = surface::LOT;
                    }
                }
            }
            let stall_pts = (0..stalls)
                .map(|i| V2::new((i as f32 + 0.5 - stalls as f32 * 0.5) * stall_width, 0.0))
                .collect();
            lots.push(Lot {
                shape,
                stalls: stall_pts,
                stall_width,
                depth,
            });
            break;
        }
    }

    Background {
        size,
        kind,
        ground,
        noise_seed,
        fields,
        river,
        lake,
        water,
        bank_width,
        roads,
        lots,
        surface,
        water_sdf,
        road_fields,
    }
}

/// A road from one image border to another: a quadratic Bezier curve.
fn random_road(rng: &mut SynthRng, s: f32, width: f32) -> Path {
    let edge_point = |rng: &mut SynthRng, side: usize| -> V2 {
        let t = rng.random_range(0.15..0.85) * s;
        let out = 0.1 * s;
        match side {
            0 => V2::new(t, -out),
            1 => V2::new(s + out, t),
            2 => V2::new(t, s + out),
            _ => V2::new(-out, t),
        }
    };
    let a_side = rng.random_range(0..4usize);
    let b_side = if rng.random_bool(0.65) {
        (a_side + 2) % 4
    } else {
        (a_side + 1 + 2 * rng.random_range(0..2usize)) % 4
    };
    let a = edge_point(rng, a_side);
    let b = edge_point(rng, b_side);
    let mid = (a + b).scale(0.5);
    let c = mid + V2::new(rng.random_range(-0.2..0.2) * s, rng.random_range(-0.2..0.2) * s);
    let pts = (0..=40)
        .map(|i| {
            let t = i as f32 / 40.0;
            a.scale((1.0 - t) * (1.0 - t)) + c.scale(2.0 * t * (1.0 - t)) + b.scale(t * t)
        })
        .collect();
    Path::new(pts, width)
}

// ---------------------------------------------------------------------------
// Object geometry
// ---------------------------------------------------------------------------

/// Samples a size band and the characteristic length in it.
fn sample_length(rng: &mut SynthRng, cat: Category, u: f32) -> (SizeBand, f32) {
    let info = cat.info();
    let (lo, hi) = info.length;
    let (band, t) = if info.sizable {
        match rng.random_range(0..3) {
            0 => (SizeBand::Small, rng.random_range(0.0..0.15f32)),
            1 => (SizeBand::Medium, rng.random_range(0.35..0.65f32)),
            _ => (SizeBand::Large, rng.random_range(0.85..1.0f32)),
        }
    } else {
        (SizeBand::Medium, rng.random_range(0.0..1.0f32))
    };
    (band, (lo + t * (hi - lo)) * u)
}

/// The smallest side any object may have (~14 px at 256).
fn min_side(u: f32) -> f32 {
    14.0 * u
}

/// Body and effects of an object at the origin with the given rotation.
/// `extra` is category specific (a bridge's span).
#[allow(clippy::too_many_arguments)]
fn make_object(
    cat: Category,
    colour: Colour,
    rgb: [f32; 3],
    band: SizeBand,
    length: f32,
    angle: f32,
    variant: f32,
    u: f32,
    sun: V2,
    shadow_k: f32,
    extra: f32,
) -> Object {
    let l = length;
    let frame = Frame::new(V2::ZERO, angle);
    let shifted = |prims: &Vec<Prim>, k: f32, alpha: f32| -> (Shape, Effect) {
        (
            Shape::new(Frame::new(sun.scale(k * shadow_k), angle), prims.clone()),
            Effect::Shadow(alpha),
        )
    };
    let mut effects = Vec::new();
    let prims: Vec<Prim> = match cat {
        Category::StorageTank => {
            let r = l * 0.5;
            // A cylinder's shadow: the disc swept along the sun direction.
            effects.push((
                Shape::new(
                    Frame::new(V2::ZERO, 0.0),
                    vec![Prim::Segment {
                        a: V2::ZERO,
                        b: sun.scale(l * 0.24 * shadow_k),
                        r,
                    }],
                ),
                Effect::Shadow(0.5),
            ));
            vec![Prim::Circle { c: V2::ZERO, r }]
        }
        Category::Vehicle => {
            let w = (l * 0.5).max(min_side(u));
            let p = vec![Prim::rect(V2::ZERO, V2::new(l * 0.5, w * 0.5), w * 0.28)];
            effects.push(shifted(&p, l * 0.14, 0.45));
            p
        }
        Category::Airplane => {
            let fw = (0.075 * l).max(3.0 * u);
            let mut p = vec![Prim::rect(V2::ZERO, V2::new(l * 0.5, fw), fw)];
            for side in [1.0f32, -1.0] {
                p.push(Prim::Poly(vec![
                    V2::new(0.16 * l, 0.0),
                    V2::new(-0.15 * l, 0.5 * l * side),
                    V2::new(-0.28 * l, 0.5 * l * side),
                    V2::new(-0.14 * l, 0.0),
                ]));
                p.push(Prim::Poly(vec![
                    V2::new(-0.33 * l, 0.0),
                    V2::new(-0.43 * l, 0.2 * l * side),
                    V2::new(-0.52 * l, 0.2 * l * side),
                    V2::new(-0.5 * l, 0.0),
                ]));
                p.push(Prim::rect(
                    V2::new(0.02 * l, 0.2 * l * side),
                    V2::new(0.07 * l, 0.035 * l),
                    0.03 * l,
                ));
            }
            effects.push(shifted(&p, l * 0.3, 0.45));
            p
        }
        Category::Ship => {
            let w = (l * 0.25).max(min_side(u));
            let p = vec![Prim::Poly(vec![
                V2::new(-0.5 * l, -0.5 * w),
                V2::new(0.28 * l, -0.5 * w),
                V2::new(0.5 * l, 0.0),
                V2::new(0.28 * l, 0.5 * w),
                V2::new(-0.5 * l, 0.5 * w),
            ])];
            effects.push(shifted(&p, l * 0.05, 0.4));
            if variant < 0.6 {
                let wake = 0.6 * l;
                effects.push((
                    Shape::new(
                        frame,
                        vec![Prim::Poly(vec![
                            V2::new(-0.5 * l + 1.0, -0.42 * w),
                            V2::new(-0.5 * l - wake, -0.9 * w),
                            V2::new(-0.5 * l - wake, 0.9 * w),
                            V2::new(-0.5 * l + 1.0, 0.42 * w),
                        ])],
                    ),
                    Effect::Wake {
                        stern: -0.5 * l,
                        length: wake,
                    },
                ));
            }
            p
        }
        Category::Bridge => {
            // `length` is the deck width, `extra` the span.
            let p = vec![Prim::rect(V2::ZERO, V2::new(extra * 0.5, l * 0.5), 0.0)];
            effects.push(shifted(&p, l * 0.45, 0.45));
            p
        }
        Category::TennisCourt => {
            let w = (l * 0.5).max(min_side(u));
            vec![Prim::rect(V2::ZERO, V2::new(l * 0.5, w * 0.5), 0.02 * l)]
        }
        Category::BasketballCourt => {
            let w = (l * 0.56).max(min_side(u));
            vec![Prim::rect(V2::ZERO, V2::new(l * 0.5, w * 0.5), 0.02 * l)]
        }
        Category::GroundTrackField => {
            let w = l * 0.58;
            vec![Prim::rect(V2::ZERO, V2::new(l * 0.5, w * 0.5), w * 0.5)]
        }
        Category::Windmill => {
            let mut p = vec![Prim::Circle {
                c: V2::ZERO,
                r: 0.09 * l,
            }];
            p.extend(windmill_blades(l, variant, u));
            // The tower's shadow on the ground, the rotor's at its end.
            let tip = sun.scale(l * 1.1 * shadow_k);
            let tower = Shape::new(
                Frame::new(V2::ZERO, 0.0),
                vec![Prim::Segment {
                    a: V2::ZERO,
                    b: tip,
                    r: (0.035 * l).max(1.2 * u),
                }],
            );
            effects.push((tower, Effect::Shadow(0.45)));
            effects.push((Shape::new(Frame::new(tip, angle), p.clone()), Effect::Shadow(0.28)));
            p
        }
        Category::Chimney => {
            // Seen obliquely: a tapered column standing "up" along local x,
            // base at -l/2, with its top disc.
            let wb = (0.24 * l).max(min_side(u));
            let wt = 0.72 * wb;
            let p = vec![
                Prim::Poly(vec![
                    V2::new(-0.5 * l, -0.5 * wb),
                    V2::new(0.5 * l - 0.5 * wt, -0.5 * wt),
                    V2::new(0.5 * l - 0.5 * wt, 0.5 * wt),
                    V2::new(-0.5 * l, 0.5 * wb),
                ]),
                Prim::Circle {
                    c: V2::new(0.5 * l - 0.5 * wt, 0.0),
                    r: 0.5 * wt,
                },
            ];
            let base = frame.to_world(V2::new(-0.5 * l, 0.0));
            let reach = 1.25 * l * shadow_k;
            effects.push((
                Shape::new(
                    Frame::new(base, sun.angle()),
                    vec![Prim::Poly(vec![
                        V2::new(0.0, -0.45 * wb),
                        V2::new(reach, -0.35 * wt),
                        V2::new(reach, 0.35 * wt),
                        V2::new(0.0, 0.45 * wb),
                    ])],
                ),
                Effect::Shadow(0.5),
            ));
            p
        }
    };
    Object {
        category: cat,
        colour,
        rgb,
        band,
        length,
        body: Shape::new(frame, prims),
        effects,
        variant,
        mask: Mask {
            x0: 0,
            y0: 0,
            width: 0,
            height: 0,
            data: Vec::new(),
        },
    }
}

/// A windmill's three blades as polygons around the hub, in local space.
pub fn windmill_blades(l: f32, variant: f32, u: f32) -> Vec<Prim> {
    // Wider than real blades: thin slivers would vanish at a model's input
    // resolution, and the mask should be learnable.
    let root = (0.17 * l).max(4.0 * u);
    let tip = (0.09 * l).max(2.5 * u);
    (0..3)
        .map(|k| {
            let a = variant * std::f32::consts::TAU + k as f32 * std::f32::consts::TAU / 3.0;
            let d = V2::from_angle(a);
            let n = d.perp();
            Prim::Poly(vec![
                d.scale(0.05 * l) + n.scale(root * 0.5),
                d.scale(0.5 * l) + n.scale(tip * 0.5),
                d.scale(0.5 * l) - n.scale(tip * 0.5),
                d.scale(0.05 * l) - n.scale(root * 0.5),
            ])
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------

/// Where a body may stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Body and margin on dry land.
    Land,
    /// Whole footprint (wake included) and margin on water.
    Water,
    /// Body on a road or a lot.
    Paved,
    /// Centre over water, nothing on roads or lots.
    Bridge,
}

struct Placer<'a> {
    size: usize,
    u: f32,
    margin: f32,
    occupied: Vec<u8>,
    surface: &'a [u8],
    canvas: &'a Canvas,
    sun: V2,
    shadow_k: f32,
}

/// Least distance between an object's colour and the mean background under
/// it: below this a colour word would describe something barely visible.
const MIN_CONTRAST: f32 = 80.0;

impl Placer<'_> {
    /// Whether the object can stand where it is: inside the image, its
    /// footprint free, on the right surface.
    fn fits(&self, o: &Object, rule: Rule) -> bool {
        let size = self.size;
        // Body entirely inside the image, one pixel off the border.
        let b = &o.body;
        if !inside(b, size, 1.0) {
            return false;
        }
        // Cheap early rejection by the pixel under the body's origin.
        let c = b.frame.origin;
        let (cx, cy) = (c.x as usize, c.y as usize);
        if cx < size && cy < size && b.sdf(pixel_centre(cx, cy)) < 0.0 {
            let k = cy * size + cx;
            let here = self.surface[k];
            let ok = match rule {
                Rule::Land => here == surface::LAND,
                Rule::Water => here == surface::WATER,
                Rule::Paved => here == surface::ROAD || here == surface::LOT,
                Rule::Bridge => true,
            };
            if self.occupied[k] != 0 || !ok {
                return false;
            }
        }
        if rule == Rule::Bridge {
            let (cx, cy) = (c.x as usize, c.y as usize);
            if cx >= size || cy >= size || self.surface[cy * size + cx] != surface::WATER {
                return false;
            }
        }
        let m = self.margin;
        for shape in std::iter::once(b).chain(o.effects.iter().map(|(s, _)| s)) {
            let is_body = std::ptr::eq(shape, b);
            let [x0, y0, x1, y1] = shape.pixel_box(m, size);
            for y in y0..y1 {
                for x in x0..x1 {
                    let d = shape.sdf(pixel_centre(x, y));
                    if d >= m {
                        continue;
                    }
                    let k = y * size + x;
                    if self.occupied[k] != 0 {
                        return false;
                    }
                    let here = self.surface[k];
                    let ok = match rule {
                        Rule::Land => !is_body || here == surface::LAND,
                        Rule::Water => here == surface::WATER,
                        Rule::Paved => !is_body || d >= 0.0 || here == surface::ROAD || here == surface::LOT,
                        Rule::Bridge => here != surface::ROAD && here != surface::LOT,
                    };
                    if !ok {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Mean background colour under the body.
    fn under(&self, o: &Object) -> [f32; 3] {
        let [x0, y0, x1, y1] = o.body.pixel_box(0.0, self.size);
        let mut sum = [0.0f32; 3];
        let mut n = 0.0f32;
        for y in y0..y1 {
            for x in x0..x1 {
                if o.body.sdf(pixel_centre(x, y)) < 0.0 {
                    let p = self.canvas.px[y * self.size + x];
                    for c in 0..3 {
                        sum[c] += p[c];
                    }
                    n += 1.0;
                }
            }
        }
        let n = n.max(1.0);
        [sum[0] / n, sum[1] / n, sum[2] / n]
    }

    /// Picks a colour of the category that stands out from the background
    /// under the object, preferring `wanted`; `None` if none does.
    fn pick_colour(&self, rng: &mut SynthRng, o: &Object, wanted: Colour) -> Option<(Colour, [f32; 3])> {
        let under = self.under(o);
        let mut options: Vec<Colour> = o.category.info().colours.to_vec();
        options.shuffle(rng);
        options.sort_by_key(|&c| c != wanted);
        for c in options {
            let rgb = c.rgb();
            let d = ((rgb[0] - under[0]).powi(2) + (rgb[1] - under[1]).powi(2) + (rgb[2] - under[2]).powi(2)).sqrt();
            if d >= MIN_CONTRAST {
                let j = rng.random_range(-10.0..10.0f32);
                let rgb = [rgb[0] + j, rgb[1] + j, rgb[2] + j];
                return Some((c, rgb));
            }
        }
        None
    }

    fn commit(&mut self, o: &Object) {
        let size = self.size;
        let m = self.margin;
        for shape in std::iter::once(&o.body).chain(o.effects.iter().map(|(s, _)| s)) {
            let [x0, y0, x1, y1] = shape.pixel_box(m, size);
            for y in y0..y1 {
                for x in x0..x1 {
                    if shape.sdf(pixel_centre(x, y)) < m {
                        self.occupied[y * size + x] = 1;
                    }
                }
            }
        }
    }

    /// Tries to give `o` a contrasting colour and commit it; `false` leaves
    /// nothing behind.
    fn try_commit(&mut self, rng: &mut SynthRng, o: &mut Object, rule: Rule) -> bool {
        if !self.fits(o, rule) {
            return false;
        }
        match self.pick_colour(rng, o, o.colour) {
            Some((c, rgb)) => {
                o.colour = c;
                o.rgb = rgb;
                self.commit(o);
                true
            }
            None => false,
        }
    }

    fn new_object(&self, rng: &mut SynthRng, cat: Category, colour: Option<Colour>, angle: f32) -> Object {
        let (band, length) = sample_length(rng, cat, self.u);
        let colour = colour.unwrap_or_else(|| *cat.info().colours.choose(rng).unwrap_or(&Colour::White));
        let variant = rng.random_range(0.0..1.0f32);
        make_object(
            cat,
            colour,
            colour.rgb(),
            band,
            length,
            angle,
            variant,
            self.u,
            self.sun,
            self.shadow_k,
            0.0,
        )
    }

    /// Default orientation of a land object.
    fn land_angle(&self, rng: &mut SynthRng, cat: Category) -> f32 {
        match cat {
            Category::Chimney => -std::f32::consts::FRAC_PI_2 + rng.random_range(-0.25..0.25f32),
            Category::StorageTank => 0.0,
            Category::Windmill => 0.0,
            Category::TennisCourt | Category::BasketballCourt | Category::GroundTrackField if rng.random_bool(0.5) => {
                *[0.0f32, std::f32::consts::FRAC_PI_2].choose(rng).unwrap_or(&0.0) + rng.random_range(-0.15..0.15f32)
            }
            _ => rng.random_range(0.0..std::f32::consts::TAU),
        }
    }

    fn random_point(&self, rng: &mut SynthRng) -> V2 {
        let s = self.size as f32;
        V2::new(rng.random_range(0.05..0.95) * s, rng.random_range(0.05..0.95) * s)
    }

    /// `n` land objects of one category: often in a row (tanks along a line,
    /// courts side by side), otherwise scattered.
    fn place_group(&mut self, rng: &mut SynthRng, cat: Category, n: usize) -> Vec<Object> {
        if n > 1 && rng.random_bool(0.6) {
            if let Some(row) = self.place_row(rng, cat, n) {
                return row;
            }
        }
        let mut out = Vec::new();
        let first_colour = *cat.info().colours.choose(rng).unwrap_or(&Colour::White);
        for i in 0..n {
            // Duplicates often share a colour, so that other words are needed.
            let colour = (i > 0 && rng.random_bool(0.5)).then_some(first_colour);
            for _attempt in 0..60 {
                let angle = self.land_angle(rng, cat);
                let mut o = self.new_object(rng, cat, colour.or(Some(first_colour)), angle);
                o.set_origin(self.random_point(rng));
                if self.try_commit(rng, &mut o, Rule::Land) {
                    out.push(o);
                    break;
                }
            }
        }
        out
    }

    /// `n` objects in a straight row with small gaps, or `None` if no row
    /// fits after a few tries.
    fn place_row(&mut self, rng: &mut SynthRng, cat: Category, n: usize) -> Option<Vec<Object>> {
        let first_colour = *cat.info().colours.choose(rng).unwrap_or(&Colour::White);
        for _attempt in 0..25 {
            let dir_angle = if rng.random_bool(0.7) {
                *[0.0f32, std::f32::consts::FRAC_PI_2].choose(rng).unwrap_or(&0.0) + rng.random_range(-0.1..0.1f32)
            } else {
                rng.random_range(0.0..std::f32::consts::PI)
            };
            let dir = V2::from_angle(dir_angle);
            let angle = self.land_angle(rng, cat);
            let mut row: Vec<Object> = (0..n)
                .map(|_| {
                    let c = if rng.random_bool(0.5) {
                        first_colour
                    } else {
                        *cat.info().colours.choose(rng).unwrap_or(&first_colour)
                    };
                    self.new_object(rng, cat, Some(c), angle)
                })
                .collect();
            let mut offsets = vec![0.0f32; n];
            for i in 1..n {
                let gap = 2.0 * self.margin + rng.random_range(2.0..10.0) * self.u;
                offsets[i] = offsets[i - 1] + row[i - 1].support(dir) + row[i].support(-dir) + gap;
            }
            let start = self.random_point(rng) - dir.scale(offsets[n - 1] * 0.5);
            for (o, off) in row.iter_mut().zip(&offsets) {
                o.set_origin(start + dir.scale(*off));
            }
            let saved = self.occupied.clone();
            let mut ok = true;
            for o in &mut row {
                if !self.try_commit(rng, o, Rule::Land) {
                    ok = false;
                    break;
                }
            }
            if ok {
                return Some(row);
            }
            self.occupied = saved;
        }
        None
    }

    /// Vehicles in a row: along a road lane, or side by side in a lot's
    /// stalls.
    fn place_vehicles(&mut self, rng: &mut SynthRng, n: usize, bg: &Background) -> Vec<Object> {
        let first_colour = *Category::Vehicle.info().colours.choose(rng).unwrap_or(&Colour::White);
        let colour_for = |rng: &mut SynthRng| {
            if rng.random_bool(0.45) {
                first_colour
            } else {
                *Category::Vehicle.info().colours.choose(rng).unwrap_or(&first_colour)
            }
        };
        if let Some(lot) = bg.lots.first() {
            for _attempt in 0..20 {
                // Some stalls stay empty, the taken ones keep their order.
                let mut taken: Vec<usize> = (0..lot.stalls.len()).collect();
                taken.shuffle(rng);
                taken.truncate(n);
                taken.sort_unstable();
                let mut row = Vec::new();
                let saved = self.occupied.clone();
                let mut ok = true;
                for k in taken {
                    let facing = if rng.random_bool(0.5) {
                        0.0
                    } else {
                        std::f32::consts::PI
                    };
                    let angle = lot.shape.frame.angle() + std::f32::consts::FRAC_PI_2 + facing;
                    let c = colour_for(rng);
                    let mut o = self.new_object(rng, Category::Vehicle, Some(c), angle);
                    let jitter = V2::new(0.0, rng.random_range(-2.0..2.0) * self.u);
                    o.set_origin(lot.shape.frame.to_world(lot.stalls[k] + jitter));
                    if !self.try_commit(rng, &mut o, Rule::Paved) {
                        ok = false;
                        break;
                    }
                    row.push(o);
                }
                if ok {
                    return row;
                }
                self.occupied = saved;
            }
        }
        let Some(road) = bg.roads.first() else {
            return Vec::new();
        };
        for attempt in 0..30 {
            // Fewer vehicles if the full row keeps failing.
            let want = if attempt < 20 { n } else { n.min(2) };
            let lane = if rng.random_bool(0.5) { 1.0f32 } else { -1.0 };
            let mut s = rng.random_range(0.15..0.85) * road.length();
            let mut row: Vec<Object> = Vec::new();
            let saved = self.occupied.clone();
            let mut ok = true;
            for _ in 0..want {
                let c = colour_for(rng);
                let (_, t0) = road.at(s);
                let heading = |t: V2| {
                    if lane > 0.0 {
                        t.angle()
                    } else {
                        t.angle() + std::f32::consts::PI
                    }
                };
                let mut o = self.new_object(rng, Category::Vehicle, Some(c), heading(t0));
                if let Some(prev) = row.last() {
                    // Bumper to bumper with the shadows and margins free.
                    s += prev.support(t0) + o.support(-t0) + 2.0 * self.margin + rng.random_range(2.0..10.0) * self.u;
                }
                let (p, t) = road.at(s);
                o = make_object(
                    Category::Vehicle,
                    o.colour,
                    o.rgb,
                    o.band,
                    o.length,
                    heading(t),
                    o.variant,
                    self.u,
                    self.sun,
                    self.shadow_k,
                    0.0,
                );
                let lateral = t.perp().scale(lane * road.width * 0.24);
                o.set_origin(p + lateral);
                if !self.try_commit(rng, &mut o, Rule::Paved) {
                    ok = false;
                    break;
                }
                row.push(o);
            }
            if ok && !row.is_empty() {
                return row;
            }
            self.occupied = saved;
        }
        Vec::new()
    }

    /// A bridge across the river, perpendicular to it.
    fn place_bridge(&mut self, rng: &mut SynthRng, bg: &Background) -> Vec<Object> {
        let Some(river) = &bg.river else {
            return Vec::new();
        };
        for _attempt in 0..30 {
            let s = rng.random_range(0.3..0.7) * river.length();
            let (p, t) = river.at(s);
            let span = river.width + 2.0 * bg.bank_width + rng.random_range(10.0..22.0) * self.u;
            let (band, width) = sample_length(rng, Category::Bridge, self.u);
            let colour = *Category::Bridge.info().colours.choose(rng).unwrap_or(&Colour::Grey);
            let mut o = make_object(
                Category::Bridge,
                colour,
                colour.rgb(),
                band,
                width,
                t.perp().angle(),
                rng.random_range(0.0..1.0),
                self.u,
                self.sun,
                self.shadow_k,
                span,
            );
            o.set_origin(p);
            if self.try_commit(rng, &mut o, Rule::Bridge) {
                return vec![o];
            }
        }
        Vec::new()
    }

    /// Ships on the water, along the river or anywhere on a lake.
    fn place_ships(&mut self, rng: &mut SynthRng, n: usize, bg: &Background) -> Vec<Object> {
        let mut out = Vec::new();
        let first_colour = *Category::Ship.info().colours.choose(rng).unwrap_or(&Colour::White);
        for i in 0..n {
            let colour = if i > 0 && rng.random_bool(0.5) {
                first_colour
            } else {
                *Category::Ship.info().colours.choose(rng).unwrap_or(&first_colour)
            };
            for _attempt in 0..60 {
                let (p, angle) = match (&bg.river, &bg.lake) {
                    (Some(r), lake) if lake.is_none() || rng.random_bool(0.5) => {
                        let (p, t) = r.at(rng.random_range(0.05..0.95) * r.length());
                        let off = t.perp().scale(rng.random_range(-0.25..0.25) * r.width);
                        let flip = if rng.random_bool(0.5) {
                            0.0
                        } else {
                            std::f32::consts::PI
                        };
                        (p + off, t.angle() + flip + rng.random_range(-0.12..0.12f32))
                    }
                    (_, Some(l)) => {
                        let a = rng.random_range(0.0..std::f32::consts::TAU);
                        let r = rng.random_range(0.0..0.75) * l.radius;
                        (
                            l.centre + V2::from_angle(a).scale(r),
                            rng.random_range(0.0..std::f32::consts::TAU),
                        )
                    }
                    _ => return out,
                };
                let mut o = self.new_object(rng, Category::Ship, Some(colour), angle);
                o.set_origin(p);
                if self.try_commit(rng, &mut o, Rule::Water) {
                    out.push(o);
                    break;
                }
            }
        }
        out
    }

    /// Trees and houses on free land. Houses keep apart from each other;
    /// trees may overlap each other but nothing else.
    fn place_clutter(&mut self, rng: &mut SynthRng, bg: &Background) -> Vec<Clutter> {
        let u = self.u;
        let s = self.size as f32;
        let mut out = Vec::new();
        let (clusters, houses) = match bg.kind {
            GroundKind::Grass => (rng.random_range(1..5), rng.random_range(0..4)),
            GroundKind::Soil => (rng.random_range(0..3), rng.random_range(0..5)),
            GroundKind::Desert => (rng.random_range(0..2), rng.random_range(0..3)),
            GroundKind::Urban => (rng.random_range(0..2), rng.random_range(3..9)),
        };
        let free = |placer: &Placer, shape: &Shape, pad: f32| -> bool {
            let [x0, y0, x1, y1] = shape.pixel_box(pad, placer.size);
            for y in y0..y1 {
                for x in x0..x1 {
                    if shape.sdf(pixel_centre(x, y)) < pad {
                        let k = y * placer.size + x;
                        if placer.occupied[k] != 0 || placer.surface[k] != surface::LAND {
                            return false;
                        }
                    }
                }
            }
            true
        };
        for _ in 0..houses {
            for _attempt in 0..10 {
                let c = V2::new(rng.random_range(0.0..s), rng.random_range(0.0..s));
                let h = V2::new(rng.random_range(5.0..12.0) * u, rng.random_range(4.0..8.0) * u);
                let shape = Shape::new(
                    Frame::new(c, rng.random_range(0.0..std::f32::consts::PI)),
                    vec![Prim::rect(V2::ZERO, h, 0.5 * u)],
                );
                let with_shadow = Shape::new(
                    shape.frame,
                    vec![
                        Prim::rect(V2::ZERO, h, 0.0),
                        Prim::rect(shape.frame.dir_to_local(self.sun.scale(4.0 * u)), h, 0.0),
                    ],
                );
                if !free(self, &with_shadow, self.margin) {
                    continue;
                }
                let roof = *[
                    [124.0, 92.0, 72.0],
                    [158.0, 94.0, 66.0],
                    [92.0, 92.0, 98.0],
                    [188.0, 178.0, 158.0],
                ]
                .choose(rng)
                .unwrap_or(&[124.0, 92.0, 72.0]);
                // Houses occupy their place so that others keep off.
                let [x0, y0, x1, y1] = with_shadow.pixel_box(1.0, self.size);
                for y in y0..y1 {
                    for x in x0..x1 {
                        if with_shadow.sdf(pixel_centre(x, y)) < 1.0 {
                            self.occupied[y * self.size + x] = 2;
                        }
                    }
                }
                out.push(Clutter::House {
                    shape,
                    roof,
                    ridge: rng.random_bool(0.6),
                });
                break;
            }
        }
        for _ in 0..clusters {
            let c = V2::new(rng.random_range(0.0..s), rng.random_range(0.0..s));
            let spread = rng.random_range(0.04..0.12) * s;
            for _ in 0..rng.random_range(4..16) {
                let p = c + V2::new(rng.random_range(-spread..spread), rng.random_range(-spread..spread));
                let r = rng.random_range(2.5..6.0) * u;
                let shape = Shape::new(
                    Frame::new(p, 0.0),
                    vec![Prim::Segment {
                        a: V2::ZERO,
                        b: self.sun.scale(r * 0.8),
                        r,
                    }],
                );
                if free(self, &shape, self.margin) {
                    out.push(Clutter::Tree {
                        centre: p,
                        r,
                        shade: rng.random_range(0.75..1.1),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rect_and_poly_distances() {
        let r = Prim::rect(V2::ZERO, V2::new(2.0, 1.0), 0.0);
        assert!((r.sdf(V2::new(3.0, 0.0)) - 1.0).abs() < 1e-6);
        assert!((r.sdf(V2::ZERO) + 1.0).abs() < 1e-6);
        let sq = Prim::Poly(vec![
            V2::new(-1.0, -1.0),
            V2::new(1.0, -1.0),
            V2::new(1.0, 1.0),
            V2::new(-1.0, 1.0),
        ]);
        assert!((sq.sdf(V2::new(2.0, 0.0)) - 1.0).abs() < 1e-6);
        assert!((sq.sdf(V2::ZERO) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn frames_round_trip() {
        let f = Frame::new(V2::new(10.0, 5.0), 0.7);
        let p = V2::new(3.0, -4.0);
        let q = f.to_local(f.to_world(p));
        assert!((p - q).len() < 1e-5);
    }

    #[test]
    fn support_matches_rasterised_extent() {
        let s = Shape::new(
            Frame::new(V2::new(32.0, 32.0), 0.4),
            vec![Prim::rect(V2::ZERO, V2::new(10.0, 4.0), 0.0)],
        );
        let right = s.frame.origin.x + s.support(V2::new(1.0, 0.0));
        let mut max_x = 0.0f32;
        for y in 0..64 {
            for x in 0..64 {
                if s.sdf(pixel_centre(x, y)) < 0.0 {
                    max_x = max_x.max(x as f32 + 0.5);
                }
            }
        }
        assert!(max_x <= right + 1e-3 && max_x > right - 1.5);
    }
}
