//! [`Sharder`]: picks a target's shard from its labels under one [`ShardStrategy`], and prints
//! the Prometheus relabel rules that make the same choice for `hashmod`.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;

use serde::Deserialize;

use super::{hashmod, rendezvous};
use crate::model::{Labels, LabelsBuilder, is_valid_label_name};

/// The label hashed when a group names none: the target's address, as in Prometheus examples.
pub const DEFAULT_SHARD_BY: &str = "__address__";
/// Joins the values of the `by` labels, as the default `separator` of a Prometheus rule does.
pub const SHARD_SEPARATOR: &str = ";";
/// The temporary label the printed Prometheus rules hash into; `__` labels are dropped after
/// target relabelling, so it never reaches a series.
const TMP_LABEL: &str = "__tmp_promtier_shard";

/// How a leaf group assigns targets to shards (`sharding:` in the topology file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardStrategy {
    /// Prometheus-compatible `hashmod` (md5 modulo the shard count); the default.
    #[default]
    HashMod,
    /// Consistent (rendezvous) hashing: resizing moves few targets; no Prometheus equivalent.
    Ring,
}

impl ShardStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            ShardStrategy::HashMod => "hashmod",
            ShardStrategy::Ring => "ring",
        }
    }
}

impl fmt::Display for ShardStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ShardStrategy {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<ShardStrategy, ShardError> {
        match s {
            "hashmod" => Ok(ShardStrategy::HashMod),
            "ring" => Ok(ShardStrategy::Ring),
            _ => Err(ShardError::UnknownStrategy { name: s.to_string() }),
        }
    }
}

/// A sharding setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("unknown sharding strategy {name:?}; expected \"hashmod\" or \"ring\"")]
    UnknownStrategy { name: String },
    #[error("a group needs at least 1 shard, got 0")]
    ZeroShards,
    #[error("shard_by must name at least one label")]
    EmptyShardBy,
    #[error("{name:?} in shard_by is not a valid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidLabelName { name: String },
    #[error("shard {shard} does not exist: the group has {shards} shards (0..{shards})")]
    ShardOutOfRange { shard: u32, shards: u32 },
    #[error("{strategy} sharding has no Prometheus relabel equivalent; use hashmod for mixed fleets")]
    NoPrometheusEquivalent { strategy: ShardStrategy },
}

/// Assigns targets to the shards of one leaf group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharder {
    strategy: ShardStrategy,
    /// Number of shards in the group; at least 1.
    shards: u32,
    /// Labels whose values, joined with [`SHARD_SEPARATOR`] (missing as `""`), form the key that
    /// is hashed; never empty, all valid label names.
    by: Vec<String>,
}

impl Sharder {
    /// A sharder over `shards` shards keyed by [`DEFAULT_SHARD_BY`].
    pub fn new(strategy: ShardStrategy, shards: u32) -> Result<Sharder, ShardError> {
        if shards == 0 {
            return Err(ShardError::ZeroShards);
        }
        Ok(Sharder { strategy, shards, by: vec![DEFAULT_SHARD_BY.to_string()] })
    }

    /// Replaces the labels that form the key (`shard_by:` in the topology file).
    pub fn with_by(mut self, by: Vec<String>) -> Result<Sharder, ShardError> {
        if by.is_empty() {
            return Err(ShardError::EmptyShardBy);
        }
        if let Some(bad) = by.iter().find(|n| !is_valid_label_name(n)) {
            return Err(ShardError::InvalidLabelName { name: bad.clone() });
        }
        self.by = by;
        Ok(self)
    }

    pub fn strategy(&self) -> ShardStrategy {
        self.strategy
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn by(&self) -> &[String] {
        &self.by
    }

    /// The shard (in `0..shards`) that owns the target with these labels.
    pub fn shard_of(&self, labels: &Labels) -> u32 {
        self.shard_of_key(&self.key(|n| labels.get_or_empty(n)))
    }

    /// Like [`Sharder::shard_of`], for labels still being built (e.g. right after relabelling).
    pub fn shard_of_builder(&self, labels: &LabelsBuilder) -> u32 {
        self.shard_of_key(&self.key(|n| labels.get_or_empty(n)))
    }

    /// The shard that owns an already joined key (the `by` values joined with `;`).
    pub fn shard_of_key(&self, key: &str) -> u32 {
        match self.strategy {
            // The result is below `shards`, a u32, so the conversion cannot fail.
            ShardStrategy::HashMod => u32::try_from(hashmod(key, u64::from(self.shards))).unwrap_or(0),
            ShardStrategy::Ring => rendezvous(key, self.shards),
        }
    }

    /// The key of a target: the values of the `by` labels joined with `;`, missing as `""` —
    /// the string a Prometheus rule with these `source_labels` hashes.
    pub fn key<'a>(&self, get: impl Fn(&str) -> &'a str) -> Cow<'a, str> {
        match self.by.as_slice() {
            [one] => Cow::Borrowed(get(one)),
            many => Cow::Owned(many.iter().map(|n| get(n)).collect::<Vec<&str>>().join(SHARD_SEPARATOR)),
        }
    }

    /// The relabel rules a Prometheus server appends to a job's `relabel_configs` to scrape
    /// exactly the targets of `shard`, as a YAML sequence starting at column 0.
    pub fn equivalent_prometheus_rules(&self, shard: u32) -> Result<String, ShardError> {
        if self.strategy != ShardStrategy::HashMod {
            return Err(ShardError::NoPrometheusEquivalent { strategy: self.strategy });
        }
        if shard >= self.shards {
            return Err(ShardError::ShardOutOfRange { shard, shards: self.shards });
        }
        // Label names are [a-zA-Z0-9_]+, so single quotes need no escaping; they keep names
        // such as `null` or `true` from being read as YAML scalars of another type.
        let sources = self.by.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# promtier: keep shard {shard} of {shards} ({strategy} over [{sources}]);\n\
             # append after the job's own relabel_configs.\n\
             - source_labels: [{sources}]\n  separator: '{SHARD_SEPARATOR}'\n  modulus: {shards}\n  \
             target_label: {TMP_LABEL}\n  action: hashmod\n\
             - source_labels: [{TMP_LABEL}]\n  regex: '{shard}'\n  action: keep\n",
            shards = self.shards,
            strategy = self.strategy,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashmod_sharder_matches_hashmod_of_joined_values() -> Result<(), ShardError> {
        let s = Sharder::new(ShardStrategy::HashMod, 3)?;
        let l = Labels::from_pairs(&[("__address__", "127.0.0.1:9100")]);
        assert_eq!(s.shard_of(&l), 1);
        assert_eq!(s.shard_of_builder(&l.builder()), 1);

        let s = Sharder::new(ShardStrategy::HashMod, 1000)?.with_by(vec!["a".into(), "b".into()])?;
        let l = Labels::from_pairs(&[("a", "a"), ("b", "b")]);
        assert_eq!(s.shard_of(&l), 74, "md5(\"a;b\") mod 1000");
        // A missing label hashes as "", like a Prometheus source label.
        let only_b = Labels::from_pairs(&[("b", "b")]);
        assert_eq!(s.key(|n| only_b.get_or_empty(n)), ";b");
        assert_eq!(u64::from(s.shard_of(&only_b)), hashmod(";b", 1000));
        Ok(())
    }

    #[test]
    fn ring_sharder_uses_rendezvous() -> Result<(), ShardError> {
        let s = Sharder::new(ShardStrategy::Ring, 7)?;
        let l = Labels::from_pairs(&[("__address__", "node-3.example:9100")]);
        assert_eq!(s.shard_of(&l), rendezvous("node-3.example:9100", 7));
        Ok(())
    }

    #[test]
    fn invalid_settings() {
        assert_eq!(Sharder::new(ShardStrategy::Ring, 0), Err(ShardError::ZeroShards));
        let s = Sharder::new(ShardStrategy::HashMod, 2);
        assert_eq!(s.clone().and_then(|s| s.with_by(vec![])), Err(ShardError::EmptyShardBy));
        assert_eq!(
            s.and_then(|s| s.with_by(vec!["ok".into(), "not-ok".into()])),
            Err(ShardError::InvalidLabelName { name: "not-ok".into() })
        );
        assert_eq!(
            "consistent".parse::<ShardStrategy>(),
            Err(ShardError::UnknownStrategy { name: "consistent".into() })
        );
        assert_eq!("ring".parse::<ShardStrategy>(), Ok(ShardStrategy::Ring));
    }

    #[test]
    fn prometheus_rules_snippet() -> Result<(), ShardError> {
        let s = Sharder::new(ShardStrategy::HashMod, 3)?.with_by(vec!["env".into(), "__address__".into()])?;
        let want = "\
# promtier: keep shard 2 of 3 (hashmod over ['env', '__address__']);
# append after the job's own relabel_configs.
- source_labels: ['env', '__address__']
  separator: ';'
  modulus: 3
  target_label: __tmp_promtier_shard
  action: hashmod
- source_labels: [__tmp_promtier_shard]
  regex: '2'
  action: keep
";
        assert_eq!(s.equivalent_prometheus_rules(2)?, want);
        assert_eq!(
            s.equivalent_prometheus_rules(3),
            Err(ShardError::ShardOutOfRange { shard: 3, shards: 3 })
        );
        let ring = Sharder::new(ShardStrategy::Ring, 3)?;
        assert_eq!(
            ring.equivalent_prometheus_rules(0),
            Err(ShardError::NoPrometheusEquivalent { strategy: ShardStrategy::Ring })
        );
        Ok(())
    }
}
