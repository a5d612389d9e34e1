//! Plans many runs on the 256-CPU fixture and prints how long planning took.
//!
//! cargo run --release --example plan_bench [-- RUNS...]

#[path = "../tests/fixtures/run_helper.rs"]
mod helper;

use std::time::Instant;

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("run counts are numbers"))
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        counts
    };
    let topo = helper::fixture("256cpu");
    println!(
        "{:>8}  {:>5}  {:>5}  {:>10}  {:>12}  {:>11}",
        "runs", "CPUs", "nodes", "plan time", "makespan", "utilisation"
    );
    for n in counts {
        // Mixed sizes (1..32 CPUs), estimates 10 s..10 min, some with memory,
        // a few spread over nodes: a deterministic pseudo-random mix.
        let sizes = [1, 2, 4, 8, 16, 32, 1, 2];
        let runs: Vec<_> = (0..n)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
                let cpus = sizes[(h % 8) as usize];
                let mut r = helper::run(&format!("job{}", h % 16), cpus, 10 + h % 590);
                if h % 3 == 0 {
                    r.resources.memory = Some((cpus as u64) << 30);
                }
                if h % 17 == 0 {
                    r.resources.numa = packrun::jobfile::Numa::Spread;
                }
                r
            })
            .collect();
        let t = Instant::now();
        let s = packrun::plan::simulate(&runs.into(), &topo, &[], None).expect("every run fits");
        let took = t.elapsed();
        assert_eq!(s.entries.len(), n);
        println!(
            "{:>8}  {:>5}  {:>5}  {:>8.1}ms  {:>12}  {:>10.1}%",
            n,
            topo.cpus.len(),
            topo.nodes.len(),
            took.as_secs_f64() * 1e3,
            packrun::plan::fmt_secs(s.makespan),
            s.utilisation * 100.0
        );
    }
}
