//! Building one scene: what is where in one synthetic image.
//!
//! A scene is planned (which categories, how many of each), then a
//! background is laid out ([`super::background`]) and rendered, and then
//! objects are placed one by one ([`super::placement`]) and rasterised into
//! their masks.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::background::layout_background;
use super::category::Category;
use super::geometry::V2;
use super::layout::Scene;
use super::placement::Placer;
use super::random::SynthRng;
use super::render::{self, Canvas};

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

/// Lays out, places and rasterises one scene. Returns the scene and the
/// rendered background (ground, water, roads, lots) that objects and clutter
/// are then drawn on.
///
/// A layout where fewer than two objects found room is drawn again (from
/// the same stream, so still deterministic); after a few tries the fullest
/// one is kept.
pub(super) fn build(rng: &mut SynthRng, size: usize) -> (Scene, Canvas) {
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
    let counts = plan(rng);
    let has = |c: Category| counts.iter().any(|(k, _)| *k == c);
    let vehicles_on_lot = has(Category::Vehicle) && rng.random_bool(0.5);
    let background = layout_background(rng, size, &counts, vehicles_on_lot);
    let canvas = render::background(&background);
    let sun = V2::from_angle(rng.random_range(0.0..std::f32::consts::TAU));
    let shadow_k = rng.random_range(0.6..1.0f32);
    let mut placer = Placer::new(size, &background.surface, &canvas, sun, shadow_k);
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
