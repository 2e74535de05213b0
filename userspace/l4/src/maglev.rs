//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights.
//!
//! Each backend walks its own permutation of the table (`offset + j * skip mod M`, M prime)
//! and claims the first free slot it meets. With equal weights every backend ends up with
//! ⌊M/N⌋ or ⌈M/N⌉ slots; removing one backend mostly frees just its own slots, because the
//! others keep walking the same permutations.
//!
//! Weights: the table is filled in rounds; in round r a backend of weight w claims
//! ⌊r·w/W⌋ − ⌊(r−1)·w/W⌋ slots, W being the largest weight, so the heaviest claims one slot
//! per round and the others in proportion. Weight 0 claims nothing (drain: the data path
//! keeps existing connections on it through the connection table).

/// One backend as the table builder sees it.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Stable identity hash (see [`identity_hash`]): it decides the backend's permutation,
    /// so it must not depend on the backend's position in a list.
    pub key: u64,
    pub weight: u32,
}

/// Slot value for "no backend".
pub const EMPTY: u32 = u32::MAX;

/// Builds a table of `size` slots, each holding an index into `entries` (or [`EMPTY`] when
/// no entry has a weight). `size` must be a prime for the permutations to be complete.
pub fn build(entries: &[Entry], size: u32) -> Vec<u32> {
    let m = size as u64;
    let mut table = vec![EMPTY; size as usize];
    let max_weight = entries.iter().map(|e| e.weight).max().unwrap_or(0) as u64;
    if m == 0 || max_weight == 0 {
        return table;
    }
    let perms: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| {
            let offset = splitmix64(e.key ^ 0x6d61_676c_6576_3031) % m;
            let skip = if m > 1 { splitmix64(e.key ^ 0x736b_6970_0000_0002) % (m - 1) + 1 } else { 1 };
            (offset, skip)
        })
        .collect();
    // Claims go in identity order, so the table does not depend on how the caller lists
    // its backends.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].key, i));
    let mut next = vec![0u64; entries.len()];
    let mut filled = 0u64;
    let mut round = 0u64;
    while filled < m {
        round += 1;
        for &i in &order {
            let w = entries[i].weight as u64;
            let claims = round * w / max_weight - (round - 1) * w / max_weight;
            for _ in 0..claims {
                let (offset, skip) = perms[i];
                loop {
                    // offset, skip < m and next < m, so this fits in u128 without overflow.
                    let slot = ((offset as u128 + next[i] as u128 * skip as u128) % m as u128) as usize;
                    next[i] += 1;
                    if table[slot] == EMPTY {
                        table[slot] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return table;
                }
            }
        }
    }
    table
}

/// A stable 64-bit hash of a backend's identity bytes; shared with the L7 balancer's
/// hashing, so it lives in `ballast-common`.
pub use ballast_common::identity_hash;
use ballast_common::splitmix64;

/// Whether `n` is prime (table sizes must be).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while (d as u64) * (d as u64) <= n as u64 {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n).map(|i| Entry { key: identity_hash(format!("10.0.0.{i}:80").as_bytes()), weight: 1 }).collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut s = vec![0; n];
        for &b in table {
            s[b as usize] += 1;
        }
        s
    }

    #[test]
    fn every_slot_filled_and_equal_weights_within_one_percent() {
        for n in [1, 2, 3, 7, 10, 100] {
            let t = build(&entries(n), 65537);
            assert!(t.iter().all(|&b| (b as usize) < n), "n={n}: empty slot left");
            let s = shares(&t, n);
            let (min, max) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
            assert!(max - min <= 1, "n={n}: shares {min}..{max}");
            assert!((max as f64) <= (min as f64) * 1.01, "n={n}: shares {min}..{max} differ by over 1%");
        }
    }

    #[test]
    fn removing_one_backend_moves_little_else() {
        let m = 65537;
        for n in [5, 10, 50, 100] {
            let all = entries(n);
            let before = build(&all, m);
            for removed in [0, n / 2, n - 1] {
                let mut rest = all.clone();
                rest.remove(removed);
                let after = build(&rest, m);
                // Map indices in `after` back to indices in `all`.
                let to_all = |i: u32| if (i as usize) < removed { i } else { i + 1 };
                let moved_others = before
                    .iter()
                    .zip(&after)
                    .filter(|(b, a)| **b as usize != removed && to_all(**a) != **b)
                    .count();
                let limit = (1.2 / n as f64) * m as f64;
                assert!(
                    (moved_others as f64) <= limit,
                    "n={n}, removed {removed}: {moved_others} other slots moved, limit {limit:.0}"
                );
                // The removed backend's own slots all go somewhere else.
                assert!(after.iter().all(|&a| to_all(a) as usize != removed));
            }
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let mut e = entries(3);
        e[0].weight = 1;
        e[1].weight = 2;
        e[2].weight = 5;
        let t = build(&e, 65537);
        let s = shares(&t, 3);
        let total = 8.0;
        for (i, w) in [1.0, 2.0, 5.0].iter().enumerate() {
            let want = 65537.0 * w / total;
            let got = s[i] as f64;
            assert!((got - want).abs() / want < 0.01, "backend {i}: {got} slots, want {want:.0}");
        }
    }

    #[test]
    fn zero_weight_gets_nothing_and_all_zero_is_empty() {
        let mut e = entries(3);
        e[1].weight = 0;
        let t = build(&e, 251);
        assert!(!t.contains(&1));
        assert!(t.iter().all(|&b| b != EMPTY));
        for x in e.iter_mut() {
            x.weight = 0;
        }
        assert!(build(&e, 251).iter().all(|&b| b == EMPTY));
        assert!(build(&[], 251).iter().all(|&b| b == EMPTY));
    }

    #[test]
    fn table_depends_on_identity_not_order() {
        let e = entries(5);
        let mut r = e.clone();
        r.reverse();
        let a = build(&e, 1009);
        let b = build(&r, 1009);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(*x, 4 - *y);
        }
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2) && is_prime(13));
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65536) && !is_prime(91));
    }
}
