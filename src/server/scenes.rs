//! Scenes whose windows were encoded, by image id and rendering: their size
//! and georeferencing, so that a windowed search can name a scene by its
//! `image_id` and take every window from the feature cache instead of
//! receiving the whole scene again. Bounded by count (an entry is a few
//! hundred bytes); the windows themselves live in the feature cache, and an
//! entry whose windows were evicted gives a 404 naming the window.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::geo::Georef;

/// Scenes remembered at most (least recently used forgotten first).
pub const SCENES_KEPT: usize = 4096;

/// What a search needs of a scene whose pixels are not at hand.
#[derive(Clone, Debug)]
pub struct SceneInfo {
    pub width: u32,
    pub height: u32,
    pub georef: Georef,
}

/// The registry, keyed by `image_id|rendering`.
#[derive(Debug)]
pub struct SceneRegistry {
    scenes: Mutex<LruCache<String, SceneInfo>>,
}

impl Default for SceneRegistry {
    fn default() -> Self {
        Self::new(SCENES_KEPT)
    }
}

impl SceneRegistry {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            scenes: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn record(&self, key: String, info: SceneInfo) {
        self.lock().put(key, info);
    }

    pub fn get(&self, key: &str) -> Option<SceneInfo> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, SceneInfo>> {
        self.scenes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width: u32) -> SceneInfo {
        SceneInfo {
            width,
            height: 1,
            georef: Georef::default(),
        }
    }

    #[test]
    fn the_least_recently_used_scene_is_forgotten_first() {
        let scenes = SceneRegistry::new(2);
        scenes.record("a".into(), info(1));
        scenes.record("b".into(), info(2));
        assert_eq!(scenes.get("a").map(|i| i.width), Some(1));
        scenes.record("c".into(), info(3));
        assert!(scenes.get("b").is_none(), "b was used least recently");
        assert_eq!(scenes.get("a").map(|i| i.width), Some(1));
        assert_eq!(scenes.get("c").map(|i| i.width), Some(3));
    }
}
