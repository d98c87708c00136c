//! Placing objects and clutter by rejection sampling against an occupancy
//! map.
//!
//! An object's *footprint* (its body, its shadow or wake, plus a margin) may
//! not touch any other footprint, so that every mask is exactly the object's
//! own visible pixels: nothing is ever drawn over an object except its own
//! details, and clutter (trees, houses) is placed last, only where no
//! footprint is. Each category has its rule for the surface under it (ships
//! on water, vehicles on roads or in lots, a bridge across the river).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use super::category::{Category, Colour};
use super::geometry::{inside, pixel_centre, Frame, Prim, Shape, DESIGN_SIZE, V2};
use super::layout::{surface, Background, Clutter, GroundKind};
use super::object::Object;
use super::random::SynthRng;
use super::render::Canvas;
use super::shapes::{make_object, sample_length};

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

/// The occupancy map and what placement reads: the surface map and the
/// rendered background (for colour contrast).
pub(super) struct Placer<'a> {
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

impl<'a> Placer<'a> {
    pub(super) fn new(size: usize, surface: &'a [u8], canvas: &'a Canvas, sun: V2, shadow_k: f32) -> Self {
        let u = size as f32 / DESIGN_SIZE;
        Self {
            size,
            u,
            margin: (3.0 * u).max(1.5),
            occupied: vec![0u8; size * size],
            surface,
            canvas,
            sun,
            shadow_k,
        }
    }

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
    pub(super) fn place_group(&mut self, rng: &mut SynthRng, cat: Category, n: usize) -> Vec<Object> {
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
    pub(super) fn place_vehicles(&mut self, rng: &mut SynthRng, n: usize, bg: &Background) -> Vec<Object> {
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
    pub(super) fn place_bridge(&mut self, rng: &mut SynthRng, bg: &Background) -> Vec<Object> {
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
    pub(super) fn place_ships(&mut self, rng: &mut SynthRng, n: usize, bg: &Background) -> Vec<Object> {
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
    pub(super) fn place_clutter(&mut self, rng: &mut SynthRng, bg: &Background) -> Vec<Clutter> {
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
