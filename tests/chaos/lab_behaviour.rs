//! The lab itself: a partition drops packets silently in both directions (a new connection
//! times out instead of failing fast, an open one stalls without a reset) and only between the
//! two hosts; healing restores both, the stalled connection included; a process spawned in a
//! host runs in that host's namespace and is stopped by the lab; a lab removes its namespaces
//! when dropped and those of earlier runs that died.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::netlab::{Lab, PREFIX};

/// Echoes every byte back, on every connection, until `stop`.
fn echo_server(listener: TcpListener, stop: &AtomicBool) {
    listener.set_nonblocking(true).expect("nonblocking listener");
    thread::scope(|s| {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    s.spawn(move || {
                        conn.set_nonblocking(false).expect("blocking connection");
                        conn.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
                        let mut buf = [0u8; 256];
                        while !stop.load(Ordering::Relaxed) {
                            match conn.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    if conn.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                                }
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
}

/// Sends `msg` and reads it back within `timeout`.
fn round_trip(conn: &mut TcpStream, msg: &[u8], timeout: Duration) -> std::io::Result<()> {
    conn.write_all(msg)?;
    read_exact_within(conn, msg, timeout)
}

fn read_exact_within(conn: &mut TcpStream, want: &[u8], timeout: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(timeout))?;
    let mut got = vec![0u8; want.len()];
    conn.read_exact(&mut got)?;
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn netlab_partition_drops_silently_both_ways_and_heal_restores() {
    let lab = Lab::new(&["a", "b", "c"]);
    let b: SocketAddr = (lab.addr("b"), 7000).into();
    let a: SocketAddr = (lab.addr("a"), 7000).into();
    let stop = AtomicBool::new(false);
    let listeners = [("a", a), ("b", b)].map(|(h, addr)| {
        lab.run_in(h, || TcpListener::bind(addr)).unwrap_or_else(|e| panic!("bind {addr} in {h}: {e}"))
    });
    thread::scope(|s| {
        let stop = &stop;
        for l in listeners {
            s.spawn(move || echo_server(l, stop));
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let quick = Duration::from_secs(5);
            let connect = |from: &str, to: SocketAddr, timeout| {
                lab.run_in(from, || TcpStream::connect_timeout(&to, timeout))
            };
            // Before: a reaches b; keep that connection open across the partition.
            let mut kept = connect("a", b, quick).expect("a -> b before the partition");
            round_trip(&mut kept, b"before", quick).expect("echo before the partition");

            lab.partition("a", "b");
            // A new connection hangs until its own timeout (no refusal, no unreachable error).
            for (from, to) in [("a", b), ("b", a)] {
                let started = Instant::now();
                let err =
                    connect(from, to, Duration::from_secs(3)).expect_err("connect across the partition");
                assert_eq!(err.kind(), ErrorKind::TimedOut, "{from} -> {to}: {err}");
                assert!(
                    started.elapsed() >= Duration::from_millis(2_900),
                    "{from} -> {to} failed fast: {err}"
                );
            }
            // The open connection stalls: the write is accepted, no answer, no reset.
            kept.write_all(b"during").expect("write into the partition");
            let err = read_exact_within(&mut kept, b"during", Duration::from_secs(3)).expect_err("no echo");
            assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
            // Other pairs and the observer are unaffected.
            let mut c = connect("c", b, quick).expect("c -> b during the partition");
            round_trip(&mut c, b"c", quick).expect("c <-> b during the partition");
            let mut c = connect("c", a, quick).expect("c -> a during the partition");
            round_trip(&mut c, b"c", quick).expect("c <-> a during the partition");
            for to in [a, b] {
                let mut o = lab.observe(|| TcpStream::connect_timeout(&to, quick)).expect("observer during");
                round_trip(&mut o, b"o", quick).expect("observer echo during the partition");
            }
            assert!(
                lab.dropped_toward("b") > 0 && lab.dropped_toward("a") > 0,
                "the blackholes dropped nothing"
            );

            lab.heal("a", "b");
            let mut fresh = connect("a", b, quick).expect("a -> b after healing");
            round_trip(&mut fresh, b"after", quick).expect("echo after healing");
            // TCP retransmits what the partition swallowed: the stalled echo arrives (the
            // retransmission backoff may take several seconds).
            read_exact_within(&mut kept, b"during", Duration::from_secs(60))
                .expect("the stalled echo after healing");
            round_trip(&mut kept, b"again", quick).expect("the kept connection works again");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    let names: Vec<String> = ["a", "b", "c"].iter().map(|h| lab.netns(h).to_string()).collect();
    drop(lab);
    for n in names {
        assert!(!Path::new(&format!("/run/netns/{n}")).exists(), "namespace {n} left behind");
    }
}

#[test]
fn netlab_removes_namespaces_of_dead_runs() {
    // A process id that no longer runs: a child that exited and was reaped.
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("wait");
    let name = format!("{PREFIX}{dead}-0-leftover");
    let status = std::process::Command::new("ip").args(["netns", "add", &name]).status().expect("run ip");
    assert!(status.success(), "cannot create {name} (needs root and iproute2)");
    let lab = Lab::new(&["a"]);
    let gone = !Path::new(&format!("/run/netns/{name}")).exists();
    if !gone {
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
    }
    drop(lab);
    assert!(gone, "the namespace of a dead run was not removed");
}

#[test]
fn netlab_spawns_inside_a_host_and_stops_what_it_started() {
    use std::os::unix::fs::MetadataExt;
    let mut lab = Lab::new(&["a"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sleep =
        ["/usr/bin/sleep", "/bin/sleep"].into_iter().map(Path::new).find(|p| p.is_file()).expect("sleep");
    let pid = lab.spawn("a", "sleep", sleep, &["600"], &dir.path().join("sleep.log"));
    let ns = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let host_ns = ns(&format!("/run/netns/{}", lab.netns("a"))).expect("the host's namespace");
    // The pid is the program's own (`ip netns exec` execs it) and it runs in the host.
    crate::common::wait_until("sleep in the host's namespace", Duration::from_secs(10), String::new, || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep" && ns(&format!("/proc/{pid}/ns/net")).ok() == Some(host_ns)).then_some(())
    });
    lab.stop(pid);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still runs after stop");
}
