//! Random SIGKILLs of leaves and the global while data flows (at least 20): every sample a leaf
//! acknowledged (served through its fast link) and every sample the global reported as stored is
//! still there, bit for bit, after all the restarts — and the global keeps serving all its sets.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::http_get;
use crate::lab::*;

#[test]
fn random_kills_of_leaves_and_globals_lose_no_acknowledged_sample() {
    let p = ports(9);
    let (d, l, g) = (&p[0..4], p[4], p[8]);
    let kills = if soak() { 200 } else { 22 };
    let yaml = two_groups(d, l, g, "", "");
    let mut lab = Lab::new(&yaml);
    start_two_groups(&mut lab, d, 40);
    let nodes: Vec<(&str, u16)> = vec![
        ("infra-0-a", l),
        ("infra-0-b", l + 1),
        ("apps-0-a", l + 2),
        ("apps-0-b", l + 3),
        ("global-a", g),
    ];
    lab.node("global", "global-a");
    let global = addr(g);
    lab.elected(global, "infra-0");
    lab.elected(global, "apps-0");
    let seed = now() as u64;
    eprintln!("random kills: seed {seed}");
    let mut rng = Rng::new(seed);
    let t0 = now();
    // Node → every sample it was seen to hold.
    let mut seen: BTreeMap<&str, Samples> = BTreeMap::new();
    let ready = |port: u16| matches!(http_get(addr(port), "/-/ready", Duration::from_secs(2)), Ok((200, _)));
    for k in 0..kills {
        let (victim, port) = nodes[rng.below(nodes.len() as u64) as usize];
        std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
        // What the node holds right now is acknowledged: it must survive the kill.
        let snap = window(addr(port), DEMO, now() - 15_000, now());
        let entry = seen.entry(victim).or_default();
        for (l, s) in snap {
            let e = entry.entry(l).or_default();
            e.extend(s);
            e.sort_unstable();
            e.dedup();
        }
        lab.kill(victim);
        std::thread::sleep(Duration::from_millis(200 + rng.below(2000)));
        lab.start(victim);
        lab.wait(&format!("{victim} to be ready again (kill {k})"), Duration::from_secs(60), || {
            ready(port).then_some(())
        });
    }
    lab.elected(global, "infra-0");
    lab.elected(global, "apps-0");
    let mut problems = Vec::new();
    for (victim, port) in &nodes {
        let Some(want) = seen.get(victim) else { continue };
        let have = window(addr(*port), DEMO, t0 - 60_000, now());
        for (l, samples) in want {
            let got = have.get(l);
            let lost: Vec<i64> = samples
                .iter()
                .filter(|x| got.is_none_or(|g| g.binary_search(x).is_err()))
                .map(|x| x.0)
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "{victim}: {l}: {} acknowledged samples lost, e.g. {:?}",
                    lost.len(),
                    &lost[..lost.len().min(5)]
                ));
            }
        }
    }
    assert_none(&lab, "acknowledged samples after the kills", &problems);
    // The global still serves fresh data of both sets.
    lab.wait("fresh data of both sets on the global", Duration::from_secs(60), || {
        let w = window(global, DEMO, now() - 4_000, now());
        let shards: std::collections::BTreeSet<&str> = w.keys().filter_map(|l| l.get("shard")).collect();
        (shards.len() == 2).then_some(())
    });
    let total: usize = seen.values().flat_map(|s| s.values()).map(Vec::len).sum();
    eprintln!("{kills} kills; {total} acknowledged samples checked after the restarts");
}
