//! Rendezvous (highest-random-weight) hashing over xxh3: the `ring` sharding strategy.
//!
//! Every shard scores the key with its own seeded xxh3 and the highest score wins. A shard's
//! score never depends on how many shards exist, so adding shard `N` only takes the keys it now
//! wins (about `1/(N+1)` of them) and removing it only moves the keys it held; no key ever moves
//! between two shards that exist before and after.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The shard in `0..shards` that owns `key`; 0 when `shards` is 0 or 1.
pub fn rendezvous(key: &str, shards: u32) -> u32 {
    let mut best = 0u32;
    let mut best_score = 0u64;
    for shard in 0..shards {
        let score = xxh3_64_with_seed(key.as_bytes(), shard_seed(shard));
        // Strict `>` keeps the lowest shard on a (astronomically unlikely) tie, so the choice
        // stays deterministic and independent of iteration details.
        if shard == 0 || score > best_score {
            best = shard;
            best_score = score;
        }
    }
    best
}

/// The `k` shards of `0..shards` that score `key` highest, best first (all of them when
/// `k >= shards`): the owners of a key on a replicated ring. A shard's score does not depend on
/// the others, so adding a shard only ever puts it into some keys' lists (pushing their last
/// owner out) and removing one only lets the next-best shard in.
pub fn rendezvous_top(key: &[u8], shards: u32, k: u32) -> Vec<u32> {
    let mut scored: Vec<(u64, u32)> =
        (0..shards).map(|s| (xxh3_64_with_seed(key, shard_seed(s)), s)).collect();
    // Highest score first; on a tie the lower shard, as `rendezvous` does.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k as usize).map(|(_, s)| s).collect()
}

/// A well-mixed seed per shard, so neighbouring shard numbers score keys independently.
fn shard_seed(shard: u32) -> u64 {
    xxh3_64(&shard.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..10_000).map(|i| format!("10.{}.{}.{}:9100", i / 65_536, (i / 256) % 256, i % 256)).collect()
    }

    #[test]
    fn growing_moves_about_one_over_n_plus_one_and_only_to_the_new_shard() {
        let keys = keys();
        for n in 1..=12u32 {
            let mut moved = 0usize;
            for k in &keys {
                let (before, after) = (rendezvous(k, n), rendezvous(k, n + 1));
                if before != after {
                    assert_eq!(after, n, "{k} moved from {before} to {after}, not to the new shard {n}");
                    moved += 1;
                }
            }
            let fraction = moved as f64 / keys.len() as f64;
            let expected = 1.0 / f64::from(n + 1);
            // Binomial standard deviation is at most 0.005 for 10k keys; allow ~4 sigma.
            assert!(
                (fraction - expected).abs() < 0.02,
                "{n}->{}: moved {fraction}, expected {expected}",
                n + 1
            );
        }
    }

    #[test]
    fn shrinking_moves_only_the_removed_shards_keys() {
        for k in keys() {
            for n in 1..=8u32 {
                let (before, after) = (rendezvous(&k, n + 1), rendezvous(&k, n));
                if before != n {
                    assert_eq!(before, after, "{k} moved although its shard {before} survived");
                }
            }
        }
    }

    #[test]
    fn the_top_one_is_the_rendezvous_owner() {
        for k in keys().iter().take(2000) {
            for n in 1..=6u32 {
                let top = rendezvous_top(k.as_bytes(), n, 3.min(n));
                assert_eq!(top[0], rendezvous(k, n));
                let mut dedup = top.clone();
                dedup.sort_unstable();
                dedup.dedup();
                assert_eq!(dedup.len(), top.len(), "distinct owners");
            }
        }
    }

    #[test]
    fn balanced_and_in_range() {
        let keys = keys();
        for n in [1u32, 2, 3, 7, 16] {
            let mut counts = vec![0usize; n as usize];
            for k in &keys {
                let s = rendezvous(k, n);
                assert!(s < n);
                counts[s as usize] += 1;
            }
            let fair = keys.len() as f64 / f64::from(n);
            for (shard, c) in counts.iter().enumerate() {
                let dev = (*c as f64 - fair).abs() / fair;
                assert!(dev < 0.15, "{n} shards: shard {shard} has {c} keys, fair share {fair}");
            }
        }
        assert_eq!(rendezvous("x", 0), 0);
    }
}
