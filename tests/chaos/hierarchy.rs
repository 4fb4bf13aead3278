//! A leaf failover under the middle global of a 3-level hierarchy (leaf pair → regional → top):
//! the regional global fills the failover window, and the top global receives those late
//! samples too — over the failover window the top holds exactly what the regional holds (no gap,
//! nothing twice), and the regional's series have no gap.

use std::time::Duration;

use crate::lab::*;

#[test]
fn leaf_failover_under_a_middle_global_leaves_no_gap_at_the_top() {
    let p = ports(7);
    let (d, l, regional, top) = (&p[0..2], p[2], p[4], p[5]);
    let yaml = one_group(
        d,
        l,
        &(failover_global("regional", "apps", regional, "") + &failover_global("top", "regional", top, "")),
    );
    let mut lab = Lab::new(&yaml);
    lab.demo("demo-0", addr(d[0]), 60, 1);
    lab.demo("demo-1", addr(d[1]), 60, 2);
    lab.node("leaf", "apps-0-a");
    lab.node("leaf", "apps-0-b");
    lab.node("global", "regional-a");
    lab.node("global", "top-a");
    let (regional, top) = (addr(regional), addr(top));
    let first = lab.elected(regional, "apps-0");
    lab.elected(top, "regional");
    lab.wait("data at the top", Duration::from_secs(60), || {
        (window(top, DEMO, now() - 4_000, now()).len() >= 80).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let killed = now();
    lab.kill(&format!("apps-0-{first}"));
    lab.wait("the regional global to fail over", Duration::from_secs(60), || {
        crate::common::cluster::elected(regional, "apps-0").filter(|e| *e != first)
    });
    std::thread::sleep(Duration::from_secs(10));
    let (from, to) = (killed - 8_000, now() - 4_000);
    // Both tiers may still be pulling the window's end on a busy machine: wait for the exact state
    // (read the regional tier each time, so the comparison is with what it holds by then).
    let mut mid = Samples::new();
    lab.wait_clean("the top global to hold what the regional holds", Duration::from_secs(60), || {
        mid = window(regional, DEMO, from, to);
        let mut problems = continuity(&mid, from, to, 1_500);
        if mid.len() < 80 {
            problems.push(format!("only {} series at the regional global", mid.len()));
        }
        let got = window(top, DEMO, from, to);
        problems.extend(diff("regional", &mid, "top", &got, 10));
        Some(problems)
    });
    let samples: usize = mid.values().map(Vec::len).sum();
    eprintln!("top == regional over the failover window: {} series, {samples} samples", mid.len());
}
