//! What is where in one finished scene: the background (ground, water,
//! roads, parking lots and the surface map), the objects and the clutter.
//! `scene` builds a scene; `render` draws it.

use super::geometry::{pixel_centre, segment_projection, Frame, Prim, Shape, V2};
use super::object::Object;

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
    points: Vec<V2>,
    /// Arc length at each point.
    arc: Vec<f32>,
    pub width: f32,
}

impl Path {
    pub(super) fn new(points: Vec<V2>, width: f32) -> Self {
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

/// Non-category things drawn to make the ground less empty.
#[derive(Debug, Clone)]
pub enum Clutter {
    Tree { centre: V2, r: f32, shade: f32 },
    House { shape: Shape, roof: [f32; 3], ridge: bool },
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
