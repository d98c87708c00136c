//! The image-feature cache: LRU bounded by bytes, keyed by model and image
//! content hash, with single flight (concurrent requests for the same new
//! image wait for one encoding instead of each running the encoder).
//!
//! Accounting, as the dashboard reads it: every request served from cached
//! features (including one that waited on another request's encoding) is one
//! hit; every encoding is one miss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lru::LruCache;
use tokio::sync::oneshot;

use super::engine::Encoded;
use super::errors::ApiError;
use super::metrics::Metrics;
use crate::ImageFeatures;

/// An encoded image as the cache keeps it.
#[derive(Debug)]
pub struct CachedImage {
    /// Hex SHA-256 of the image file bytes.
    pub image_id: String,
    pub features: ImageFeatures,
    pub nbytes: usize,
    /// How long the encoding took (reported to the requests that waited).
    pub encode_time: Duration,
}

impl CachedImage {
    pub fn width(&self) -> u32 {
        self.features.width
    }

    pub fn height(&self) -> u32 {
        self.features.height
    }
}

type Outcome = Result<Arc<CachedImage>, ApiError>;

/// Waits for an encoding another request (or this one) started.
#[derive(Debug)]
pub struct Waiter {
    rx: oneshot::Receiver<Outcome>,
    pub width: u32,
    pub height: u32,
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

    /// Finds cached or in-progress features; counts a hit when found.
    pub fn lookup(&self, image_id: &str) -> Lookup {
        let key = self.key(image_id);
        let mut inner = self.lock();
        if let Some(entry) = inner.lru.get(&key) {
            let entry = entry.clone();
            self.metrics.cache_hits.inc();
            return Lookup::Hit(entry);
        }
        match inner.pending.get_mut(&key) {
            Some(pending) => {
                self.metrics.cache_hits.inc();
                Lookup::Pending(register(pending))
            }
            None => Lookup::Absent,
        }
    }

    /// Like [`Self::lookup`], but when nothing is there the caller becomes
    /// the leader: later requests for the image wait for its encoding.
    pub fn begin(&self, image_id: &str, width: u32, height: u32) -> Begin {
        match self.lookup(image_id) {
            Lookup::Hit(entry) => return Begin::Hit(entry),
            Lookup::Pending(waiter) => return Begin::Pending(waiter),
            Lookup::Absent => {}
        }
        let mut inner = self.lock();
        let key = self.key(image_id);
        // Someone may have started between the two locks.
        if let Some(entry) = inner.lru.get(&key) {
            let entry = entry.clone();
            self.metrics.cache_hits.inc();
            return Begin::Hit(entry);
        }
        let pending = inner.pending.entry(key).or_insert_with(|| Pending {
            width,
            height,
            waiters: Vec::new(),
        });
        let waiter = register(pending);
        if pending.waiters.len() == 1 {
            Begin::Leader(waiter)
        } else {
            self.metrics.cache_hits.inc();
            Begin::Pending(waiter)
        }
    }

    /// Ends an encoding: caches the features (when they fit) and hands the
    /// outcome to every waiter.
    pub fn complete(&self, image_id: &str, outcome: Result<Encoded, ApiError>) {
        let key = self.key(image_id);
        let outcome = outcome.map(|encoded| {
            Arc::new(CachedImage {
                image_id: image_id.to_string(),
                nbytes: encoded.features.nbytes(),
                features: encoded.features,
                encode_time: encoded.took,
            })
        });
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

    fn insert(&self, inner: &mut Inner, key: Key, entry: Arc<CachedImage>) {
        if entry.nbytes > self.capacity_bytes {
            // Would evict everything and still not fit: serve it uncached.
            return;
        }
        inner.bytes += entry.nbytes;
        if let Some(old) = inner.lru.put(key, entry) {
            inner.bytes -= old.nbytes;
        }
        while inner.bytes > self.capacity_bytes {
            let Some((_, evicted)) = inner.lru.pop_lru() else {
                break;
            };
            inner.bytes -= evicted.nbytes;
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
    }
}
