//! `docs/topology.md` cannot drift from the code: its reference block (the first YAML block) is
//! checked against what the topology loader accepts. For every mapping of the block that is a
//! configuration struct, an unknown key is slipped in and the loader's answer — `unknown field
//! …, expected one of …`, the struct's own field list — is compared with the keys the block shows
//! there: every documented key must be a real field (a renamed or removed key fails), and every
//! real field must be documented (a new key without documentation fails).
//!
//! The reference block shows each struct with its main keys and points to the page that details
//! the rest (`# keys: remote-storage.md`, security.md for `web:`/`client:`), so a real field the
//! block does not show counts as documented when a page of `docs/` names it (as `` `key` `` or
//! `key:`). Maps whose keys are the user's (label names, node names, user names, header names)
//! are not structs and are skipped; `{...}` stands for "the block shown above".

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// Keys whose value is a map of the user's own keys, not a struct's fields.
const FREE_MAPS: &[&str] = &["external_labels", "headers", "labels", "basic_auth_users", "params", "nodes"];
/// A key no struct has.
const PROBE: &str = "zz_probe_key";

fn reference_block() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/topology.md"))
        .expect("docs/topology.md");
    let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    doc[start..end].to_string()
}

/// Every page of `docs/`, concatenated.
fn docs_text() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut all = String::new();
    for e in std::fs::read_dir(&dir).expect("docs/").flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

/// Every struct mapping of `v` by path (a list of keys and indexes), with its documented keys.
fn structs(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, BTreeSet<String>)>) {
    match v {
        Value::Object(m) => {
            let keys: BTreeSet<String> = m.keys().filter(|k| *k != "...").cloned().collect();
            if keys.is_empty() {
                return; // `{...}`: a placeholder for a block shown elsewhere
            }
            out.push((path.clone(), keys));
            for (k, child) in m {
                if child.as_object().is_some_and(|c| c.keys().all(|k| k == "...")) {
                    continue; // shown as `{...}`: documented above, not probed here
                }
                path.push(k.clone());
                if FREE_MAPS.contains(&k.as_str()) {
                    // The values of a free map may be structs again (`nodes: {name: {listen: …}}`).
                    if let Value::Object(entries) = child {
                        for (name, e) in entries {
                            path.push(name.clone());
                            if e.is_object() {
                                structs(e, path, out);
                            }
                            path.pop();
                        }
                    }
                } else {
                    structs(child, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                structs(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k).expect("path"),
        Value::Array(a) => &mut a[k.parse::<usize>().expect("index")],
        _ => panic!("not a container at {k}"),
    })
}

/// The field list the loader names when `PROBE` sits at `path`.
fn real_fields(doc: &Value, path: &[String]) -> Result<BTreeSet<String>, String> {
    let mut probe = doc.clone();
    if let Value::Object(m) = at_mut(&mut probe, path) {
        m.insert(PROBE.to_string(), Value::from(1));
    }
    let text = serde_json::to_string(&probe).expect("json");
    let err = match promtier::topology::parse(&text, Path::new("/nonexistent/topology.yaml")) {
        Ok(_) => return Err("the probe key was accepted".into()),
        Err(e) => e.to_string(),
    };
    let marker = format!("unknown field `{PROBE}`, expected one of ");
    let Some(at) = err.find(&marker) else {
        return Err(format!("no field list in the loader's answer: {err}"));
    };
    let list = err[at + marker.len()..].lines().next().unwrap_or("");
    let list = list.split(" (at ").next().unwrap_or(list);
    Ok(list.split(", ").map(|f| f.trim().trim_matches('`').to_string()).filter(|f| !f.is_empty()).collect())
}

/// Removes the `{...}` placeholders (keys whose value is a map of just `...`).
fn drop_placeholders(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, child| !matches!(child, Value::Object(c) if c.keys().all(|k| k == "...")));
            m.values_mut().for_each(drop_placeholders);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_placeholders),
        _ => {}
    }
}

#[test]
fn every_documented_key_is_real_and_every_real_key_is_documented() {
    let block = reference_block();
    let shown: Value = serde_saphyr::from_str(&block).expect("the reference block parses as YAML");
    let mut found = Vec::new();
    structs(&shown, &mut Vec::new(), &mut found);
    let mut doc = shown.clone();
    drop_placeholders(&mut doc);
    let pages = docs_text();
    // A documented key that is no key at all stops the loader before any probe: say which.
    let text = serde_json::to_string(&doc).expect("json");
    if let Err(e) = promtier::topology::parse(&text, Path::new("/nonexistent/topology.yaml")) {
        let e = e.to_string();
        assert!(
            !e.contains("unknown field"),
            "docs/topology.md documents a key the topology does not have: {e}"
        );
    }
    assert!(found.len() > 20, "too few structs found in the reference block: {}", found.len());
    let mut problems = Vec::new();
    for (path, documented) in &found {
        let shown = if path.is_empty() { "(top level)".to_string() } else { path.join(".") };
        match real_fields(&doc, path) {
            Err(why) => problems.push(format!("{shown}: {why}")),
            Ok(real) => {
                for k in documented.difference(&real) {
                    problems.push(format!("{shown}.{k}: documented but not a key of the topology"));
                }
                for k in real.difference(documented) {
                    if !pages.contains(&format!("`{k}`")) && !pages.contains(&format!("{k}:")) {
                        problems
                            .push(format!("{shown}.{k}: a key of the topology that no page of docs/ names"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "docs/topology.md and the code disagree:\n{}", problems.join("\n"));
}
