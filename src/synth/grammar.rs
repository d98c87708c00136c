//! Referring sentences: a small grammar, the predicates it stands for, and
//! the check that a sentence picks out exactly one object.
//!
//! A sentence is the text of a [`Descriptor`]: category (noun), optional
//! size word, colour, and then either a selector ("the largest", "the
//! leftmost", "the second ... from the left") or an absolute position ("in
//! the upper left") and/or a relation to another object ("next to the
//! bridge"). Each part is a predicate evaluated on every object of the scene
//! with three values: yes, no, or *maybe* when the object is too close to a
//! border of the predicate (a centre near the line between two thirds of
//! the image, two tanks of nearly the same size). A sentence is kept only
//! when it is *yes* for its object and *no* for every other object, so the
//! data never asks a model to guess on a borderline case; a negative
//! sentence must be *no* for all objects.
//!
//! [`parse`] reads a sentence back into its descriptor, so that tests (and
//! anyone holding a generated dataset) can re-check every annotation against
//! the regenerated scene.

use std::collections::BTreeSet;

use rand::seq::IndexedRandom;
use rand::Rng;

use super::category::{Category, Colour, SizeBand};
use super::geometry::V2;
use super::layout::Scene;
use super::random::SynthRng;

/// Longest sentence, in words (RISORS sentences are short).
pub const MAX_WORDS: usize = 20;

/// Distance (fraction of the image side) that a centre must keep from the
/// line between two thirds for a position word to be clear.
const REGION_MARGIN: f32 = 0.04;
/// Least difference of centre coordinates (fraction of the side) between
/// neighbours in an ordering ("leftmost", "second from the top").
const ORDER_GAP: f32 = 0.08;
/// Least length ratio between the largest (smallest) object and the next.
const SUPERLATIVE_RATIO: f32 = 1.3;
/// "next to": gap at most this (fraction of the side) is yes ...
const NEAR_YES: f32 = 0.05;
/// ... and at least this is no.
const NEAR_NO: f32 = 0.12;
/// Directional relations: least offset along the direction for yes, and
/// the largest sideways offset as a share of it.
const DIR_YES_ALONG: f32 = 0.08;
const DIR_YES_SLOPE: f32 = 0.6;
/// ... and no when the offset along is below this or the slope above that.
const DIR_NO_ALONG: f32 = 0.02;
const DIR_NO_SLOPE: f32 = 1.2;

/// A three-valued truth: `No < Maybe < Yes`, so "and" is the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Truth {
    No,
    Maybe,
    Yes,
}

impl Truth {
    pub fn and(self, other: Truth) -> Truth {
        self.min(other)
    }
    fn from_bool(b: bool) -> Truth {
        if b {
            Truth::Yes
        } else {
            Truth::No
        }
    }
}

// ---------------------------------------------------------------------------
// What the predicates look at
// ---------------------------------------------------------------------------

/// The facts about one object that sentences can mention.
#[derive(Debug, Clone)]
pub struct Fact {
    pub category: Category,
    pub colour: Colour,
    pub band: SizeBand,
    /// Characteristic length in pixels.
    pub length: f32,
    /// Mask centroid as a fraction of the image side (0..1, y down).
    pub centre: V2,
}

/// The facts of a scene, and the gaps between objects.
#[derive(Debug, Clone)]
pub struct Facts {
    pub objects: Vec<Fact>,
    /// `gaps[i][j]`: least distance between the two masks, as a fraction
    /// of the image side.
    pub gaps: Vec<Vec<f32>>,
}

impl Facts {
    /// Facts and gaps given directly (for tests and other callers).
    pub fn new(objects: Vec<Fact>, gaps: Vec<Vec<f32>>) -> Self {
        Self { objects, gaps }
    }

    /// Reads the facts off a placed scene (masks must be rasterised).
    pub fn from_scene(scene: &Scene) -> Self {
        let s = scene.size as f32;
        let objects: Vec<Fact> = scene
            .objects
            .iter()
            .map(|o| {
                let c = o.mask.centroid();
                Fact {
                    category: o.category,
                    colour: o.colour,
                    band: o.band,
                    length: o.length,
                    centre: V2::new(c.x / s, c.y / s),
                }
            })
            .collect();
        let boundaries: Vec<Vec<V2>> = scene.objects.iter().map(|o| o.mask.boundary()).collect();
        let n = objects.len();
        let mut gaps = vec![vec![0.0f32; n]; n];
        for i in 0..n {
            for j in (i + 1)..n {
                let g = min_distance(&boundaries[i], &boundaries[j]) / s;
                gaps[i][j] = g;
                gaps[j][i] = g;
            }
        }
        Self { objects, gaps }
    }

    fn len(&self) -> usize {
        self.objects.len()
    }
}

/// Least distance between two point sets (exact; pruned by the box of `b`).
fn min_distance(a: &[V2], b: &[V2]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return f32::INFINITY;
    }
    let (mut lo, mut hi) = (V2::new(f32::MAX, f32::MAX), V2::new(f32::MIN, f32::MIN));
    for p in b {
        lo = V2::new(lo.x.min(p.x), lo.y.min(p.y));
        hi = V2::new(hi.x.max(p.x), hi.y.max(p.y));
    }
    let mut best = f32::INFINITY;
    for p in a {
        let dx = (lo.x - p.x).max(p.x - hi.x).max(0.0);
        let dy = (lo.y - p.y).max(p.y - hi.y).max(0.0);
        if dx * dx + dy * dy >= best * best {
            continue;
        }
        for q in b {
            best = best.min((*p - *q).len());
        }
    }
    best
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Left,
    Right,
    Top,
    Bottom,
}

impl Dir {
    pub const ALL: [Dir; 4] = [Dir::Left, Dir::Right, Dir::Top, Dir::Bottom];

    fn word(self) -> &'static str {
        match self {
            Dir::Left => "left",
            Dir::Right => "right",
            Dir::Top => "top",
            Dir::Bottom => "bottom",
        }
    }

    fn extreme(self) -> &'static str {
        match self {
            Dir::Left => "leftmost",
            Dir::Right => "rightmost",
            Dir::Top => "topmost",
            Dir::Bottom => "bottommost",
        }
    }

    /// Sort key: smallest first when counting "from" this side.
    fn key(self, c: V2) -> f32 {
        match self {
            Dir::Left => c.x,
            Dir::Right => -c.x,
            Dir::Top => c.y,
            Dir::Bottom => -c.y,
        }
    }
}

/// Picks one object out of a set by rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Select {
    Largest,
    Smallest,
    /// "the leftmost ..."
    Extreme(Dir),
    /// "the second ... from the left" (2 or 3).
    Ordinal(u8, Dir),
}

const ORDINALS: [(u8, &str); 2] = [(2, "second"), (3, "third")];

/// A place in the image: corners and the centre are cells of a 3 x 3 grid,
/// "on the left" / "at the top" ... are whole columns and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    UpperLeft,
    Top,
    UpperRight,
    Left,
    Center,
    Right,
    LowerLeft,
    Bottom,
    LowerRight,
}

impl Region {
    pub const ALL: [Region; 9] = [
        Region::UpperLeft,
        Region::Top,
        Region::UpperRight,
        Region::Left,
        Region::Center,
        Region::Right,
        Region::LowerLeft,
        Region::Bottom,
        Region::LowerRight,
    ];

    pub fn phrase(self) -> &'static str {
        match self {
            Region::UpperLeft => "in the upper left",
            Region::Top => "at the top",
            Region::UpperRight => "in the upper right",
            Region::Left => "on the left",
            Region::Center => "in the center",
            Region::Right => "on the right",
            Region::LowerLeft => "in the lower left",
            Region::Bottom => "at the bottom",
            Region::LowerRight => "in the lower right",
        }
    }

    /// (column, row) thirds the region requires; `None` = any.
    fn cells(self) -> (Option<u8>, Option<u8>) {
        match self {
            Region::UpperLeft => (Some(0), Some(0)),
            Region::Top => (None, Some(0)),
            Region::UpperRight => (Some(2), Some(0)),
            Region::Left => (Some(0), None),
            Region::Center => (Some(1), Some(1)),
            Region::Right => (Some(2), None),
            Region::LowerLeft => (Some(0), Some(2)),
            Region::Bottom => (None, Some(2)),
            Region::LowerRight => (Some(2), Some(2)),
        }
    }

    fn truth(self, c: V2) -> Truth {
        let (col, row) = self.cells();
        let mut t = Truth::Yes;
        if let Some(k) = col {
            t = t.and(third(c.x, k));
        }
        if let Some(k) = row {
            t = t.and(third(c.y, k));
        }
        t
    }
}

/// Whether coordinate `v` (0..1) lies in third `k`, with a margin.
fn third(v: f32, k: u8) -> Truth {
    let lo = f32::from(k) / 3.0;
    let hi = f32::from(k + 1) / 3.0;
    let m = REGION_MARGIN;
    let clearly_in = (k == 0 || v >= lo + m) && (k == 2 || v <= hi - m);
    let clearly_out = (k > 0 && v < lo - m) || (k < 2 && v > hi + m);
    if clearly_in {
        Truth::Yes
    } else if clearly_out {
        Truth::No
    } else {
        Truth::Maybe
    }
}

/// A relation between the described object and an anchor object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelKind {
    NextTo,
    /// Same meaning as `NextTo`, another wording.
    Near,
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl RelKind {
    pub const ALL: [RelKind; 6] = [
        RelKind::NextTo,
        RelKind::Near,
        RelKind::LeftOf,
        RelKind::RightOf,
        RelKind::Above,
        RelKind::Below,
    ];

    pub fn phrase(self) -> &'static str {
        match self {
            RelKind::NextTo => "next to",
            RelKind::Near => "near",
            RelKind::LeftOf => "to the left of",
            RelKind::RightOf => "to the right of",
            RelKind::Above => "above",
            RelKind::Below => "below",
        }
    }

    /// Whether object `o` stands in this relation to anchor `a`.
    fn truth(self, o: &Fact, a: &Fact, gap: f32) -> Truth {
        let d = o.centre - a.centre;
        let (along, side) = match self {
            RelKind::NextTo | RelKind::Near => {
                return if gap <= NEAR_YES {
                    Truth::Yes
                } else if gap >= NEAR_NO {
                    Truth::No
                } else {
                    Truth::Maybe
                };
            }
            RelKind::LeftOf => (-d.x, d.y.abs()),
            RelKind::RightOf => (d.x, d.y.abs()),
            RelKind::Above => (-d.y, d.x.abs()),
            RelKind::Below => (d.y, d.x.abs()),
        };
        if along >= DIR_YES_ALONG && side <= DIR_YES_SLOPE * along {
            Truth::Yes
        } else if along <= DIR_NO_ALONG || side >= DIR_NO_SLOPE * along {
            Truth::No
        } else {
            Truth::Maybe
        }
    }
}

/// The object a relation refers to: "the [colour] noun".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Anchor {
    pub category: Category,
    /// Index into the category's nouns.
    pub noun: usize,
    pub colour: Option<Colour>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Relation {
    pub kind: RelKind,
    pub anchor: Anchor,
}

/// The meaning of one referring sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Descriptor {
    pub category: Category,
    /// Index into the category's nouns (wording only).
    pub noun: usize,
    pub colour: Option<Colour>,
    /// `Small` or `Large` ("medium" is never said).
    pub size: Option<SizeBand>,
    /// Exclusive with `region` and `relation`.
    pub select: Option<Select>,
    pub region: Option<Region>,
    pub relation: Option<Relation>,
}

impl Descriptor {
    /// "the <category>" and nothing else.
    pub fn plain(category: Category) -> Self {
        Self {
            category,
            noun: 0,
            colour: None,
            size: None,
            select: None,
            region: None,
            relation: None,
        }
    }

    /// The sentence, lower case, words separated by single spaces.
    pub fn text(&self) -> String {
        let mut w: Vec<&str> = vec!["the"];
        match self.select {
            Some(Select::Largest) => w.push("largest"),
            Some(Select::Smallest) => w.push("smallest"),
            Some(Select::Extreme(d)) => w.push(d.extreme()),
            Some(Select::Ordinal(n, _)) => w.push(ordinal_word(n)),
            None => match self.size {
                Some(SizeBand::Small) => w.push("small"),
                Some(SizeBand::Large) => w.push("large"),
                _ => {}
            },
        }
        if let Some(c) = self.colour {
            w.push(c.word());
        }
        w.push(noun(self.category, self.noun));
        if let Some(Select::Ordinal(_, d)) = self.select {
            w.extend(["from", "the", d.word()]);
        }
        if let Some(r) = self.region {
            w.push(r.phrase());
        }
        if let Some(rel) = self.relation {
            w.push(rel.kind.phrase());
            w.push("the");
            if let Some(c) = rel.anchor.colour {
                w.push(c.word());
            }
            w.push(noun(rel.anchor.category, rel.anchor.noun));
        }
        w.join(" ")
    }

    /// How much the sentence says beyond the category (shorter first).
    pub fn complexity(&self) -> usize {
        let mut c = usize::from(self.colour.is_some()) + usize::from(self.size.is_some());
        c += match self.select {
            None => 0,
            Some(Select::Ordinal(..)) => 2,
            Some(_) => 1,
        };
        c += usize::from(self.region.is_some());
        if let Some(rel) = self.relation {
            c += 2 + usize::from(rel.anchor.colour.is_some());
        }
        c
    }
}

fn ordinal_word(n: u8) -> &'static str {
    ORDINALS.iter().find(|(k, _)| *k == n).map_or("second", |(_, w)| w)
}

fn noun(c: Category, i: usize) -> &'static str {
    let nouns = c.info().nouns;
    nouns.get(i).copied().unwrap_or(nouns[0])
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// The descriptor's truth for every object of the scene.
pub fn evaluate(d: &Descriptor, facts: &Facts) -> Vec<Truth> {
    let base: Vec<Truth> = facts
        .objects
        .iter()
        .map(|o| {
            let mut t = Truth::from_bool(o.category == d.category);
            if let Some(c) = d.colour {
                t = t.and(Truth::from_bool(o.colour == c));
            }
            if let Some(b) = d.size {
                // Only categories with a wide size range have size words.
                t = t.and(if o.category.info().sizable {
                    Truth::from_bool(o.band == b)
                } else {
                    Truth::Maybe
                });
            }
            t
        })
        .collect();
    if let Some(sel) = d.select {
        return select_truth(sel, &base, facts);
    }
    let anchor = d.relation.map(|rel| {
        let matches: Vec<usize> = (0..facts.len())
            .filter(|&j| {
                let o = &facts.objects[j];
                o.category == rel.anchor.category && rel.anchor.colour.is_none_or(|c| o.colour == c)
            })
            .collect();
        (rel.kind, (matches.len() == 1).then(|| matches[0]))
    });
    (0..facts.len())
        .map(|i| {
            let o = &facts.objects[i];
            let mut t = base[i];
            if let Some(r) = d.region {
                t = t.and(r.truth(o.centre));
            }
            match anchor {
                None => {}
                // "the tank next to the ship" with no single ship means nothing.
                Some((_, None)) => t = t.and(Truth::Maybe),
                Some((_, Some(a))) if a == i => t = Truth::No,
                Some((kind, Some(a))) => t = t.and(kind.truth(o, &facts.objects[a], facts.gaps[i][a])),
            }
            t
        })
        .collect()
}

/// Rank-based selectors over the objects whose base predicate holds.
fn select_truth(sel: Select, base: &[Truth], facts: &Facts) -> Vec<Truth> {
    let mut out: Vec<Truth> = base
        .iter()
        .map(|&t| if t == Truth::No { Truth::No } else { Truth::Maybe })
        .collect();
    if base.contains(&Truth::Maybe) {
        return out;
    }
    let set: Vec<usize> = (0..base.len()).filter(|&i| base[i] == Truth::Yes).collect();
    let winner = match sel {
        Select::Largest | Select::Smallest => {
            if set.len() < 2 {
                return out;
            }
            let mut by: Vec<(f32, usize)> = set.iter().map(|&i| (facts.objects[i].length, i)).collect();
            by.sort_by(|a, b| a.0.total_cmp(&b.0));
            if sel == Select::Largest {
                by.reverse();
            }
            let (first, second) = (by[0].0, by[1].0);
            let ratio = if sel == Select::Largest {
                first / second
            } else {
                second / first
            };
            if ratio < SUPERLATIVE_RATIO {
                return out;
            }
            by[0].1
        }
        Select::Extreme(dir) | Select::Ordinal(_, dir) => {
            let rank = match sel {
                Select::Ordinal(n, _) => usize::from(n) - 1,
                _ => 0,
            };
            let needed = if rank == 0 { 2 } else { 3 };
            if set.len() < needed || rank >= set.len() {
                return out;
            }
            let mut by: Vec<(f32, usize)> = set.iter().map(|&i| (dir.key(facts.objects[i].centre), i)).collect();
            by.sort_by(|a, b| a.0.total_cmp(&b.0));
            let before_ok = rank == 0 || by[rank].0 - by[rank - 1].0 >= ORDER_GAP;
            let after_ok = rank + 1 >= by.len() || by[rank + 1].0 - by[rank].0 >= ORDER_GAP;
            if !(before_ok && after_ok) {
                return out;
            }
            by[rank].1
        }
    };
    for &i in &set {
        out[i] = Truth::from_bool(i == winner);
    }
    out
}

/// The object the descriptor picks out, if it is yes for exactly that one
/// and no for all others.
pub fn unique_referent(d: &Descriptor, facts: &Facts) -> Option<usize> {
    let truths = evaluate(d, facts);
    let mut yes = truths
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == Truth::Yes)
        .map(|(i, _)| i);
    let first = yes.next()?;
    (yes.next().is_none() && truths.iter().all(|t| *t != Truth::Maybe)).then_some(first)
}

/// Whether the descriptor is no for every object (a clean negative).
pub fn matches_nothing(d: &Descriptor, facts: &Facts) -> bool {
    evaluate(d, facts).iter().all(|t| *t == Truth::No)
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

/// Every descriptor of the candidate forms that identifies object `t`
/// uniquely, with the canonical nouns.
pub fn unique_descriptions(facts: &Facts, t: usize) -> Vec<Descriptor> {
    let o = &facts.objects[t];
    let info = o.category.info();
    let colours = [None, Some(o.colour)];
    let mut sizes = vec![None];
    if info.sizable && o.band != SizeBand::Medium {
        sizes.push(Some(o.band));
    }
    let mut regions = vec![None];
    regions.extend(
        Region::ALL
            .into_iter()
            .filter(|r| r.truth(o.centre) == Truth::Yes)
            .map(Some),
    );
    let mut relations = vec![None];
    for (j, a) in facts.objects.iter().enumerate() {
        if j == t {
            continue;
        }
        let same_cat = facts.objects.iter().filter(|b| b.category == a.category).count();
        let same_colour = facts
            .objects
            .iter()
            .filter(|b| b.category == a.category && b.colour == a.colour)
            .count();
        let mut anchors = Vec::new();
        if same_cat == 1 {
            anchors.push(Anchor {
                category: a.category,
                noun: 0,
                colour: None,
            });
        }
        if same_colour == 1 {
            anchors.push(Anchor {
                category: a.category,
                noun: 0,
                colour: Some(a.colour),
            });
        }
        for anchor in anchors {
            for kind in RelKind::ALL {
                if kind != RelKind::Near && kind.truth(o, a, facts.gaps[t][j]) == Truth::Yes {
                    relations.push(Some(Relation { kind, anchor }));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut push = |d: Descriptor| {
        if d.text().split(' ').count() <= MAX_WORDS && unique_referent(&d, facts) == Some(t) {
            out.push(d);
        }
    };
    for &colour in &colours {
        for &size in &sizes {
            for &region in &regions {
                for &relation in &relations {
                    push(Descriptor {
                        category: o.category,
                        noun: 0,
                        colour,
                        size,
                        select: None,
                        region,
                        relation,
                    });
                }
            }
        }
        let mut selects = vec![Select::Largest, Select::Smallest];
        for dir in Dir::ALL {
            selects.push(Select::Extreme(dir));
            for (n, _) in ORDINALS {
                selects.push(Select::Ordinal(n, dir));
            }
        }
        for select in selects {
            push(Descriptor {
                category: o.category,
                noun: 0,
                colour,
                size: None,
                select: Some(select),
                region: None,
                relation: None,
            });
        }
    }
    out
}

/// Changes the wording without changing the meaning: sometimes a synonym
/// for a noun, sometimes "near" for "next to".
fn vary_wording(d: &mut Descriptor, rng: &mut SynthRng) {
    let synonyms = d.category.info().nouns.len();
    if synonyms > 1 && rng.random_bool(0.2) {
        d.noun = rng.random_range(1..synonyms);
    }
    if let Some(rel) = &mut d.relation {
        let n = rel.anchor.category.info().nouns.len();
        if n > 1 && rng.random_bool(0.2) {
            rel.anchor.noun = rng.random_range(1..n);
        }
        if rel.kind == RelKind::NextTo && rng.random_bool(0.3) {
            rel.kind = RelKind::Near;
        }
    }
}

/// One or two sentences for object `t`, or none if nothing the grammar can
/// say identifies it. Most often one of the shortest descriptions, sometimes
/// a longer one, for variety.
pub fn describe(facts: &Facts, t: usize, rng: &mut SynthRng) -> Vec<Descriptor> {
    let all = unique_descriptions(facts, t);
    if all.is_empty() {
        return Vec::new();
    }
    let mut levels: Vec<usize> = all.iter().map(Descriptor::complexity).collect();
    levels.sort_unstable();
    levels.dedup();
    let wanted = if rng.random_bool(0.5) { 2 } else { 1 };
    let mut picked: Vec<Descriptor> = Vec::new();
    for _ in 0..wanted {
        let r: f32 = rng.random();
        let level = if r < 0.5 {
            levels[0]
        } else if r < 0.8 {
            *levels.get(1).unwrap_or(&levels[0])
        } else {
            *levels.choose(rng).unwrap_or(&levels[0])
        };
        let mut pool: Vec<&Descriptor> = all
            .iter()
            .filter(|d| d.complexity() == level && !picked.iter().any(|p| p.text() == d.text()))
            .collect();
        if pool.is_empty() {
            pool = all
                .iter()
                .filter(|d| !picked.iter().any(|p| p.text() == d.text()))
                .collect();
        }
        let Some(&&choice) = pool.choose(rng) else {
            break;
        };
        picked.push(choice);
    }
    // The same meaning in other words is kept apart from the first pick.
    for d in &mut picked {
        vary_wording(d, rng);
    }
    picked.dedup_by(|a, b| a.text() == b.text());
    picked
}

/// A sentence about something that is not in the scene: a category that is
/// absent, or a colour or place where the category is not.
pub fn negative(facts: &Facts, rng: &mut SynthRng) -> Option<Descriptor> {
    let present: BTreeSet<Category> = facts.objects.iter().map(|o| o.category).collect();
    let absent: Vec<Category> = Category::ALL.into_iter().filter(|c| !present.contains(c)).collect();
    let present: Vec<Category> = present.into_iter().collect();
    for _attempt in 0..40 {
        let mut d;
        match rng.random_range(0..3) {
            0 => {
                let Some(&c) = absent.choose(rng) else { continue };
                d = Descriptor::plain(c);
                if rng.random_bool(0.4) {
                    d.colour = c.info().colours.choose(rng).copied();
                }
                if rng.random_bool(0.25) {
                    d.region = Region::ALL.choose(rng).copied();
                }
            }
            1 => {
                let Some(&c) = present.choose(rng) else { continue };
                let used: Vec<Colour> = facts
                    .objects
                    .iter()
                    .filter(|o| o.category == c)
                    .map(|o| o.colour)
                    .collect();
                let unused: Vec<Colour> = c.info().colours.iter().copied().filter(|k| !used.contains(k)).collect();
                let Some(&colour) = unused.choose(rng) else { continue };
                d = Descriptor::plain(c);
                d.colour = Some(colour);
            }
            _ => {
                let Some(&c) = present.choose(rng) else { continue };
                d = Descriptor::plain(c);
                d.region = Region::ALL.choose(rng).copied();
                if rng.random_bool(0.3) {
                    d.colour = c.info().colours.choose(rng).copied();
                }
            }
        }
        vary_wording(&mut d, rng);
        if matches_nothing(&d, facts) {
            return Some(d);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Parsing and vocabulary
// ---------------------------------------------------------------------------

struct Cursor<'a> {
    words: Vec<&'a str>,
    at: usize,
}

impl Cursor<'_> {
    /// Consumes `phrase` (space-separated words) if it comes next.
    fn eat(&mut self, phrase: &str) -> bool {
        let want: Vec<&str> = phrase.split(' ').collect();
        if self.words.len() >= self.at + want.len() && self.words[self.at..self.at + want.len()] == want[..] {
            self.at += want.len();
            true
        } else {
            false
        }
    }

    fn colour(&mut self) -> Option<Colour> {
        Colour::ALL.into_iter().find(|c| self.eat(c.word()))
    }

    /// A category noun, longest wording first ("storage tank" before "tank").
    fn noun(&mut self) -> Option<(Category, usize)> {
        let mut all: Vec<(Category, usize, &str)> = Category::ALL
            .into_iter()
            .flat_map(|c| c.info().nouns.iter().enumerate().map(move |(i, n)| (c, i, *n)))
            .collect();
        all.sort_by_key(|(_, _, n)| std::cmp::Reverse(n.split(' ').count()));
        all.into_iter().find(|(_, _, n)| self.eat(n)).map(|(c, i, _)| (c, i))
    }
}

/// Reads a generated sentence back into its descriptor; `None` for text
/// the grammar cannot produce.
pub fn parse(text: &str) -> Option<Descriptor> {
    let mut c = Cursor {
        words: text.split_whitespace().collect(),
        at: 0,
    };
    if !c.eat("the") {
        return None;
    }
    let mut select = None;
    if c.eat("largest") {
        select = Some(Select::Largest);
    } else if c.eat("smallest") {
        select = Some(Select::Smallest);
    } else if let Some(d) = Dir::ALL.into_iter().find(|d| c.eat(d.extreme())) {
        select = Some(Select::Extreme(d));
    } else if let Some((n, _)) = ORDINALS.into_iter().find(|(_, w)| c.eat(w)) {
        // The direction follows the noun.
        select = Some(Select::Ordinal(n, Dir::Left));
    }
    let mut size = None;
    if select.is_none() {
        if c.eat("small") {
            size = Some(SizeBand::Small);
        } else if c.eat("large") {
            size = Some(SizeBand::Large);
        }
    }
    let colour = c.colour();
    let (category, noun) = c.noun()?;
    if let Some(Select::Ordinal(n, _)) = select {
        if !c.eat("from the") {
            return None;
        }
        let dir = Dir::ALL.into_iter().find(|d| c.eat(d.word()))?;
        select = Some(Select::Ordinal(n, dir));
    }
    let mut region = None;
    let mut relation = None;
    if select.is_none() {
        region = Region::ALL.into_iter().find(|r| c.eat(r.phrase()));
        if let Some(kind) = RelKind::ALL.into_iter().find(|k| c.eat(k.phrase())) {
            if !c.eat("the") {
                return None;
            }
            let colour = c.colour();
            let (category, noun) = c.noun()?;
            relation = Some(Relation {
                kind,
                anchor: Anchor { category, noun, colour },
            });
        }
    }
    (c.at == c.words.len()).then_some(Descriptor {
        category,
        noun,
        colour,
        size,
        select,
        region,
        relation,
    })
}

/// BERT's special tokens, in the order the vocabulary starts with.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Punctuation kept in the vocabulary so that hand-written sentences with
/// it do not turn into `[UNK]`.
pub const PUNCTUATION: [&str; 12] = [".", ",", "'", "\"", "(", ")", "!", "?", ":", ";", "-", "/"];

/// Every word a generated sentence can contain, sorted.
pub fn words() -> Vec<String> {
    let mut set: BTreeSet<String> = BTreeSet::new();
    let mut add = |phrase: &str| {
        for w in phrase.split(' ') {
            set.insert(w.to_string());
        }
    };
    for w in ["the", "small", "large", "largest", "smallest", "from"] {
        add(w);
    }
    for c in Colour::ALL {
        add(c.word());
    }
    for c in Category::ALL {
        for n in c.info().nouns {
            add(n);
        }
    }
    for d in Dir::ALL {
        add(d.word());
        add(d.extreme());
    }
    for (_, w) in ORDINALS {
        add(w);
    }
    for r in Region::ALL {
        add(r.phrase());
    }
    for k in RelKind::ALL {
        add(k.phrase());
    }
    set.into_iter().collect()
}

/// The BERT WordPiece vocabulary (`vocab.txt`, one token per line, the
/// line number is the id): the special tokens, every word, punctuation.
pub fn vocabulary() -> Vec<String> {
    SPECIAL_TOKENS
        .iter()
        .map(|s| s.to_string())
        .chain(words())
        .chain(PUNCTUATION.iter().map(|s| s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fact(category: Category, colour: Colour, band: SizeBand, length: f32, x: f32, y: f32) -> Fact {
        Fact {
            category,
            colour,
            band,
            length,
            centre: V2::new(x, y),
        }
    }

    /// Gaps from centre distances minus an assumed radius of 0.05.
    fn facts(objects: Vec<Fact>) -> Facts {
        let n = objects.len();
        let gaps = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| ((objects[i].centre - objects[j].centre).len() - 0.1).max(0.0))
                    .collect()
            })
            .collect();
        Facts::new(objects, gaps)
    }

    fn two_tanks_and_a_ship() -> Facts {
        facts(vec![
            fact(Category::StorageTank, Colour::White, SizeBand::Small, 24.0, 0.15, 0.15),
            fact(Category::StorageTank, Colour::Red, SizeBand::Large, 60.0, 0.8, 0.15),
            fact(Category::Ship, Colour::Grey, SizeBand::Medium, 80.0, 0.5, 0.8),
        ])
    }

    #[test]
    fn uniqueness_filter_rejects_ambiguous_and_accepts_unique() {
        let f = two_tanks_and_a_ship();
        // Two tanks: "the storage tank" is ambiguous.
        let plain = Descriptor::plain(Category::StorageTank);
        assert_eq!(unique_referent(&plain, &f), None);
        // Colour, size, position and rank each single one out.
        let mut red = plain;
        red.colour = Some(Colour::Red);
        assert_eq!(unique_referent(&red, &f), Some(1));
        let mut small = plain;
        small.size = Some(SizeBand::Small);
        assert_eq!(unique_referent(&small, &f), Some(0));
        let mut upper_left = plain;
        upper_left.region = Some(Region::UpperLeft);
        assert_eq!(unique_referent(&upper_left, &f), Some(0));
        let mut largest = plain;
        largest.select = Some(Select::Largest);
        assert_eq!(unique_referent(&largest, &f), Some(1));
        // "at the top" holds for both tanks.
        let mut top = plain;
        top.region = Some(Region::Top);
        assert_eq!(unique_referent(&top, &f), None);
        // The only ship is unique by its category alone.
        assert_eq!(unique_referent(&Descriptor::plain(Category::Ship), &f), Some(2));
        // Nothing is green.
        let mut green = plain;
        green.colour = Some(Colour::Green);
        assert!(matches_nothing(&green, &f));
        assert!(!matches_nothing(&plain, &f));
    }

    #[test]
    fn borderline_positions_are_never_claimed() {
        // A tank centred just right of the first third line: "on the left"
        // is neither clearly true nor clearly false for it.
        let f = facts(vec![
            fact(Category::StorageTank, Colour::White, SizeBand::Small, 24.0, 0.35, 0.5),
            fact(Category::StorageTank, Colour::White, SizeBand::Small, 24.0, 0.9, 0.5),
        ]);
        let mut left = Descriptor::plain(Category::StorageTank);
        left.region = Some(Region::Left);
        assert_eq!(evaluate(&left, &f), vec![Truth::Maybe, Truth::No]);
        assert_eq!(unique_referent(&left, &f), None);
        assert!(!matches_nothing(&left, &f));
        // The rightmost is clear, though.
        let mut rightmost = Descriptor::plain(Category::StorageTank);
        rightmost.select = Some(Select::Extreme(Dir::Right));
        assert_eq!(unique_referent(&rightmost, &f), Some(1));
    }

    #[test]
    fn ordinals_need_clear_gaps() {
        let row = |xs: [f32; 3]| {
            facts(
                xs.iter()
                    .map(|&x| fact(Category::StorageTank, Colour::Grey, SizeBand::Medium, 40.0, x, 0.5))
                    .collect(),
            )
        };
        let mut second = Descriptor::plain(Category::StorageTank);
        second.select = Some(Select::Ordinal(2, Dir::Left));
        assert_eq!(unique_referent(&second, &row([0.2, 0.5, 0.8])), Some(1));
        assert_eq!(unique_referent(&second, &row([0.8, 0.2, 0.5])), Some(2));
        // The second and third are nearly level: no clear second.
        assert_eq!(unique_referent(&second, &row([0.2, 0.5, 0.53])), None);
    }

    #[test]
    fn relations_use_a_unique_anchor() {
        let f = facts(vec![
            fact(Category::Vehicle, Colour::White, SizeBand::Medium, 30.0, 0.2, 0.5),
            fact(Category::Vehicle, Colour::White, SizeBand::Medium, 30.0, 0.8, 0.5),
            fact(Category::StorageTank, Colour::Grey, SizeBand::Medium, 40.0, 0.32, 0.5),
        ]);
        let mut d = Descriptor::plain(Category::Vehicle);
        d.relation = Some(Relation {
            kind: RelKind::NextTo,
            anchor: Anchor {
                category: Category::StorageTank,
                noun: 0,
                colour: None,
            },
        });
        assert_eq!(unique_referent(&d, &f), Some(0));
        d.relation = Some(Relation {
            kind: RelKind::RightOf,
            anchor: d.relation.unwrap().anchor,
        });
        assert_eq!(unique_referent(&d, &f), Some(1));
        // An anchor that names two objects makes the sentence meaningless.
        d.relation = Some(Relation {
            kind: RelKind::NextTo,
            anchor: Anchor {
                category: Category::Vehicle,
                noun: 0,
                colour: None,
            },
        });
        d.category = Category::StorageTank;
        assert_eq!(unique_referent(&d, &f), None);
        assert!(!matches_nothing(&d, &f));
    }

    #[test]
    fn text_parses_back() {
        let f = two_tanks_and_a_ship();
        let mut rng = SynthRng::seed_from_u64(5);
        let mut seen = 0;
        for t in 0..f.objects.len() {
            for d in unique_descriptions(&f, t) {
                let mut d = d;
                vary_wording(&mut d, &mut rng);
                let text = d.text();
                assert_eq!(parse(&text), Some(d), "{text}");
                assert!(text.split(' ').count() <= MAX_WORDS);
                seen += 1;
            }
        }
        assert!(seen > 10);
        assert_eq!(parse("the tank on the moon"), None);
        assert_eq!(parse("the second tank"), None);
        assert_eq!(
            parse("the second white storage tank from the right").and_then(|d| d.select),
            Some(Select::Ordinal(2, Dir::Right))
        );
    }

    #[test]
    fn descriptions_are_unique_and_prefer_short_ones() {
        let f = two_tanks_and_a_ship();
        let mut rng = SynthRng::seed_from_u64(1);
        let mut lengths = Vec::new();
        for _ in 0..50 {
            for t in 0..3 {
                for d in describe(&f, t, &mut rng) {
                    assert_eq!(unique_referent(&d, &f), Some(t), "{}", d.text());
                    lengths.push(d.complexity());
                }
            }
        }
        let short = lengths.iter().filter(|&&c| c <= 1).count();
        assert!(short * 2 > lengths.len(), "mostly short: {short} of {}", lengths.len());
        assert!(lengths.iter().any(|&c| c >= 3), "some long ones");
        for _ in 0..20 {
            let d = negative(&f, &mut rng).expect("a negative");
            assert!(matches_nothing(&d, &f), "{}", d.text());
        }
    }

    #[test]
    fn vocabulary_covers_every_word() {
        let vocab = vocabulary();
        assert_eq!(&vocab[..5], &SPECIAL_TOKENS.map(String::from));
        let words = words();
        let mut sorted = words.clone();
        sorted.sort();
        assert_eq!(words, sorted);
        for w in [
            "storage", "tank", "leftmost", "upper", "center", "next", "grey", "third",
        ] {
            assert!(words.iter().any(|x| x == w), "{w}");
        }
        let unique: BTreeSet<&String> = vocab.iter().collect();
        assert_eq!(unique.len(), vocab.len(), "no duplicate tokens");
    }
}
