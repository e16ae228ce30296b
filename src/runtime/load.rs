//! Open requests per endpoint, for bounded-load hashing: a counter each endpoint shares across
//! reloads (like its health), and the guard a request holds from its endpoint's choice to its
//! end (a WebSocket tunnel's included).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The requests an endpoint holds now.
#[derive(Debug, Default)]
pub struct Load(AtomicUsize);

impl Load {
    /// The count now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one request until the guard drops.
    pub fn hold(self: &Arc<Self>) -> LoadGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        LoadGuard(self.clone())
    }
}

/// One request counted on its endpoint.
#[derive(Debug)]
pub struct LoadGuard(Arc<Load>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_counts_until_dropped() {
        let l = Arc::new(Load::default());
        let a = l.hold();
        let b = l.hold();
        assert_eq!(l.get(), 2);
        drop(a);
        assert_eq!(l.get(), 1);
        drop(b);
        assert_eq!(l.get(), 0);
    }
}
