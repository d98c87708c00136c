//! From what each window found to objects of the scene: candidates of
//! overlapping windows whose masks agree where the windows overlap are one
//! object (found twice, or cut by a window border), merged into one mask;
//! the objects are then ranked by object score, then predicted IoU.
//!
//! A merged mask takes each pixel from the member window whose centre is
//! nearest to it: a window sees least context at its edges, so the window
//! that has the pixel nearer its middle is the better judge of it.

use std::cmp::Ordering;

use super::piece::{intersection, MaskPiece};
use crate::geo::Window;

/// Least IoU of two candidates' masks inside the overlap of their windows
/// for them to be one object.
pub const DEFAULT_MERGE_IOU: f32 = 0.5;

/// What one window's prediction found (a non-empty mask).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowCandidate {
    /// Index of the window in its grid.
    pub window_index: usize,
    pub window: Window,
    pub object_score_logit: f32,
    /// Predicted IoU.
    pub iou: f32,
    pub piece: MaskPiece,
    /// The window's low-resolution logits as the predictor returns them:
    /// the mask prompt a correction click in this window starts from.
    pub logits: Vec<f32>,
}

/// One object of the scene: one window's candidate, or several merged.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneCandidate {
    /// Grid indices of the windows that found it, best first.
    pub window_indices: Vec<usize>,
    /// Their rectangles, in the same order.
    pub windows: Vec<Window>,
    /// The best member's scores.
    pub object_score_logit: f32,
    pub iou: f32,
    /// The (merged) mask in scene pixels.
    pub piece: MaskPiece,
    /// Each window's returned logits, in the order of `windows`.
    pub logits: Vec<Vec<f32>>,
}

impl SceneCandidate {
    /// The rectangle of the best window that found it.
    pub fn window(&self) -> Window {
        self.windows[0]
    }

    pub fn object_present(&self) -> bool {
        self.object_score_logit > 0.0
    }
}

/// Higher object score first, then higher predicted IoU.
pub fn rank_order(a: (f32, f32), b: (f32, f32)) -> Ordering {
    b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1))
}

/// Merges the candidates into objects and ranks them, best first.
pub fn merge_candidates(candidates: Vec<WindowCandidate>, merge_iou: f32) -> Vec<SceneCandidate> {
    let mut candidates = candidates;
    candidates.sort_by(|a, b| rank_order((a.object_score_logit, a.iou), (b.object_score_logit, b.iou)));
    let mut groups = UnionFind::new(candidates.len());
    for i in 0..candidates.len() {
        for j in i + 1..candidates.len() {
            if agree(&candidates[i], &candidates[j], merge_iou) {
                groups.join(i, j);
            }
        }
    }
    // Members in rank order; groups in the order of their best member.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
    for i in 0..candidates.len() {
        members[groups.root(i)].push(i);
    }
    let mut merged: Vec<SceneCandidate> = members
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|m| {
            let group: Vec<&WindowCandidate> = m.iter().map(|&i| &candidates[i]).collect();
            merge_group(&group)
        })
        .collect();
    merged.sort_by(|a, b| rank_order((a.object_score_logit, a.iou), (b.object_score_logit, b.iou)));
    merged
}

/// Candidates already known to be one object (the windows a refine ran
/// in), merged as a search merges them; `None` when none found anything.
pub fn merge_members(mut members: Vec<WindowCandidate>) -> Option<SceneCandidate> {
    members.sort_by(|a, b| rank_order((a.object_score_logit, a.iou), (b.object_score_logit, b.iou)));
    let group: Vec<&WindowCandidate> = members.iter().collect();
    (!group.is_empty()).then(|| merge_group(&group))
}

/// Whether two candidates are one object: their windows overlap and their
/// masks inside the overlap have an IoU of at least `merge_iou`.
fn agree(a: &WindowCandidate, b: &WindowCandidate, merge_iou: f32) -> bool {
    if a.window_index == b.window_index {
        return false;
    }
    let Some(overlap) = intersection(a.window, b.window) else {
        return false;
    };
    let (Some(ra), Some(rb)) = (
        intersection(a.piece.rect(), overlap),
        intersection(b.piece.rect(), overlap),
    ) else {
        return false;
    };
    let span = union_rect(ra, rb);
    let (mut both, mut either) = (0u64, 0u64);
    for y in span.y..span.y + span.height {
        for x in span.x..span.x + span.width {
            let (in_a, in_b) = (a.piece.at(x, y), b.piece.at(x, y));
            both += u64::from(in_a && in_b);
            either += u64::from(in_a || in_b);
        }
    }
    either > 0 && both as f64 >= f64::from(merge_iou) * either as f64
}

/// One object from candidates in rank order (best first).
fn merge_group(group: &[&WindowCandidate]) -> SceneCandidate {
    let best = group[0];
    let piece = if group.len() == 1 {
        best.piece.clone()
    } else {
        stitch(group)
    };
    SceneCandidate {
        window_indices: group.iter().map(|c| c.window_index).collect(),
        windows: group.iter().map(|c| c.window).collect(),
        object_score_logit: best.object_score_logit,
        iou: best.iou,
        piece,
        logits: group.iter().map(|c| c.logits.clone()).collect(),
    }
}

/// The merged mask: over the members' pieces, each pixel from the member
/// window (holding the pixel) whose centre is nearest, ties to the better
/// ranked; then cut to its foreground.
fn stitch(group: &[&WindowCandidate]) -> MaskPiece {
    let span = group
        .iter()
        .map(|c| c.piece.rect())
        .reduce(union_rect)
        .unwrap_or(group[0].piece.rect());
    let mut data = vec![0u8; span.width as usize * span.height as usize];
    for y in span.y..span.y + span.height {
        let rows: Vec<&WindowCandidate> = group
            .iter()
            .copied()
            .filter(|c| (c.window.y..c.window.y + c.window.height).contains(&y))
            .collect();
        let row = &mut data[(y - span.y) as usize * span.width as usize..][..span.width as usize];
        for (x, out) in (span.x..).zip(row.iter_mut()) {
            let owner = rows
                .iter()
                .filter(|c| (c.window.x..c.window.x + c.window.width).contains(&x))
                .min_by_key(|c| centre_distance(c.window, x, y));
            *out = u8::from(owner.is_some_and(|c| c.piece.at(x, y)));
        }
    }
    let stitched = crate::mask::BinaryMask {
        width: span.width,
        height: span.height,
        data,
    };
    MaskPiece::from_window_mask(&stitched, span).unwrap_or(MaskPiece {
        x: span.x,
        y: span.y,
        width: 0,
        height: 0,
        data: Vec::new(),
    })
}

/// Squared distance, in half pixels, from pixel `(x, y)`'s centre to the
/// window's centre (integers, so that ties are exact).
fn centre_distance(w: Window, x: u32, y: u32) -> u64 {
    let dx = i64::from(2 * x + 1) - i64::from(2 * w.x + w.width);
    let dy = i64::from(2 * y + 1) - i64::from(2 * w.y + w.height);
    (dx * dx + dy * dy) as u64
}

fn union_rect(a: Window, b: Window) -> Window {
    let x0 = a.x.min(b.x);
    let y0 = a.y.min(b.y);
    let x1 = (a.x + a.width).max(b.x + b.width);
    let y1 = (a.y + a.height).max(b.y + b.height);
    Window {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// Disjoint sets over candidate indices; a set's root is its lowest index
/// (its best-ranked member).
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        let (low, high) = (ra.min(rb), ra.max(rb));
        self.parent[high] = low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::BinaryMask;

    fn window(x: u32, y: u32, size: u32) -> Window {
        Window {
            x,
            y,
            width: size,
            height: size,
        }
    }

    /// A candidate of `win` whose mask is the scene rectangle
    /// `[x0, x1) x [y0, y1)` clipped to the window.
    fn found(index: usize, win: Window, rect: [u32; 4], score: f32, iou: f32) -> WindowCandidate {
        let [x0, y0, x1, y1] = rect;
        let mut mask = BinaryMask {
            width: win.width,
            height: win.height,
            data: vec![0; (win.width * win.height) as usize],
        };
        for y in y0.max(win.y)..y1.min(win.y + win.height) {
            for x in x0.max(win.x)..x1.min(win.x + win.width) {
                mask.data[((y - win.y) * win.width + (x - win.x)) as usize] = 1;
            }
        }
        WindowCandidate {
            window_index: index,
            window: win,
            object_score_logit: score,
            iou,
            piece: MaskPiece::from_window_mask(&mask, win).expect("the rectangle meets the window"),
            logits: vec![index as f32],
        }
    }

    #[test]
    fn an_object_cut_by_a_window_border_comes_back_whole() {
        // Windows [0, 100) and [75, 175); the object spans x 50..150.
        let (a, b) = (window(0, 0, 100), window(75, 0, 100));
        let object = [50, 20, 150, 60];
        let merged = merge_candidates(
            vec![found(0, a, object, 2.0, 0.8), found(1, b, object, 3.0, 0.7)],
            DEFAULT_MERGE_IOU,
        );
        assert_eq!(merged.len(), 1);
        let m = &merged[0];
        assert_eq!(m.window_indices, vec![1, 0]);
        assert_eq!(m.logits, vec![vec![1.0], vec![0.0]], "each window's logits follow it");
        assert_eq!((m.object_score_logit, m.iou), (3.0, 0.7));
        assert_eq!(m.piece.bbox(), [50.0, 20.0, 100.0, 40.0]);
        assert_eq!(m.piece.area(), 100 * 40);
    }

    #[test]
    fn each_pixel_comes_from_the_member_window_whose_centre_is_nearest() {
        // Both windows see the object in their overlap [75, 100); the left
        // one also claims a sliver there that the right one does not.
        let (a, b) = (window(0, 0, 100), window(75, 0, 100));
        let left = found(0, a, [60, 0, 100, 10], 1.0, 0.9);
        let right = found(1, b, [60, 0, 95, 10], 1.0, 0.8);
        let merged = merge_candidates(vec![left, right], DEFAULT_MERGE_IOU);
        assert_eq!(merged.len(), 1);
        // Centres at x = 50 and 125: pixels from x = 88 on are the right
        // window's, which ends its mask at 95.
        assert_eq!(merged[0].piece.bbox(), [60.0, 0.0, 35.0, 10.0]);
    }

    #[test]
    fn different_objects_stay_apart() {
        let (a, b) = (window(0, 0, 100), window(75, 0, 100));
        // One object inside the overlap, another only the right window sees.
        let in_overlap = found(0, a, [80, 10, 90, 20], 1.0, 0.5);
        let elsewhere = found(1, b, [150, 10, 170, 20], 2.0, 0.5);
        // A mask far bigger than the object in the overlap does not absorb it.
        let sprawling = found(2, window(50, 0, 100), [50, 0, 150, 100], 0.5, 0.9);
        let merged = merge_candidates(vec![in_overlap, elsewhere, sprawling], DEFAULT_MERGE_IOU);
        assert_eq!(merged.len(), 3);
        let order: Vec<usize> = merged.iter().map(|m| m.window_indices[0]).collect();
        assert_eq!(order, vec![1, 0, 2]);
        // Windows that do not overlap never merge.
        let far = merge_candidates(
            vec![
                found(0, window(0, 0, 50), [0, 0, 50, 50], 1.0, 0.5),
                found(1, window(50, 0, 50), [50, 0, 100, 50], 1.0, 0.5),
            ],
            DEFAULT_MERGE_IOU,
        );
        assert_eq!(far.len(), 2);
    }

    #[test]
    fn the_same_object_found_by_four_windows_is_one_candidate() {
        let windows = [
            window(0, 0, 100),
            window(75, 0, 100),
            window(0, 75, 100),
            window(75, 75, 100),
        ];
        let object = [80, 80, 95, 95];
        let candidates = windows
            .iter()
            .enumerate()
            .map(|(i, &w)| found(i, w, object, i as f32, 0.5))
            .collect();
        let merged = merge_candidates(candidates, DEFAULT_MERGE_IOU);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].window_indices, vec![3, 2, 1, 0]);
        assert_eq!(merged[0].piece.bbox(), [80.0, 80.0, 15.0, 15.0]);
    }

    #[test]
    fn ranking_is_by_object_score_then_predicted_iou() {
        let cands = vec![
            found(0, window(0, 0, 10), [0, 0, 5, 5], 1.0, 0.9),
            found(1, window(100, 0, 10), [100, 0, 105, 5], 2.0, 0.1),
            found(2, window(200, 0, 10), [200, 0, 205, 5], 1.0, 0.95),
        ];
        let order: Vec<usize> = merge_candidates(cands, DEFAULT_MERGE_IOU)
            .iter()
            .map(|m| m.window_indices[0])
            .collect();
        assert_eq!(order, vec![1, 2, 0]);
    }
}
