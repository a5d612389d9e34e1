//! Steps around runs (setup, prepare, conclude, cleanup), through the real
//! binary as root: their order, their rows in steps.csv, their time kept
//! out of the run's, and a failing step as an ERROR row naming it.

mod common;
use common::*;

fn run_steps(yaml: &str, code: i32) -> (tempfile::TempDir, Vec<Row>, Vec<Row>, String) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let out = dir.path().join("out");
    let (o, pid) = packrun(&[
        "run",
        "--quiet",
        "--max-parallel",
        "1",
        "--out",
        out.to_str().unwrap(),
        job.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(cgroups_of(pid).is_empty(), "cgroups left behind");
    let log = std::fs::read_to_string(dir.path().join("data/log")).unwrap_or_default();
    let runs = csv_rows(&out.join("runs.csv"));
    let steps = if out.join("steps.csv").exists() {
        csv_rows(&out.join("steps.csv"))
    } else {
        Vec::new()
    };
    (dir, runs, steps, log)
}

const HEAD: &str = "version: 1\nname: steps\ndefaults:\n  container: {mounts: [{source: data, target: /data}]}\njobs:\n";

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn steps_run_in_order_around_each_run_and_their_time_stays_out_of_the_runs() {
    if !privileged("steps in order") {
        return;
    }
    let yaml = format!(
        "{HEAD}  j:\n    shell: 'echo job {{rep}} >> /data/log'\n    repetitions: 2\n    setup: 'echo setup >> /data/log'\n    prepare: 'echo prepare {{rep}} >> /data/log; sleep 1'\n    conclude: 'echo conclude {{rep}} >> /data/log'\n    cleanup: 'echo cleanup >> /data/log'\n"
    );
    let (_dir, runs, steps, log) = run_steps(&yaml, 0);
    assert_eq!(
        log,
        "setup\nprepare 1\njob 1\nconclude 1\nprepare 2\njob 2\nconclude 2\ncleanup\n"
    );
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        ["setup", "prepare", "conclude", "prepare", "conclude", "cleanup"]
    );
    assert!(steps.iter().all(|s| s["state"] == "COMPLETED"), "{steps:?}");
    for r in &runs {
        assert_eq!(r["state"], "COMPLETED");
        // The prepare step slept a second; the run's own wall time has none of it.
        let wall: f64 = r["wall_time_s"].parse().unwrap();
        assert!(wall < 0.9, "{wall} s includes the step's");
    }
    let prep: f64 = steps[1]["wall_time_s"].parse().unwrap();
    assert!(prep >= 1.0, "{prep}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn each_failing_step_makes_an_error_row_that_names_it() {
    if !privileged("failing steps") {
        return;
    }
    let job = |name: &str, step: &str| {
        format!("  {name}:\n    command: ['true']\n    {step}: 'exit 3'\n")
    };
    let yaml = format!(
        "{HEAD}{}{}{}{}",
        job("bad_setup", "setup"),
        job("bad_prepare", "prepare"),
        job("bad_conclude", "conclude"),
        job("bad_cleanup", "cleanup")
    );
    let (_dir, runs, steps, _) = run_steps(&yaml, 1);
    assert_eq!(runs.len(), 4);
    for (job, step) in [
        ("bad_setup", "setup"),
        ("bad_prepare", "prepare"),
        ("bad_conclude", "conclude"),
        ("bad_cleanup", "cleanup"),
    ] {
        let r = runs.iter().find(|r| r["job"] == job).unwrap();
        assert_eq!(r["state"], "ERROR", "{r:?}");
        assert!(
            r["termination_reason"].contains(&format!("{step} step failed: exit code 3")),
            "{r:?}"
        );
        let s = steps.iter().find(|s| s["job"] == job).unwrap();
        assert_eq!((s["step"].as_str(), s["state"].as_str()), (step, "FAILED"));
    }
}
