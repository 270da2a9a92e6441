//! IPv4 longest-prefix match: one hash map per prefix length in use, probed longest first.
//!
//! A node's table has few distinct lengths (/32 pods and services, the node pod CIDRs, /0), so
//! a lookup is two or three hash probes whatever the number of routes; no per-route scan.

use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

/// An immutable-after-build LPM table from IPv4 prefixes to `V`.
#[derive(Debug, Clone)]
pub struct Lpm4<V> {
    /// Prefix lengths present, longest first, each with its map keyed by the masked address.
    levels: Vec<(u8, FxHashMap<u32, V>)>,
}

impl<V> Default for Lpm4<V> {
    fn default() -> Self {
        Lpm4 { levels: Vec::new() }
    }
}

#[inline]
fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl<V> Lpm4<V> {
    /// Insert or replace a route. Host bits of `addr` are ignored. `len` above 32 is clamped.
    pub fn insert(&mut self, addr: Ipv4Addr, len: u8, value: V) -> Option<V> {
        let len = len.min(32);
        let key = u32::from(addr) & mask(len);
        let pos = match self.levels.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.levels[i].0 == len => i,
            Some(i) => {
                self.levels.insert(i, (len, FxHashMap::default()));
                i
            }
            None => {
                self.levels.push((len, FxHashMap::default()));
                self.levels.len() - 1
            }
        };
        self.levels[pos].1.insert(key, value)
    }

    /// Remove a route.
    pub fn remove(&mut self, addr: Ipv4Addr, len: u8) -> Option<V> {
        let len = len.min(32);
        let i = self.levels.iter().position(|(l, _)| *l == len)?;
        let v = self.levels[i].1.remove(&(u32::from(addr) & mask(len)));
        if self.levels[i].1.is_empty() {
            self.levels.remove(i);
        }
        v
    }

    /// The value of the longest prefix containing `addr` (host-order u32).
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<&V> {
        self.levels
            .iter()
            .find_map(|(len, map)| map.get(&(addr & mask(*len))))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Every route as (prefix, length, value), longest prefixes first.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, u8, &V)> {
        self.levels
            .iter()
            .flat_map(|(len, m)| m.iter().map(move |(k, v)| (Ipv4Addr::from(*k), *len, v)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm4::default();
        t.insert(Ipv4Addr::new(0, 0, 0, 0), 0, "default");
        t.insert(Ipv4Addr::new(10, 0, 0, 0), 8, "ten");
        t.insert(Ipv4Addr::new(10, 1, 2, 0), 24, "ten-one-two");
        t.insert(Ipv4Addr::new(10, 1, 2, 3), 32, "host");
        fn l(t: &Lpm4<&'static str>, a: [u8; 4]) -> &'static str {
            t.lookup(u32::from(Ipv4Addr::from(a))).copied().unwrap()
        }
        assert_eq!(l(&t, [10, 1, 2, 3]), "host");
        assert_eq!(l(&t, [10, 1, 2, 4]), "ten-one-two");
        assert_eq!(l(&t, [10, 9, 9, 9]), "ten");
        assert_eq!(l(&t, [192, 0, 2, 1]), "default");
        assert_eq!(
            t.remove(Ipv4Addr::new(10, 1, 2, 99), 24),
            Some("ten-one-two")
        );
        assert_eq!(l(&t, [10, 1, 2, 4]), "ten");
        assert_eq!(t.len(), 3);
    }

    proptest! {
        /// Agrees with a linear scan over the same routes.
        #[test]
        fn matches_linear_scan(routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
                               probes in proptest::collection::vec(any::<u32>(), 1..40)) {
            let mut t = Lpm4::default();
            for (i, (a, l)) in routes.iter().enumerate() {
                t.insert(Ipv4Addr::from(*a), *l, i);
            }
            for p in probes {
                let best = routes.iter().enumerate()
                    .filter(|(_, (a, l))| p & mask(*l) == a & mask(*l))
                    .max_by_key(|(i, (_, l))| (*l, *i))  // the last insert of a prefix wins
                    .map(|(_, (a, l))| (a & mask(*l), *l));
                let got = t.lookup(p).map(|i| (routes[*i].0 & mask(routes[*i].1), routes[*i].1));
                prop_assert_eq!(got, best);
            }
        }
    }
}
