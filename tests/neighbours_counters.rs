//! What the kernel counts per user or for the whole machine: one run takes
//! all it can of a counter and holds it, and a second run, host root and
//! a uid-0 host process without capabilities then still get a little of
//! it. Through the real binary, as root. `PACKRUN_TEST_BIN` points the
//! tests at another packrun binary (an older one, to see them fail).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// Takes or uses a counter (see the file's docstring).
const COUNTERS: &str = include_str!("helpers/counters.py");

/// Every test here needs two CPUs at once (the hog's and its neighbour's)
/// of a machine that may have only two: one at a time, or two hogs would
/// hold both CPUs while their neighbours wait for one.
static CPUS: Mutex<()> = Mutex::new(());

fn bin() -> String {
    std::env::var("PACKRUN_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A `packrun exec` whose job holds all it got of a counter until dropped.
struct Hog {
    child: Child,
    held: u64,
}

impl Hog {
    fn start(what: &str, flags: &[&str]) -> Hog {
        let mut args = vec!["exec", "--cpus", "1", "--time-limit", "300s"];
        args.extend(flags);
        if !flags.contains(&"--memory") {
            args.extend(["--memory", "64MiB"]);
        }
        args.extend(["--", "python3", "-c", COUNTERS, what, "hog"]);
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("packrun starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut hog = Hog { child, held: 0 };
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("held ") {
                        hog.held = n.parse().unwrap();
                        return hog;
                    }
                }
                _ => panic!("the {what} hog ended without holding anything"),
            }
        }
    }

    /// Still holding: the run is alive.
    fn holding(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        // packrun cancels the run (kills its cgroup) and cleans up.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A second run using a little of the counter.
fn in_a_run(what: &str, flags: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec!["exec", "--format", "json", "--cpus", "1"];
    args.extend(flags);
    args.extend(["--", "python3", "-c", COUNTERS, what, "run"]);
    let out = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("packrun runs");
    let rec = record(&out);
    (out, rec)
}

/// Host root (`host`) or a uid-0 host process without capabilities
/// (`nocaps`) using a little of the counter.
fn on_the_host(what: &str, role: &str) -> Output {
    Command::new("python3")
        .args(["-c", COUNTERS, what, role])
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs")
}

/// The hog takes `what`; a run with `run_flags`, host root and a uid-0
/// process without capabilities each use a little of it.
fn neighbours_keep_a_share(what: &str, hog_flags: &[&str], run_flags: &[&str]) -> u64 {
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let mut hog = Hog::start(what, hog_flags);
    let held = hog.held;
    for role in ["host", "nocaps"] {
        let out = on_the_host(what, role);
        assert!(
            out.status.success() && stdout(&out) == "ok\n",
            "{role} next to a run holding {held} ({what}): {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (out, rec) = in_a_run(what, run_flags);
    assert_eq!(
        stdout(&out),
        "ok\n",
        "a run next to a hog holding {held} ({what}): {rec}"
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert!(
        hog.holding(),
        "the {what} hog ended before its neighbours ran"
    );
    held
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn one_io_setup_of_a_run_leaves_aio_contexts_to_the_host_and_other_runs() {
    if !privileged("aio contexts") {
        return;
    }
    // By default a run has no AIO at all (io_setup says ENOSYS) ...
    let held = neighbours_keep_a_share("aio", &[], &["--aio"]);
    assert_eq!(held, 0, "a run without --aio made an AIO context");
    // ... and one that asks gets a context of at most its share.
    let held = neighbours_keep_a_share("aio", &["--aio"], &["--aio"]);
    assert!(held > 0 && held < 65536, "{held}");
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_its_inotify_instances_leaves_some_to_others() {
    if privileged("inotify instances") {
        neighbours_keep_a_share("inotify", &[], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_its_inotify_watches_leaves_some_to_others() {
    if privileged("inotify watches") {
        // Past the host tree's files the hog watches files of its own
        // /tmp, which takes more than 64 MiB.
        neighbours_keep_a_share("watches", &["--memory", "256MiB"], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_its_fanotify_groups_leaves_some_to_others() {
    if privileged("fanotify groups") {
        neighbours_keep_a_share("fanotify", &[], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_the_realtime_signals_it_may_queue_leaves_some_to_others() {
    if privileged("pending signals") {
        neighbours_keep_a_share("sigpending", &[], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_its_message_queue_bytes_leaves_some_to_others() {
    if privileged("POSIX message queues") {
        neighbours_keep_a_share("mqueue", &[], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_the_memory_it_may_lock_leaves_some_to_others() {
    if privileged("locked memory") {
        neighbours_keep_a_share("memlock", &[], &[]);
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_holding_all_its_ptys_leaves_some_to_others() {
    if privileged("ptys") {
        neighbours_keep_a_share("pty", &[], &[]);
    }
}

/// NS_GET_OWNER_UID of the run's user namespace, as the run sees it, and
/// whether its pid namespace belongs to it (NS_GET_USERNS).
const OWNER: &str = "import fcntl,os,struct
u=os.open('/proc/self/ns/user',os.O_RDONLY)
owner=struct.unpack('I',fcntl.ioctl(u,0xb704,bytes(4)))[0]
p=os.open('/proc/self/ns/pid',os.O_RDONLY)
pid_owner=fcntl.ioctl(p,0xb701)
print(owner, os.fstat(pid_owner).st_ino==os.fstat(u).st_ino)";

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_runs_user_namespace_belongs_to_the_host_id_of_its_root_and_owns_its_pid_namespace() {
    if !privileged("user namespace owner") {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(bin())
        .args(["exec", "--format", "json", "--", "python3", "-c", OWNER])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The owner's host id is the run's root (0 inside); host root would
    // show as the overflow id 65534.
    assert_eq!(stdout(&out), "0 True\n", "{}", record(&out));
}
