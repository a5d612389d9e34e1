//! `packrun exec` as root: one isolated, limited, accounted run, through the real binary.

mod common;
use common::*;

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn job_is_init_s_child_in_an_empty_pid_namespace() {
    if !privileged("job_is_init_s_child_in_an_empty_pid_namespace") {
        return;
    }
    let (out, rec) = exec(
        &[],
        &[
            "/bin/sh",
            "-c",
            "echo $$ $PPID; ls /proc | grep -c '^[0-9]'",
        ],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0], "2 1",
        "job should be pid 2, child of init (pid 1): {s}"
    );
    // init, sh and the pipeline's ls and grep: nothing of the host.
    let n: u32 = lines[1].trim().parse().unwrap();
    assert!(n <= 4, "the job sees {n} processes: {s}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn job_cannot_signal_host_processes() {
    if !privileged("job_cannot_signal_host_processes") {
        return;
    }
    let me = std::process::id().to_string();
    let (out, rec) = exec(
        &[],
        &[
            "/bin/sh",
            "-c",
            &format!("kill -0 {me} && echo reached || echo unreachable"),
        ],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(stdout(&out).trim(), "unreachable");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn hostname_is_the_run_s_own() {
    if !privileged("hostname_is_the_run_s_own") {
        return;
    }
    let (out, _) = exec(
        &["--hostname", "sealed-run"],
        &["/bin/cat", "/proc/sys/kernel/hostname"],
    );
    assert_eq!(stdout(&out).trim(), "sealed-run");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "sealed-run");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn only_loopback_exists_and_it_is_up() {
    if !privileged("only_loopback_exists_and_it_is_up") {
        return;
    }
    let (out, rec) = exec(&[], &["/bin/cat", "/proc/net/dev"]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let ifaces: Vec<String> = stdout(&out)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{}", stdout(&out));
    let (out, _) = exec(
        &[],
        &[
            "/bin/cat",
            "/sys/class/net/lo/operstate",
            "/sys/class/net/lo/flags",
        ],
    );
    let flags = stdout(&out);
    let f = u32::from_str_radix(
        flags.lines().nth(1).unwrap_or("0").trim_start_matches("0x"),
        16,
    )
    .unwrap_or(0);
    assert_eq!(f & 1, 1, "lo is not up: {flags}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn host_tree_is_read_only_and_tmp_is_private() {
    if !privileged("host_tree_is_read_only_and_tmp_is_private") {
        return;
    }
    let marker = format!("/tmp/packrun-private-{}", std::process::id());
    let script = format!("touch /usr/packrun-probe 2>/dev/null && echo wrote-usr; echo hi > {marker} && cat {marker}");
    let (out, rec) = exec(&[], &["/bin/sh", "-c", &script]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(
        stdout(&out).trim(),
        "hi",
        "the host tree must be read-only, /tmp writable"
    );
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the run's /tmp leaked onto the host"
    );
    assert!(!std::path::Path::new("/usr/packrun-probe").exists());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn cpus_and_memory_nodes_inside_match_what_was_asked() {
    if !privileged("cpus_and_memory_nodes_inside_match_what_was_asked") {
        return;
    }
    let last = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpu = (0..1024)
        .rev()
        .find(|&c| last.is_set(c).unwrap_or(false))
        .unwrap();
    let (out, rec) = exec(
        &["--cpuset", &cpu.to_string(), "--mems", "0"],
        &["/bin/grep", "_allowed_list", "/proc/self/status"],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let s = stdout(&out);
    assert!(s.contains(&format!("Cpus_allowed_list:\t{cpu}\n")), "{s}");
    assert!(s.contains("Mems_allowed_list:\t0\n"), "{s}");
    assert_eq!(rec["cpus"], cpu.to_string());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn allocation_over_the_limit_is_out_of_memory() {
    if !privileged("allocation_over_the_limit_is_out_of_memory") {
        return;
    }
    let alloc = helper("alloc");
    let (_, rec) = exec(&["--memory", "100MiB"], &[alloc.to_str().unwrap(), "300"]);
    assert_eq!(rec["state"], "OUT_OF_MEMORY", "{rec}");
    assert!(rec["oom_kills"].as_u64().unwrap() >= 1, "{rec}");
    assert_eq!(rec["memory_limit_bytes"], 100 << 20);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn page_cache_is_not_an_oom() {
    if !privileged("page_cache_is_not_an_oom") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bind = format!("{}:/out", dir.path().display());
    let (_, rec) = exec(
        &["--memory", "100MiB", "--bind", &bind],
        &[
            "/bin/dd",
            "if=/dev/zero",
            "of=/out/big",
            "bs=1M",
            "count=300",
            "status=none",
        ],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(rec["oom_kills"], 0);
    assert_eq!(
        std::fs::metadata(dir.path().join("big")).unwrap().len(),
        300 << 20
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn direct_io_writes_and_reads_are_counted_in_bytes() {
    if !privileged("direct_io_writes_and_reads_are_counted_in_bytes") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bind = format!("{}:/out", dir.path().display());
    let (_, rec) = exec(
        &["--bind", &bind],
        &[
            "/bin/dd",
            "if=/dev/zero",
            "of=/out/f",
            "bs=1M",
            "count=64",
            "oflag=direct",
            "status=none",
        ],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let written = rec["io_write_bytes"].as_u64().unwrap();
    assert!(
        (64 << 20..(64 << 20) + (1 << 20)).contains(&written),
        "io_write_bytes {written}: {rec}"
    );
    let (_, rec) = exec(
        &["--bind", &bind],
        &[
            "/bin/dd",
            "if=/out/f",
            "of=/dev/null",
            "bs=1M",
            "iflag=direct",
            "status=none",
        ],
    );
    let read = rec["io_read_bytes"].as_u64().unwrap();
    assert!(
        (64 << 20..(64 << 20) + (1 << 20)).contains(&read),
        "io_read_bytes {read}: {rec}"
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn fork_bomb_stops_at_the_pids_limit() {
    if !privileged("fork_bomb_stops_at_the_pids_limit") {
        return;
    }
    // Fork 200 sleepers, counting the forks that succeed.
    let py = "import os, time\nn = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)";
    let (out, rec) = exec(
        &["--pids", "64", "--time-limit", "20s"],
        &["/usr/bin/python3", "-c", py],
    );
    let n: u32 = stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no count: {rec}"));
    // init and python itself count too.
    assert!(
        (10..=62).contains(&n),
        "{n} forks under a pids limit of 64: {rec}"
    );
    // A real bomb ends too, and the host stays responsive.
    let (_, rec) = exec(
        &["--pids", "64", "--time-limit", "3s"],
        &["/bin/sh", "-c", "b() { b | b & }; b; sleep 10"],
    );
    assert!(
        ["TIMEOUT", "FAILED", "COMPLETED"].contains(&rec["state"].as_str().unwrap()),
        "{rec}"
    );
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn double_forked_daemon_dies_with_the_run() {
    if !privileged("double_forked_daemon_dies_with_the_run") {
        return;
    }
    let tag = format!("packrun-daemon-{}", std::process::id());
    let script = format!("(exec -a {tag} sleep 1000 &); exit 0");
    let (_, rec) = exec(&["--time-limit", "60s"], &["/bin/bash", "-c", &script]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let left = processes_with(&tag);
    assert!(left.is_empty(), "daemon still running: {left:?}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn wall_time_limit_ends_the_run_as_timeout_with_all_descendants() {
    if !privileged("wall_time_limit_ends_the_run_as_timeout_with_all_descendants") {
        return;
    }
    let tag = format!("packrun-sleeper-{}", std::process::id());
    let script = format!("(exec -a {tag}-child sleep 60) & exec -a {tag} sleep 60");
    let (_, rec) = exec(&["--time-limit", "1s"], &["/bin/bash", "-c", &script]);
    assert_eq!(rec["state"], "TIMEOUT", "{rec}");
    assert!(
        rec["termination_reason"]
            .as_str()
            .unwrap()
            .contains("wall time"),
        "{rec}"
    );
    assert!(processes_with(&tag).is_empty());
    eprintln!("wall_time_s of a 1 s limit: {}", rec["wall_time_s"]);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn cpu_time_limit_ends_a_burn_as_timeout() {
    if !privileged("cpu_time_limit_ends_a_burn_as_timeout") {
        return;
    }
    let burn = helper("burn");
    let (_, rec) = exec(
        &["--cpu-time-limit", "500ms"],
        &[burn.to_str().unwrap(), "30"],
    );
    assert_eq!(rec["state"], "TIMEOUT", "{rec}");
    assert!(
        rec["termination_reason"]
            .as_str()
            .unwrap()
            .contains("cpu time"),
        "{rec}"
    );
    eprintln!("cpu_time_s at a 0.5 s CPU limit: {}", rec["cpu_time_s"]);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn cpu_time_of_a_two_second_burn_is_within_two_percent() {
    if !privileged("cpu_time_of_a_two_second_burn_is_within_two_percent") {
        return;
    }
    let burn = helper("burn");
    let (out, rec) = exec(&[], &[burn.to_str().unwrap(), "2"]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let truth: f64 = stdout(&out).trim().parse().unwrap();
    let got = rec["cpu_time_s"].as_f64().unwrap();
    let err = (got - truth).abs() / truth;
    eprintln!(
        "burn: own getrusage {truth:.6} s, packrun cpu_time_s {got:.6} s, error {:.3}%",
        err * 100.0
    );
    assert!(err < 0.02, "cpu_time_s {got} vs truth {truth}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn peak_of_a_200_mib_allocation_is_within_three_percent() {
    if !privileged("peak_of_a_200_mib_allocation_is_within_three_percent") {
        return;
    }
    let alloc = helper("alloc");
    let (_, rec) = exec(&["--memory", "1GiB"], &[alloc.to_str().unwrap(), "200"]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    let peak = rec["memory_peak_bytes"].as_u64().unwrap() as f64;
    let truth = (200u64 << 20) as f64;
    let err = (peak - truth).abs() / truth;
    eprintln!(
        "alloc 200 MiB: memory_peak_bytes {peak}, error {:.3}%",
        err * 100.0
    );
    assert!(err < 0.03, "peak {peak} vs {truth}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn exit_code_and_signal_come_back_exactly() {
    if !privileged("exit_code_and_signal_come_back_exactly") {
        return;
    }
    let (out, rec) = exec(&[], &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(rec["state"], "FAILED");
    assert_eq!(rec["exit_code"], 3);
    assert_eq!(out.status.code(), Some(3));
    let (_, rec) = exec(&[], &["/bin/sh", "-c", "kill -SEGV $$"]);
    assert_eq!(rec["state"], "FAILED", "{rec}");
    assert_eq!(rec["signal"], 11, "{rec}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn missing_executable_is_an_error_naming_execve() {
    if !privileged("missing_executable_is_an_error_naming_execve") {
        return;
    }
    let (_, rec) = exec(&[], &["/nonexistent/tool"]);
    assert_eq!(rec["state"], "ERROR", "{rec}");
    let why = rec["termination_reason"].as_str().unwrap();
    assert!(why.contains("execve") && why.contains("ENOENT"), "{why}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn seccomp_and_dropped_capabilities_deny_with_eperm() {
    if !privileged("seccomp_and_dropped_capabilities_deny_with_eperm") {
        return;
    }
    // Each probe prints the errno name of its failure.
    let py = r#"
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print("unshare", call("unshare", 0x10000000))
print("mount", call("mount", b"none", b"/mnt", b"tmpfs", 0, None))
print("keyctl", call("syscall", 250, 0, 0, 0, 0, 0))
print("bpf", call("syscall", 321, 0, 0, 0))
print("perf_event_open", call("syscall", 298, 0, 0, -1, -1, 0))
print("userfaultfd", call("syscall", 323, 0))
print("io_uring_setup", call("syscall", 425, 1, 0))
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock ok")
except OSError as e:
    print("vsock", errno.errorcode[e.errno])
print(open("/proc/self/status").read().split("CapEff:")[1].split()[0])
"#;
    let (out, rec) = exec(&[], &["/usr/bin/python3", "-c", py]);
    assert_eq!(
        rec["state"],
        "COMPLETED",
        "{rec}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout(&out);
    for probe in [
        "unshare",
        "mount",
        "keyctl",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "vsock",
    ] {
        assert!(
            s.contains(&format!("{probe} EPERM")),
            "{probe} not denied with EPERM:\n{s}"
        );
    }
    assert_eq!(
        s.lines().last().unwrap(),
        "0000000000000000",
        "capabilities not dropped:\n{s}"
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn cgroup_of_a_killed_exec_is_removed_by_the_next_packrun() {
    if !privileged("cgroup_of_a_killed_exec_is_removed_by_the_next_packrun") {
        return;
    }
    // Alone: a packrun of a test beside this one would remove the orphan first.
    let alone = PACKRUNS.write().unwrap_or_else(|e| e.into_inner());
    let tag = format!("packrun-orphan-{}", std::process::id());
    let mut child = std::process::Command::new(BIN)
        // The tag goes by the environment, so that only the sleeper (not
        // packrun's own command line) carries it.
        .args([
            "exec",
            "--",
            "/bin/bash",
            "-c",
            "exec -a \"$ORPHAN_TAG\" sleep 60",
        ])
        .env("ORPHAN_TAG", &tag)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("packrun starts");
    let pid = child.id();
    let started = std::time::Instant::now();
    while processes_with(&tag).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SIGKILL: packrun cannot clean up; the run dies with its init, the
    // cgroup stays until the next packrun finds its owner gone.
    child.kill().unwrap();
    child.wait().unwrap();
    let orphans = cgroups_of(pid);
    assert!(!orphans.is_empty(), "nothing left to reap after SIGKILL");
    let (out, next) = packrun_alone(&alone, &["exec", "--", "/bin/true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("removed the cgroups of batch b{pid}-")),
        "no word of the orphan: {err}"
    );
    assert!(cgroups_of(pid).is_empty(), "left: {:?}", cgroups_of(pid));
    assert!(cgroups_of(next).is_empty());
    assert!(processes_with(&tag).is_empty());
}
