//! `promtier plan` on a topology with a push tier, run as users run it: the PUSH RING section
//! and the `push` JSON object (replication, quorum, key labels, pulling globals, balance over the
//! sample key set), `--push-key` owners, and `--resize push=N` growing (copies go to the new node
//! only) and shrinking (the removed node must be drained).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// `promtier plan FILE ARGS…`: (success, stdout, stderr).
fn plan(file: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promtier"))
        .arg("plan")
        .arg(file)
        .args(args)
        .output()
        .expect("run promtier plan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plan_json(file: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = plan(file, &all);
    assert!(ok, "promtier plan failed: {err}");
    serde_json::from_str(&out).expect("plan JSON")
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().expect("array").iter().map(|n| n["node"].as_str().expect("node")).collect()
}

#[test]
fn text_shows_the_ring_its_quorum_and_its_balance_over_the_sample() {
    let (ok, out, err) = plan(&data("plan/push.yaml"), &[]);
    assert!(ok, "{err}");
    for want in [
        "PUSH RING: 3 nodes (push-0 … push-2), each series kept by 2 of them (its owners)",
        "key labels    job, instance",
        "write quorum  1 of 2 owners: a write is acknowledged once it is in 1 owner's WAL;",
        "a key's writes are still acknowledged with 1 owner down",
        "pulled by     top",
        "sample key set of 10000 keys",
        "(20 jobs × 500 instances; the real keys are whatever clients push)",
        "max/mean 1.0",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    for node in ["push-0", "push-1", "push-2"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(node)), "no balance line for {node}\n{out}");
    }
    // Without a push tier: no section.
    let (ok, out, _) = plan(&data("topology/minimal.good.yaml"), &[]);
    assert!(ok);
    assert!(!out.contains("PUSH RING"), "{out}");
}

#[test]
fn json_adds_a_push_object_and_keeps_the_existing_fields() {
    let p = plan_json(&data("plan/push.yaml"), &[]);
    for field in ["nodes", "targets", "dropped", "warnings", "storage"] {
        assert!(p.get(field).is_some(), "existing field {field} is gone");
    }
    assert_eq!(p["targets"][0]["nodes"][0], "infra-0-a");
    let push = &p["push"];
    assert_eq!(push["nodes"], 3);
    assert_eq!(push["replication_factor"], 2);
    assert_eq!(push["write_quorum"], 1);
    assert_eq!(push["writes_survive_owners_down"], 1);
    assert_eq!(push["key"], serde_json::json!(["job", "instance"]));
    assert_eq!(push["pulled_by"], serde_json::json!(["top"]));
    let b = &push["balance"];
    assert_eq!(b["sample_keys"], 10_000);
    assert_eq!(b["sample"], "20 jobs × 500 instances");
    assert_eq!(names(&b["keys_per_node"]), ["push-0", "push-1", "push-2"]);
    let per: Vec<u64> = b["keys_per_node"]
        .as_array()
        .expect("array")
        .iter()
        .map(|n| n["keys"].as_u64().expect("keys"))
        .collect();
    assert_eq!(per.iter().sum::<u64>(), 20_000, "every key counts once per owner");
    assert_eq!(b["max"].as_u64(), per.iter().max().copied());
    let max_over_mean = b["max_over_mean"].as_f64().expect("max_over_mean");
    assert!((1.0..1.05).contains(&max_over_mean), "{max_over_mean}");
    assert!(push.get("resize").is_none() && push.get("owners").is_none(), "{push}");
    // Without a push tier: no object.
    assert!(plan_json(&data("topology/minimal.good.yaml"), &[]).get("push").is_none());
}

#[test]
fn growing_to_four_nodes_moves_a_quarter_of_the_copies_to_push_3_only() {
    let p = plan_json(&data("plan/push.yaml"), &["--resize", "push=4"]);
    let r = &p["push"]["resize"][0];
    assert_eq!((r["from_nodes"].as_u64(), r["to_nodes"].as_u64()), (Some(3), Some(4)));
    assert_eq!(r["copies"], 20_000);
    let copies = r["new_copy_fraction"].as_f64().expect("new_copy_fraction");
    assert!((copies - 0.25).abs() < 0.02, "{copies}");
    let keys = r["key_fraction"].as_f64().expect("key_fraction");
    assert!((keys - 0.5).abs() < 0.03, "{keys}");
    assert_eq!(names(&r["received_by"]), ["push-3"]);
    assert_eq!(r["received_by"][0]["keys"], r["new_copies"]);
    assert_eq!(r["added"], serde_json::json!(["push-3"]));
    assert!(r.get("removed").is_none());
    // The leaf resize list is untouched by a push resize.
    assert!(p.get("resize").is_none());

    let (ok, out, err) = plan(&data("plan/push.yaml"), &["--resize", "push=4"]);
    assert!(ok, "{err}");
    assert!(out.contains("RESIZE push from 3 to 4 nodes, over the 10000 sample keys"), "{out}");
    let received = out.lines().find(|l| l.trim_start().starts_with("received by")).expect("received by line");
    assert!(received.contains("push-3") && !received.contains("push-0"), "{received}");
}

#[test]
fn shrinking_says_which_node_to_drain() {
    let p = plan_json(&data("plan/push.yaml"), &["--resize", "push=2"]);
    let r = &p["push"]["resize"][0];
    assert_eq!(r["removed"], serde_json::json!(["push-2"]));
    assert_eq!(names(&r["given_up_by"]), ["push-2"]);
    assert_eq!(r["keys_losing_owner"], r["given_up_by"][0]["keys"]);
    assert_eq!(names(&r["received_by"]), ["push-0", "push-1"]);
    let (ok, out, _) = plan(&data("plan/push.yaml"), &["--resize", "push=2"]);
    assert!(ok);
    assert!(out.contains("removed       push-2: ") && out.contains("drain first"), "{out}");
}

#[test]
fn push_key_names_the_owners() {
    let p = plan_json(
        &data("plan/push.yaml"),
        &[
            "--push-key",
            "job=backup,instance=db-1:9100",
            "--push-key",
            r#"{__name__="up", instance="db-1:9100", job="backup"}"#,
        ],
    );
    let owners = p["push"]["owners"].as_array().expect("owners");
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0]["key"], serde_json::json!({"job": "backup", "instance": "db-1:9100"}));
    assert_eq!(owners[0]["owners"].as_array().expect("owners").len(), 2);
    assert_eq!(owners[0]["owners"], owners[1]["owners"], "labels outside the key do not choose owners");
    assert_eq!(owners[1]["ignored"], serde_json::json!(["__name__"]));
    let (ok, out, _) = plan(&data("plan/push.yaml"), &["--push-key", "job=backup,instance=db-1:9100"]);
    assert!(ok);
    assert!(out.contains(r#"owners of {job="backup", instance="db-1:9100"}: push-"#), "{out}");
}

#[test]
fn default_quorum_at_rf_3_is_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.yaml");
    let text = std::fs::read_to_string(data("plan/push.yaml")).expect("read");
    std::fs::write(&file, text.replace("nodes: 3, replication_factor: 2", "nodes: 5, replication_factor: 3"))
        .expect("write");
    let push = &plan_json(&file, &[])["push"];
    assert_eq!(
        (push["write_quorum"].as_u64(), push["writes_survive_owners_down"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(push["balance"]["keys_per_node"].as_array().map(Vec::len), Some(5));
}

#[test]
fn mistakes_are_named() {
    let bad = |file: &Path, args: &[&str], want: &str| {
        let (ok, _, err) = plan(file, args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    };
    let push = data("plan/push.yaml");
    bad(&push, &["--resize", "push=1"], "fewer push nodes than the replication factor (2)");
    bad(&push, &["--push-key", "job"], "want LABEL=VALUE");
    let minimal = data("topology/minimal.good.yaml");
    bad(&minimal, &["--resize", "push=2"], "the topology has no push: tier");
    bad(&minimal, &["--push-key", "job=x"], "the topology has no push: tier");
}

#[test]
fn without_a_push_tier_a_leaf_group_named_push_still_resizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.yaml");
    let text = std::fs::read_to_string(data("topology/minimal.good.yaml")).expect("read");
    std::fs::write(&file, text.replace("group: infra", "group: push")).expect("write");
    let p = plan_json(&file, &["--resize", "push=2"]);
    assert_eq!(p["resize"][0]["group"], "push");
    assert!(p.get("push").is_none());
}
