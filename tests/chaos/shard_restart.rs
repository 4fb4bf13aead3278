//! A replica set that was away across a global restart (both replicas of one shard cut off by a
//! network partition, still scraping) is filled from its own watermark once it returns: over the
//! whole partition the global then holds exactly the elected replica's samples.

use std::time::Duration;

use crate::common::cluster::elected;
use promtier::model::Labels;

use crate::lab::*;
use crate::proxy::Proxy;

#[test]
fn a_shard_away_across_a_global_restart_is_filled_when_it_returns() {
    let p = ports(9);
    let (d, l, g) = (&p[0..4], p[4], p[8]);
    let partition = if soak() { Duration::from_secs(420) } else { Duration::from_secs(30) };
    // The global reaches the apps shard through partitionable relays.
    let relay_a = Proxy::start(addr(l + 2));
    let relay_b = Proxy::start(addr(l + 3));
    let yaml = two_groups(
        d,
        l,
        g,
        "",
        &format!(
            "nodes:\n  apps-0-a: {{advertise: '{}'}}\n  apps-0-b: {{advertise: '{}'}}\n",
            relay_a.addr(),
            relay_b.addr()
        ),
    );
    let mut lab = Lab::new(&yaml);
    start_two_groups(&mut lab, d, 60);
    lab.node("global", "global-a");
    let global = addr(g);
    let chosen = lab.elected(global, "apps-0");
    lab.elected(global, "infra-0");
    lab.wait("apps data on the global", Duration::from_secs(60), || {
        (window(global, DEMO, now() - 4_000, now()).len() >= 120).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let cut = now();
    relay_a.partition();
    relay_b.partition();
    lab.wait("the apps set to have no healthy replica", Duration::from_secs(60), || {
        let data = crate::common::api_data(global, "/api/v1/dedup")?;
        let set = data.as_array()?.iter().find(|s| s["shard"] == "apps-0")?.clone();
        (set["healthy"] == false).then_some(())
    });
    // What the global holds of the set when it went away: the fill continues each series from
    // its last stored sample.
    let apps = |node, from, to| -> Samples {
        window(node, DEMO, from, to).into_iter().filter(|(l, _)| l.get("shard") == Some("apps-0")).collect()
    };
    let (from, before_cut) = (cut - 5_000, apps(global, cut - 5_000, now()));
    std::thread::sleep(partition / 2);
    lab.kill("global-a");
    std::thread::sleep(Duration::from_secs(3));
    lab.start("global-a");
    lab.elected(global, "infra-0");
    std::thread::sleep(partition / 2);
    let healed = now();
    relay_a.heal();
    relay_b.heal();
    // The replica elected when the set returns (the one from before, or the other if it
    // answered first) fills the whole partition window from where each series stopped.
    let after = lab.elected(global, "apps-0");
    let leaf = addr(l + 2 + u16::from(after == "b"));
    let to = healed + 5_000;
    lab.wait_clean("the global to hold the apps shard's partition window", Duration::from_secs(120), || {
        if now() < to + 3_000 {
            return None;
        }
        let mut want = before_cut.clone();
        for (l, s) in apps(leaf, from, to) {
            let w = want.entry(l).or_default();
            let last_stored = w.last().map_or(i64::MIN, |x| x.0);
            w.extend(s.into_iter().filter(|x| x.0 > last_stored));
        }
        let got = apps(global, from, to);
        let mut problems = diff("the shard's replicas", &want, "the global", &got, 10);
        if want.len() < 60 {
            problems.push(format!("only {} series", want.len()));
        }
        Some(problems)
    });
    let infra: Vec<Labels> =
        window(global, DEMO, from, to).into_keys().filter(|l| l.get("shard") == Some("infra-0")).collect();
    assert!(infra.len() >= 60, "infra data is missing: {} series", infra.len());
    assert_eq!(elected(global, "apps-0").as_deref(), Some(after.as_str()));
    eprintln!(
        "apps shard filled over a {partition:?} partition across a global restart (elected {chosen} before, {after} after)"
    );
}
