//! Single flight for window features. When two windowed searches (or a
//! search and a pre-encode) need the same window of the same scene, one
//! encodes it and the other waits for it, as concurrent requests for one
//! image do: a search that finds a window missing leads its encoding, and
//! hands the features to the waiters once its batch is encoded. A search
//! that stops (an error, its deadline) ends the windows it still leads
//! with an error when it is dropped, so no waiter hangs; a waiter told so
//! encodes the window itself.
//!
//! A search takes the windows of a batch in grid order and waits only for
//! windows another search leads, which that search encodes before it waits
//! for any window after them: no two searches can wait for each other.

use std::cell::RefCell;
use std::sync::Arc;

use super::cache::{Begin, FeatureCache};
use super::cached_image::CachedImage;
use super::errors::ApiError;
use crate::geo::Georef;

/// The windows one search leads, over the server's feature cache.
pub(super) struct WindowFlight<'c> {
    cache: &'c FeatureCache,
    led: RefCell<Vec<String>>,
}

impl<'c> WindowFlight<'c> {
    pub fn new(cache: &'c FeatureCache) -> Self {
        Self {
            cache,
            led: RefCell::new(Vec::new()),
        }
    }

    /// The window's features from the cache, after waiting for another
    /// search that is encoding them; `None` when this search must encode
    /// them (it then leads them unless their leader failed).
    pub fn get(&self, key: &str, width: u32, height: u32, georef: &Georef) -> Option<Arc<CachedImage>> {
        match self.cache.begin(key, width, height, georef) {
            Begin::Hit(image) => Some(image),
            Begin::Pending(waiter) => {
                // On the blocking pool, where a search runs, the runtime's
                // handle is at hand; anywhere else the window is encoded here.
                let handle = tokio::runtime::Handle::try_current().ok()?;
                handle.block_on(waiter.wait()).ok()
            }
            Begin::Leader(_) => {
                self.led.borrow_mut().push(key.to_string());
                None
            }
        }
    }

    /// Caches a window this search encoded and hands it to its waiters.
    pub fn finish(&self, key: &str, entry: Arc<CachedImage>) {
        let led = {
            let mut led = self.led.borrow_mut();
            let at = led.iter().position(|k| k == key);
            at.map(|i| led.swap_remove(i))
        };
        match led {
            Some(_) => self.cache.complete(key, Ok(entry)),
            None => self.cache.put(key, entry),
        }
    }
}

impl Drop for WindowFlight<'_> {
    fn drop(&mut self) {
        for key in self.led.take() {
            let stopped = ApiError::internal("the windowed search encoding this window stopped before it");
            self.cache.complete(&key, Err(stopped));
        }
    }
}
