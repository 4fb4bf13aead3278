//! A network lab for chaos tests: every host is a Linux network namespace with loopback and one
//! address on a bridge that lives in the lab's hub namespace; processes run inside hosts
//! (`ip netns exec`), and test code reaches them from a thread that entered a namespace
//! (`setns`). `partition(a, b)` makes the hub drop every IPv4 packet between two hosts, both
//! ways, without telling anyone (connections hang and time out, as across a real partition);
//! `heal(a, b)` lets them through again.
//!
//! How a partition drops: each host's veth port in the hub carries an `htb` root qdisc whose one
//! class feeds a `blackhole` qdisc. Unclassified packets bypass the class (htb's direct queue);
//! a partition adds a `u32` filter per direction (source and destination address of the pair) on
//! the port toward the receiving host that sends the pair's packets into the blackhole. ARP is
//! not filtered, so neighbours stay resolved and nothing fails fast. (This kernel has no
//! `gact`/`netem`: a plain `action drop` or 100 % loss are not available; the blackhole qdisc is.)
//!
//! Names start with [`PREFIX`] and the owning process id, so labs of concurrent test processes
//! never share a name, and namespaces left by earlier runs that died (owner no longer running)
//! are removed when a lab is built. Addresses are `10.A.B.0/24`, chosen per lab; they exist only
//! inside the lab's namespaces, which no route connects to the machine's own network or to
//! other labs. The hub has `.1` (the observer, which partitions never touch), hosts `.2`, `.3`, …
//!
//! Needs root and iproute2 (`ip`, `tc`). A lab that cannot be built panics saying why: a chaos
//! scenario must fail, never pass, where it cannot run. Dropping the lab stops every process it
//! started (SIGCONT, SIGTERM, then SIGKILL) and deletes every namespace it made.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::ChildGuard;

/// Every lab namespace's name starts with this, then the owning process id.
pub(crate) const PREFIX: &str = "promtier-chaos-";

/// The htb class (on each hub port) whose qdisc is a blackhole.
const DROP_CLASS: &str = "1:1";

/// Labs built by this process so far (part of names and addresses).
static LABS: AtomicU32 = AtomicU32::new(0);

struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    /// This host's veth port in the hub (where packets toward the host are filtered).
    port: String,
}

/// A process started in a host, stopped when the lab drops.
struct Process {
    host: String,
    name: String,
    log: PathBuf,
    guard: ChildGuard,
}

/// A partition in force: the two hosts and the filter priority its filters use.
struct Partition {
    a: usize,
    b: usize,
    prio: u32,
}

/// A lab of network namespaces (see the module doc).
pub(crate) struct Lab {
    id: String,
    hub: String,
    hub_addr: Ipv4Addr,
    hosts: Vec<Host>,
    /// Every namespace created so far, hub first (what Drop deletes, also after a failed build).
    namespaces: Vec<String>,
    processes: Vec<Process>,
    /// Partitions in force, and the next filter priority (partitions change through `&self`,
    /// so that closures running in hosts can hold the lab meanwhile).
    partitions: Mutex<(Vec<Partition>, u32)>,
    ip: PathBuf,
    tc: PathBuf,
}

/// `name` from the usual system directories or `PATH`.
fn find_tool(name: &str) -> Option<PathBuf> {
    let dirs = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].into_iter().map(PathBuf::from);
    let path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.chain(path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Runs a tool and returns its stdout, or a message with the command and its stderr.
fn run(tool: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{} {}` failed ({}): {}",
            tool.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// Builds a lab with one host per name (each gets the next address). Panics, saying why,
    /// when the lab cannot be built (not root, no iproute2, the kernel refuses).
    pub(crate) fn new(hosts: &[&str]) -> Lab {
        assert!(
            effective_uid() == Some(0),
            "the chaos lab needs root (it creates network namespaces): run scripts/chaos.sh as root"
        );
        let tool = |name: &str| {
            find_tool(name).unwrap_or_else(|| {
                panic!("the chaos lab needs `{name}` from iproute2 (apt-get install iproute2): not found")
            })
        };
        let (ip, tc) = (tool("ip"), tool("tc"));
        assert!(hosts.len() <= 250, "at most 250 hosts per lab");
        remove_leftovers(&ip);
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{pid}-{n}");
        // Distinct per process and lab, for readable logs; isolation comes from the namespaces.
        let (a, b) = (100 + (n % 100) as u8, (pid % 256) as u8);
        let mut lab = Lab {
            hub: format!("{id}-hub"),
            hub_addr: Ipv4Addr::new(10, a, b, 1),
            id,
            hosts: Vec::new(),
            namespaces: Vec::new(),
            processes: Vec::new(),
            partitions: Mutex::new((Vec::new(), 10)),
            ip,
            tc,
        };
        if let Err(e) = lab.build(hosts, [a, b]) {
            panic!("cannot build the chaos lab (needs root, iproute2 and network namespaces): {e}");
        }
        lab
    }

    fn build(&mut self, hosts: &[&str], [a, b]: [u8; 2]) -> Result<(), String> {
        let hub = self.hub.clone();
        self.add_namespace(&hub)?;
        self.ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        self.ip(&["-n", &hub, "addr", "add", &format!("{}/24", self.hub_addr), "dev", "br0"])?;
        self.ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, name) in hosts.iter().enumerate() {
            assert!(!name.is_empty() && name.len() <= 32, "host name {name:?}: 1 to 32 characters");
            assert!(self.hosts.iter().all(|h| h.name != *name), "host {name:?} twice");
            let netns = format!("{}-{name}", self.id);
            let port = format!("p{i}");
            let addr = Ipv4Addr::new(10, a, b, 2 + i as u8);
            self.add_namespace(&netns)?;
            self.ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            self.ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ])?;
            self.ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            self.ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            self.ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            // The drop path: unclassified packets take htb's direct queue; the class is a blackhole.
            self.tc(&["qdisc", "add", "dev", &port, "root", "handle", "1:", "htb"])?;
            self.tc(&[
                "class", "add", "dev", &port, "parent", "1:", "classid", DROP_CLASS, "htb", "rate", "10gbit",
                "quantum", "60000",
            ])?;
            self.tc(&["qdisc", "add", "dev", &port, "parent", DROP_CLASS, "handle", "10:", "blackhole"])?;
            self.hosts.push(Host { name: name.to_string(), netns, addr, port });
        }
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        self.ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(&self.ip, args)
    }

    fn tc(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.hub.as_str()];
        all.extend_from_slice(args);
        run(&self.tc, &all)
    }

    fn host(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} in the lab ({})", self.host_names()))
    }

    fn host_names(&self) -> String {
        self.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The address of `host` on the lab's bridge.
    pub(crate) fn addr(&self, host: &str) -> Ipv4Addr {
        self.hosts[self.host(host)].addr
    }

    /// The network namespace of `host` (for messages and `ip netns exec` by hand).
    pub(crate) fn netns(&self, host: &str) -> &str {
        &self.hosts[self.host(host)].netns
    }

    /// Starts `program args…` inside `host` with stdout and stderr in `log`; returns its pid
    /// (`ip netns exec` execs the program, so signals reach it directly). Stopped when the lab
    /// drops, or with [`Lab::stop`].
    pub(crate) fn spawn(&mut self, host: &str, name: &str, program: &Path, args: &[&str], log: &Path) -> Pid {
        let netns = self.netns(host).to_string();
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = Command::new(&self.ip)
            .args(["netns", "exec", &netns])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} in {host}: {e}"));
        let guard = ChildGuard::new(format!("{name} in {host}"), child);
        let pid = Pid::from_raw(i32::try_from(guard.id()).expect("pid fits i32"));
        self.processes.push(Process {
            host: host.to_string(),
            name: name.to_string(),
            log: log.to_path_buf(),
            guard,
        });
        pid
    }

    /// Stops (SIGTERM, then SIGKILL) the process `pid` started with [`Lab::spawn`].
    pub(crate) fn stop(&mut self, pid: Pid) {
        let p = self.process(pid);
        let _ = kill(pid, Signal::SIGCONT);
        self.processes[p].guard.stop();
    }

    /// Sends `signal` to the process `pid` started with [`Lab::spawn`] (e.g. SIGSTOP, SIGCONT).
    pub(crate) fn signal(&self, pid: Pid, signal: Signal) {
        let p = self.process(pid);
        kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.processes[p].name));
    }

    fn process(&self, pid: Pid) -> usize {
        self.processes
            .iter()
            .position(|p| i64::from(p.guard.id()) == i64::from(pid.as_raw()))
            .unwrap_or_else(|| panic!("pid {pid} was not started by this lab"))
    }

    /// Every process's log (the last 40 lines each), for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.processes {
            let text = std::fs::read_to_string(&p.log).unwrap_or_else(|e| format!("(cannot read: {e})"));
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "--- {} in {} ({}) ---\n{}\n",
                p.name,
                p.host,
                p.log.display(),
                tail.join("\n")
            ));
        }
        out
    }

    /// Runs `f` on a thread inside `host`'s network namespace: sockets it opens belong to that
    /// namespace (also when used later from other threads). A panic in `f` is passed on.
    pub(crate) fn run_in<T: Send>(&self, host: &str, f: impl FnOnce() -> T + Send) -> T {
        in_namespace(self.netns(host), f)
    }

    /// Runs `f` in the hub, whose own address (`.1`) reaches every host whatever the
    /// partitions: where a test reads what the nodes say.
    pub(crate) fn observe<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_namespace(&self.hub, f)
    }

    /// Drops every IPv4 packet between hosts `a` and `b`, both ways, silently.
    pub(crate) fn partition(&self, a: &str, b: &str) {
        let (ia, ib) = (self.host(a), self.host(b));
        assert_ne!(ia, ib, "a host cannot be partitioned from itself");
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        assert!(find_partition(&partitions.0, ia, ib).is_none(), "{a} and {b} are already partitioned");
        let prio = partitions.1;
        partitions.1 += 1;
        for (from, to) in [(ia, ib), (ib, ia)] {
            let (src, dst) = (self.hosts[from].addr.to_string(), self.hosts[to].addr.to_string());
            let port = self.hosts[to].port.clone();
            let prio = prio.to_string();
            self.tc(&[
                "filter",
                "add",
                "dev",
                &port,
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                &prio,
                "u32",
                "match",
                "ip",
                "src",
                &format!("{src}/32"),
                "match",
                "ip",
                "dst",
                &format!("{dst}/32"),
                "flowid",
                DROP_CLASS,
            ])
            .unwrap_or_else(|e| panic!("partition {a} | {b}: {e}"));
        }
        partitions.0.push(Partition { a: ia, b: ib, prio });
    }

    /// Lets packets between `a` and `b` through again.
    pub(crate) fn heal(&self, a: &str, b: &str) {
        let (ia, ib) = (self.host(a), self.host(b));
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let at = find_partition(&partitions.0, ia, ib)
            .unwrap_or_else(|| panic!("{a} and {b} are not partitioned"));
        let p = partitions.0.remove(at);
        self.remove_filters(&p).unwrap_or_else(|e| panic!("heal {a} | {b}: {e}"));
    }

    fn remove_filters(&self, p: &Partition) -> Result<(), String> {
        let prio = p.prio.to_string();
        for host in [p.a, p.b] {
            let port = &self.hosts[host].port;
            self.tc(&["filter", "del", "dev", port, "parent", "1:", "protocol", "ip", "prio", &prio])?;
        }
        Ok(())
    }

    /// Packets dropped so far by partitions on the hub port toward `host` (from `tc -s`).
    pub(crate) fn dropped_toward(&self, host: &str) -> u64 {
        let port = self.hosts[self.host(host)].port.clone();
        let stats = self.tc(&["-s", "qdisc", "show", "dev", &port]).unwrap_or_else(|e| panic!("{e}"));
        // The blackhole's own statistics: "qdisc blackhole 10: …\n Sent … (dropped N, …".
        let after = stats.split("qdisc blackhole").nth(1).unwrap_or("");
        after
            .split("dropped ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Wake stopped processes so they can take SIGTERM; stop them all, then wait for each.
        for p in &self.processes {
            if let Ok(pid) = i32::try_from(p.guard.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for p in &mut self.processes {
            p.guard.stop();
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = delete_namespace(&self.ip, ns) {
                eprintln!("chaos lab: {e}");
            }
        }
    }
}

fn find_partition(partitions: &[Partition], a: usize, b: usize) -> Option<usize> {
    partitions.iter().position(|p| (p.a, p.b) == (a, b) || (p.a, p.b) == (b, a))
}

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Kills what still runs in namespace `ns` (only lab processes run there) and deletes it.
fn delete_namespace(ip: &Path, ns: &str) -> Result<(), String> {
    if let Ok(pids) = run(ip, &["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    run(ip, &["netns", "del", ns]).map(|_| ())
}

/// Deletes namespaces of earlier labs whose owning process is gone.
fn remove_leftovers(ip: &Path) {
    let Ok(list) = run(ip, &["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = owner.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            eprintln!("chaos lab: removing namespace {name} left by an earlier run");
            if let Err(e) = delete_namespace(ip, name) {
                eprintln!("chaos lab: {e}");
            }
        }
    }
}

/// Runs `f` on a scoped thread that entered the network namespace `/run/netns/<ns>`.
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    let joined = std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
    });
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
