//! Topology loading against the files in `tests/data/topology/`: every `*.bad.yaml` must produce
//! exactly the problems listed in its `# expect: LINE:COLUMN: message` header lines (in order),
//! every `*.good.yaml` and every example topology must load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use promtier::topology;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/topology")
}

#[test]
fn bad_files_report_every_problem_with_position() {
    let bad = files(&data_dir(), ".bad.yaml");
    assert!(bad.len() >= 15, "expected a table of bad files, found {}", bad.len());
    let mut failures = Vec::new();
    for f in &bad {
        let text = std::fs::read_to_string(f).expect("read");
        let expected: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::trim).collect();
        assert!(!expected.is_empty(), "{}: no '# expect:' lines", f.display());
        let got: Vec<String> = match topology::load(f) {
            Ok(_) => vec!["<loaded without error>".to_string()],
            Err(e) => {
                // The rendered error starts every line with the file name.
                let prefix = format!("{}:", f.display());
                for line in e.to_string().lines() {
                    assert!(line.starts_with(&prefix), "line without file prefix: {line}");
                }
                e.problems().iter().map(|p| p.to_string()).collect()
            }
        };
        if got != expected {
            failures.push(format!("{}:\n  expected: {expected:#?}\n  got:      {got:#?}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_files_and_examples_load() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let mut all = files(&data_dir(), ".good.yaml");
    all.extend(files(&examples, ".yaml"));
    assert!(all.len() >= 3);
    for f in all {
        if let Err(e) = topology::load(&f) {
            panic!("{} should load:\n{e}", f.display());
        }
    }
}

#[test]
fn every_feature_runs_so_no_key_warns() {
    // Downsampling, remote write and the push tier were once accepted before they ran, with a
    // warning each; all run now.
    let f = data_dir().join("every-feature.good.yaml");
    let t = topology::load(&f).expect("loads");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn remote_write_protocol_and_metadata_config_are_read() {
    use promtier::topology::{MetadataConfig, ProtobufMessage};
    let t = topology::load(&data_dir().join("full.good.yaml")).expect("loads");
    let rw = &t.global("regional").expect("regional").remote_write;
    assert_eq!(rw.len(), 2);
    assert_eq!(rw[0].protobuf_message, ProtobufMessage::WriteRequestV1, "the default is 1.0");
    assert_eq!(
        rw[0].metadata,
        MetadataConfig { send: true, send_interval: Duration::from_secs(60), max_samples_per_send: 500 }
    );
    assert_eq!(rw[1].protobuf_message, ProtobufMessage::RequestV2);
    assert_eq!(rw[1].metadata, MetadataConfig::default());
    assert_eq!(MetadataConfig::default().max_samples_per_send, 2000, "Prometheus 3's default");
}

#[test]
fn remote_read_keys_and_prometheus_defaults() {
    let f = data_dir().join("full.good.yaml");
    let t = topology::load(&f).expect("loads");
    let g = t.globals.iter().find(|g| g.name == "regional").expect("regional");
    let r = &g.remote_read[0];
    assert_eq!(r.url, "http://127.0.0.1:9091/api/v1/read");
    assert_eq!(r.display_name(), "old-prometheus");
    assert_eq!(r.remote_timeout, std::time::Duration::from_secs(30));
    assert!(!r.read_recent && r.filter_external_labels);
    assert_eq!(r.required_matchers, vec![("tier".to_string(), "archive".to_string())]);
    assert_eq!(r.headers, vec![("X-Scope-OrgID".to_string(), "team-a".to_string())]);
    assert!(matches!(&r.client.auth, Some(topology::Auth::Basic { username, .. }) if username == "reader"));
    // Defaults: Prometheus's (1m, read_recent false, filter_external_labels true).
    let text = "cluster: c\njobs:\n  - {job_name: j, static_configs: [{targets: [\"127.0.0.1:9\"]}]}\nleaves:\n  - {group: l, jobs: [j], listen: 127.0.0.1:9100}\nglobals:\n  - name: g\n    from: [l]\n    listen: 127.0.0.1:9090\n    remote_read: [{url: \"http://127.0.0.1:9091/api/v1/read\"}]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, text).expect("write");
    let t = topology::load(&path).expect("loads");
    let r = &t.globals[0].remote_read[0];
    assert_eq!(r.remote_timeout, std::time::Duration::from_secs(60));
    assert!(!r.read_recent && r.filter_external_labels && r.required_matchers.is_empty());
    assert_eq!(r.display_name().len(), 6, "unnamed: a URL hash");
    // `promtier check` lists it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promtier"))
        .arg("check")
        .arg(&f)
        .output()
        .expect("run promtier check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"global "regional": remote_read "old-prometheus" http://127.0.0.1:9091/api/v1/read for ranges older than local data, only for selectors with {tier="archive"}"#),
        "{stdout}"
    );
}
