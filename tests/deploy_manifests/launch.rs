//! Running start commands without starting nodes: a pod's command with a stand-in `promtier`
//! that prints its arguments, and the real binary's parser asked about those arguments.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::objects::{Container, EnvSource, FieldRef};

/// A directory with a stand-in `promtier` that prints a marker line, then each argument on a
/// line of its own.
pub(crate) struct StandIn {
    dir: tempfile::TempDir,
}

/// The stand-in's first line: a start command that never reaches `promtier` prints none.
const STAND_IN_MARKER: &str = "<promtier stand-in>";

impl StandIn {
    pub(crate) fn new() -> StandIn {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("promtier");
        let script =
            format!("#!/bin/sh\necho '{STAND_IN_MARKER}'\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n");
        std::fs::write(&path, script).expect("write the stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod the stand-in");
        StandIn { dir }
    }

    /// The arguments `promtier` would get in pod `pod` from container `c` of an image with
    /// `entrypoint`: environment as the kubelet sets it, `$(VAR)` expanded in command and args,
    /// the command run with only the stand-in on `PATH`. (Only `$(VAR)` of the container's own
    /// variables is expanded; the `$$(VAR)` escape is not needed by the manifests.)
    pub(crate) fn launch(
        &self,
        c: &Container,
        pod: &str,
        entrypoint: &[String],
    ) -> Result<Vec<String>, String> {
        let mut env = BTreeMap::new();
        for var in &c.env {
            let value = match (&var.value, &var.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(EnvSource { field_ref: Some(FieldRef { field_path }) }))
                    if field_path == "metadata.name" =>
                {
                    pod.to_string()
                }
                _ => {
                    return Err(format!(
                        "env {}: only literal values and metadata.name are checked",
                        var.name
                    ));
                }
            };
            env.insert(var.name.clone(), value);
        }
        let expand = |s: &String| {
            env.iter().fold(s.clone(), |s, (name, value)| s.replace(&format!("$({name})"), value))
        };
        let mut argv: Vec<String> = c.command.as_deref().unwrap_or(entrypoint).iter().map(expand).collect();
        argv.extend(c.args.iter().map(expand));
        let Some((program, args)) = argv.split_first() else {
            return Err("no command and no image ENTRYPOINT".into());
        };
        let program = if program.rsplit('/').next() == Some("promtier") {
            self.dir.path().join("promtier")
        } else {
            PathBuf::from(program)
        };
        let out = Command::new(&program)
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path())
            .envs(&env)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        if !out.status.success() || lines.next() != Some(STAND_IN_MARKER) {
            return Err(format!(
                "the start command never ran promtier ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(lines.map(str::to_string).collect())
    }
}

/// Whether the binary's parser accepts `args`, without starting anything: `promtier ARGS… --help`
/// succeeds only when clap accepts every argument before `--help` (it reports an unknown flag or
/// a bad value as it reaches it, before acting on the later `--help`; the broken-file tests pin
/// this with a flag that does not exist).
pub(crate) fn binary_accepts(args: &[String]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_promtier"))
        .args(args)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run promtier: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("promtier rejects {args:?}: {}", stderr.lines().next().unwrap_or("").trim()))
    }
}

/// The value of `--name=value` or `--name value` in `args`.
pub(crate) fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix(&long)? {
        "" => args.get(i + 1).map(String::as_str),
        rest => rest.strip_prefix('='),
    })
}

pub(crate) fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}
