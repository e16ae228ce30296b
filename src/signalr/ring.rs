//! The deterministic "ring" over endpoint names: rendezvous (highest random weight) hashing.
//!
//! Keyed by names, never addresses, so DNS changes and shared front-end IPs do not reshuffle keys;
//! seeded by nothing but the names, so every process and replica agrees. Removing one of N names
//! moves exactly the keys that name held (about 1/N); an unusable endpoint is skipped by taking
//! the next-highest score, which is the same walk every replica makes.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Endpoint names compiled into per-name hash seeds.
#[derive(Debug, Clone)]
pub struct Ring {
    seeds: Vec<u64>,
}

impl Ring {
    /// Builds the ring from endpoint names, in endpoint order.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        Ring {
            seeds: names
                .iter()
                .map(|n| xxh3_64(n.as_ref().as_bytes()))
                .collect(),
        }
    }

    /// Number of endpoints on the ring.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// True when the ring has no endpoints.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The index of the usable endpoint with the highest score for `key`.
    pub fn pick(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, seed) in self.seeds.iter().enumerate() {
            let score = xxh3_64_with_seed(key, *seed);
            // Ties (vanishingly rare) go to the lower index, which is deterministic too.
            if best.is_none_or(|(s, _)| score > s) && usable(i) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2017) over the
    /// same scores: the first usable endpoint, from the highest score down, whose `load` is
    /// below `ceil(c × (total + 1) / n)`, where `n` usable endpoints hold `total` requests. One
    /// always is (they cannot all be at the bound: it is at least the average with this
    /// request); with equal loads it is `pick`'s endpoint. `c` ≥ 1 (the config's bounds).
    pub fn pick_bounded(
        &self,
        key: &[u8],
        usable: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> usize,
        c: f64,
    ) -> Option<usize> {
        let mut order: Vec<(u64, usize)> = Vec::with_capacity(self.seeds.len());
        let (mut n, mut total) = (0usize, 0usize);
        let mut loads = Vec::with_capacity(self.seeds.len());
        for (i, seed) in self.seeds.iter().enumerate() {
            // Each load read once: other requests move them meanwhile.
            let l = load(i);
            loads.push(l);
            if usable(i) {
                n += 1;
                total = total.saturating_add(l);
                order.push((xxh3_64_with_seed(key, *seed), i));
            }
        }
        if n == 0 {
            return None;
        }
        let bound = load_bound(c, total, n);
        // Highest score first; ties to the lower index, as in `pick`.
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| loads[i] < bound)
            .or(order.first().map(|&(_, i)| i))
    }
}

/// `ceil(c × (total + 1) / n)`, the most requests an endpoint may hold after this one.
fn load_bound(c: f64, total: usize, n: usize) -> usize {
    let bound = (c * (total as f64 + 1.0) / n as f64).ceil();
    // Float to integer casts saturate; the bound is at least 1.
    (bound as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> impl Iterator<Item = Vec<u8>> {
        (0..n).map(|i| format!("ed8Nh{i:07}=").into_bytes())
    }

    #[test]
    fn same_key_same_endpoint_across_independent_rings() {
        let a = Ring::new(&[
            "a.service.signalr.net",
            "b.service.signalr.net",
            "c.service.signalr.net",
        ]);
        let names = vec![
            String::from("a.service.signalr.net"),
            String::from("b.service.signalr.net"),
            String::from("c.service.signalr.net"),
        ];
        let b = Ring::new(&names);
        for k in keys(10_000) {
            assert_eq!(a.pick(&k, |_| true), b.pick(&k, |_| true));
        }
    }

    #[test]
    fn known_answers_do_not_drift() {
        // Replicas of different builds must agree: these pins catch a hash or seed change.
        let r = Ring::new(&["a", "b", "c"]);
        let picks: Vec<usize> = ["k1", "k2", "k3", "k4", "k5", "k6"]
            .iter()
            .map(|k| r.pick(k.as_bytes(), |_| true).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 0, 2]);
        assert_eq!(xxh3_64(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn spread_over_three_is_within_ten_percent() {
        let r = Ring::new(&[
            "a.service.signalr.net",
            "b.service.signalr.net",
            "c.service.signalr.net",
        ]);
        let mut counts = [0usize; 3];
        for k in keys(100_000) {
            counts[r.pick(&k, |_| true).unwrap()] += 1;
        }
        let even = 100_000.0 / 3.0;
        for c in counts {
            assert!((c as f64 - even).abs() / even < 0.10, "{counts:?}");
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let names: Vec<String> = (0..5)
            .map(|i| format!("i{i}.service.signalr.net"))
            .collect();
        let full = Ring::new(&names);
        let fewer = Ring::new(&names[..4]);
        let mut moved = 0;
        let n = 50_000;
        for k in keys(n) {
            let before = full.pick(&k, |_| true).unwrap();
            let after = fewer.pick(&k, |_| true).unwrap();
            if before != after {
                // Only keys of the removed endpoint may move.
                assert_eq!(before, 4);
                moved += 1;
            }
        }
        let share = moved as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.02, "moved {share}");
    }

    #[test]
    fn adding_one_moves_only_to_the_new_endpoint() {
        let names: Vec<String> = (0..4).map(|i| format!("i{i}")).collect();
        let mut more = names.clone();
        more.push("i4".into());
        let (a, b) = (Ring::new(&names), Ring::new(&more));
        for k in keys(20_000) {
            let (x, y) = (a.pick(&k, |_| true).unwrap(), b.pick(&k, |_| true).unwrap());
            assert!(x == y || y == 4);
        }
    }

    #[test]
    fn unusable_endpoints_are_skipped_consistently() {
        let r = Ring::new(&["a", "b", "c"]);
        for k in keys(5_000) {
            let first = r.pick(&k, |_| true).unwrap();
            let second = r.pick(&k, |i| i != first).unwrap();
            assert_ne!(first, second);
            // Keys of healthy endpoints stay where they were.
            let other = (first + 1) % 3;
            if r.pick(&k, |i| i != other) != Some(first) {
                panic!("a key moved although its endpoint stayed usable");
            }
        }
        assert_eq!(r.pick(b"x", |_| false), None);
        assert_eq!(Ring::new::<&str>(&[]).pick(b"x", |_| true), None);
    }

    #[test]
    fn bounded_walk_skips_endpoints_at_the_bound() {
        let r = Ring::new(&["a", "b", "c"]);
        assert_eq!(load_bound(1.25, 0, 3), 1);
        assert_eq!(load_bound(1.25, 11, 3), 5);
        assert_eq!(load_bound(1.0, 5, 3), 2);
        for k in keys(2_000) {
            let first = r.pick(&k, |_| true).unwrap();
            // Equal loads: plain hashing's answer.
            assert_eq!(r.pick_bounded(&k, |_| true, |_| 7, 1.25), Some(first));
            // Its endpoint holds 10 of 12 (bound ceil(1.25 × 13 / 3) = 6): the next one.
            let loads = |i: usize| if i == first { 10 } else { 1 };
            let second = r.pick(&k, |i| i != first).unwrap();
            assert_eq!(r.pick_bounded(&k, |_| true, loads, 1.25), Some(second));
            // A loose factor lets it stay.
            assert_eq!(r.pick_bounded(&k, |_| true, loads, 10.0), Some(first));
        }
        assert_eq!(r.pick_bounded(b"x", |_| false, |_| 0, 1.25), None);
    }

    proptest::proptest! {
        #[test]
        fn bounded_walk_never_goes_over_the_bound(
            loads in proptest::collection::vec(0usize..1000, 1..8),
            down in proptest::collection::vec(proptest::bool::weighted(0.3), 8),
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
            c in 1.0f64..3.0,
        ) {
            let names: Vec<String> = (0..loads.len()).map(|i| format!("i{i}")).collect();
            let r = Ring::new(&names);
            let usable = |i: usize| !down[i];
            let picked = r.pick_bounded(&key, usable, |i| loads[i], c);
            let up: Vec<usize> = (0..loads.len()).filter(|&i| usable(i)).collect();
            if up.is_empty() {
                proptest::prop_assert_eq!(picked, None);
                return Ok(());
            }
            let i = picked.unwrap();
            proptest::prop_assert!(usable(i));
            let total: usize = up.iter().map(|&j| loads[j]).sum();
            let bound = (c * (total + 1) as f64 / up.len() as f64).ceil() as usize;
            // With this request it holds at most the bound.
            proptest::prop_assert!(loads[i] < bound, "{loads:?} {i} {bound}");
            // Every endpoint it passed over on the walk was at the bound.
            let score = |j: usize| xxh3_64_with_seed(&key, r.seeds[j]);
            for &j in &up {
                if (score(j), std::cmp::Reverse(j)) > (score(i), std::cmp::Reverse(i)) {
                    proptest::prop_assert!(loads[j] >= bound);
                }
            }
            // Equal loads: plain hashing.
            proptest::prop_assert_eq!(
                r.pick_bounded(&key, usable, |_| loads[0], c),
                r.pick(&key, usable)
            );
        }
    }
}
