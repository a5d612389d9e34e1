//! Privileged tests of `container::spawn`: real namespaces, mounts and
//! seccomp. They need root and are `#[ignore]`d with that reason; run by
//! another user with `--include-ignored` they fail saying so. Every
//! container is waited for or dropped (which kills it).

mod common;
use common::privileged;

use packrun::container::{spawn, Container, ContainerConfig, JobStatus, SetupError};
use packrun::jobfile::{Mount, Rootfs};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

fn config(argv: &[&str]) -> (ContainerConfig, File, File) {
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let (err_r, err_w) = nix::unistd::pipe().unwrap();
    let cfg = ContainerConfig {
        hostname: "box".into(),
        ..ContainerConfig::new(argv.iter().map(|s| s.to_string()).collect(), out_w, err_w)
    };
    (cfg, File::from(out_r), File::from(err_r))
}

struct Output {
    status: JobStatus,
    stdout: String,
    stderr: String,
}

fn start(cfg: ContainerConfig) -> Result<Container, SetupError> {
    spawn(cfg, None, &mut |_| Ok(()))
}

/// Runs to the end, collecting the job's output.
fn finish(c: Container, mut out: File, mut err: File) -> Output {
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    // Only how the job ended; the I/O figures are checked in tests/exec.rs.
    let status = JobStatus {
        io_read_bytes: None,
        io_write_bytes: None,
        ..c.wait().unwrap()
    };
    Output {
        status,
        stdout,
        stderr: reader.join().unwrap(),
    }
}

fn run_with(argv: &[&str], tweak: impl FnOnce(&mut ContainerConfig)) -> Output {
    let (mut cfg, out, err) = config(argv);
    tweak(&mut cfg);
    let c = start(cfg).unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    finish(c, out, err)
}

fn sh(script: &str) -> Output {
    run_with(&["/bin/sh", "-c", script], |_| {})
}

const EXITED_0: JobStatus = JobStatus {
    exit_code: Some(0),
    signal: None,
    io_read_bytes: None,
    io_write_bytes: None,
};

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn job_is_pid_2_under_init_in_an_empty_pid_namespace() {
    if !privileged("job_is_pid_2_under_init_in_an_empty_pid_namespace") {
        return;
    }
    // Shell builtins only: no extra process shows up in /proc.
    let out = sh("echo $$ $PPID; for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    assert_eq!(out.status, EXITED_0, "{}", out.stderr);
    assert_eq!(out.stdout, "2 1\n1\n2\n");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn job_cannot_see_or_signal_host_processes() {
    if !privileged("job_cannot_see_or_signal_host_processes") {
        return;
    }
    let me = std::process::id();
    let out = sh(&format!(
        "kill -0 {me} 2>/dev/null && echo signalled; test -e /proc/{me} && echo visible; echo done"
    ));
    assert_eq!(out.stdout, "done\n", "{}", out.stderr);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn hostname_is_the_one_given() {
    if !privileged("hostname_is_the_one_given") {
        return;
    }
    let out = run_with(&["cat", "/proc/sys/kernel/hostname"], |c| {
        c.hostname = "run-7".into()
    });
    assert_eq!(out.stdout, "run-7\n", "{}", out.stderr);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn only_loopback_exists_and_it_is_up() {
    if !privileged("only_loopback_exists_and_it_is_up") {
        return;
    }
    let out = sh("ls /sys/class/net; cat /sys/class/net/lo/flags");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("lo"), "{}{}", out.stdout, out.stderr);
    let flags = u32::from_str_radix(lines.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "IFF_UP not set in {flags:#x}");
    assert_eq!(lines.next(), None);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn host_tree_is_read_only_and_tmp_is_private_and_writable() {
    if !privileged("host_tree_is_read_only_and_tmp_is_private_and_writable") {
        return;
    }
    let name = format!("packrun-test-{}", std::process::id());
    let out = sh(&format!(
        "touch /usr/{name} 2>&1; touch /etc/{name} 2>&1; ls -A /tmp | wc -l; echo x > /tmp/{name} && cat /tmp/{name}"
    ));
    assert_eq!(out.status, EXITED_0, "{}", out.stderr);
    assert_eq!(
        out.stdout.matches("Read-only file system").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("0\nx\n"), "{}", out.stdout);
    assert!(
        !PathBuf::from("/tmp").join(&name).exists(),
        "/tmp/{name} leaked to the host"
    );
    assert!(!PathBuf::from("/usr").join(&name).exists());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn proc_sys_is_read_only_and_interrupts_are_masked() {
    if !privileged("proc_sys_is_read_only_and_interrupts_are_masked") {
        return;
    }
    // (/proc/kcore and /proc/sysrq-trigger are masked too, but not every
    // kernel has them.) Root inside with CAP_SYS_ADMIN kept: the mounts, not the missing
    // capabilities, must stop these writes.
    let out = run_with(
        &[
            "/bin/sh",
            "-c",
            "echo x > /proc/sys/kernel/hostname; echo 1 > /proc/sys/vm/drop_caches; cat /proc/interrupts /proc/timer_list | wc -c",
        ],
        |c| c.capabilities = vec!["CAP_SYS_ADMIN".into(), "CAP_DAC_OVERRIDE".into()],
    );
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        2,
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "0\n");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn minimal_dev_has_the_usual_nodes_and_a_private_pts() {
    if !privileged("minimal_dev_has_the_usual_nodes_and_a_private_pts") {
        return;
    }
    let out = sh("ls /dev | tr '\\n' ' '; head -c 4 /dev/zero | wc -c; ls /dev/pts | tr '\\n' ' '");
    assert_eq!(
        out.stdout,
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero 4\nptmx ",
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn seccomp_denies_namespaces_mounts_and_keyrings_even_with_cap_sys_admin() {
    if !privileged("seccomp_denies_namespaces_mounts_and_keyrings_even_with_cap_sys_admin") {
        return;
    }
    let py = r#"
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(nr, *args):
    r = libc.syscall(nr, *args)
    return errno.errorcode.get(ctypes.get_errno(), "OK") if r == -1 else "OK"
print("keyctl", err(250, 0, 0, 0, 0))                   # KEYCTL_GET_KEYRING_ID
print("unshare", err(272, 0x10000000))                  # CLONE_NEWUSER
print("mount", err(165, b"none", b"/tmp", b"tmpfs", 0, None))
print("clone3", err(435, None, 0))
print("bpf", err(321, 0, None, 0))
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock OK")
except OSError as e:
    print("vsock", errno.errorcode[e.errno])
"#;
    let out = run_with(&["python3", "-c", py], |c| {
        c.capabilities = vec!["CAP_SYS_ADMIN".into()]
    });
    assert_eq!(out.status, EXITED_0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "keyctl EPERM\nunshare EPERM\nmount EPERM\nclone3 ENOSYS\nbpf EPERM\nvsock EPERM\n"
    );
    let out = run_with(&["unshare", "--user", "true"], |_| {});
    assert_eq!(out.status.exit_code, Some(1));
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn capabilities_are_all_dropped_unless_asked_for() {
    if !privileged("capabilities_are_all_dropped_unless_asked_for") {
        return;
    }
    let script = "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status | tr -s '\\t' ' '; grep NoNewPrivs /proc/self/status";
    let out = sh(script);
    assert_eq!(
        out.stdout,
        "CapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs:\t1\n"
    );
    let out = run_with(&["/bin/sh", "-c", script], |c| {
        c.capabilities = vec!["CAP_NET_RAW".into()];
        c.user = Some((65534, 65534));
    });
    assert!(
        out.stdout
            .starts_with("CapPrm: 0000000000002000\nCapEff: 0000000000002000\n"),
        "{}",
        out.stdout
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn user_ids_and_rlimits_apply_to_the_job() {
    if !privileged("user_ids_and_rlimits_apply_to_the_job") {
        return;
    }
    let out = run_with(
        &["/bin/sh", "-c", "id -u; id -g; id -G; ulimit -n; ulimit -c"],
        |c| {
            c.user = Some((1234, 4321));
            c.rlimits = vec![("core".into(), 0)];
        },
    );
    assert_eq!(out.stdout, "1234\n4321\n4321\n1024\n0\n", "{}", out.stderr);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn missing_executable_is_a_setup_error_naming_execve_and_enoent() {
    if !privileged("missing_executable_is_a_setup_error_naming_execve_and_enoent") {
        return;
    }
    let (cfg, _out, _err) = config(&["/nonexistent"]);
    let e = start(cfg).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container setup failed at execve /nonexistent: No such file or directory (ENOENT)"
    );
    let (cfg, _out, _err) = config(&["no-such-command-anywhere"]);
    assert_eq!(
        start(cfg).unwrap_err().step,
        "execve no-such-command-anywhere"
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn missing_workdir_is_a_setup_error() {
    if !privileged("missing_workdir_is_a_setup_error") {
        return;
    }
    let (mut cfg, _out, _err) = config(&["true"]);
    cfg.workdir = Some("/no/such/dir".into());
    let e = start(cfg).unwrap_err();
    assert_eq!(e.step, "chdir to workdir /no/such/dir");
    assert!(e.message.ends_with("(ENOENT)"), "{e}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn failing_place_kills_init_and_is_a_setup_error() {
    if !privileged("failing_place_kills_init_and_is_a_setup_error") {
        return;
    }
    let (cfg, _out, _err) = config(&["true"]);
    let mut seen = 0;
    let e = spawn(cfg, None, &mut |pid| {
        seen = pid;
        Err(std::io::Error::other("cgroup full"))
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container setup failed at place in cgroups: cgroup full"
    );
    assert!(seen > 0);
    // Reaped: the pid no longer exists (not even as a zombie).
    assert!(!PathBuf::from(format!("/proc/{seen}")).exists());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn exit_codes_and_signals_come_back_exactly() {
    if !privileged("exit_codes_and_signals_come_back_exactly") {
        return;
    }
    assert_eq!(
        sh("exit 7").status,
        JobStatus {
            exit_code: Some(7),
            signal: None,
            ..JobStatus::default()
        }
    );
    assert_eq!(
        sh("kill -TERM $$").status,
        JobStatus {
            exit_code: None,
            signal: Some(15),
            ..JobStatus::default()
        }
    );
    assert_eq!(
        sh("kill -KILL $$").status,
        JobStatus {
            exit_code: None,
            signal: Some(9),
            ..JobStatus::default()
        }
    );
    assert_eq!(
        sh("exit 137").status,
        JobStatus {
            exit_code: Some(137),
            signal: None,
            ..JobStatus::default()
        }
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn sigterm_to_init_is_forwarded_to_the_job() {
    if !privileged("sigterm_to_init_is_forwarded_to_the_job") {
        return;
    }
    let (cfg, out, err) = config(&["sleep", "100"]);
    let c = start(cfg).unwrap();
    c.signal(libc::SIGTERM).unwrap();
    assert_eq!(
        finish(c, out, err).status,
        JobStatus {
            exit_code: None,
            signal: Some(libc::SIGTERM),
            ..JobStatus::default()
        }
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn killing_init_kills_the_whole_namespace() {
    if !privileged("killing_init_kills_the_whole_namespace") {
        return;
    }
    let marker = format!("{}.{}", 900 + std::process::id() % 97, std::process::id());
    let (cfg, out, err) = config(&["/bin/sh", "-c", &format!("sleep {marker} & sleep {marker}")]);
    let c = start(cfg).unwrap();
    c.signal(libc::SIGKILL).unwrap();
    let res = finish(c, out, err);
    assert_eq!(res.status.signal, Some(libc::SIGKILL));
    assert_eq!(processes_with(&marker), 0);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn double_forked_daemon_dies_when_the_job_exits() {
    if !privileged("double_forked_daemon_dies_when_the_job_exits") {
        return;
    }
    let marker = format!("{}.{}", 800 + std::process::id() % 97, std::process::id());
    // The daemon keeps no stdio open, so only init's exit can end it.
    let out = sh(&format!(
        "(setsid sleep {marker} </dev/null >/dev/null 2>&1 &); exit 3"
    ));
    assert_eq!(out.status.exit_code, Some(3));
    assert_eq!(
        processes_with(&marker),
        0,
        "the daemon survived its container"
    );
}

/// Host processes whose command line contains `needle`.
fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn binds_honour_read_only_and_writable_dirs_reach_the_host() {
    if !privileged("binds_honour_read_only_and_writable_dirs_reach_the_host") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "input\n").unwrap();
    let outdir = tempfile::tempdir().unwrap();
    let out = run_with(
        &[
            "/bin/sh",
            "-c",
            "cat /mnt/in.txt; touch /mnt/x 2>&1; echo done > /srv/out.txt",
        ],
        |c| {
            c.mounts = vec![Mount {
                source: data.path().into(),
                target: "/mnt".into(),
                read_only: true,
            }];
            c.writable = vec![(outdir.path().into(), "/srv".into())];
            c.workdir = Some("/srv".into());
        },
    );
    assert_eq!(out.status, EXITED_0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("input\n") && out.stdout.contains("Read-only file system"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(outdir.path().join("out.txt")).unwrap(),
        "done\n"
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn env_is_only_what_was_given_plus_a_default_path_home_and_user() {
    if !privileged("env_is_only_what_was_given_plus_a_default_path_home_and_user") {
        return;
    }
    let out = run_with(&["/usr/bin/env"], |c| {
        c.env = vec![("A".into(), "1".into()), ("USER".into(), "me".into())]
    });
    assert_eq!(
        out.stdout,
        format!(
            "A=1\nUSER=me\nPATH={}\nHOME=/root\nLOGNAME=root\n",
            packrun::container::DEFAULT_PATH
        )
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_directory_rootfs_becomes_the_read_only_root() {
    if !privileged("a_directory_rootfs_becomes_the_read_only_root") {
        return;
    }
    // A tiny root file system: dash and the two libraries it links.
    let rootfs = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("/bin/dash", "bin/sh"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ] {
        assert!(
            std::path::Path::new(from).exists(),
            "a_directory_rootfs_becomes_the_read_only_root builds its root from Debian's dash and \
             glibc, and there is no {from}: install `dash` and `libc6` (x86-64 Debian layout)"
        );
        let to = rootfs.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    let marker = rootfs.path().join("marker");
    std::fs::write(&marker, "mine\n").unwrap();
    let out = run_with(&["/bin/sh", "-c", "read m < /marker; echo $m; echo x > /new 2>/dev/null || echo ro; echo y > /tmp/t && echo tmp; test -e /usr || echo no-usr; test -c /dev/null && echo dev"], |c| {
        c.rootfs = Rootfs::Dir(rootfs.path().into())
    });
    assert_eq!(out.stdout, "mine\nro\ntmp\nno-usr\ndev\n", "{}", out.stderr);
    assert!(!rootfs.path().join("new").exists());
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn memory_policy_applies_to_the_job() {
    if !privileged("memory_policy_applies_to_the_job") {
        return;
    }
    let out = run_with(
        &[
            "/bin/sh",
            "-c",
            "grep -c ' interleave:0 ' /proc/self/numa_maps",
        ],
        |c| {
            c.mempolicy = Some((
                packrun::jobfile::MemPolicy::Interleave,
                "0".parse().unwrap(),
            ));
        },
    );
    assert!(
        !out.stderr.contains("No such file"),
        "memory_policy_applies_to_the_job needs a kernel with NUMA (CONFIG_NUMA, \
         /proc/self/numa_maps): {}",
        out.stderr.trim()
    );
    assert_ne!(out.stdout.trim(), "0", "{}", out.stderr);
    assert_eq!(out.status, EXITED_0);
}
