//! Plane geometry in pixels: vectors, an object's own frame, primitives as
//! signed distance functions, and shapes (unions of primitives in a frame).
//!
//! Geometry is kept analytic so that an object's mask and its drawing come
//! from the same function: a pixel is in the mask exactly when its centre is
//! inside, and the drawing antialiases around that same boundary.

/// Scenes are designed at 256 px; every length is multiplied by `size / 256`.
pub const DESIGN_SIZE: f32 = 256.0;

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
    cos: f32,
    sin: f32,
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

    fn sdf(&self, p: V2) -> f32 {
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
    fn support(&self, dir: V2) -> f32 {
        match self {
            Prim::Circle { c, r } => c.dot(dir) + r,
            Prim::Rect { c, h, outline, .. } => c.dot(dir) + h.x * dir.x.abs() + h.y * dir.y.abs() + outline,
            Prim::Poly(pts) => pts.iter().map(|p| p.dot(dir)).fold(f32::MIN, f32::max),
            Prim::Segment { a, b, r } => a.dot(dir).max(b.dot(dir)) + r,
            Prim::Ring { c, r, hw, .. } => c.dot(dir) + r + hw,
        }
    }
}

/// Distance from `p` to the segment `a..b`.
fn segment_distance(p: V2, a: V2, b: V2) -> f32 {
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
