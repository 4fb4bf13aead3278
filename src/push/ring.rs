//! The push tier's ring: which nodes own a series. A series' key is the values of the ring's key
//! labels (default `job`, `instance`, so one instance's series stay together); its owners are the
//! `replication_factor` nodes that score that key highest under rendezvous hashing
//! (`shard::rendezvous_top`). Membership is the topology's node count, so every node computes the
//! same owners without talking to the others.

use crate::model::Labels;
use crate::shard::rendezvous_top;
use crate::topology::PushConfig;

/// Separates key label values (a byte no UTF-8 label value contains).
const KEY_SEPARATOR: u8 = 0xff;

/// The ring of a push tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    nodes: u32,
    replication_factor: u32,
    key: Vec<String>,
}

impl Ring {
    pub fn new(nodes: u32, replication_factor: u32, key: Vec<String>) -> Ring {
        Ring { nodes, replication_factor: replication_factor.min(nodes).max(1), key }
    }

    pub fn from_config(c: &PushConfig) -> Ring {
        Ring::new(c.nodes, c.replication_factor, c.key.clone())
    }

    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    pub fn replication_factor(&self) -> u32 {
        self.replication_factor
    }

    /// The key labels.
    pub fn key_labels(&self) -> &[String] {
        &self.key
    }

    /// The ring key of a series: its key labels' values (missing ones count as empty).
    pub fn key_of(&self, labels: &Labels) -> Vec<u8> {
        self.key_from(|name| labels.get(name))
    }

    /// The ring key from a label lookup.
    pub fn key_from<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Vec<u8> {
        let mut k = Vec::with_capacity(64);
        for (i, name) in self.key.iter().enumerate() {
            if i > 0 {
                k.push(KEY_SEPARATOR);
            }
            k.extend_from_slice(get(name).unwrap_or("").as_bytes());
        }
        k
    }

    /// The owners of `key` (node indexes), preferred first.
    pub fn owners(&self, key: &[u8]) -> Vec<u32> {
        rendezvous_top(key, self.nodes, self.replication_factor)
    }

    /// Owned keys per node for `keys`.
    pub fn load<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u64> {
        let mut per = vec![0u64; self.nodes as usize];
        for k in keys {
            for o in self.owners(k) {
                per[o as usize] += 1;
            }
        }
        per
    }

    /// What a change from this ring to `other` does to `keys`: the (key, owner) pairs `other`
    /// has and this ring has not (the copies to place anew), per node that receives them, and
    /// the pairs this ring has and `other` has not, per node that gives them up.
    pub fn moves<'a>(&self, other: &Ring, keys: impl IntoIterator<Item = &'a [u8]>) -> Moves {
        let mut m = Moves {
            received: vec![0; other.nodes as usize],
            given_up: vec![0; self.nodes as usize],
            ..Moves::default()
        };
        for k in keys {
            let (a, b) = (self.owners(k), other.owners(k));
            let mut new = 0;
            for o in b.iter().filter(|o| !a.contains(o)) {
                m.received[*o as usize] += 1;
                new += 1;
            }
            let mut lost = 0;
            for o in a.iter().filter(|o| !b.contains(o)) {
                m.given_up[*o as usize] += 1;
                lost += 1;
            }
            m.keys += 1;
            m.copies += b.len() as u64;
            m.new_copies += new;
            m.keys_moved += u64::from(new > 0);
            m.keys_losing += u64::from(lost > 0);
        }
        m
    }
}

/// What a ring change moves, over a set of keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves {
    pub keys: u64,
    /// Keys with at least one new owner.
    pub keys_moved: u64,
    /// Keys with at least one owner the changed ring drops (on a shrink, those a removed node
    /// owned; with an unchanged replication factor, the same keys as `keys_moved`).
    pub keys_losing: u64,
    /// (key, owner) pairs after the change, and those that are new.
    pub copies: u64,
    pub new_copies: u64,
    /// New pairs per node of the changed ring (indexed by node).
    pub received: Vec<u64>,
    /// Pairs each node of this ring no longer has after the change (indexed by node).
    pub given_up: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32, rf: u32) -> Ring {
        Ring::new(n, rf, vec!["job".into(), "instance".into()])
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let l = Labels::from_pairs(&[
                    ("__name__", "up"),
                    ("job", "app"),
                    ("instance", &format!("10.0.{}.{}:9100", i / 256, i % 256)),
                ]);
                ring(1, 1).key_of(&l)
            })
            .collect()
    }

    #[test]
    fn every_key_has_rf_distinct_owners_and_one_instance_stays_together() {
        let r = ring(3, 2);
        for k in keys(1000) {
            let o = r.owners(&k);
            assert_eq!(o.len(), 2);
            assert_ne!(o[0], o[1]);
        }
        let a = Labels::from_pairs(&[("__name__", "a"), ("job", "j"), ("instance", "i")]);
        let b = Labels::from_pairs(&[("__name__", "b"), ("job", "j"), ("instance", "i"), ("x", "y")]);
        assert_eq!(r.owners(&r.key_of(&a)), r.owners(&r.key_of(&b)));
        // Separated values: ("ab", "") and ("a", "b") are different keys.
        let c = Labels::from_pairs(&[("job", "ab")]);
        let d = Labels::from_pairs(&[("job", "a"), ("instance", "b")]);
        assert_ne!(r.key_of(&c), r.key_of(&d));
    }

    #[test]
    fn adding_a_node_moves_a_quarter_of_the_copies_and_only_to_it() {
        let ks = keys(20_000);
        let (before, after) = (ring(3, 2), ring(4, 2));
        for k in &ks {
            let (a, b) = (before.owners(k), after.owners(k));
            for o in &b {
                assert!(a.contains(o) || *o == 3, "a key moved to an old node");
            }
        }
        let m = before.moves(&after, ks.iter().map(Vec::as_slice));
        assert_eq!(m.received[..3], [0, 0, 0]);
        assert_eq!(m.received[3], m.new_copies);
        assert_eq!(m.given_up.iter().sum::<u64>(), m.new_copies);
        assert_eq!(m.keys_losing, m.keys_moved);
        let copies = m.new_copies as f64 / m.copies as f64;
        let keys = m.keys_moved as f64 / m.keys as f64;
        assert!((copies - 0.25).abs() < 0.02, "{copies}");
        assert!((keys - 0.5).abs() < 0.02, "{keys}");
    }

    #[test]
    fn removing_a_node_gives_its_keys_to_the_survivors() {
        let ks = keys(20_000);
        let (before, after) = (ring(4, 2), ring(3, 2));
        let owned_by_3 = ks.iter().filter(|k| before.owners(k).contains(&3)).count() as u64;
        let m = before.moves(&after, ks.iter().map(Vec::as_slice));
        assert_eq!(m.given_up[..3], [0, 0, 0]);
        assert_eq!(m.given_up[3], owned_by_3);
        assert_eq!(m.keys_losing, owned_by_3);
        assert_eq!(m.new_copies, owned_by_3);
        assert_eq!(m.received.len(), 3);
        assert!(m.received.iter().all(|r| *r > owned_by_3 / 4), "{:?}", m.received);
    }

    #[test]
    fn balanced() {
        let ks = keys(30_000);
        for (n, rf) in [(3, 2), (4, 2), (5, 3), (8, 2)] {
            let load = ring(n, rf).load(ks.iter().map(Vec::as_slice));
            let mean = load.iter().sum::<u64>() as f64 / f64::from(n);
            for l in load {
                assert!((l as f64 - mean).abs() / mean < 0.05, "{n}/{rf}: {l} vs {mean}");
            }
        }
    }
}
