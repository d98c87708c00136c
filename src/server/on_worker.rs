//! Values freed on a model worker thread. Candle gives each thread its own
//! CUDA stream, and cudarc frees device memory without binding the CUDA
//! context to the freeing thread: features whose last reference goes away
//! on a tokio or blocking thread (a request holding an image the cache has
//! just evicted, features larger than the cache) would be freed where no
//! context is bound, the error recorded and the memory leaked. An
//! [`OnWorker`] dropped off a worker hands its value to a [`Graveyard`]
//! that a worker empties, so device memory is freed where it was made.
//! The rule holds on every device (it costs a queue push), so the CPU tests
//! see it.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::Weak;

thread_local! {
    static MODEL_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a model worker (for the rest of its life).
pub fn mark_model_worker() {
    MODEL_WORKER.with(|w| w.set(true));
}

/// Whether the calling thread is a model worker.
pub fn on_model_worker() -> bool {
    MODEL_WORKER.with(Cell::get)
}

/// Where values dropped off a worker wait for one.
pub trait Graveyard: Send + Sync {
    /// Keeps `value` until a worker drops it.
    fn bury(&self, value: Box<dyn Send>);
}

/// A value (features on the model's device) that is dropped on a model
/// worker: in place when its last owner is one, else through its
/// graveyard. Without a graveyard (gone, or never given), in place.
#[derive(Debug)]
pub struct OnWorker<T: Send + 'static> {
    value: Option<T>,
    home: Option<Weak<dyn Graveyard>>,
}

impl<T: Send + 'static> OnWorker<T> {
    pub fn new(value: T, home: Weak<dyn Graveyard>) -> Self {
        Self {
            value: Some(value),
            home: Some(home),
        }
    }

    /// A value with no worker to return to (tests, values made off the engine).
    pub fn anywhere(value: T) -> Self {
        Self {
            value: Some(value),
            home: None,
        }
    }
}

impl<T: Send + 'static> Deref for OnWorker<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("an OnWorker holds its value until dropped")
    }
}

impl<T: Send + 'static> Drop for OnWorker<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else { return };
        if on_model_worker() {
            return;
        }
        if let Some(graveyard) = self.home.as_ref().and_then(Weak::upgrade) {
            graveyard.bury(Box::new(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records the name of the thread that drops it.
    struct Probe(Arc<Mutex<Vec<String>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("unnamed").to_string();
            self.0.lock().unwrap().push(name);
        }
    }

    #[derive(Default)]
    struct Pile(Mutex<Vec<Box<dyn Send>>>);

    impl Graveyard for Pile {
        fn bury(&self, value: Box<dyn Send>) {
            self.0.lock().unwrap().push(value);
        }
    }

    #[test]
    fn values_dropped_off_a_worker_wait_for_one() {
        let drops = Arc::new(Mutex::new(Vec::new()));
        let pile: Arc<Pile> = Arc::default();
        let home: Weak<dyn Graveyard> = Arc::downgrade(&(pile.clone() as Arc<dyn Graveyard>));
        let off = OnWorker::new(Probe(drops.clone()), home.clone());
        let on = OnWorker::new(Probe(drops.clone()), home.clone());
        std::thread::Builder::new()
            .name("not-a-worker".into())
            .spawn(move || drop(off))
            .unwrap()
            .join()
            .unwrap();
        assert!(drops.lock().unwrap().is_empty(), "buried, not dropped");
        assert_eq!(pile.0.lock().unwrap().len(), 1);
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                mark_model_worker();
                drop(on);
                pile.0.lock().unwrap().clear();
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(*drops.lock().unwrap(), ["worker", "worker"]);
        // The graveyard gone (the engine stopped): dropped in place.
        let orphan = OnWorker::new(Probe(drops.clone()), home);
        drop(orphan);
        assert_eq!(drops.lock().unwrap().len(), 3);
    }
}
