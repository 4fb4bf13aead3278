//! config/systemd/: the units parse, carry the hardening settings, start their role with flags the
//! binary accepts, may write where the example topology keeps data, and do not "reload" with a
//! signal that stops the node.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use promtier::topology::{self, Node, Topology};

use crate::launch::{binary_accepts, flag};
use crate::{ROLES, Report, common, repo};

const SYSTEMD_DIR: &str = "config/systemd";

/// A unit file: its sections' `key=value` assignments in file order (a key may repeat).
#[derive(Debug, Clone)]
struct Unit {
    file: String,
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Unit {
    /// Parses the INI-like syntax of systemd.syntax(7): `[Section]`, `key=value`, `#`/`;`
    /// comments, lines continued with a trailing backslash.
    fn parse(file: &str, text: &str) -> Result<Unit, String> {
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut pending = String::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if pending.is_empty() && (t.is_empty() || t.starts_with('#') || t.starts_with(';')) {
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(t);
            let line = std::mem::take(&mut pending);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.to_string(), Vec::new()));
            } else if let Some((key, value)) = line.split_once('=') {
                let Some((_, entries)) = sections.last_mut() else {
                    return Err(format!("{file}:{}: {key}= before any [Section]", i + 1));
                };
                entries.push((key.trim().to_string(), value.trim().to_string()));
            } else {
                return Err(format!(
                    "{file}:{}: neither a [Section], a comment nor key=value: {line}",
                    i + 1
                ));
            }
        }
        Ok(Unit { file: file.to_string(), sections })
    }

    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, entries)| entries.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()))
            .collect()
    }

    fn set_mut(&mut self, section: &str, key: &str, value: &str) {
        let entries = match self.sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, entries)) => entries,
            None => panic!("{}: no [{section}]", self.file),
        };
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_string(), value.to_string()));
    }
}

/// The units and what they are checked against.
#[derive(Debug, Clone)]
struct Units {
    /// (role, unit) for each of [`ROLES`].
    units: Vec<(&'static str, Unit)>,
    /// The user config/systemd/promtier.sysusers.conf creates.
    sysusers_user: Option<String>,
    example: Topology,
}

impl Units {
    fn load(dir: &Path) -> Units {
        let units = ROLES
            .iter()
            .map(|role| {
                let file = format!("promtier-{role}@.service");
                let path = dir.join(&file);
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                (*role, Unit::parse(&file, &text).unwrap_or_else(|e| panic!("{e}")))
            })
            .collect();
        let sysusers =
            std::fs::read_to_string(dir.join("promtier.sysusers.conf")).expect("promtier.sysusers.conf");
        let sysusers_user = sysusers
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut w| (w.next() == Some("u")).then(|| w.next().map(str::to_string)).flatten());
        let example = topology::load(&dir.join("topology.example.yaml")).unwrap_or_else(|e| panic!("{e}"));
        Units { units, sysusers_user, example }
    }
}

/// Settings every unit must have: (section, key, accepted values; empty = any non-empty value).
const REQUIRED: &[(&str, &str, &[&str])] = &[
    ("Unit", "Description", &[]),
    ("Service", "User", &[]),
    ("Service", "Restart", &["on-failure"]),
    ("Service", "LimitNOFILE", &[]),
    ("Service", "ProtectSystem", &["strict"]),
    ("Service", "ProtectHome", &["yes", "true", "read-only", "tmpfs"]),
    ("Service", "PrivateTmp", &["yes", "true"]),
    ("Service", "NoNewPrivileges", &["yes", "true"]),
    ("Service", "ProtectKernelTunables", &["yes", "true"]),
    ("Service", "ProtectKernelModules", &["yes", "true"]),
    ("Service", "ProtectKernelLogs", &["yes", "true"]),
    ("Service", "ProtectControlGroups", &["yes", "true"]),
    ("Service", "RestrictAddressFamilies", &[]),
    ("Service", "MemoryDenyWriteExecute", &["yes", "true"]),
    ("Install", "WantedBy", &[]),
];

/// The topology path every unit reads.
const UNIT_TOPOLOGY: &str = "/etc/promtier/topology.yaml";

/// Checks every unit; `sighup_handled`: whether a running node survives SIGHUP.
fn check_systemd(u: &Units, sighup_handled: bool) -> Report {
    let mut r = Report::default();
    for (role, unit) in &u.units {
        let at = format!("{SYSTEMD_DIR}/{}", unit.file);
        check_settings(&at, unit, u, sighup_handled, &mut r);
        let nodes: Vec<&Node> = u.example.nodes.iter().filter(|n| n.role.kind() == *role).collect();
        if nodes.is_empty() {
            r.add(&at, format!("topology.example.yaml has no {role} node to run"));
        }
        check_writable(&at, unit, &nodes, &mut r);
        check_exec_start(&at, unit, role, nodes.first().map_or("x", |n| n.name.as_str()), &mut r);
    }
    r
}

/// The [`REQUIRED`] settings, no capabilities, the system-service call filter, the sysusers
/// user, and no `ExecReload=` unless a node survives the SIGHUP it sends.
fn check_settings(at: &str, unit: &Unit, u: &Units, sighup_handled: bool, r: &mut Report) {
    for (section, key, accepted) in REQUIRED {
        let values = unit.values(section, key);
        let ok = match values.last() {
            None => false,
            Some(v) if accepted.is_empty() => !v.is_empty(),
            Some(v) => accepted.contains(v),
        };
        if !ok {
            let want = if accepted.is_empty() { "a value".to_string() } else { accepted.join(" or ") };
            r.add(at, format!("[{section}] {key}={} (want {want})", values.join(" ")));
        }
    }
    let caps = unit.values("Service", "CapabilityBoundingSet");
    if caps.is_empty() || caps.iter().any(|c| !c.is_empty()) {
        r.add(at, format!("CapabilityBoundingSet={caps:?}: want one empty assignment (no capabilities)"));
    }
    let filters = unit.values("Service", "SystemCallFilter");
    if !filters.iter().any(|f| f.split_whitespace().next() == Some("@system-service")) {
        r.add(at, format!("SystemCallFilter={filters:?}: want @system-service"));
    }
    let user = unit.values("Service", "User").last().copied();
    if user.is_none() || user != u.sysusers_user.as_deref() {
        r.add(at, format!("User= is not the user promtier.sysusers.conf creates ({:?})", u.sysusers_user));
    }
    if !unit.values("Service", "ExecReload").is_empty() && !sighup_handled {
        r.add(at, "ExecReload= sends SIGHUP, which stops a promtier node (it has no SIGHUP handler)");
    }
}

/// `/var/lib/promtier` and every example node's data directory writable: under
/// `ReadWritePaths=` or the `StateDirectory=` the unit creates (the rest is read-only).
fn check_writable(at: &str, unit: &Unit, nodes: &[&Node], r: &mut Report) {
    let writable: Vec<PathBuf> = unit
        .values("Service", "ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|p| PathBuf::from(p.trim_start_matches(['-', '+'])))
        .chain(unit.values("Service", "StateDirectory").iter().map(|d| Path::new("/var/lib").join(d)))
        .collect();
    if !writable.contains(&PathBuf::from("/var/lib/promtier")) {
        r.add(at, format!("/var/lib/promtier is not writable (ReadWritePaths= {writable:?})"));
    }
    for n in nodes {
        if !writable.iter().any(|w| n.data_dir.starts_with(w)) {
            let dir = n.data_dir.display();
            r.add(at, format!("example node {} keeps data in {dir}, read-only under this unit", n.name));
        }
    }
}

/// One `ExecStart=`: an absolute path to promtier, the unit's role, the instance as the node,
/// the shared topology path, and arguments the binary accepts (with `%i` as `node`).
fn check_exec_start(at: &str, unit: &Unit, role: &str, node: &str, r: &mut Report) {
    let exec = unit.values("Service", "ExecStart");
    let [exec] = exec.as_slice() else {
        r.add(at, format!("{} ExecStart= lines, want one", exec.len()));
        return;
    };
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    let Some((program, args)) = words.split_first() else {
        r.add(at, "empty ExecStart=");
        return;
    };
    if !program.starts_with('/') || !program.ends_with("/promtier") {
        r.add(at, format!("ExecStart runs {program}, want an absolute path to promtier"));
    }
    if args.first().map(String::as_str) != Some(role) {
        r.add(at, format!("ExecStart runs `promtier {}`, want the {role} role", args.join(" ")));
    }
    let node_flag = flag(args, "node");
    if node_flag != Some("%i") {
        r.add(at, format!("ExecStart --node is {node_flag:?}, want %i (the instance name, unescaped)"));
    }
    let topology_flag = flag(args, "topology");
    if topology_flag != Some(UNIT_TOPOLOGY) {
        r.add(at, format!("ExecStart --topology is {topology_flag:?}, want {UNIT_TOPOLOGY}"));
    }
    let args: Vec<String> = args.iter().map(|a| a.replace("%i", node)).collect();
    if let Err(e) = binary_accepts(&args) {
        r.add(at, e);
    }
}

/// Whether a running leaf survives SIGHUP (has a handler for it) rather than dying of it.
/// Every node role installs its signal handlers the same way (`cli::run`), so a leaf stands
/// for all three.
fn node_survives_sighup() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = common::free_port();
        let file = dir.path().join("topology.yaml");
        std::fs::write(
            &file,
            format!(
                "cluster: t\njobs: [{{job_name: j, static_configs: [{{targets: ['127.0.0.1:1']}}]}}]\n\
                 leaves: [{{group: g, jobs: [j], listen: '127.0.0.1:{port}'}}]\n"
            ),
        )
        .expect("write the topology");
        let log = dir.path().join("leaf.log");
        let file_arg = file.to_string_lossy().into_owned();
        let mut leaf =
            common::start_promtier("leaf g-0-a", &["leaf", "--topology", &file_arg, "--node", "g-0-a"], &log);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        common::wait_until("the leaf to be ready", Duration::from_secs(30), log_text, || {
            matches!(common::http_get(addr, "/-/ready", Duration::from_secs(2)), Ok((200, _))).then_some(())
        });
        let pid = nix::unistd::Pid::from_raw(i32::try_from(leaf.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("send SIGHUP");
        let died = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            leaf.exited().is_some()
        });
        leaf.stop();
        !died
    })
}

#[test]
fn units_start_their_role_hardened() {
    let units = Units::load(&repo().join(SYSTEMD_DIR));
    check_systemd(&units, node_survives_sighup()).assert_clean(SYSTEMD_DIR);
}

/// Each case breaks a copy of the units in one way and expects that problem.
#[test]
fn checks_catch_broken_units() {
    let good = Units::load(&repo().join(SYSTEMD_DIR));
    let broken = |case: &str, expected: &str, sighup_handled: bool, edit: &dyn Fn(&mut Units)| {
        let mut u = good.clone();
        edit(&mut u);
        check_systemd(&u, sighup_handled).assert_reports(case, expected);
    };
    fn leaf(u: &mut Units) -> &mut Unit {
        &mut u.units[0].1
    }
    broken("a misspelt flag", "unexpected argument '--nod'", false, &|u| {
        leaf(u).set_mut(
            "Service",
            "ExecStart",
            "/usr/local/bin/promtier leaf --topology=/etc/promtier/topology.yaml --nod=%i",
        );
    });
    broken("the unescaped instance", "want %i", false, &|u| {
        leaf(u).set_mut(
            "Service",
            "ExecStart",
            "/usr/local/bin/promtier leaf --topology=/etc/promtier/topology.yaml --node=%I",
        );
    });
    broken("a reload that kills", "ExecReload= sends SIGHUP", false, &|u| {
        leaf(u).set_mut("Service", "ExecReload", "/bin/kill -HUP $MAINPID");
    });
    broken("a weaker ProtectSystem", "ProtectSystem=full", false, &|u| {
        leaf(u).set_mut("Service", "ProtectSystem", "full");
    });
    broken("a capability kept", "CapabilityBoundingSet", false, &|u| {
        leaf(u).set_mut("Service", "CapabilityBoundingSet", "CAP_NET_BIND_SERVICE");
    });
    broken("data outside the writable paths", "read-only under this unit", false, &|u| {
        leaf(u).set_mut("Service", "ReadWritePaths", "/srv/promtier");
        leaf(u).set_mut("Service", "StateDirectory", "other");
    });
    assert!(Unit::parse("x.service", "Description=x\n").is_err(), "a key before any section must not parse");
    assert!(Unit::parse("x.service", "[Unit]\njust words\n").is_err(), "a line without '=' must not parse");
}
