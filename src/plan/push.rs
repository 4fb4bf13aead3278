//! The push tier's part of the plan: its ring (nodes, replication factor, write quorum, key
//! labels, the globals that pull it), the ring's balance over the sample key set
//! (`push::sample`), the owners of keys the user names (`--push-key`), and what a change of the
//! node count would move (`--resize push=N`). The ring itself is `push::ring`'s; this module only
//! asks it and reports.

use std::fmt::Write;

use indexmap::IndexMap;
use serde::Serialize;

use super::PlanError;
use crate::model::is_valid_label_name;
use crate::push::ring::Ring;
use crate::push::sample::{Balance, SAMPLE_KEYS, describe_sample, sample_keys};
use crate::topology::{PUSH_TIER, PushConfig, Topology};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanPush {
    pub nodes: u32,
    pub replication_factor: u32,
    /// Owners that must have a write in their WAL before it is acknowledged.
    pub write_quorum: u32,
    /// How many of a key's owners may be down while its writes are still acknowledged
    /// (`replication_factor - write_quorum`).
    pub writes_survive_owners_down: u32,
    /// The labels whose values choose a series' owners.
    pub key: Vec<String>,
    /// The globals with `push` in `from:`.
    pub pulled_by: Vec<String>,
    pub balance: PlanBalance,
    /// The owners of each `--push-key`, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<PlanPushKey>,
    /// One entry per `--resize push=N`, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resize: Vec<PushResize>,
}

/// Keys per node over the sample key set (not the real keys: those are whatever clients push).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanBalance {
    /// How the sample is made (`20 jobs × 500 instances`).
    pub sample: String,
    pub sample_keys: usize,
    /// Keys each node owns (a key counts once per owner).
    pub keys_per_node: Vec<NodeKeys>,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub max_over_mean: f64,
    pub min_over_mean: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeKeys {
    pub node: String,
    pub keys: u64,
}

/// The owners of one `--push-key`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlanPushKey {
    /// Each key label with its value (empty when not given, as for a series without it), in
    /// the ring's key order.
    pub key: IndexMap<String, String>,
    /// Preferred owner first.
    pub owners: Vec<String>,
    /// Labels given that are not key labels: they do not choose owners.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// What changing the push tier to `to_nodes` nodes does to the sample key set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PushResize {
    pub from_nodes: u32,
    pub to_nodes: u32,
    pub sample_keys: u64,
    /// (key, owner) pairs after the change, those that are new, and the new ones' share.
    pub copies: u64,
    pub new_copies: u64,
    pub new_copy_fraction: f64,
    /// Keys with at least one new owner, and their share of the sample.
    pub keys_gaining_owner: u64,
    pub key_fraction: f64,
    /// Nodes that would receive new copies (only those receiving any).
    pub received_by: Vec<NodeKeys>,
    /// Keys that lose an owner, and the nodes that stop owning them (only those losing any).
    pub keys_losing_owner: u64,
    pub given_up_by: Vec<NodeKeys>,
    /// Nodes a growth adds and a shrink removes (always the highest-numbered ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// The busiest node's keys over the mean after the change.
    pub max_over_mean_after: f64,
}

/// The push part of the plan, or `None` when the topology has no push tier (then any
/// `--resize push=N` (`resizes`) or `--push-key` is an error).
pub(super) fn plan_push(
    topology: &Topology,
    resizes: &[(String, u32)],
    keys: &[String],
) -> Result<Option<PlanPush>, PlanError> {
    let Some(pc) = &topology.push else {
        if let Some((arg, _)) = resizes.first() {
            return Err(PlanError::NoPushTier(format!("--resize {arg}")));
        }
        if let Some(k) = keys.first() {
            return Err(PlanError::NoPushTier(format!("--push-key {k}")));
        }
        return Ok(None);
    };
    let ring = Ring::from_config(pc);
    let sample = sample_keys(&ring, SAMPLE_KEYS);
    let rf = ring.replication_factor();
    let owners = keys.iter().map(|k| key_owners(&ring, k)).collect::<Result<_, _>>()?;
    let resize = resizes
        .iter()
        .map(|(arg, n)| {
            if *n < rf {
                return Err(PlanError::PushBelowReplication { arg: arg.clone(), replication_factor: rf });
            }
            Ok(resize(&ring, &Ring::new(*n, rf, ring.key_labels().to_vec()), &sample))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(PlanPush {
        nodes: pc.nodes,
        replication_factor: pc.replication_factor,
        write_quorum: pc.write_quorum,
        writes_survive_owners_down: pc.replication_factor.saturating_sub(pc.write_quorum),
        key: pc.key.clone(),
        pulled_by: topology
            .globals
            .iter()
            .filter(|g| g.from.iter().any(|f| f == PUSH_TIER))
            .map(|g| g.name.clone())
            .collect(),
        balance: balance(&ring, &sample),
        owners,
        resize,
    }))
}

fn balance(ring: &Ring, sample: &[Vec<u8>]) -> PlanBalance {
    let load = ring.load(sample.iter().map(Vec::as_slice));
    let b = Balance::of(&load);
    PlanBalance {
        sample: describe_sample(sample.len()),
        sample_keys: sample.len(),
        keys_per_node: per_node(&load, false),
        min: b.min,
        max: b.max,
        mean: b.mean,
        max_over_mean: b.max_over_mean(),
        min_over_mean: b.min_over_mean(),
    }
}

/// `counts` by node name; with `nonzero`, only the nodes with a count.
fn per_node(counts: &[u64], nonzero: bool) -> Vec<NodeKeys> {
    (0u32..)
        .zip(counts)
        .filter(|(_, c)| !nonzero || **c > 0)
        .map(|(i, c)| NodeKeys { node: PushConfig::node_name(i), keys: *c })
        .collect()
}

fn resize(before: &Ring, after: &Ring, sample: &[Vec<u8>]) -> PushResize {
    let m = before.moves(after, sample.iter().map(Vec::as_slice));
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let load = after.load(sample.iter().map(Vec::as_slice));
    PushResize {
        from_nodes: before.nodes(),
        to_nodes: after.nodes(),
        sample_keys: m.keys,
        copies: m.copies,
        new_copies: m.new_copies,
        new_copy_fraction: share(m.new_copies, m.copies),
        keys_gaining_owner: m.keys_moved,
        key_fraction: share(m.keys_moved, m.keys),
        received_by: per_node(&m.received, true),
        keys_losing_owner: m.keys_losing,
        given_up_by: per_node(&m.given_up, true),
        added: (before.nodes()..after.nodes()).map(PushConfig::node_name).collect(),
        removed: (after.nodes()..before.nodes()).map(PushConfig::node_name).collect(),
        max_over_mean_after: Balance::of(&load).max_over_mean(),
    }
}

/// The owners of the key `arg` names (`job=x,instance=y`).
fn key_owners(ring: &Ring, arg: &str) -> Result<PlanPushKey, PlanError> {
    let bad = |reason: String| PlanError::BadPushKey { arg: arg.to_string(), reason };
    let given = parse_key_arg(arg).map_err(bad)?;
    let value = |name: &str| given.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let key = ring.key_from(value);
    Ok(PlanPushKey {
        key: ring
            .key_labels()
            .iter()
            .map(|l| (l.clone(), value(l).unwrap_or_default().to_string()))
            .collect(),
        owners: ring.owners(&key).into_iter().map(PushConfig::node_name).collect(),
        ignored: given
            .iter()
            .filter(|(n, _)| !ring.key_labels().contains(n))
            .map(|(n, _)| n.clone())
            .collect(),
    })
}

/// Parses `LABEL=VALUE,LABEL=VALUE`, optionally in braces, values bare (up to the next comma)
/// or double-quoted with `\"` and `\\` escapes: `job=x,instance=y`, `{job="x", instance="a,b"}`.
fn parse_key_arg(arg: &str) -> Result<Vec<(String, String)>, String> {
    let mut rest = arg.trim();
    if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        rest = inner.trim();
    }
    let mut out: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or_else(|| format!("want LABEL=VALUE at {rest:?}"))?;
        let name = name.trim();
        if !is_valid_label_name(name) {
            return Err(format!("{name:?} is not a valid label name"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name:?} is given twice"));
        }
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                unquote(quoted).ok_or_else(|| format!("unterminated quoted value for {name:?}"))?
            }
            None => match after.find(',') {
                Some(i) => (after[..i].trim_end().to_string(), &after[i..]),
                None => (after.trim_end().to_string(), ""),
            },
        };
        out.push((name.to_string(), value));
        let tail = tail.trim_start();
        rest = match tail.strip_prefix(',') {
            Some(t) => t.trim_start(),
            None if tail.is_empty() => tail,
            None => return Err(format!("want a comma before {tail:?}")),
        };
    }
    if out.is_empty() {
        return Err("want LABEL=VALUE[,LABEL=VALUE…]".to_string());
    }
    Ok(out)
}

/// The value of a quoted string whose opening quote is already consumed, and what follows its
/// closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// `{job="x", instance="y"}`.
fn format_key(key: &IndexMap<String, String>) -> String {
    let pairs: Vec<String> = key.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn format_counts(counts: &[NodeKeys]) -> String {
    let parts: Vec<String> = counts.iter().map(|c| format!("{} {}", c.node, c.keys)).collect();
    if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
}

fn pct(f: f64) -> String {
    format!("{:.1}%", 100.0 * f)
}

/// `1 owner`, `2 owners`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The PUSH RING section of the text report.
pub(super) fn render_ring(p: &PlanPush, s: &mut String) {
    let names = match p.nodes {
        1 => "push-0".to_string(),
        n => format!("push-0 … push-{}", n - 1),
    };
    let _ = writeln!(
        s,
        "\nPUSH RING: {} ({names}), each series kept by {} of them (its owners)",
        count(p.nodes.into(), "node"),
        p.replication_factor
    );
    let _ = writeln!(s, "  key labels    {} (their values choose a series' owners)", p.key.join(", "));
    let _ = writeln!(
        s,
        "  write quorum  {} of {}: a write is acknowledged once it is in {};",
        p.write_quorum,
        count(p.replication_factor.into(), "owner"),
        if p.write_quorum == 1 {
            "1 owner's WAL".to_string()
        } else {
            format!("{} owners' WALs", p.write_quorum)
        }
    );
    let _ = match p.writes_survive_owners_down {
        0 => writeln!(s, "                a key's writes fail while any of its owners is down"),
        n => writeln!(
            s,
            "                a key's writes are still acknowledged with {} down",
            count(n.into(), "owner")
        ),
    };
    let pulled = if p.pulled_by.is_empty() {
        "no global has `push` in from:, so no global queries pushed data".to_string()
    } else {
        p.pulled_by.join(", ")
    };
    let _ = writeln!(s, "  pulled by     {pulled}");
    let b = &p.balance;
    let _ = writeln!(s, "  balance       keys per node over a sample key set of {} keys", b.sample_keys);
    let _ = writeln!(s, "                ({}; the real keys are whatever clients push):", b.sample);
    for n in &b.keys_per_node {
        let _ = writeln!(s, "    {:<14} {:>7}", n.node, n.keys);
    }
    let _ = writeln!(
        s,
        "    min {}, max {}, mean {:.1}: max/mean {:.3}, min/mean {:.3}",
        b.min, b.max, b.mean, b.max_over_mean, b.min_over_mean
    );
    for k in &p.owners {
        let _ = write!(s, "  owners of {}: {} (preferred first)", format_key(&k.key), k.owners.join(", "));
        if !k.ignored.is_empty() {
            let _ = write!(s, "; ignored, not key labels: {}", k.ignored.join(", "));
        }
        let _ = writeln!(s);
    }
}

/// The RESIZE push sections of the text report.
pub(super) fn render_resizes(p: &PlanPush, s: &mut String) {
    for r in &p.resize {
        let _ = writeln!(
            s,
            "\nRESIZE push from {} to {} nodes, over the {} sample keys ({} copies, one per key and owner):",
            r.from_nodes, r.to_nodes, r.sample_keys, r.copies
        );
        if r.new_copies == 0 {
            let _ = writeln!(s, "  nothing moves");
            continue;
        }
        let _ = writeln!(
            s,
            "  new copies    {} of {} ({}); keys gaining an owner: {} of {} ({})",
            r.new_copies,
            r.copies,
            pct(r.new_copy_fraction),
            r.keys_gaining_owner,
            r.sample_keys,
            pct(r.key_fraction)
        );
        let _ = writeln!(s, "  received by   {}", format_counts(&r.received_by));
        if r.removed.is_empty() {
            let _ = writeln!(
                s,
                "  given up by   {} (old owners stop receiving those keys' writes)",
                format_counts(&r.given_up_by)
            );
        } else {
            let _ = writeln!(
                s,
                "  removed       {}: {} of the sample keys ({}) lose an owner ({})",
                r.removed.join(", "),
                r.keys_losing_owner,
                pct(r.keys_losing_owner as f64 / r.sample_keys.max(1) as f64),
                format_counts(&r.given_up_by)
            );
            let _ = writeln!(
                s,
                "  drain first   remove a node only once every global pulling the tier has pulled what it"
            );
            let _ = writeln!(
                s,
                "                holds (promtier_federation_lag_seconds); its keys' new samples then go to"
            );
            let _ = writeln!(
                s,
                "                the new owners (received by, above), their history stays at the globals"
            );
        }
        let _ = writeln!(s, "  balance after max/mean {:.3}", r.max_over_mean_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_args() {
        let ok = |arg: &str, want: &[(&str, &str)]| {
            let got = parse_key_arg(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            let want: Vec<(String, String)> =
                want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            assert_eq!(got, want, "{arg}");
        };
        ok("job=x,instance=y", &[("job", "x"), ("instance", "y")]);
        ok(" job = x , instance=10.0.0.1:9100 ", &[("job", "x"), ("instance", "10.0.0.1:9100")]);
        ok(r#"{job="x", instance="a,b"}"#, &[("job", "x"), ("instance", "a,b")]);
        ok(r#"job="say \"hi\"\\""#, &[("job", r#"say "hi"\"#)]);
        ok("job=", &[("job", "")]);
        ok("job=a=b", &[("job", "a=b")]);
        let bad = |arg: &str, want: &str| {
            let e = parse_key_arg(arg).expect_err(arg);
            assert!(e.contains(want), "{arg}: {e}");
        };
        bad("", "want LABEL=VALUE");
        bad("job", "want LABEL=VALUE");
        bad("1job=x", "not a valid label name");
        bad("job=x,job=y", "given twice");
        bad(r#"job="x"y"#, "want a comma");
        bad(r#"job="x"#, "unterminated");
    }

    #[test]
    fn owners_follow_the_key_labels_only() {
        let ring = Ring::new(4, 2, vec!["job".into(), "instance".into()]);
        let a = key_owners(&ring, "job=batch,instance=host-1").expect("key");
        let b = key_owners(&ring, r#"{__name__="up", instance="host-1", job="batch"}"#).expect("key");
        assert_eq!(a.owners, b.owners);
        assert_eq!(a.owners.len(), 2);
        assert_eq!(b.ignored, ["__name__"]);
        let key: Vec<(&str, &str)> = a.key.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(key, [("job", "batch"), ("instance", "host-1")]);
        let want = ring.owners(&ring.key_from(|n| match n {
            "job" => Some("batch"),
            "instance" => Some("host-1"),
            _ => None,
        }));
        assert_eq!(a.owners, want.into_iter().map(PushConfig::node_name).collect::<Vec<_>>());
    }
}
