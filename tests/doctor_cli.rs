//! `packrun doctor` through the real binary: on fake trees (exit 0 or 3 and
//! the fix printed) and on this machine.

mod common;
use common::*;
use std::path::Path;

/// A fake root of a healthy cgroup v2 machine (removed on drop).
struct Tree(tempfile::TempDir);

impl Tree {
    fn healthy() -> Tree {
        let t = Tree(tempfile::tempdir().unwrap());
        t.put(
            "proc/self/mountinfo",
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        t.put(
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"] {
            t.put(&format!("proc/self/ns/{ns}"), "");
            t.put(&format!("proc/sys/user/max_{ns}_namespaces"), "1000\n");
        }
        t.put("proc/self/status", "Seccomp:\t0\n");
        t.put(
            "proc/sys/kernel/seccomp/actions_avail",
            "kill_process errno allow\n",
        );
        // Online CPUs as on this machine, so packrun's affinity covers them.
        t.put(
            "sys/devices/system/cpu/online",
            &std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap(),
        );
        t.put("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        t.put("proc/filesystems", "nodev\ttmpfs\n\text4\nnodev\toverlay\n");
        t
    }
    fn put(&self, rel: &str, text: &str) {
        let p = self.0.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn doctor(root: Option<&Path>) -> (i32, String) {
    let mut args = vec!["doctor".to_string()];
    if let Some(r) = root {
        args.push("--root".into());
        args.push(r.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _) = packrun(&args);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_healthy_machine_as_root_exits_zero() {
    if !privileged("a_healthy_machine_as_root_exits_zero") {
        return;
    }
    let t = Tree::healthy();
    let (code, out) = doctor(Some(t.path()));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("verdict: runs can start (0 warning(s))\n"),
        "{out}"
    );
}

#[test]
fn a_missing_controller_exits_three_and_prints_the_fix() {
    let t = Tree::healthy();
    t.put("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory\n");
    let (code, out) = doctor(Some(t.path()));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("FAIL  cgroup controllers  missing: pids"),
        "{out}"
    );
    assert!(
        out.contains("fix: a kernel with the pids controller (CONFIG_CGROUP_PIDS)"),
        "{out}"
    );
    assert!(out.contains("verdict: runs cannot start"), "{out}");
}

#[test]
fn doctor_on_this_machine_ends_with_a_verdict_matching_its_exit_code() {
    let (code, out) = doctor(None);
    let last = out.lines().last().unwrap();
    match code {
        0 => assert!(last.starts_with("verdict: runs can start"), "{out}"),
        3 => assert!(last.starts_with("verdict: runs cannot start"), "{out}"),
        c => panic!("exit code {c}: {out}"),
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with("FAIL")).count() > 0,
        code == 3,
        "{out}"
    );
}
