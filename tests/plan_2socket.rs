//! 40 runs of mixed sizes on the 2-socket SMT fixture: the schedule is close
//! to the lower bound and every run that fits a node stays on one node.

#[path = "fixtures/run_helper.rs"]
mod helper;

use helper::{fixture, run};
use packrun::plan::simulate;

/// The same 40 runs as tests/fixtures/mixed-40.yaml: eight jobs, longest
/// estimate first (600 s down to 30 s), each over threads 16, 8, 4, 2, 1,
/// each run with 2 GiB.
fn mixed_40() -> Vec<packrun::jobfile::Run> {
    let estimates = [600, 450, 300, 240, 120, 90, 60, 30];
    let sizes = [16, 8, 4, 2, 1];
    let mut runs = Vec::new();
    for est in estimates {
        for cpus in sizes {
            let mut r = run(&format!("est{est}"), cpus, est);
            r.params = vec![("threads".into(), cpus.to_string())];
            r.resources.memory = Some(2 << 30);
            runs.push(r);
        }
    }
    runs
}

#[test]
fn mixed_runs_finish_within_ten_percent_of_the_lower_bound_and_stay_on_one_node() {
    let topo = fixture("2socket-smt");
    let runs = mixed_40();
    let s = simulate(&runs.clone().into(), &topo, &[], None).unwrap();
    assert_eq!(s.entries.len(), 40);
    let work: f64 = runs
        .iter()
        .map(|r| r.resources.cpus as f64 * r.estimate.as_secs_f64())
        .sum();
    let longest = runs
        .iter()
        .map(|r| r.estimate.as_secs_f64())
        .fold(0.0, f64::max);
    let bound = (work / 64.0).max(longest);
    assert_eq!(s.lower_bound, bound);
    println!(
        "makespan {} s, lower bound {bound} s, utilisation {:.3}",
        s.makespan, s.utilisation
    );
    assert!(
        s.makespan <= bound * 1.10,
        "makespan {} vs lower bound {bound}",
        s.makespan
    );
    for e in &s.entries {
        let r = &runs[e.run];
        assert_eq!(e.placement.cpus.len(), r.resources.cpus as usize);
        assert_eq!(
            e.placement.mems.len(),
            1,
            "{} got mems {}",
            r.job,
            e.placement.mems
        );
        let node = topo.node(e.placement.mems.ids()[0]).unwrap();
        assert!(
            e.placement.cpus.is_subset(&node.cpus),
            "{} on {} outside node {}",
            r.job,
            e.placement.cpus,
            node.id
        );
    }
}
