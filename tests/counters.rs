//! Counters per run through the real binary, as root: what perf's
//! software events count for everything a run starts (and nothing of
//! packrun's set-up or the steps), and counters this machine cannot count
//! refused before anything starts.

mod common;
use common::*;
use std::sync::Mutex;

/// The tests that burn CPU, one at a time: on a machine of two CPUs, two
/// burns and a sleeper would switch each other out.
static BURNS: Mutex<()> = Mutex::new(());

/// A counter of a `packrun exec --format json` record.
fn count(rec: &serde_json::Value, column: &str) -> f64 {
    rec[column]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{column}` in {rec}"))
}

/// `packrun exec` of a python program with these counters.
fn python(counters: &str, program: &str) -> serde_json::Value {
    let (out, rec) = exec(&["--counters", counters], &["python3", "-c", program]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rec
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn a_cpu_burns_task_clock_matches_its_cgroup_cpu_time_within_3_percent() {
    if !privileged("task-clock of a burn") {
        return;
    }
    let _alone = BURNS.lock().unwrap_or_else(|e| e.into_inner());
    let (out, rec) = exec(
        &["--counters", "task-clock"],
        &[helper("burn").to_str().unwrap(), "1.0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = count(&rec, "task_clock") / 1e9;
    let cpu = count(&rec, "cpu_time_s");
    assert!(cpu >= 1.0, "{rec}");
    assert!(
        (task - cpu).abs() / cpu < 0.03,
        "task_clock {task:.4} s against the cgroup's CPU time {cpu:.4} s"
    );
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn fifty_sleeps_make_at_least_fifty_context_switches_and_a_burn_far_fewer() {
    if !privileged("context switches") {
        return;
    }
    let _alone = BURNS.lock().unwrap_or_else(|e| e.into_inner());
    let sleeps = python(
        "context-switches",
        "import time\nfor _ in range(50): time.sleep(0.002)",
    );
    let slept = count(&sleeps, "context_switches");
    assert!(slept >= 50.0, "{sleeps}");
    // A burn is switched out only when something else wants its CPU:
    // on a busy machine about once per scheduler slice (3 ms or more),
    // so a 50 ms burn far fewer than 50 times.
    let (_, burn) = exec(
        &["--counters", "context-switches"],
        &[helper("burn").to_str().unwrap(), "0.05"],
    );
    let burnt = count(&burn, "context_switches");
    assert!(burnt * 2.0 < slept, "burn: {burnt}, sleeps: {slept}");
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn touching_64_mib_gives_at_least_16000_page_faults() {
    if !privileged("page faults") {
        return;
    }
    let (out, rec) = exec(
        &["--counters", "page-faults,minor-faults"],
        &[helper("alloc").to_str().unwrap(), "64"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(count(&rec, "page_faults") >= 16_000.0, "{rec}");
    assert!(count(&rec, "minor_faults") >= 16_000.0, "{rec}");
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn the_work_of_a_runs_children_and_grandchildren_is_counted() {
    if !privileged("children counted") {
        return;
    }
    let _alone = BURNS.lock().unwrap_or_else(|e| e.into_inner());
    // The job itself does nothing; a child and a grandchild burn 0.4 s each.
    let burn = helper("burn");
    let dir = burn.parent().unwrap().display().to_string();
    let (out, rec) = exec(
        &[
            "--counters",
            "task-clock",
            "--bind",
            &format!("{dir}:/mnt:ro"),
        ],
        &["sh", "-c", "/mnt/burn 0.4; sh -c '/mnt/burn 0.4'"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = count(&rec, "task_clock") / 1e9;
    assert!(task >= 0.8, "{rec}");
    let cpu = count(&rec, "cpu_time_s");
    assert!((task - cpu).abs() / cpu < 0.03, "{task} against {cpu}");
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn a_counted_job_still_may_not_open_perf_events_itself() {
    if !privileged("perf_event_open refused") {
        return;
    }
    // x86_64's perf_event_open is 298, aarch64's 241.
    let nr = if cfg!(target_arch = "aarch64") {
        241
    } else {
        298
    };
    let rec = python(
        "task-clock",
        &format!(
            "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.syscall({nr}, 0, 0, -1, -1, 0)\nassert r == -1 and ctypes.get_errno() == 1, (r, ctypes.get_errno())"
        ),
    );
    assert!(count(&rec, "task_clock") > 0.0);
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn hardware_counters_are_refused_before_anything_starts_where_the_kernel_has_none() {
    if !privileged("hardware counters refused") {
        return;
    }
    let has_pmu = ["cpu", "cpu_core", "armv8_pmuv3_0"].iter().any(|d| {
        std::path::Path::new("/sys/bus/event_source/devices")
            .join(d)
            .exists()
    });
    let (out, pid) = packrun(&[
        "exec",
        "--format",
        "json",
        "--counters",
        "instructions",
        "--",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if has_pmu {
        assert!(out.status.success(), "{err}");
        assert!(count(&record(&out), "instructions") > 0.0);
        return;
    }
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        err.trim(),
        "packrun exec: cannot count `instructions`: this machine's kernel exposes no hardware counters"
    );
    assert!(cgroups_of(pid).is_empty());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_batchs_counters_go_to_runs_csv_and_steps_csv_and_the_steps_count_apart() {
    if !privileged("counters in a batch") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let job = dir.path().join("job.yaml");
    // The prepare step sleeps 30 times; the job sleeps not at all.
    std::fs::write(
        &job,
        "version: 1\nname: c\ndefaults: {counters: [task-clock, context-switches]}\njobs:\n  a:\n    command: [python3, -c, 'sum(range(10**6))']\n    repetitions: 2\n    prepare: 'for i in $(seq 30); do sleep 0.001; done'\n  b:\n    command: ['true']\n    counters: [page-faults]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (o, pid) = packrun(&[
        "run",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        job.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(cgroups_of(pid).is_empty());
    let runs = csv_rows(&out.join("runs.csv"));
    for r in runs.iter().filter(|r| r["job"] == "a") {
        assert!(r["task_clock"].parse::<f64>().unwrap() > 1e6, "{r:?}");
        // The prepare step's 30 sleeps (and its 30 sleep processes) are not the run's.
        assert!(
            r["context_switches"].parse::<f64>().unwrap() < 30.0,
            "{r:?}"
        );
        assert_eq!(r["page_faults"], "", "job a did not choose page-faults");
    }
    let b = runs.iter().find(|r| r["job"] == "b").unwrap();
    assert!(b["page_faults"].parse::<f64>().unwrap() > 0.0, "{b:?}");
    assert_eq!(b["task_clock"], "");
    let steps = csv_rows(&out.join("steps.csv"));
    assert_eq!(steps.len(), 2);
    for s in &steps {
        assert!(
            s["context_switches"].parse::<f64>().unwrap() >= 30.0,
            "{s:?}"
        );
    }
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and perf events"]
fn packrun_s_own_set_up_of_the_container_is_not_counted() {
    if !privileged("set-up not counted") {
        return;
    }
    // The run's cgroup holds init's set-up (mounts, namespaces, the
    // job's clone: about 1.5 ms of CPU here) and /bin/true; the counters
    // begin at the job's execve.
    let (out, rec) = exec(&["--counters", "task-clock"], &["/bin/true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = count(&rec, "task_clock") / 1e9;
    let cpu = count(&rec, "cpu_time_s");
    assert!(
        task > 0.0 && task < 0.6 * cpu,
        "task_clock {task} s, cgroup CPU time {cpu} s"
    );
}
