//! Object geometry: each category's body and effects (shadows, a ship's
//! wake) in the object's own frame, and the size it is drawn at.

use rand::Rng;

use super::category::{Category, Colour, SizeBand};
use super::geometry::{Frame, Prim, Shape, V2};
use super::object::{Effect, Mask, Object};
use super::random::SynthRng;

/// Samples a size band and the characteristic length in it.
pub(super) fn sample_length(rng: &mut SynthRng, cat: Category, u: f32) -> (SizeBand, f32) {
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
pub(super) fn make_object(
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
        mask: Mask::default(),
    }
}

/// A windmill's three blades as polygons around the hub, in local space.
fn windmill_blades(l: f32, variant: f32, u: f32) -> Vec<Prim> {
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
