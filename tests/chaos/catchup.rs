//! A global that was down for a long stretch relative to its page size catches up page by page:
//! after the restart, every sample the elected leaves hold for the outage window is on the
//! global, exactly once — sample by sample, the window equals the elected replica's samples (or,
//! if the restarted global elected the other replica, the first one's samples up to where each
//! series stopped and exactly the second one's after).

use std::time::Duration;

use crate::lab::*;

#[test]
fn global_down_long_catches_up_every_sample_exactly_once() {
    let p = ports(10);
    let (d, l, g) = (&p[0..4], p[4], p[9]);
    let outage = if soak() { Duration::from_secs(1800) } else { Duration::from_secs(45) };
    let yaml = two_groups(d, l, g, ", page_samples: 2000", "");
    let mut lab = Lab::new(&yaml);
    start_two_groups(&mut lab, d, 100);
    lab.node("global", "global-a");
    let global = addr(g);
    let leaf_addr =
        |shard: &str, r: &str| addr(if shard == "infra-0" { l } else { l + 2 } + u16::from(r == "b"));
    let before: Vec<(String, String)> =
        ["infra-0", "apps-0"].iter().map(|s| (s.to_string(), lab.elected(global, s))).collect();
    lab.wait("data on the global", Duration::from_secs(60), || {
        let w = window(global, DEMO, now() - 5_000, now());
        (w.len() >= 300).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let killed = now();
    lab.kill("global-a");
    std::thread::sleep(outage);
    lab.start("global-a");
    let restarted = now();
    // The restarted global prefers the replicas it had elected; one that answers late (a busy
    // machine) may lose that first election, and the other fills from where each series stopped.
    let after: Vec<(String, String)> =
        ["infra-0", "apps-0"].iter().map(|s| (s.to_string(), lab.elected(global, s))).collect();
    let (from, to) = (killed - 5_000, restarted + 5_000);
    // Wait for the global to be current past the window, then for its copy to match.
    let deadline = if soak() { Duration::from_secs(1200) } else { Duration::from_secs(180) };
    let mut equal = Samples::new();
    lab.wait_clean("the global to hold the outage window", deadline, || {
        if now() < to + 3_000 {
            return None;
        }
        let (mut first, mut second) = (Samples::new(), Samples::new());
        for ((shard, b), (_, a)) in before.iter().zip(&after) {
            first.extend(window(leaf_addr(shard, b), DEMO, from, to));
            second.extend(window(leaf_addr(shard, a), DEMO, from, to));
        }
        let got = window(global, DEMO, from, to);
        let problems = switch_problems(&got, &first, &second, 10);
        equal = got;
        Some(problems)
    });
    let samples: usize = equal.values().map(Vec::len).sum();
    assert!(equal.len() >= 300, "only {} series in the window", equal.len());
    assert!(
        samples as u128 >= equal.len() as u128 * (outage.as_secs() as u128),
        "too few samples: {samples}"
    );
    // The catch-up really was paged: at most twice the page size each (the bound a page may
    // reach before the source halves it).
    let log = lab.log_of("global-a");
    let caught: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("caught up"))
        .filter_map(|l| {
            let field = |k: &str| l.split(k).nth(1)?.split_whitespace().next()?.parse::<u64>().ok();
            Some((field("pages=")?, field("samples=")?))
        })
        .collect();
    let pages = caught.iter().map(|c| c.0).max().unwrap_or(0);
    assert!(pages >= 3, "the catch-up took {pages} pages; expected several pages of 2000 samples\n{log}");
    for (p, n) in &caught {
        assert!(n <= &(p * 4000), "{n} samples in {p} pages: pages larger than twice their bound\n{log}");
    }
    eprintln!(
        "caught up {} series, {samples} samples over a {:?} outage, in up to {pages} pages per source \
         (elected before {before:?}, after {after:?})",
        equal.len(),
        outage
    );
}
