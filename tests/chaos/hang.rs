//! A replica that hangs instead of dying (SIGSTOP), then resumes (SIGCONT): the global fails
//! over; over the whole episode its series have no gap, no duplicate timestamp and no counter
//! decrease; after the switch every stored sample is the new replica's (exactly its samples —
//! the resumed replica is never ingested again, no split brain), and the election stays.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::cluster::elected;
use crate::lab::*;

#[test]
fn hung_elected_replica_fails_over_cleanly_and_stays_out_when_it_resumes() {
    let p = ports(5);
    let (d, l, g) = (&p[0..2], p[2], p[4]);
    let yaml = one_group(d, l, &failover_global("global", "apps", g, ""));
    let mut lab = Lab::new(&yaml);
    lab.demo("demo-0", addr(d[0]), 60, 1);
    lab.demo("demo-1", addr(d[1]), 60, 2);
    lab.node("leaf", "apps-0-a");
    lab.node("leaf", "apps-0-b");
    lab.node("global", "global-a");
    let global = addr(g);
    let first = lab.elected(global, "apps-0");
    let other = if first == "a" { "b" } else { "a" };
    let other_addr = addr(l + u16::from(other == "b"));
    lab.wait("data on the global", Duration::from_secs(60), || {
        (window(global, DEMO, now() - 4_000, now()).len() >= 80).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let stopped = now();
    lab.signal(&format!("apps-0-{first}"), Signal::SIGSTOP);
    lab.wait("the global to fail over", Duration::from_secs(60), || {
        elected(global, "apps-0").filter(|e| e == other)
    });
    std::thread::sleep(Duration::from_secs(5));
    let resumed = now();
    lab.signal(&format!("apps-0-{first}"), Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(elected(global, "apps-0").as_deref(), Some(other), "the election moved back after SIGCONT");
    let (from, to) = (stopped - 8_000, now() - 3_000);
    // A busy machine may still be pulling the window's end: wait for the exact state.
    let after = stopped + 1_500;
    let mut series = 0;
    lab.wait_clean(
        "the global to hold the new replica's samples after the switch",
        Duration::from_secs(60),
        || {
            let got = window(global, DEMO, from, to);
            series = got.len();
            let mut problems = continuity(&got, from, to, 1_500);
            if got.len() < 80 {
                problems.push(format!("only {} series", got.len()));
            }
            // From just after the stop, the global's samples are exactly the new replica's.
            let theirs = window(other_addr, DEMO, after, to);
            let ours = window(global, DEMO, after, to);
            problems.extend(diff("the new replica", &theirs, "the global", &ours, 10));
            Some(problems)
        },
    );
    eprintln!("stopped at {stopped}, resumed at {resumed}: {series} series continuous");
}
