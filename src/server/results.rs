//! Results kept for `POST /v1/refine`, bounded in time and count.
//!
//! A stored result holds what the correction-click protocol needs: the image
//! id, the prompt (text, points, box) and the low-resolution logits that
//! become the next mask prompt. It does not hold the image: the features
//! come from the feature cache, and when they were evicted refine answers
//! 404 `image_not_cached` (re-send the image to `POST /v1/images` and retry;
//! the image id, and so the result, stays valid). This keeps a result at
//! S/4 x S/4 floats instead of a whole upload.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Point, Prompt};

/// What a refine needs from an earlier result.
#[derive(Debug, Clone)]
pub struct StoredResult {
    /// The cache key of the image the result was decoded on.
    pub image_key: String,
    pub text: Option<String>,
    pub points: Vec<Point>,
    pub bbox: Option<[f32; 4]>,
    pub low_res_logits: Vec<f32>,
}

impl StoredResult {
    /// The official correction click: the earlier text, the earlier points
    /// plus the new ones, the earlier logits as the mask prompt, and the
    /// earlier box unless a new one is given.
    pub fn refined_prompt(&self, new_points: &[Point], new_box: Option<[f32; 4]>) -> Prompt {
        let mut points = self.points.clone();
        points.extend_from_slice(new_points);
        Prompt {
            text: self.text.clone(),
            points,
            bbox: new_box.or(self.bbox),
            mask_input: Some(self.low_res_logits.clone()),
        }
    }
}

struct Inner<T> {
    map: HashMap<String, Arc<T>>,
    /// Insertion order, which is also expiry order (one TTL for all).
    order: VecDeque<(Instant, String)>,
}

/// The bounded result store (windowed results have their own, of another
/// type, whose ids begin with its prefix).
pub struct ResultStore<T = StoredResult> {
    inner: Mutex<Inner<T>>,
    ttl: Duration,
    capacity: usize,
    prefix: &'static str,
}

impl<T> std::fmt::Debug for ResultStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultStore")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<T> ResultStore<T> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self::with_prefix(ttl, capacity, "")
    }

    /// A store whose ids begin with `prefix`.
    pub fn with_prefix(ttl: Duration, capacity: usize, prefix: &'static str) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            capacity,
            prefix,
        }
    }

    /// Whether `id` has this store's prefix.
    pub fn owns(&self, id: &str) -> bool {
        !self.prefix.is_empty() && id.starts_with(self.prefix)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a result and returns its new id (random, unguessable).
    pub fn insert(&self, result: T) -> String {
        let id = format!("{}{}", self.prefix, uuid::Uuid::new_v4().simple());
        if self.capacity == 0 {
            return id;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        self.purge(&mut inner, now);
        while inner.map.len() >= self.capacity {
            let Some((_, old)) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&old);
        }
        inner.map.insert(id.clone(), Arc::new(result));
        inner.order.push_back((now, id.clone()));
        id
    }

    /// The result, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        let mut inner = self.lock();
        self.purge(&mut inner, Instant::now());
        inner.map.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn purge(&self, inner: &mut Inner<T>, now: Instant) {
        while let Some((created, _)) = inner.order.front() {
            if now.duration_since(*created) < self.ttl {
                break;
            }
            if let Some((_, id)) = inner.order.pop_front() {
                inner.map.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> StoredResult {
        StoredResult {
            image_key: "x".into(),
            text: Some("a".into()),
            points: vec![Point {
                x: 1.0,
                y: 2.0,
                label: 1,
            }],
            bbox: Some([0.0, 0.0, 4.0, 4.0]),
            low_res_logits: vec![0.5; 4],
        }
    }

    #[test]
    fn capacity_evicts_oldest() {
        let store = ResultStore::new(Duration::from_secs(60), 2);
        let a = store.insert(result());
        let b = store.insert(result());
        let c = store.insert(result());
        assert!(store.get(&a).is_none());
        assert!(store.get(&b).is_some() && store.get(&c).is_some());
    }

    #[test]
    fn a_prefixed_store_names_its_ids() {
        let store = ResultStore::with_prefix(Duration::from_secs(60), 2, "window-");
        let a = store.insert(result());
        assert!(a.starts_with("window-") && store.owns(&a), "{a}");
        assert!(store.get(&a).is_some());
        let plain: ResultStore = ResultStore::new(Duration::from_secs(60), 2);
        assert!(!plain.owns(&plain.insert(result())));
        assert!(!store.owns("0123abcd"));
    }

    #[test]
    fn expired_results_are_gone() {
        let store = ResultStore::new(Duration::from_millis(20), 10);
        let a = store.insert(result());
        assert!(store.get(&a).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(store.get(&a).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn refined_prompt_follows_the_protocol() {
        let r = result();
        let new = [Point {
            x: 3.0,
            y: 3.0,
            label: 0,
        }];
        let p = r.refined_prompt(&new, None);
        assert_eq!(p.points.len(), 2);
        assert_eq!(p.bbox, r.bbox);
        assert_eq!(p.mask_input.as_deref(), Some(&r.low_res_logits[..]));
        assert_eq!(p.text, r.text);
        let p = r.refined_prompt(&[], Some([1.0, 1.0, 2.0, 2.0]));
        assert_eq!(p.bbox, Some([1.0, 1.0, 2.0, 2.0]));
    }
}
