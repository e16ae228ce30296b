//! A pool's pair pins: which endpoint answered a negotiate, found by the connection's ids and
//! the negotiate's request id, so that the connect and the transport's later requests reach it
//! even after the ring changed (a reload added an endpoint, health flapped). Bounded (TinyUFO
//! evicts), expiring (each use renews a pin), and keyed by salted hashes: no connection token
//! is kept. It outlives reloads that keep the pool's pinning settings.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use pingora_memory_cache::MemoryCache;

use crate::config::Pinning;

/// What a pin is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKey<'a> {
    /// A connection's `id=`: its connection token or connection id.
    Connection(&'a [u8]),
    /// The negotiate's `asrs_request_id`.
    RequestId(&'a [u8]),
}

/// The pins of one pool.
pub struct PinStore {
    settings: Pinning,
    /// Salts the keys, so that nobody can aim a key at another's pin.
    hasher: std::collections::hash_map::RandomState,
    cache: MemoryCache<u64, Arc<str>>,
}

impl std::fmt::Debug for PinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PinStore {
    /// A store for `settings`, or `None` when pinning is off (`capacity: 0`).
    pub fn new(settings: &Pinning) -> Option<PinStore> {
        (settings.capacity > 0).then(|| PinStore {
            settings: settings.clone(),
            hasher: Default::default(),
            cache: MemoryCache::new(settings.capacity),
        })
    }

    /// This store if it was made for `settings`, else a fresh one (or none when off).
    pub fn carry(previous: Option<&Arc<PinStore>>, settings: &Pinning) -> Option<Arc<PinStore>> {
        match previous {
            Some(p) if p.settings == *settings => Some(p.clone()),
            _ => PinStore::new(settings).map(Arc::new),
        }
    }

    /// How long a pin lives after its last use.
    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// Pins `key` to the endpoint named `endpoint` (again: renews it).
    pub fn pin(&self, key: PinKey<'_>, endpoint: &Arc<str>) {
        let h = self.hasher.hash_one(key);
        self.cache
            .put(&h, endpoint.clone(), Some(self.settings.ttl));
    }

    /// The endpoint name `key` is pinned to, if the pin has not expired.
    pub fn find(&self, key: PinKey<'_>) -> Option<Arc<str>> {
        self.cache.get(&self.hasher.hash_one(key)).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl: Duration, capacity: usize) -> PinStore {
        PinStore::new(&Pinning { ttl, capacity }).unwrap()
    }

    #[test]
    fn pins_are_found_by_their_kind_of_key_only() {
        let s = store(Duration::from_secs(60), 100);
        let b: Arc<str> = Arc::from("b");
        s.pin(PinKey::Connection(b"tok"), &b);
        s.pin(PinKey::RequestId(b"rid"), &b);
        assert_eq!(s.find(PinKey::Connection(b"tok")).as_deref(), Some("b"));
        assert_eq!(s.find(PinKey::RequestId(b"rid")).as_deref(), Some("b"));
        assert_eq!(s.find(PinKey::RequestId(b"tok")), None);
        assert_eq!(s.find(PinKey::Connection(b"other")), None);
        // A later negotiate with the same key moves the pin.
        s.pin(PinKey::RequestId(b"rid"), &Arc::from("c"));
        assert_eq!(s.find(PinKey::RequestId(b"rid")).as_deref(), Some("c"));
    }

    #[test]
    fn pins_expire_unless_used() {
        let s = store(Duration::from_millis(300), 100);
        let a: Arc<str> = Arc::from("a");
        s.pin(PinKey::Connection(b"kept"), &a);
        s.pin(PinKey::Connection(b"left"), &a);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            // Each use renews the pin, as a long poll's requests do.
            let found = s.find(PinKey::Connection(b"kept")).unwrap();
            s.pin(PinKey::Connection(b"kept"), &found);
        }
        assert_eq!(s.find(PinKey::Connection(b"kept")).as_deref(), Some("a"));
        assert_eq!(s.find(PinKey::Connection(b"left")), None);
    }

    #[test]
    fn memory_is_bounded() {
        let s = store(Duration::from_secs(60), 1_000);
        let a: Arc<str> = Arc::from("a");
        for i in 0..20_000u32 {
            s.pin(PinKey::Connection(&i.to_le_bytes()), &a);
        }
        let kept = (0..20_000u32)
            .filter(|i| s.find(PinKey::Connection(&i.to_le_bytes())).is_some())
            .count();
        assert!(kept <= 1_100, "{kept} pins kept");
    }

    #[test]
    fn off_and_carried_across_reloads() {
        let on = Pinning::default();
        assert!(PinStore::new(&Pinning {
            capacity: 0,
            ..on.clone()
        })
        .is_none());
        let first = PinStore::carry(None, &on).unwrap();
        first.pin(PinKey::RequestId(b"r"), &Arc::from("a"));
        let same = PinStore::carry(Some(&first), &on).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(same.find(PinKey::RequestId(b"r")).as_deref(), Some("a"));
        let other = Pinning {
            ttl: Duration::from_secs(5),
            ..on
        };
        let fresh = PinStore::carry(Some(&first), &other).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh) && fresh.ttl() == Duration::from_secs(5));
        assert!(PinStore::carry(
            Some(&first),
            &Pinning {
                capacity: 0,
                ..other
            }
        )
        .is_none());
    }
}
