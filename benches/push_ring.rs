//! The push ring measured: how evenly rendezvous top-RF spreads the sample key set
//! (`push::sample`, jobs × instances) over the nodes, what adding a node moves, and what finding
//! a key's owners costs.
//!
//! 1. Balance: keys per node (a key counts once per owner) as max/mean and min/mean, for 1k and
//!    100k keys at 3 nodes RF 2, 4 nodes RF 2 and 10 nodes RF 3.
//!    Also the spread of max/mean and min/mean over disjoint 1k-key slices of the largest sample
//!    (one 1k sample can be an unlucky draw).
//! 2. Growth 3→4 (RF 2) and 10→11 (RF 3): the share of (key, owner) copies that are new, the
//!    share of keys gaining an owner, next to the expected 1/(N+1) and RF/(N+1), and a check
//!    that every new copy lands on the new node.
//! 3. `Ring::owners` lookups per second at 10 nodes RF 3.
//!
//! Run: `cargo bench --bench push_ring` (seconds once built; `cargo test --bench push_ring --
//! --bench` gives the same counts from a debug build, only the lookup time differs). Without `--bench` (as `cargo test
//! --all-targets` runs it) it measures 1k and 10k keys only and checks that growth moves copies
//! to the new node only. Figures are printed; only that check is asserted.

use std::hint::black_box;
use std::time::Instant;

use promtier::push::ring::Ring;
use promtier::push::sample::{Balance, describe_sample, sample_keys};

fn ring(nodes: u32, rf: u32) -> Ring {
    Ring::new(nodes, rf, vec!["job".into(), "instance".into()])
}

fn slices(keys: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    keys.iter().map(Vec::as_slice)
}

/// The `q` quantile of `v` (nearest rank; 1.0 for none).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or(1.0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if full { &[1_000, 100_000] } else { &[1_000, 10_000] };
    let shapes = [(3, 2), (4, 2), (10, 3)];

    println!("balance: keys per node over the sample key set (a key counts once per owner)");
    println!(
        "  {:>7}  {:>5} {:>3}  {:>9} {:>8} {:>8}  sample",
        "keys", "nodes", "RF", "mean", "max/mean", "min/mean"
    );
    for &n in sizes {
        let keys = sample_keys(&ring(1, 1), n);
        for (nodes, rf) in shapes {
            let b = Balance::of(&ring(nodes, rf).load(slices(&keys)));
            println!(
                "  {n:>7}  {nodes:>5} {rf:>3}  {:>9.1} {:>8.3} {:>8.3}  {}",
                b.mean,
                b.max_over_mean(),
                b.min_over_mean(),
                describe_sample(n)
            );
        }
    }

    // One 1k sample can be unlucky: the spread over disjoint 1k slices of the largest sample.
    let keys = sample_keys(&ring(1, 1), *sizes.last().unwrap_or(&1_000));
    let slices_1k: Vec<&[Vec<u8>]> = keys.chunks_exact(1_000).collect();
    println!("\nbalance over {} disjoint 1000-key slices of the {}-key sample", slices_1k.len(), keys.len());
    println!(
        "  {:>5} {:>3}  {:>15} {:>15}  {:>15} {:>15}",
        "nodes", "RF", "max/mean median", "max/mean p95", "min/mean median", "min/mean p5"
    );
    for (nodes, rf) in shapes {
        let r = ring(nodes, rf);
        let (mut max, mut min): (Vec<f64>, Vec<f64>) = slices_1k
            .iter()
            .map(|s| {
                let b = Balance::of(&r.load(slices(s)));
                (b.max_over_mean(), b.min_over_mean())
            })
            .unzip();
        println!(
            "  {nodes:>5} {rf:>3}  {:>15.3} {:>15.3}  {:>15.3} {:>15.3}",
            quantile(&mut max, 0.5),
            quantile(&mut max, 0.95),
            quantile(&mut min, 0.5),
            quantile(&mut min, 0.05)
        );
    }

    println!("\ngrowth: what adding a node moves");
    println!(
        "  {:>7}  {:>7} {:>3}  {:>10} {:>9}  {:>12} {:>9}",
        "keys", "nodes", "RF", "new copies", "expected", "keys gaining", "expected"
    );
    for &n in sizes {
        let keys = sample_keys(&ring(1, 1), n);
        for (from, rf) in [(3, 2), (10, 3)] {
            let (before, after) = (ring(from, rf), ring(from + 1, rf));
            let m = before.moves(&after, slices(&keys));
            assert_eq!(
                m.received[from as usize],
                m.new_copies,
                "{from}->{}: a copy went to an old node",
                from + 1
            );
            let new_node = f64::from(from + 1);
            println!(
                "  {n:>7}  {from:>3}->{:<3} {rf:>3}  {:>9.2}% {:>8.2}%  {:>11.2}% {:>8.2}%",
                from + 1,
                100.0 * m.new_copies as f64 / m.copies as f64,
                100.0 / new_node,
                100.0 * m.keys_moved as f64 / m.keys as f64,
                100.0 * f64::from(rf) / new_node,
            );
        }
    }

    let r = ring(10, 3);
    let rounds = if full { 20 } else { 1 };
    let start = Instant::now();
    for _ in 0..rounds {
        for k in &keys {
            black_box(r.owners(black_box(k)));
        }
    }
    let per = start.elapsed().as_secs_f64() / (rounds * keys.len()) as f64;
    let build = if cfg!(debug_assertions) { " (debug build: not representative)" } else { "" };
    println!("\nowners lookup at 10 nodes RF 3: {:.0} ns each ({:.1} M/s){build}", per * 1e9, 1e-6 / per);
}
