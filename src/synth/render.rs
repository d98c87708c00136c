//! Textures and drawing.
//!
//! Everything is drawn into a float RGB canvas with antialiasing from the
//! shapes' signed distances (coverage `clamp(0.5 - d, 0, 1)`), so an object's
//! mask (`d < 0` at the pixel centre) is exactly the set of pixels that are
//! more than half covered by it. Noise is hashed from pixel coordinates and
//! a per-image seed, never drawn from a shared generator, so that rendering
//! is deterministic whatever runs in parallel.

use super::category::{Category, Colour};
use super::geometry::{pixel_centre, Frame, Prim, Shape, DESIGN_SIZE, V2};
use super::layout::{Background, Clutter, Scene};
use super::object::{Effect, Object};

/// A float RGB image (0..255 per channel, row-major).
#[derive(Debug, Clone)]
pub(super) struct Canvas {
    size: usize,
    pub(super) px: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(size: usize) -> Self {
        Self {
            size,
            px: vec![[0.0; 3]; size * size],
        }
    }

    fn blend(&mut self, k: usize, c: [f32; 3], a: f32) {
        let p = &mut self.px[k];
        for i in 0..3 {
            p[i] += (c[i] - p[i]) * a;
        }
    }

    /// Rounds to 8-bit RGB, adding a little sensor noise.
    fn to_rgb8(&self, seed: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.px.len() * 3);
        for (k, p) in self.px.iter().enumerate() {
            let n = (hash01(seed, (k % self.size) as i32, (k / self.size) as i32) - 0.5) * 7.0;
            for c in p {
                out.push((c + n).round().clamp(0.0, 255.0) as u8);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Noise
// ---------------------------------------------------------------------------

fn hash(seed: u32, x: i32, y: i32) -> u32 {
    let mut h = seed ^ (x as u32).wrapping_mul(0x27d4_eb2d) ^ (y as u32).wrapping_mul(0x1656_67b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A hash in 0..1.
fn hash01(seed: u32, x: i32, y: i32) -> f32 {
    (hash(seed, x, y) >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in 0..1 with unit lattice spacing.
fn value_noise(seed: u32, x: f32, y: f32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (xi, yi) = (xf as i32, yf as i32);
    let (tx, ty) = (x - xf, y - yf);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = hash01(seed, xi, yi);
    let b = hash01(seed, xi + 1, yi);
    let c = hash01(seed, xi, yi + 1);
    let d = hash01(seed, xi + 1, yi + 1);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sy
}

/// Fractal noise: octaves of value noise, each twice as fine and half as
/// strong, normalised to 0..1.
fn fbm(seed: u32, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut total, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * value_noise(seed.wrapping_add(o * 7919), x * f, y * f);
        total += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / total
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn mul(a: [f32; 3], k: f32) -> [f32; 3] {
    [a[0] * k, a[1] * k, a[2] * k]
}

fn coverage(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

/// Paints a shape; `paint` gets the pixel's local coordinates.
fn fill<F: Fn(V2) -> [f32; 3]>(canvas: &mut Canvas, shape: &Shape, alpha: f32, paint: F) {
    let size = canvas.size;
    let [x0, y0, x1, y1] = shape.pixel_box(1.0, size);
    for y in y0..y1 {
        for x in x0..x1 {
            let l = shape.frame.to_local(pixel_centre(x, y));
            let a = coverage(shape.sdf_local(l)) * alpha;
            if a > 0.0 {
                canvas.blend(y * size + x, paint(l), a);
            }
        }
    }
}

/// Darkens what is under a shape.
fn darken(canvas: &mut Canvas, shape: &Shape, alpha: f32) {
    let size = canvas.size;
    let [x0, y0, x1, y1] = shape.pixel_box(1.0, size);
    for y in y0..y1 {
        for x in x0..x1 {
            let a = coverage(shape.sdf(pixel_centre(x, y))) * alpha;
            if a > 0.0 {
                let k = y * size + x;
                let p = canvas.px[k];
                canvas.px[k] = mul(p, 1.0 - a);
            }
        }
    }
}

/// Local-frame primitives painted in one flat colour.
fn detail(canvas: &mut Canvas, o: &Object, prims: Vec<Prim>, colour: [f32; 3], alpha: f32) {
    let shape = Shape::new(o.body.frame, prims);
    fill(canvas, &shape, alpha, |_| colour);
}

fn seg(a: V2, b: V2, r: f32) -> Prim {
    Prim::Segment { a, b, r }
}

fn outline(c: V2, h: V2, hw: f32) -> Prim {
    Prim::Rect {
        c,
        h,
        round: 0.0,
        outline: hw,
    }
}

// ---------------------------------------------------------------------------
// Background
// ---------------------------------------------------------------------------

/// Pixels between samples of the ground noise. The noise is smooth at that
/// scale, and sampling it on a grid instead of at every pixel is most of
/// the background's cost saved.
const NOISE_STEP: usize = 2;

/// Two noise fields sampled every `step` pixels, bilinearly interpolated.
struct NoiseGrid {
    step: usize,
    width: usize,
    values: Vec<(f32, f32)>,
}

impl NoiseGrid {
    fn new(size: usize, step: usize, f: impl Fn(V2) -> (f32, f32)) -> Self {
        let width = size / step + 2;
        let mut values = Vec::with_capacity(width * width);
        for gy in 0..width {
            for gx in 0..width {
                values.push(f(pixel_centre(gx * step, gy * step)));
            }
        }
        Self { step, width, values }
    }

    fn at(&self, x: usize, y: usize) -> (f32, f32) {
        let (gx, gy) = (x / self.step, y / self.step);
        let tx = (x % self.step) as f32 / self.step as f32;
        let ty = (y % self.step) as f32 / self.step as f32;
        let v = |i: usize, j: usize| self.values[j * self.width + i];
        let lerp = |a: (f32, f32), b: (f32, f32), t: f32| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let top = lerp(v(gx, gy), v(gx + 1, gy), tx);
        let bottom = lerp(v(gx, gy + 1), v(gx + 1, gy + 1), tx);
        lerp(top, bottom, ty)
    }
}

/// Ground, fields, water, roads and lots.
pub(super) fn background(bg: &Background) -> Canvas {
    let size = bg.size;
    let s = size as f32;
    let u = s / DESIGN_SIZE;
    let mut canvas = Canvas::new(size);
    let seed = bg.noise_seed;
    let sand = [188.0, 174.0, 136.0];
    let ground = NoiseGrid::new(size, NOISE_STEP, |p| {
        let (nx, ny) = (p.x / s * 3.0, p.y / s * 3.0);
        (fbm(seed, nx, ny, 4), fbm(seed ^ 0x9e37_79b9, nx * 5.0, ny * 5.0, 2))
    });
    for y in 0..size {
        for x in 0..size {
            let k = y * size + x;
            let p = pixel_centre(x, y);
            let (g, speckle) = ground.at(x, y);
            let mut c = mix(bg.ground[0], bg.ground[1], ((g - 0.3) / 0.4).clamp(0.0, 1.0));
            c = mul(c, 0.9 + 0.2 * speckle);
            for f in &bg.fields {
                let a = coverage(f.shape.sdf(p));
                if a > 0.0 {
                    let t = [c[0] * f.tint[0], c[1] * f.tint[1], c[2] * f.tint[2]];
                    c = mix(c, t, a);
                }
            }
            let w = bg.water_sdf[k];
            if w.is_finite() {
                let bank = coverage(w - bg.bank_width);
                if bank > 0.0 {
                    c = mix(c, mul(sand, 0.92 + 0.16 * speckle), bank);
                }
                let wet = coverage(w);
                if wet > 0.0 {
                    let depth = (-w / (10.0 * u)).clamp(0.0, 1.0);
                    let ripple = fbm(seed ^ 0x51ed_27a3, p.x / s * 14.0, p.y / s * 4.0, 2);
                    let water = mul(bg.water, 1.3 - 0.3 * depth + 0.12 * (ripple - 0.5));
                    c = mix(c, water, wet);
                }
            }
            for (road, (dist, arc)) in bg.roads.iter().zip(&bg.road_fields) {
                let d = dist[k];
                if !d.is_finite() {
                    continue;
                }
                let hw = road.width * 0.5;
                let a = coverage(d - hw);
                if a <= 0.0 {
                    continue;
                }
                let asphalt = mul([96.0, 96.0, 100.0], 0.94 + 0.12 * speckle);
                c = mix(c, asphalt, a);
                let edge = coverage((d - (hw - 3.0 * u)).abs() - 0.6 * u);
                c = mix(c, [196.0, 196.0, 190.0], edge * 0.8);
                let dash = (arc[k] / (18.0 * u)).fract() < 0.55;
                if dash {
                    let centre = coverage(d - 0.8 * u);
                    c = mix(c, [226.0, 214.0, 150.0], centre * 0.9);
                }
            }
            for lot in &bg.lots {
                let a = coverage(lot.shape.sdf(p));
                if a <= 0.0 {
                    continue;
                }
                c = mix(c, mul([128.0, 128.0, 126.0], 0.95 + 0.1 * speckle), a);
                let l = lot.shape.frame.to_local(p);
                let n = lot.stalls.len() as f32;
                let mut line = f32::INFINITY;
                for i in 0..=lot.stalls.len() {
                    let lx = (i as f32 - n * 0.5) * lot.stall_width;
                    let dy = (l.y.abs() - lot.depth * 0.5).max(0.0);
                    line = line.min(V2::new(l.x - lx, dy).len());
                }
                c = mix(c, [222.0, 222.0, 214.0], coverage(line - 0.6 * u) * a);
            }
            canvas.px[k] = c;
        }
    }
    canvas
}

// ---------------------------------------------------------------------------
// Clutter and objects
// ---------------------------------------------------------------------------

/// Everything on the ground: clutter, then object shadows and wakes, then
/// the objects.
fn foreground(canvas: &mut Canvas, scene: &Scene) {
    let u = scene.size as f32 / DESIGN_SIZE;
    for c in &scene.clutter {
        match c {
            Clutter::House { shape, roof, ridge } => {
                darken(canvas, &shape.translated(scene.sun.scale(4.0 * u)), 0.4);
                let roof = *roof;
                let ridge = *ridge;
                fill(canvas, shape, 1.0, |l| {
                    if ridge && l.y > 0.0 {
                        mul(roof, 0.82)
                    } else {
                        roof
                    }
                });
            }
            Clutter::Tree { centre, r, .. } => {
                let sh = Shape::new(
                    Frame::new(*centre, 0.0),
                    vec![Prim::Circle {
                        c: scene.sun.scale(r * 0.8),
                        r: *r,
                    }],
                );
                darken(canvas, &sh, 0.4);
            }
        }
    }
    for c in &scene.clutter {
        if let Clutter::Tree { centre, r, shade } = c {
            let sh = Shape::new(Frame::new(*centre, 0.0), vec![Prim::Circle { c: V2::ZERO, r: *r }]);
            let base = mul([44.0, 76.0, 40.0], *shade);
            let sun = scene.sun;
            let r = *r;
            fill(canvas, &sh, 0.95, |l| mul(base, 1.0 - 0.25 * l.dot(sun) / r));
        }
    }
    for o in &scene.objects {
        for (shape, effect) in &o.effects {
            match *effect {
                Effect::Shadow(a) => darken(canvas, shape, a),
                Effect::Wake { stern, length } => {
                    // Foam, strongest at the stern, fading out behind.
                    let size = canvas.size;
                    let [x0, y0, x1, y1] = shape.pixel_box(1.0, size);
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let l = shape.frame.to_local(pixel_centre(x, y));
                            let t = ((stern - l.x) / length).clamp(0.0, 1.0);
                            let a = coverage(shape.sdf_local(l)) * 0.75 * (1.0 - t) * (1.0 - t);
                            if a > 0.0 {
                                canvas.blend(y * size + x, [214.0, 224.0, 226.0], a);
                            }
                        }
                    }
                }
            }
        }
    }
    for o in &scene.objects {
        draw_object(canvas, o, scene.sun, u);
    }
}

/// Draws one object's body and its details (all inside the body).
fn draw_object(canvas: &mut Canvas, o: &Object, sun: V2, u: f32) {
    let l = o.length;
    let rgb = o.rgb;
    let sun_local = o.body.frame.dir_to_local(sun);
    let line = (0.6 * u).max(0.45);
    let white = [238.0, 238.0, 232.0];
    match o.category {
        Category::StorageTank => {
            let r = l * 0.5;
            fill(canvas, &o.body, 1.0, |p| mul(rgb, 1.0 - 0.14 * p.dot(sun_local) / r));
            if o.variant < 0.5 {
                // Floating roof: a darker inner deck with a rim.
                detail(
                    canvas,
                    o,
                    vec![Prim::Circle {
                        c: V2::ZERO,
                        r: 0.8 * r,
                    }],
                    mul(rgb, 0.82),
                    1.0,
                );
                detail(
                    canvas,
                    o,
                    vec![Prim::Circle {
                        c: sun_local.scale(0.1 * r),
                        r: 0.14 * r,
                    }],
                    mul(rgb, 0.7),
                    1.0,
                );
            } else {
                // Fixed roof: a ring of seams and a vent in the middle.
                detail(
                    canvas,
                    o,
                    vec![Prim::Ring {
                        c: V2::ZERO,
                        r: 0.62 * r,
                        hw: (0.05 * r).max(0.5),
                        side: 0.0,
                    }],
                    mul(rgb, 0.78),
                    0.9,
                );
                detail(
                    canvas,
                    o,
                    vec![Prim::Circle {
                        c: V2::ZERO,
                        r: 0.12 * r,
                    }],
                    mul(rgb, 0.72),
                    1.0,
                );
            }
        }
        Category::Vehicle => {
            let w = (l * 0.5).max(14.0 * u);
            fill(canvas, &o.body, 1.0, |_| rgb);
            let glass = [32.0, 38.0, 48.0];
            detail(
                canvas,
                o,
                vec![Prim::rect(V2::new(0.17 * l, 0.0), V2::new(0.07 * l, 0.38 * w), 0.1 * w)],
                glass,
                0.9,
            );
            detail(
                canvas,
                o,
                vec![Prim::rect(
                    V2::new(-0.28 * l, 0.0),
                    V2::new(0.05 * l, 0.36 * w),
                    0.1 * w,
                )],
                glass,
                0.85,
            );
            detail(
                canvas,
                o,
                vec![Prim::rect(
                    V2::new(-0.05 * l, 0.0),
                    V2::new(0.15 * l, 0.36 * w),
                    0.1 * w,
                )],
                mul(rgb, 1.08),
                0.7,
            );
        }
        Category::Airplane => {
            fill(canvas, &o.body, 1.0, |p| mul(rgb, 1.0 - 0.06 * p.dot(sun_local) / l));
            let fw = (0.075 * l).max(3.0 * u);
            detail(
                canvas,
                o,
                vec![seg(V2::new(-0.4 * l, 0.0), V2::new(0.35 * l, 0.0), 0.25 * fw)],
                mul(rgb, 0.88),
                0.8,
            );
            detail(
                canvas,
                o,
                vec![Prim::rect(
                    V2::new(0.43 * l, 0.0),
                    V2::new(0.03 * l, 0.6 * fw),
                    0.3 * fw,
                )],
                [40.0, 48.0, 60.0],
                0.9,
            );
        }
        Category::Ship => {
            let w = (l * 0.25).max(14.0 * u);
            fill(canvas, &o.body, 1.0, |p| {
                mul(rgb, 1.0 - 0.08 * p.y.signum() * sun_local.y.signum())
            });
            // Deck: a lighter inset, hatches, and the bridge house at the stern.
            let deck = if o.colour == Colour::White {
                [200.0, 204.0, 206.0]
            } else {
                mul(rgb, 1.15)
            };
            detail(
                canvas,
                o,
                vec![Prim::rect(V2::new(-0.08 * l, 0.0), V2::new(0.34 * l, 0.3 * w), 0.1 * w)],
                deck,
                0.8,
            );
            let hatch = [96.0, 92.0, 88.0];
            let hatches = 2 + (o.variant * 3.0) as usize;
            for i in 0..hatches {
                let x = -0.1 * l + (i as f32 + 0.5) * 0.36 * l / hatches as f32;
                detail(
                    canvas,
                    o,
                    vec![Prim::rect(
                        V2::new(x, 0.0),
                        V2::new(0.12 * l / hatches as f32, 0.22 * w),
                        0.0,
                    )],
                    hatch,
                    0.85,
                );
            }
            let house = if o.colour == Colour::White {
                [170.0, 174.0, 178.0]
            } else {
                [236.0, 236.0, 232.0]
            };
            detail(
                canvas,
                o,
                vec![Prim::rect(
                    V2::new(-0.36 * l, 0.0),
                    V2::new(0.07 * l, 0.34 * w),
                    0.05 * w,
                )],
                house,
                1.0,
            );
        }
        Category::Bridge => {
            // `length` is the deck width; the span is the body's x extent.
            let w = l;
            let span = o.body.support(o.body.frame.dir_to_world(V2::new(1.0, 0.0)));
            fill(canvas, &o.body, 1.0, |_| rgb);
            let rail = mul(rgb, 0.7);
            for side in [-1.0f32, 1.0] {
                detail(
                    canvas,
                    o,
                    vec![seg(
                        V2::new(-span + 1.0, side * (0.5 * w - 1.6 * u)),
                        V2::new(span - 1.0, side * (0.5 * w - 1.6 * u)),
                        line,
                    )],
                    rail,
                    0.9,
                );
            }
            detail(
                canvas,
                o,
                vec![seg(V2::new(-span + 3.0, 0.0), V2::new(span - 3.0, 0.0), line * 0.8)],
                white,
                0.6,
            );
        }
        Category::TennisCourt => {
            let w = (l * 0.5).max(14.0 * u);
            fill(canvas, &o.body, 1.0, |_| mul(rgb, 0.85));
            let (hx, hy) = (0.4 * l, 0.38 * w);
            detail(canvas, o, vec![Prim::rect(V2::ZERO, V2::new(hx, hy), 0.0)], rgb, 1.0);
            let prims = vec![
                outline(V2::ZERO, V2::new(hx, hy), line),
                seg(V2::new(-hx, 0.28 * w), V2::new(hx, 0.28 * w), line),
                seg(V2::new(-hx, -0.28 * w), V2::new(hx, -0.28 * w), line),
                seg(V2::new(-0.23 * l, -0.28 * w), V2::new(-0.23 * l, 0.28 * w), line),
                seg(V2::new(0.23 * l, -0.28 * w), V2::new(0.23 * l, 0.28 * w), line),
                seg(V2::new(-0.23 * l, 0.0), V2::new(0.23 * l, 0.0), line),
            ];
            detail(canvas, o, prims, white, 0.95);
            detail(
                canvas,
                o,
                vec![seg(V2::new(0.0, -0.44 * w), V2::new(0.0, 0.44 * w), line * 1.6)],
                [48.0, 50.0, 52.0],
                0.95,
            );
        }
        Category::BasketballCourt => {
            let w = (l * 0.56).max(14.0 * u);
            fill(canvas, &o.body, 1.0, |_| rgb);
            let (hx, hy) = (0.44 * l, 0.42 * w);
            for side in [-1.0f32, 1.0] {
                detail(
                    canvas,
                    o,
                    vec![Prim::rect(
                        V2::new(side * (hx - 0.09 * l), 0.0),
                        V2::new(0.09 * l, 0.14 * w),
                        0.0,
                    )],
                    mul(rgb, 0.72),
                    1.0,
                );
            }
            let mut prims = vec![
                outline(V2::ZERO, V2::new(hx, hy), line),
                seg(V2::new(0.0, -hy), V2::new(0.0, hy), line),
                Prim::Ring {
                    c: V2::ZERO,
                    r: 0.09 * l,
                    hw: line,
                    side: 0.0,
                },
            ];
            for side in [-1.0f32, 1.0] {
                prims.push(outline(
                    V2::new(side * (hx - 0.09 * l), 0.0),
                    V2::new(0.09 * l, 0.14 * w),
                    line,
                ));
                prims.push(Prim::Ring {
                    c: V2::new(side * (hx - 0.04 * l), 0.0),
                    r: (0.2 * l).min(hy - 1.0),
                    hw: line,
                    side: -side,
                });
            }
            detail(canvas, o, prims, white, 0.95);
        }
        Category::GroundTrackField => {
            let w = l * 0.58;
            fill(canvas, &o.body, 1.0, |_| rgb);
            let tw = 0.14 * w;
            let inner = V2::new(0.5 * l - tw, 0.5 * w - tw);
            let stripe = 0.07 * l;
            let field = Shape::new(o.body.frame, vec![Prim::rect(V2::ZERO, inner, inner.y)]);
            fill(canvas, &field, 1.0, |p| {
                if (p.x / stripe).floor() as i64 % 2 == 0 {
                    [72.0, 142.0, 64.0]
                } else {
                    [84.0, 156.0, 72.0]
                }
            });
            let mut prims = Vec::new();
            for k in 1..4 {
                let inset = tw * k as f32 / 4.0;
                let h = V2::new(0.5 * l - inset, 0.5 * w - inset);
                prims.push(Prim::Rect {
                    c: V2::ZERO,
                    h,
                    round: h.y,
                    outline: line * 0.8,
                });
            }
            prims.push(outline(V2::ZERO, V2::new(0.25 * l, 0.24 * w), line));
            prims.push(seg(V2::new(0.0, -0.24 * w), V2::new(0.0, 0.24 * w), line));
            detail(canvas, o, prims, white, 0.85);
        }
        Category::Windmill => {
            fill(canvas, &o.body, 1.0, |p| mul(rgb, 1.0 - 0.05 * p.dot(sun_local) / l));
            detail(
                canvas,
                o,
                vec![Prim::Circle {
                    c: V2::ZERO,
                    r: 0.06 * l,
                }],
                [150.0, 152.0, 156.0],
                1.0,
            );
        }
        Category::Chimney => {
            let wb = (0.24 * l).max(14.0 * u);
            let wt = 0.72 * wb;
            let striped = o.colour == Colour::Red;
            let bands = 7.0 + (o.variant * 4.0).floor();
            fill(canvas, &o.body, 1.0, |p| {
                // Lit on one side, darker towards the base.
                let side = 1.0 - 0.16 * (p.y / (0.5 * wb)).clamp(-1.0, 1.0);
                let height = 0.88 + 0.12 * ((p.x / l) + 0.5);
                let base = if striped && (((p.x / l) + 0.5) * bands).floor() as i64 % 2 == 1 && p.x > -0.1 * l {
                    white
                } else {
                    rgb
                };
                mul(base, side * height)
            });
            detail(
                canvas,
                o,
                vec![Prim::Circle {
                    c: V2::new(0.5 * l - 0.5 * wt, 0.0),
                    r: 0.3 * wt,
                }],
                [36.0, 34.0, 34.0],
                1.0,
            );
        }
    }
}

/// The whole image of a scene on its rendered background.
pub(super) fn render(scene: &Scene, mut canvas: Canvas, noise_seed: u32) -> Vec<u8> {
    foreground(&mut canvas, scene);
    canvas.to_rgb8(noise_seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_smooth_and_bounded() {
        let mut last = value_noise(7, 0.0, 0.3);
        for i in 1..200 {
            let v = value_noise(7, i as f32 * 0.01, 0.3);
            assert!((0.0..=1.0).contains(&v));
            assert!((v - last).abs() < 0.05, "jump at {i}");
            last = v;
        }
        let f = fbm(3, 1.3, 2.7, 4);
        assert!((0.0..=1.0).contains(&f));
    }
}
