//! The VM suite: each test boots one VM with a cgroup layout and NUMA
//! topology the development machines lack, runs a whole scenario inside
//! (tests/vm/scenarios/) and checks what it printed. Ignored by plain
//! `cargo test`; run with `--include-ignored` where qemu, the kernel, busybox
//! or the musl target is missing, a test fails naming it. Set them up with
//! tests/vm/ci-install.sh.

#[path = "vm/harness.rs"]
mod harness;

use harness::{Layout, Topology, Vm};
use packrun::cpulist::CpuList;
use std::time::Duration;

/// Boots `vm`, prints its timings and output, and checks that the scenario
/// exited 0, printed no FAIL line and printed "ok NAME" for every `expected`
/// check (so a check that never ran fails too). Returns the guest's stdout.
fn run_scenario(test: &str, vm: Vm, expected: &[&str]) -> String {
    let tools = harness::tools_or_fail(test);
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
    if out.status != 0 {
        eprintln!("--- guest console\n{}---", out.console);
    }
    // Check lines only: a blob (a command's output) may hold any text.
    let mut in_blob = false;
    let checks: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            if l.starts_with("begin-blob ") {
                in_blob = true;
            } else if l.starts_with("end-blob ") {
                in_blob = false;
                return false;
            }
            !in_blob
        })
        .collect();
    let failed: Vec<&str> = checks
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    let passed: Vec<&str> = checks
        .iter()
        .filter_map(|l| l.strip_prefix("ok ")?.split(':').next())
        .collect();
    let missing: Vec<&&str> = expected.iter().filter(|e| !passed.contains(e)).collect();
    assert!(
        failed.is_empty(),
        "{test}: checks failed in the guest:\n{}\nthese checks never reported ok: {missing:?}",
        failed.join("\n")
    );
    assert!(
        missing.is_empty(),
        "{test}: these checks never reported ok: {missing:?}"
    );
    assert_eq!(out.status, 0, "{test}: the scenario exited {}", out.status);
    out.stdout
}

const COMMON: &[&str] = &["packrun-version", "node-count", "node0-cpulist"];

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn cgroup_v2_on_four_numa_nodes_places_and_limits_as_packrun_expects() {
    let vm = vm(FOUR_NODES, Layout::V2, "v2.sh", 180);
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
    let stdout = run_scenario("v2", vm, &expected);
    assert!(
        stdout.contains("ok node1-cpulist: 2-3"),
        "node1 should hold CPUs 2-3:\n{stdout}"
    );
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn cgroup_v1_per_controller_hierarchies_limit_as_packrun_expects() {
    let vm = vm(TWO_NODES, Layout::V1, "v1.sh", 180);
    run_scenario("v1", vm, &V1_CHECKS.concat());
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn cgroup_v1_comounted_as_systemd_legacy_mode_limits_alike() {
    let vm = vm(TWO_NODES, Layout::V1Comounted, "v1.sh", 180);
    run_scenario(
        "v1-comounted",
        vm,
        &[&V1_CHECKS.concat()[..], &["v1-cpu-cpuacct-comounted"]].concat(),
    );
}

const V1_CHECKS: [&[&str]; 2] = [
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
];

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn packrun_in_a_delegated_subtree_moves_into_a_leaf_and_nests_its_runs() {
    let vm = vm(TWO_NODES, Layout::V2Delegated, "packrun-delegated.sh", 180);
    let expected = [
        COMMON,
        &[
            "packrun-delegated-nested",
            "packrun-delegated-not-at-root",
            "packrun-delegated-exec-exit",
            "packrun-delegated-supervisor",
            "packrun-delegated-controllers",
            "packrun-delegated-run",
            "packrun-delegated-completed",
            "packrun-delegated-oom",
            "packrun-delegated-leaves-only-the-leaf",
        ],
    ]
    .concat();
    run_scenario("packrun-delegated", vm, &expected);
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn delegated_v2_subtree_needs_a_supervisor_leaf_before_controllers() {
    let vm = vm(TWO_NODES, Layout::V2Delegated, "v2-delegated.sh", 180);
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

/// The text between "begin-blob NAME" and "end-blob NAME" lines (see
/// scenarios/lib.sh), for every blob whose name starts with `prefix`.
fn blobs<'a>(stdout: &'a str, prefix: &str) -> Vec<(&'a str, String)> {
    let mut found = Vec::new();
    let mut current: Option<(&str, Vec<&str>)> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("begin-blob ") {
            current = Some((name, Vec::new()));
        } else if let Some(name) = line.strip_prefix("end-blob ") {
            if let Some((n, lines)) = current.take().filter(|(n, _)| *n == name) {
                if n.starts_with(prefix) {
                    found.push((n, lines.join("\n")));
                }
            }
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    found
}

fn blob(stdout: &str, name: &str) -> String {
    let found = blobs(stdout, name).into_iter().find(|(n, _)| *n == name);
    found
        .unwrap_or_else(|| panic!("the guest printed no `{name}` blob:\n{stdout}"))
        .1
}

fn cpus(list: &str) -> CpuList {
    list.trim()
        .parse()
        .unwrap_or_else(|e| panic!("`{list}` is not a CPU list: {e:?}"))
}

/// `key=value` words of a line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The guest's nodes in the packrun tests: 8 CPUs on 4 nodes.
const NODE_CPUS: [&str; 4] = ["0-1", "2-3", "4-5", "6-7"];

/// A guest of `topology` and `layout` that runs common.sh, then `scenario`.
fn vm(topology: Topology, layout: Layout, scenario: &'static str, timeout_s: u64) -> Vm {
    Vm {
        topology,
        layout,
        scenarios: vec!["common.sh", scenario],
        timeout: Duration::from_secs(timeout_s),
        initramfs_root: false,
        modules: &[],
    }
}

/// 4 CPUs on 2 nodes.
const TWO_NODES: Topology = Topology {
    cpus: 4,
    nodes: 2,
    memory_mib: 2048,
};

/// 8 CPUs on 4 nodes.
const FOUR_NODES: Topology = Topology {
    cpus: 8,
    nodes: 4,
    memory_mib: 4096,
};

/// Checks one placement of jobs/vm-numa.yaml against the guest's nodes.
/// `numa: local` keeps a run on one node when its CPUs fit in one (2 here),
/// else on as few nodes as hold them; its memory nodes are its CPUs' nodes.
fn check_placement(
    what: &str,
    job: &str,
    threads: Option<u32>,
    cpu_list: &CpuList,
    mems: &CpuList,
) {
    let node_cpus = NODE_CPUS.map(cpus);
    let on_nodes =
        CpuList::from_ids((0..4u32).filter(|&n| !cpu_list.is_disjoint(&node_cpus[n as usize])));
    match job {
        "local" => {
            let n = threads.unwrap_or_else(|| panic!("{what}: no threads parameter"));
            assert_eq!(
                cpu_list.len(),
                n as usize,
                "{what}: {n} CPUs, got {cpu_list}"
            );
            assert_eq!(
                on_nodes.len(),
                n.div_ceil(2) as usize,
                "{what}: numa local on the fewest nodes, got cpus {cpu_list}"
            );
            assert_eq!(
                mems, &on_nodes,
                "{what}: numa local: mems are the CPUs' nodes"
            );
        }
        "spread" => assert!(
            on_nodes.len() > 1,
            "{what}: spread run on one node: cpus {cpu_list}"
        ),
        "bind2" => assert_eq!(mems, &cpus("2"), "{what}: bind to node 2"),
        other => panic!("{what}: unexpected job {other}"),
    }
}

/// Runs that overlap in time never share a CPU.
fn check_disjoint<T: PartialOrd>(placed: &[(String, CpuList, T, T)]) {
    for (i, a) in placed.iter().enumerate() {
        for b in &placed[i + 1..] {
            if a.2 < b.3 && b.2 < a.3 {
                assert!(
                    a.1.is_disjoint(&b.1),
                    "{} ({}) and {} ({}) at once on shared CPUs",
                    a.0,
                    a.1,
                    b.0,
                    b.1
                );
            }
        }
    }
}

/// Host side of scenarios/packrun-plan.sh.
fn check_packrun_plan(stdout: &str) {
    let topo: serde_json::Value =
        serde_json::from_str(&blob(stdout, "packrun-topology")).expect("topology JSON");
    let nodes = topo["nodes"].as_array().expect("topology.nodes");
    let seen: Vec<&str> = nodes
        .iter()
        .map(|n| n["cpus"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(seen, NODE_CPUS, "packrun topology's nodes");

    let plan: serde_json::Value =
        serde_json::from_str(&blob(stdout, "packrun-plan")).expect("plan JSON");
    let runs = plan["runs"].as_array().expect("plan.runs");
    assert_eq!(runs.len(), 3 * 2 + 1 + 1, "planned runs");
    let mut placed = Vec::new();
    for r in runs {
        let (job, rep) = (r["job"].as_str().expect("job"), &r["rep"]);
        let what = format!("plan: {job} rep {rep}");
        let threads = r["parameters"]["threads"]
            .as_str()
            .map(|t| t.parse().unwrap());
        let (c, m) = (
            cpus(r["cpus"].as_str().expect("cpus")),
            cpus(r["mems"].as_str().expect("mems")),
        );
        check_placement(&what, job, threads, &c, &m);
        placed.push((
            what,
            c,
            r["start_s"].as_f64().unwrap(),
            r["end_s"].as_f64().unwrap(),
        ));
    }
    check_disjoint(&placed);
}

/// Host side of scenarios/packrun-run.sh: every row of runs.csv against
/// what the run printed from inside, placements, and exec's OOM record.
fn check_packrun_run(stdout: &str) {
    let mut inside = std::collections::HashMap::new();
    for (_, log) in blobs(stdout, "log ") {
        for line in log
            .lines()
            .filter(|l| l.starts_with("where ") || l.starts_with("touched "))
        {
            // A job's runs differ by parameters as well as by rep.
            let key = (
                field(line, "job").unwrap().to_owned(),
                field(line, "rep").unwrap().to_owned(),
                field(line, "threads").unwrap_or("").to_owned(),
            );
            inside
                .entry(key)
                .or_insert_with(Vec::new)
                .push(line.to_owned());
        }
    }
    let csv_text = blob(stdout, "runs.csv");
    eprintln!("runs.csv:\n{csv_text}\nfrom inside the runs:\n{inside:#?}");
    let mut rows = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = rows.headers().expect("runs.csv header").clone();
    let col = |row: &csv::StringRecord, name: &str| -> String {
        let i = headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("runs.csv has no `{name}` column"));
        row[i].to_owned()
    };
    let mut placed = Vec::new();
    for row in rows.records() {
        let row = row.expect("runs.csv row");
        let (job, rep, threads) = (
            col(&row, "job"),
            col(&row, "rep"),
            col(&row, "parameter_threads"),
        );
        let what = format!("runs.csv: {job} threads={threads} rep {rep}");
        assert_eq!(col(&row, "state"), "COMPLETED", "{what}: {row:?}");
        // The guest's init names the machine.
        assert_eq!(col(&row, "host"), "packrun-vm", "{what}: host");
        let (c, m) = (cpus(&col(&row, "cpus")), cpus(&col(&row, "mems")));
        let lines = inside
            .get(&(job.clone(), rep.clone(), threads.clone()))
            .unwrap_or_else(|| panic!("{what}: the run printed nothing"));
        let whereline = lines.iter().find(|l| l.starts_with("where ")).unwrap();
        assert_eq!(
            cpus(field(whereline, "cpus").unwrap()),
            c,
            "{what}: Cpus_allowed_list inside vs runs.csv"
        );
        assert_eq!(
            cpus(field(whereline, "mems").unwrap()),
            m,
            "{what}: Mems_allowed_list inside vs runs.csv"
        );
        let threads = (job == "local").then(|| col(&row, "parameter_threads").parse().unwrap());
        check_placement(&what, &job, threads, &c, &m);
        if job == "bind2" {
            let before: u64 = field(whereline, "shmem2_before_kb")
                .unwrap()
                .parse()
                .unwrap();
            let touched = lines
                .iter()
                .find(|l| l.starts_with("touched "))
                .expect("bind2 touched its memory");
            let after: u64 = field(touched, "shmem2_after_kb").unwrap().parse().unwrap();
            // 64 MiB touched; other shmem on the node may shrink meanwhile by a little.
            assert!(
                after >= before + 60 * 1024,
                "{what}: node 2 Shmem {before} → {after} kB, expected about 64 MiB more"
            );
        }
        let time = |name: &str| chrono::DateTime::parse_from_rfc3339(&col(&row, name)).expect(name);
        placed.push((what, c, time("start_time"), time("end_time")));
    }
    assert_eq!(placed.len(), 3 * 2 + 1 + 1, "runs in runs.csv");
    check_disjoint(&placed);

    // After SIGKILL and --resume: every run once, all COMPLETED.
    let resumed = blob(stdout, "resumed-runs.csv");
    let mut rows = csv::Reader::from_reader(resumed.as_bytes());
    let headers = rows.headers().expect("resumed runs.csv header").clone();
    let [key, state] = ["run_key", "state"].map(|n| headers.iter().position(|h| h == n).expect(n));
    let rows: Vec<csv::StringRecord> = rows
        .records()
        .map(|r| r.expect("resumed runs.csv row"))
        .collect();
    let mut keys: Vec<&str> = rows.iter().map(|r| &r[key]).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        (rows.len(), keys.len()),
        (4, 4),
        "after SIGKILL and --resume, 4 runs once each:\n{resumed}"
    );
    assert!(
        rows.iter().all(|r| &r[state] == "COMPLETED"),
        "resumed runs:\n{resumed}"
    );

    let exec = blob(stdout, "packrun-exec-oom");
    assert!(
        exec.contains("OUT_OF_MEMORY"),
        "packrun exec of a 256 MiB allocation under 64 MiB:\n{exec}"
    );
}

// packrun itself on cgroup v2 with four NUMA nodes: one boot each.
#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn packrun_sees_four_nodes_and_plans_numa_local_runs_on_them() {
    let expected = [
        COMMON,
        &["packrun-topology", "packrun-validate", "packrun-plan"],
    ]
    .concat();
    let stdout = run_scenario(
        "packrun-plan",
        vm(FOUR_NODES, Layout::V2, "packrun-plan.sh", 240),
        &expected,
    );
    check_packrun_plan(&stdout);
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn packrun_runs_where_runs_csv_says_on_four_nodes_and_leaves_no_cgroup_even_when_interrupted() {
    let expected = [
        COMMON,
        &[
            "packrun-run",
            "packrun-exec-oom",
            "packrun-leaves-no-cgroup",
            "packrun-sigint-exit",
            "packrun-sigint-leaves-no-cgroup",
            "packrun-resume-after-sigkill",
            "packrun-resume-leaves-no-cgroup",
        ],
    ]
    .concat();
    let stdout = run_scenario(
        "packrun-run",
        vm(FOUR_NODES, Layout::V2, "packrun-run.sh", 240),
        &expected,
    );
    check_packrun_run(&stdout);
}

#[test]
#[ignore = "needs qemu, a Debian kernel and busybox (tests/vm/ci-install.sh)"]
fn cgroup_v2_counts_a_runs_socket_buffers_in_its_memory_and_its_peak() {
    run_scenario(
        "packrun-socket-memory",
        vm(TWO_NODES, Layout::V2, "packrun-socket-memory.sh", 240),
        &[
            COMMON,
            &[
                "socket-memory-state",
                "socket-memory-held",
                "socket-memory-in-peak",
                "socket-memory-held-to-limit",
            ],
        ]
        .concat(),
    );
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn gpu_device_program_denies_other_runs_gpus_on_v2() {
    run_scenario(
        "packrun-gpus",
        vm(TWO_NODES, Layout::V2, "packrun-gpus.sh", 240),
        &[
            COMMON,
            &[
                "gpu-env",
                "gpu-own-enxio",
                "gpu-other-eperm",
                "gpu-row",
                "gpu-state",
            ],
        ]
        .concat(),
    );
}

#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn without_root_on_v2_a_runs_gpu_is_bound_in_and_its_row_says_not_enforced() {
    run_scenario(
        "packrun-gpus-user",
        vm(
            TWO_NODES,
            Layout::V2DelegatedUser,
            "packrun-gpus-user.sh",
            240,
        ),
        &[
            COMMON,
            &[
                "gpu-user-state",
                "gpu-user-bound-only",
                "gpu-user-env",
                "gpu-user-node",
            ],
        ]
        .concat(),
    );
}

/// The kernel modules private networks need, which Debian's kernel has as
/// modules (the development machines' kernel has them built in, except
/// netem, which it lacks).
const NET_MODULES: &[&str] = &["veth", "bridge", "sch_tbf", "sch_netem"];

/// The checks of scenarios/packrun-networks.sh, each named `PREFIX-…`.
fn network_checks(prefix: &str) -> Vec<String> {
    [
        "modules",
        "doctor",
        "run",
        "all-completed",
        "two-runs-talk",
        "devices-server",
        "devices-client",
        "devices-last",
        "devices-other",
        "devices-alone",
        "unreachable-from-other",
        "unreachable-from-alone",
        "unreachable-from-host",
        "rate",
        "delay",
        "loss",
        "counted-tx",
        "counted-rx",
        "counted-packets",
        "uncounted",
        "leaves-no-link",
        "leaves-no-namespace",
        "leaves-no-process",
        "leaves-no-cgroup",
        "sigint-exit",
        "sigint-leaves-no-link",
        "sigint-leaves-no-namespace",
        "sigint-leaves-no-process",
        "sigint-leaves-no-cgroup",
        "resume-after-sigkill",
        "resume-each-run-once",
        "resume-leaves-no-link",
        "resume-leaves-no-namespace",
        "resume-leaves-no-process",
        "resume-leaves-no-cgroup",
        "results-owned",
    ]
    .iter()
    .map(|c| format!("{prefix}-{c}"))
    .collect()
}

// Private networks where the kernel has netem (the development machines'
// has not): two runs talk, others cannot reach them, rate, delay and loss
// shape the links, traffic lands in runs.csv, and nothing is left.
#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn private_networks_as_root_on_cgroup_v2_talk_shape_count_and_leave_nothing() {
    let mut vm = vm(TWO_NODES, Layout::V2, "packrun-networks.sh", 480);
    vm.modules = NET_MODULES;
    let checks = network_checks("net");
    let expected: Vec<&str> = COMMON
        .iter()
        .copied()
        .chain(checks.iter().map(String::as_str))
        .collect();
    run_scenario("packrun-networks", vm, &expected);
}

// The same batch as an ordinary user in a delegated cgroup v2 subtree.
#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn private_networks_as_an_ordinary_user_in_a_delegated_subtree_talk_shape_count_and_leave_nothing()
{
    let mut vm = vm(
        TWO_NODES,
        Layout::V2DelegatedUser,
        "packrun-networks-user.sh",
        480,
    );
    // The user's set-up, then the batch as root has it.
    vm.scenarios.push("packrun-networks.sh");
    vm.modules = NET_MODULES;
    let checks = network_checks("user-net");
    let expected: Vec<&str> = COMMON
        .iter()
        .copied()
        .chain(["user-net-uid", "user-net-userns"])
        .chain(checks.iter().map(String::as_str))
        .collect();
    run_scenario("packrun-networks-user", vm, &expected);
}

/// The rows of a runs.csv blob, as column name → value.
fn csv_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let headers = rows.headers().expect("runs.csv header").clone();
    rows.records()
        .map(|r| {
            let r = r.expect("runs.csv row");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

// packrun without root: uid 1000 in a cgroup v2 subtree delegated to it as
// systemd delegates one to a user, with no subordinate ids. Runs get a user
// namespace mapping root inside to the user alone.
#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn packrun_as_an_ordinary_user_in_a_delegated_cgroup_v2_subtree() {
    let vm = vm(TWO_NODES, Layout::V2DelegatedUser, "packrun-user.sh", 480);
    let expected = [
        COMMON,
        &[
            // The guest's set-up.
            "user-uid",
            "user-no-capabilities",
            "user-home",
            "user-no-subuid",
            "user-in-delegated-cgroup",
            "user-owns-delegated-cgroup",
            "user-parent-not-owned",
            "user-controllers",
            "user-can-mkdir-and-move",
            "user-can-write-subtree-control",
            "user-can-set-limits",
            "user-probe-undone",
            // packrun.
            "user-doctor",
            "user-run",
            "user-completed",
            "user-oom",
            "user-timeout",
            "user-cpus-where",
            "user-mems-where",
            "user-cpus-oom",
            "user-mems-oom",
            "user-cpus-timeout",
            "user-mems-timeout",
            "user-inside-uid",
            "user-inside-uid-map",
            "user-disk-run",
            "user-disk-hog",
            "user-disk-neighbour",
            "user-exec-true",
            "user-exec-uid-map",
            "user-inotify-each-run-a-share",
            "user-inotify-user-keeps-some",
            "user-leaves-only-the-leaf",
            "user-results-owned",
        ],
    ]
    .concat();
    let stdout = run_scenario("packrun-user", vm, &expected);
    check_packrun_user(&stdout);
}

/// Host side of scenarios/packrun-user.sh: runs.csv's states, and every
/// run's cpus and mems against what it printed from inside.
fn check_packrun_user(stdout: &str) {
    let rows = csv_rows(&blob(stdout, "runs.csv"));
    let logs = blobs(stdout, "log ");
    let mut states: Vec<(String, String)> = Vec::new();
    for row in &rows {
        let (job, key) = (&row["job"], &row["run_key"]);
        states.push((job.clone(), row["state"].clone()));
        let (_, log) = logs
            .iter()
            .find(|(name, _)| name.ends_with(&format!("/{key}.out")))
            .unwrap_or_else(|| panic!("{job}: no stdout log for run {key}"));
        let line = log
            .lines()
            .find(|l| l.starts_with("where "))
            .unwrap_or_else(|| panic!("{job}: the run printed nothing:\n{log}"));
        for (col, name) in [("cpus", "cpus"), ("mems", "mems")] {
            assert_eq!(
                cpus(field(line, name).unwrap_or("?")),
                cpus(&row[col]),
                "{job}: {name} inside vs runs.csv"
            );
        }
        if job == "where" {
            assert_eq!(field(line, "uid"), Some("0"), "{job}: root inside");
            assert_eq!(
                field(line, "uid_map"),
                Some("0:1000:1"),
                "{job}: root inside is the user outside, and nothing else"
            );
        }
    }
    states.sort();
    let want = [
        ("oom", "OUT_OF_MEMORY"),
        ("timeout", "TIMEOUT"),
        ("where", "COMPLETED"),
    ]
    .map(|(j, s)| (j.to_owned(), s.to_owned()));
    assert_eq!(states, want, "runs.csv states");
}

// A host whose root is the initramfs: pivot_root(2) refuses it, so packrun
// needs another way into a run's root, one a run cannot climb out of.
#[test]
#[ignore = "needs qemu, a Debian kernel, static busybox and the musl target (tests/vm/ci-install.sh)"]
fn packrun_on_a_host_whose_root_is_the_initramfs() {
    let mut vm = vm(TWO_NODES, Layout::V2, "packrun-initramfs.sh", 300);
    vm.initramfs_root = true;
    let expected = [
        COMMON,
        &[
            "guest-root-is-initramfs",
            "initramfs-pivot-root-refused",
            "initramfs-run",
            "initramfs-completed",
            "initramfs-escape-completed",
            "initramfs-escape-chroot-denied",
            "initramfs-escape-dotdot-is-root",
            "initramfs-escape-dotdotdot-is-root",
            "initramfs-keep-chroot-refused",
            "initramfs-exec-true",
            "initramfs-leaves-no-cgroup",
        ],
    ]
    .concat();
    let stdout = run_scenario("packrun-initramfs", vm, &expected);
    let mut states: Vec<(String, String)> = csv_rows(&blob(&stdout, "runs.csv"))
        .into_iter()
        .map(|r| (r["job"].clone(), r["state"].clone()))
        .collect();
    states.sort();
    let want = [
        ("escape", "COMPLETED"),
        ("hello", "COMPLETED"),
        ("hello", "COMPLETED"),
        ("keep_chroot", "ERROR"),
    ]
    .map(|(j, s)| (j.to_owned(), s.to_owned()));
    assert_eq!(states, want, "runs.csv states");
}
