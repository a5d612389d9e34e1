//! The VM suite: each test boots one VM with a cgroup layout and NUMA
//! topology the development machines lack, runs a whole scenario inside
//! (tests/vm/scenarios/) and checks what it printed. Skipped, saying why,
//! where qemu, the kernel or busybox is missing; a failure when CI=true.
//! Set them up with tests/vm/ci-install.sh.

#[path = "vm/harness.rs"]
mod harness;

use harness::{Layout, Topology, Vm};
use std::time::Duration;

/// Boots `vm`, prints its timings and output, and checks that the scenario
/// exited 0, printed no FAIL line and printed "ok NAME" for every `expected`
/// check (so a check that never ran fails too). Returns the guest's stdout.
fn run_scenario(test: &str, vm: Vm, expected: &[&str]) -> Option<String> {
    let tools = harness::tools_or_skip(test)?;
    let out = harness::boot(&tools, &vm).unwrap_or_else(|e| panic!("{test}: {e}"));
    eprintln!(
        "{test}: {} boot {:.1} s, total {:.1} s, {} attempt(s), exit status {}",
        out.accel,
        out.boot_time.as_secs_f64(),
        out.total_time.as_secs_f64(),
        out.attempts,
        out.status
    );
    eprintln!(
        "--- guest stdout\n{}--- guest stderr\n{}---",
        out.stdout, out.stderr
    );
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert!(
        failed.is_empty(),
        "{test}: checks failed in the guest:\n{}",
        failed.join("\n")
    );
    let passed: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok ")?.split(':').next())
        .collect();
    let missing: Vec<&&str> = expected.iter().filter(|e| !passed.contains(e)).collect();
    assert!(
        missing.is_empty(),
        "{test}: these checks never reported ok: {missing:?}"
    );
    assert_eq!(out.status, 0, "{test}: the scenario exited {}", out.status);
    Some(out.stdout)
}

const COMMON: &[&str] = &["packrun-version", "node-count", "node0-cpulist"];

#[test]
fn cgroup_v2_on_four_numa_nodes_places_and_limits_as_packrun_expects() {
    let vm = Vm {
        topology: Topology {
            cpus: 8,
            nodes: 4,
            memory_mib: 4096,
        },
        layout: Layout::V2,
        scenarios: vec!["common.sh", "v2.sh"],
        timeout: Duration::from_secs(180),
    };
    let expected = [
        COMMON,
        &[
            "node1-cpulist",
            "node2-cpulist",
            "node3-cpulist",
            "v2-mounted",
            "v2-controller-cpuset",
            "v2-controller-cpu",
            "v2-controller-io",
            "v2-controller-memory",
            "v2-controller-pids",
            "v2-cpuset-cpus",
            "v2-cpuset-mems",
            "v2-cpuset-effective",
            "v2-mems-node2-shmem-grew-kb",
            "v2-oom-exit",
            "v2-oom-kill-count",
            "v2-oom-peak",
            "v2-oom-peak-within-limit",
            "v2-pids-current",
            "v2-pids-events-max",
            "v2-cgroup-kill-empties",
            "v2-cpu-max-throttled",
            "v2-cleanup",
        ],
    ]
    .concat();
    let Some(stdout) = run_scenario("v2", vm, &expected) else {
        return;
    };
    assert!(
        stdout.contains("ok node1-cpulist: 2-3"),
        "node1 should hold CPUs 2-3:\n{stdout}"
    );
}

#[test]
fn cgroup_v1_per_controller_hierarchies_limit_as_packrun_expects() {
    let vm = Vm {
        topology: Topology {
            cpus: 4,
            nodes: 2,
            memory_mib: 2048,
        },
        layout: Layout::V1,
        scenarios: vec!["common.sh", "v1.sh"],
        timeout: Duration::from_secs(180),
    };
    let expected = [
        COMMON,
        &[
            "node1-cpulist",
            "v1-mount-cpu",
            "v1-mount-cpuacct",
            "v1-mount-cpuset",
            "v1-mount-memory",
            "v1-mount-devices",
            "v1-mount-freezer",
            "v1-mount-blkio",
            "v1-mount-pids",
            "v1-mount-name-systemd",
            "v1-mount-unified",
            "v1-cpuset-empty-refuses-tasks",
            "v1-cpuset-cpus",
            "v1-cpuset-mems",
            "v1-oom-exit",
            "v1-oom-kill-count",
            "v1-oom-peak",
            "v1-pids-current",
            "v1-pids-events-max",
            "v1-freezer-frozen",
            "v1-freeze-kill-thaw-empties",
            "v1-cpu-quota-throttled",
            "v1-cleanup",
        ],
    ]
    .concat();
    run_scenario("v1", vm, &expected);
}

#[test]
fn delegated_v2_subtree_needs_a_supervisor_leaf_before_controllers() {
    let vm = Vm {
        topology: Topology {
            cpus: 4,
            nodes: 2,
            memory_mib: 2048,
        },
        layout: Layout::V2Delegated,
        scenarios: vec!["common.sh", "v2-delegated.sh"],
        timeout: Duration::from_secs(180),
    };
    let expected = [
        COMMON,
        &[
            "node1-cpulist",
            "delegated-own-cgroup",
            "delegated-controller-cpuset",
            "delegated-controller-memory",
            "delegated-enable-with-process-busy",
            "delegated-moved-to-leaf",
            "delegated-enable-after-move",
            "delegated-run-cpus",
            "delegated-run-mems",
            "delegated-run-oom-exit",
            "delegated-run-oom-kill-count",
            "delegated-cleanup",
        ],
    ]
    .concat();
    run_scenario("v2-delegated", vm, &expected);
}
