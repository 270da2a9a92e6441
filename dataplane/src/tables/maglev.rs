//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, §3.4): a lookup array of prime size `M` in which every backend
//! owns about `M / N` slots, so a flow hash picks a backend with one array read, and removing
//! one backend moves little more than the flows it had.
//!
//! Everything here is deterministic: the hashes are fixed functions of the bytes (no random
//! seed, no dependence on the platform's word size), so every worker and every node that builds
//! the array for the same backends gets the same array and sends a flow to the same backend.

use std::net::Ipv4Addr;

use super::services::Backend;

/// The table sizes to pick from (primes, each about twice the previous).
pub const TABLE_SIZES: [usize; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// How many slots per backend the paper recommends (§3.4: `M ≥ 100 N` keeps the occupancy of
/// any two backends within a few percent of each other).
pub const SLOTS_PER_BACKEND: usize = 100;

/// The smallest size of [`TABLE_SIZES`] with at least [`SLOTS_PER_BACKEND`] slots per backend;
/// the largest for services of more than 1310 backends.
pub fn table_size(backends: usize) -> usize {
    let want = backends.saturating_mul(SLOTS_PER_BACKEND);
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| m >= want)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// Builds the lookup array for `backends` (weight 1 each) with `m` slots: each entry is an index
/// into `backends`. `m` must be prime for every backend's permutation to cover the table; a
/// non-prime is rounded up to the next prime (the returned length is the size used). No
/// backends: an empty array.
///
/// The result depends on the order of `backends` (the paper fills round robin in that order):
/// pass them sorted, as [`BackendSet`](super::BackendSet) does, so that the same set gives the
/// same array whatever order the control plane listed it in.
pub fn build(backends: &[Backend], m: usize) -> Vec<u32> {
    let m = next_prime(m.max(2));
    let n = backends.len();
    if n == 0 {
        return Vec::new();
    }
    // (offset, skip, next) per backend; the permutation is offset + j * skip (mod m), computed
    // as we go rather than stored (the paper's Pseudocode 1 with permutation[i][j] inlined).
    let mut perm: Vec<(u64, u64, u64)> = backends
        .iter()
        .map(|b| {
            let (h1, h2) = backend_hashes(b);
            let offset = h1 % m as u64;
            let skip = h2 % (m as u64 - 1) + 1;
            (offset, skip, 0)
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut entry = vec![EMPTY; m];
    let mut filled = 0;
    // Each round every backend takes its next preferred free slot, so backends end up with
    // ⌊m/n⌋ or ⌈m/n⌉ slots. Terminates: with m prime, every skip is coprime to m, so each
    // backend's permutation visits every slot.
    loop {
        for (i, (offset, skip, next)) in perm.iter_mut().enumerate() {
            let mut c = ((*offset + *next * *skip) % m as u64) as usize;
            while entry[c] != EMPTY {
                *next += 1;
                c = ((*offset + *next * *skip) % m as u64) as usize;
            }
            // Fits: a set has fewer than 2^32 backends.
            entry[c] = i as u32;
            *next += 1;
            filled += 1;
            if filled == m {
                return entry;
            }
        }
    }
}

/// The two hashes of a backend's "name" (its address and port) that give its offset and skip.
fn backend_hashes(b: &Backend) -> (u64, u64) {
    let name = (u64::from(b.addr.to_bits()) << 16) | u64::from(b.port);
    (
        mix64(name ^ 0x9e37_79b9_7f4a_7c15),
        mix64(name ^ 0xc2b2_ae3d_27d4_eb4f),
    )
}

/// The hash of a flow's 5-tuple that picks its slot. Symmetric in nothing: the original
/// direction's tuple (client → frontend) is what is hashed.
#[inline]
pub fn flow_hash(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> u64 {
    let a = (u64::from(src.to_bits()) << 32) | u64::from(dst.to_bits());
    let b = (u64::from(sport) << 32) | (u64::from(dport) << 16) | u64::from(proto);
    mix64(a ^ mix64(b ^ 0x1656_67b1_9e37_79f9))
}

/// A fixed 64-bit mixer (the finaliser of MurmurHash3, `fmix64`): every input bit affects
/// every output bit. Used for Maglev and for the conntrack's bucket index.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(mut n: usize) -> usize {
    while !is_prime(n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                addr: Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250) as u8 + 1),
                port: 8080,
            })
            .collect()
    }

    fn occupancy(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in table {
            c[e as usize] += 1;
        }
        c
    }

    #[test]
    fn sizes_and_primes() {
        assert!(TABLE_SIZES.iter().all(|&m| is_prime(m)));
        assert_eq!(table_size(0), 251);
        assert_eq!(table_size(2), 251);
        assert_eq!(table_size(3), 509);
        assert_eq!(table_size(10), 1021);
        assert_eq!(table_size(100_000), 131_071);
        assert_eq!(build(&backends(3), 100).len(), 101);
        assert!(build(&[], 251).is_empty());
    }

    #[test]
    fn deterministic_and_order_sensitive_only_through_indices() {
        let b = backends(7);
        assert_eq!(build(&b, 1021), build(&b, 1021));
        // The same backends in another order own the same slots (indices differ).
        let mut r = b.clone();
        r.reverse();
        let t1 = build(&b, 1021);
        let t2 = build(&r, 1021);
        let same = t1
            .iter()
            .zip(&t2)
            .filter(|&(x, y)| b[*x as usize] == r[*y as usize])
            .count();
        // Round-robin order decides only contested slots.
        assert!(same > 1021 * 9 / 10, "{same}");
    }

    proptest! {
        /// With M ≥ 100 N every backend owns ⌊M/N⌋ or ⌈M/N⌉ slots (weight 1).
        #[test]
        fn spreads_evenly(n in 1usize..60) {
            let b = backends(n);
            let m = table_size(n);
            let t = build(&b, m);
            let occ = occupancy(&t, n);
            let (lo, hi) = (m / n, m.div_ceil(n));
            prop_assert!(occ.iter().all(|&o| o >= lo && o <= hi), "{occ:?}");
        }

        /// Removing one of N backends moves its slots and few others: the slots of the others
        /// that change owner stay within 1/N of the table plus a small slack (the paper's
        /// Figure 12 shows a few percent).
        #[test]
        fn removal_moves_little(n in 3usize..40, gone in 0usize..40) {
            let gone = gone % n;
            let b = backends(n);
            let m = table_size(n);
            let before = build(&b, m);
            let mut rest = b.clone();
            rest.remove(gone);
            let after = build(&rest, m);
            let moved = before
                .iter()
                .zip(&after)
                .filter(|&(x, y)| *x as usize != gone && b[*x as usize] != rest[*y as usize])
                .count();
            let others = before.iter().filter(|&&x| x as usize != gone).count();
            let bound = others as f64 * (1.0 / n as f64 + 0.05);
            prop_assert!((moved as f64) <= bound, "moved {moved} of {others}, n {n}");
        }
    }
}
