//! Laying out a scene's background: ground colours, field patches, a river
//! or a lake, roads that keep off the water, a parking lot for vehicles,
//! and the per-pixel surface map that placement rules read.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::category::Category;
use super::geometry::{inside, pixel_centre, Frame, Prim, Shape, DESIGN_SIZE, V2};
use super::layout::{surface, Background, Field, GroundKind, Lake, Lot, Path};
use super::random::SynthRng;

/// Samples the ground, water, roads and lots, and computes the surface map.
pub(super) fn layout_background(
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
