//! `Sharder::equivalent_prometheus_rules`, run through promtier's own relabel engine, keeps a
//! target exactly on the shard `Sharder::shard_of` picks (the Prometheus side of the same claim
//! is `tests/prometheus_hashmod.rs`).

use promtier::model::Labels;
use promtier::relabel::{RawRelabelConfig, RelabelConfig, relabel_labels};
use promtier::shard::{ShardStrategy, Sharder};

fn compile_snippet(yaml: &str) -> Vec<RelabelConfig> {
    let raw: Vec<RawRelabelConfig> = serde_saphyr::from_str(yaml).expect("the snippet is YAML");
    raw.iter().map(|r| r.compile().expect("the snippet's rules are valid")).collect()
}

#[test]
fn snippet_keeps_exactly_the_sharders_targets() {
    for shards in [1u32, 2, 5, 13] {
        for by in [vec!["__address__"], vec!["env", "__address__", "zone"]] {
            let sharder = Sharder::new(ShardStrategy::HashMod, shards)
                .and_then(|s| s.with_by(by.iter().map(|s| s.to_string()).collect()))
                .expect("valid sharder");
            let rules: Vec<Vec<RelabelConfig>> = (0..shards)
                .map(|s| compile_snippet(&sharder.equivalent_prometheus_rules(s).expect("hashmod has rules")))
                .collect();
            for i in 0..500 {
                let address = format!("10.0.{}.{}:{}", i / 250, i % 250, 9100 + i % 7);
                let env = ["prod", "dev", ""][i % 3];
                let target =
                    Labels::from_pairs(&[("__address__", address.as_str()), ("env", env), ("job", "node")]);
                let owner = sharder.shard_of(&target);
                for (shard, rules) in rules.iter().enumerate() {
                    let kept = relabel_labels(rules, target.clone()).is_some();
                    assert_eq!(
                        kept,
                        shard as u32 == owner,
                        "{target} with {shards} shards by {by:?}: shard {shard}"
                    );
                }
            }
        }
    }
}
