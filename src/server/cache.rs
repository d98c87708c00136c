//! The image-feature cache: LRU bounded by bytes, keyed by model and image
//! content hash, with single flight (concurrent requests for the same new
//! image wait for one encoding instead of each running the encoder).
//!
//! Accounting, as the dashboard reads it: every request served from cached
//! features (including one that waited on another request's encoding) is one
//! hit; every encoding is one miss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use tokio::sync::oneshot;

use super::cached_image::CachedImage;
use super::errors::ApiError;
use super::metrics::Metrics;
use crate::geo::Georef;

type Outcome = Result<Arc<CachedImage>, ApiError>;

/// Waits for an encoding another request (or this one) started.
#[derive(Debug)]
pub struct Waiter {
    rx: oneshot::Receiver<Outcome>,
    pub width: u32,
    pub height: u32,
    /// The image's georeferencing (map-unit prompts are converted with it).
    pub georef: Georef,
}

impl Waiter {
    pub async fn wait(self) -> Outcome {
        self.rx
            .await
            .unwrap_or_else(|_| Err(ApiError::internal("the encoding was abandoned")))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Arc<CachedImage>),
    /// Another request is encoding this image.
    Pending(Waiter),
    Absent,
}

/// What [`FeatureCache::begin`] decided.
#[derive(Debug)]
pub enum Begin {
    Hit(Arc<CachedImage>),
    Pending(Waiter),
    /// The caller must have the image encoded and call [`FeatureCache::complete`].
    Leader(Waiter),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    model: Arc<str>,
    image: String,
}

struct Pending {
    width: u32,
    height: u32,
    georef: Georef,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

struct Inner {
    lru: LruCache<Key, Arc<CachedImage>>,
    bytes: usize,
    pending: HashMap<Key, Pending>,
}

/// Cache figures for `GET /v1/model`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStats {
    pub capacity_bytes: usize,
    pub bytes: usize,
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct FeatureCache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
    model: Arc<str>,
    metrics: Metrics,
}

impl std::fmt::Debug for FeatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl FeatureCache {
    /// `model` identifies the model the features belong to (part of the key).
    pub fn new(capacity_bytes: usize, model: &str, metrics: Metrics) -> Self {
        Self {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                pending: HashMap::new(),
            }),
            capacity_bytes,
            model: model.into(),
            metrics,
        }
    }

    fn key(&self, image_id: &str) -> Key {
        Key {
            model: self.model.clone(),
            image: image_id.to_string(),
        }
    }

    /// The lock only guards plain bookkeeping; a panic while holding it
    /// cannot leave it inconsistent in a way that matters, so keep serving.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finds cached or in-progress features. Counts nothing: the caller
    /// calls [`Self::count_hit`] once the request is known to be served
    /// (after its prompts passed validation).
    pub fn lookup(&self, image_id: &str) -> Lookup {
        let key = self.key(image_id);
        let mut inner = self.lock();
        if let Some(entry) = inner.lru.get(&key) {
            return Lookup::Hit(entry.clone());
        }
        match inner.pending.get_mut(&key) {
            Some(pending) => Lookup::Pending(register(pending)),
            None => Lookup::Absent,
        }
    }

    /// One request served from cached (or another request's) features.
    pub fn count_hit(&self) {
        self.metrics.cache_hits.inc();
    }

    /// Like [`Self::lookup`], but when nothing is there the caller becomes
    /// the leader: later requests for the image wait for its encoding. Hits
    /// are counted here (the caller has validated its prompts already).
    pub fn begin(&self, image_id: &str, width: u32, height: u32, georef: &Georef) -> Begin {
        let key = self.key(image_id);
        let mut inner = self.lock();
        if let Some(entry) = inner.lru.get(&key) {
            let entry = entry.clone();
            self.count_hit();
            return Begin::Hit(entry);
        }
        let pending = inner.pending.entry(key).or_insert_with(|| Pending {
            width,
            height,
            georef: georef.clone(),
            waiters: Vec::new(),
        });
        let waiter = register(pending);
        if pending.waiters.len() == 1 {
            Begin::Leader(waiter)
        } else {
            self.count_hit();
            Begin::Pending(waiter)
        }
    }

    /// Ends an encoding: caches the features (when they fit) and hands the
    /// outcome to every waiter.
    pub fn complete(&self, image_id: &str, outcome: Outcome) {
        let key = self.key(image_id);
        let waiters = {
            let mut inner = self.lock();
            if let Ok(entry) = &outcome {
                self.metrics.cache_misses.inc();
                self.insert(&mut inner, key.clone(), entry.clone());
            }
            inner.pending.remove(&key).map(|p| p.waiters).unwrap_or_default()
        };
        for tx in waiters {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Caches features that need no single flight (a windowed search's
    /// windows, encoded by the search itself).
    pub fn put(&self, key: &str, entry: Arc<CachedImage>) {
        let key = self.key(key);
        let mut inner = self.lock();
        self.insert(&mut inner, key, entry);
    }

    fn insert(&self, inner: &mut Inner, key: Key, entry: Arc<CachedImage>) {
        let nbytes = entry.nbytes();
        if nbytes > self.capacity_bytes {
            // Would evict everything and still not fit: serve it uncached.
            return;
        }
        inner.bytes += nbytes;
        if let Some(old) = inner.lru.put(key, entry) {
            inner.bytes -= old.nbytes();
        }
        while inner.bytes > self.capacity_bytes {
            let Some((_, evicted)) = inner.lru.pop_lru() else {
                break;
            };
            inner.bytes -= evicted.nbytes();
            self.metrics.cache_evictions.inc();
        }
        self.metrics.cache_bytes.set(inner.bytes as i64);
        self.metrics.cache_entries.set(inner.lru.len() as i64);
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            capacity_bytes: self.capacity_bytes,
            bytes: inner.bytes,
            entries: inner.lru.len(),
            hits: self.metrics.cache_hits.get(),
            misses: self.metrics.cache_misses.get(),
            evictions: self.metrics.cache_evictions.get(),
        }
    }
}

fn register(pending: &mut Pending) -> Waiter {
    let (tx, rx) = oneshot::channel();
    pending.waiters.push(tx);
    Waiter {
        rx,
        width: pending.width,
        height: pending.height,
        georef: pending.georef.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::EncodedImage;
    use crate::server::errors::ErrorCode;
    use std::time::Duration;

    fn features() -> EncodedImage {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
        let model = crate::Rsam::load(&dir, &crate::LoadOptions::default()).unwrap();
        let image = crate::preprocess::Rgb8Image {
            width: 8,
            height: 8,
            data: vec![100; 8 * 8 * 3],
        };
        model.encode_image(&image).unwrap()
    }

    fn encoded(id: &str, f: &EncodedImage) -> Outcome {
        Ok(Arc::new(CachedImage {
            image_id: id.into(),
            key: id.into(),
            georef: Georef::default(),
            encoded: crate::server::on_worker::OnWorker::anywhere(f.clone()),
            encode_time: Duration::from_millis(1),
        }))
    }

    fn leader(cache: &FeatureCache, id: &str) -> Waiter {
        match cache.begin(id, 8, 8, &Georef::default()) {
            Begin::Leader(w) => w,
            other => panic!("expected to lead, got {other:?}"),
        }
    }

    #[test]
    fn single_flight_lru_by_bytes_and_counts() {
        let f = features();
        let metrics = Metrics::new();
        let cache = FeatureCache::new(f.nbytes() * 2, "m", metrics.clone());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();

        let lead = leader(&cache, "a");
        let Begin::Pending(follower) = cache.begin("a", 8, 8, &Georef::default()) else {
            panic!("the second request must wait on the first")
        };
        cache.complete("a", encoded("a", &f));
        assert!(rt.block_on(lead.wait()).is_ok() && rt.block_on(follower.wait()).is_ok());
        assert_eq!((metrics.cache_misses.get(), metrics.cache_hits.get()), (1, 1));

        for id in ["b", "c"] {
            let _ = leader(&cache, id);
            cache.complete(id, encoded(id, &f));
        }
        // Room for two: "a" (least recently used) is gone.
        assert!(matches!(cache.lookup("a"), Lookup::Absent));
        assert!(matches!(cache.lookup("c"), Lookup::Hit(_)));
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (2, 2 * f.nbytes(), 1));
        assert_eq!(metrics.cache_bytes.get() as usize, 2 * f.nbytes());
    }

    #[test]
    fn a_failed_encoding_reaches_every_waiter_and_is_not_cached() {
        let cache = FeatureCache::new(1 << 30, "m", Metrics::new());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let lead = leader(&cache, "x");
        let Lookup::Pending(follower) = cache.lookup("x") else {
            panic!("pending")
        };
        cache.complete("x", Err(ApiError::new(ErrorCode::Overloaded, "full")));
        assert_eq!(rt.block_on(lead.wait()).unwrap_err().code, ErrorCode::Overloaded);
        assert_eq!(rt.block_on(follower.wait()).unwrap_err().code, ErrorCode::Overloaded);
        assert!(matches!(cache.lookup("x"), Lookup::Absent));
        // The next request leads a fresh attempt.
        let _ = leader(&cache, "x");
    }
}
