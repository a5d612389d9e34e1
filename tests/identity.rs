//! Every run is its own user: a user namespace in every run as root too,
//! and the host's private state out of its sight. Through the real binary,
//! as root.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A host path that exists only for this test, removed on drop.
struct HostPath(PathBuf);

impl Drop for HostPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CONNECT: &str = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint('connected', s.recv(5).decode())";

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_cannot_connect_to_a_unix_socket_under_the_hosts_run_unless_it_is_bound_in() {
    if !privileged("unix socket under /run") {
        return;
    }
    let path = HostPath(PathBuf::from(format!(
        "/run/packrun-test-{}.sock",
        std::process::id()
    )));
    let listener = std::os::unix::net::UnixListener::bind(&path.0).unwrap();
    // A daemon's socket as docker's is: root's, group-writable; here for all.
    std::fs::set_permissions(&path.0, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let served = std::thread::spawn(move || {
        let mut n = 0;
        // One connection is expected: the one through the explicit bind.
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::Write;
            let _ = s.write_all(b"hello");
            n += 1;
        }
        n
    });
    let sock = path.0.to_str().unwrap();
    let (out, rec) = exec(&[], &["python3", "-c", CONNECT, sock]);
    assert_eq!(
        rec["state"],
        "FAILED",
        "connected to the host's socket: {}",
        stdout(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FileNotFoundError"), "{err}");

    let bind = format!("{sock}:{sock}");
    let (out, rec) = exec(&["--bind", &bind], &["python3", "-c", CONNECT, sock]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(stdout(&out), "connected hello\n");
    assert_eq!(served.join().unwrap(), 1);
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_cannot_read_a_root_only_file_or_flock_a_file_under_the_hosts_run() {
    if !privileged("root-only file and flock") {
        return;
    }
    // In the host tree the run sees (the target directory, not /tmp).
    // Outside /tmp, which the run does not see at all (the target dir of a
    // fresh clone may lie below it): the file must be in sight, and refused.
    let secret = HostPath(PathBuf::from(format!(
        "/var/lib/packrun-test-{}.key",
        std::process::id()
    )));
    std::fs::write(&secret.0, "secret\n").unwrap();
    std::fs::set_permissions(
        &secret.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let lock = HostPath(PathBuf::from(format!(
        "/run/packrun-test-{}.lock",
        std::process::id()
    )));
    std::fs::write(&lock.0, "").unwrap();
    // Held here: a run that reached this file could not take it (-n).
    let held = std::fs::File::open(&lock.0).unwrap();
    nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let script = format!(
        "cat {s} 2>&1; ls /root 2>&1 | wc -l; test -e {l} && echo present || echo absent; flock -x -n {l} true; echo flock=$?",
        s = secret.0.display(),
        l = lock.0.display()
    );
    let (out, _) = exec(&[], &["sh", "-c", &script]);
    let text = stdout(&out);
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("\n0\n"), "the run's /root is empty: {text}");
    // The run's /run is its own: the host's file is not there, and the
    // one flock(1) makes there is the run's.
    assert!(text.contains("absent\nflock=0"), "{text}");
    // The host's own copy of the file was readable all along.
    assert_eq!(std::fs::read_to_string(&secret.0).unwrap(), "secret\n");
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn root_inside_is_uid_0_mapped_to_an_unprivileged_range_not_the_identity() {
    if !privileged("root inside") {
        return;
    }
    let (out, rec) = exec(
        &[],
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map /proc/self/gid_map",
        ],
    );
    let text = stdout(&out);
    let lines: Vec<Vec<u64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(text.lines().next(), Some("0"), "{text}");
    for m in &lines {
        assert_eq!(m[0], 0, "{text}");
        assert!(
            m[1] >= 65536,
            "host id {} is not an unprivileged one: {text}",
            m[1]
        );
        assert!(m[2] < 4294967295, "the identity map: {text}");
    }
    assert_eq!(
        rec["userns"].as_str().unwrap(),
        format!("{}:{}:{}", lines[0][0], lines[0][1], lines[0][2])
    );
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_run_has_its_own_cgroup_namespace_rooted_at_its_cgroup() {
    if !privileged("cgroup namespace") {
        return;
    }
    let (out, _) = exec(
        &[],
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup",
        ],
    );
    let text = stdout(&out);
    let host = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    let mut lines = text.lines();
    assert_ne!(
        lines.next(),
        host.to_str(),
        "the host's cgroup namespace: {text}"
    );
    // Every hierarchy shows the run's own cgroup as its root: no host
    // cgroup path (packrun's or anyone's) leaks in.
    for l in lines {
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        assert_eq!(path, "/", "{text}");
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn home_is_a_fresh_writable_dir_and_a_bind_below_tmp_works() {
    if !privileged("home and a bind below /tmp") {
        return;
    }
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(data.path().join("in.txt"), "input\n").unwrap();
    let bind = format!("{}:/tmp/data/in:ro", data.path().display());
    let (out, rec) = exec(
        &["--bind", &bind],
        &[
            "sh",
            "-c",
            "echo $HOME $USER $LOGNAME; touch $HOME/.rc && ls -A $HOME; cat /tmp/data/in/in.txt; find /home /run -mindepth 1 | wc -l",
        ],
    );
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(stdout(&out), "/root root root\n.rc\ninput\n0\n");
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn personality_is_limited_to_the_values_dockers_profile_allows() {
    if !privileged("personality") {
        return;
    }
    let script = "import ctypes\nlibc=ctypes.CDLL(None, use_errno=True)\nfor v in (0xffffffff, 0x0, 0x0400000, 0x0040000):\n    r=libc.personality(v)\n    print(hex(v), 'refused' if r == -1 else 'ok')";
    let (out, _) = exec(&[], &["python3", "-c", script]);
    assert_eq!(
        stdout(&out),
        "0xffffffff ok\n0x0 ok\n0x400000 refused\n0x40000 refused\n"
    );
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn runs_get_disjoint_id_ranges_writable_files_go_back_to_the_user_and_host_ids_are_recorded() {
    if !privileged("a batch's id ranges") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/identity.yaml");
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(cgroups_of(pid).is_empty());
    let rows = csv_rows(&dir.path().join("runs.csv"));
    let log = |r: &Row| std::fs::read_to_string(&r["stdout"]).unwrap();
    let range = |cell: &str| -> (u64, u64) {
        let f: Vec<u64> = cell.split(':').map(|n| n.parse().unwrap()).collect();
        (f[1], f[1] + f[2])
    };
    let own: Vec<&Row> = rows.iter().filter(|r| r["job"] == "own").collect();
    assert_eq!(own.len(), 2);
    for r in &own {
        // What the run saw inside is what its row says.
        let text = log(r);
        let m: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(text.lines().next(), Some("0"));
        assert_eq!(r["userns"], m.join(":"), "{text}");
    }
    let (a, b) = (range(&own[0]["userns"]), range(&own[1]["userns"]));
    let overlap_in_time =
        own[0]["start_time"] < own[1]["end_time"] && own[1]["start_time"] < own[0]["end_time"];
    if overlap_in_time {
        assert!(
            a.1 <= b.0 || b.1 <= a.0,
            "runs at once share ids: {a:?} {b:?}"
        );
    }
    // Each CPU has a block of its own, so ranges differ exactly when CPUs do.
    assert_eq!(own[0]["cpus"] == own[1]["cpus"], a == b, "{own:?}");

    let writer = rows.iter().find(|r| r["job"] == "writer").unwrap();
    assert!(
        log(writer).contains(" 0 0 "),
        "the job owned what it wrote, as root inside: {}",
        log(writer)
    );
    let scratch = dir
        .path()
        .join("scratch")
        .join(&writer["run_key"])
        .join("out");
    for p in [
        scratch.clone(),
        scratch.join("file"),
        scratch.join("dir"),
        scratch.join("dir/inner"),
    ] {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (0, 0),
            "{} is not the invoking user's",
            p.display()
        );
    }

    let host = rows.iter().find(|r| r["job"] == "hostids").unwrap();
    assert_eq!(host["userns"], "host");
    assert!(
        log(host).starts_with("0\n         0          0 4294967295"),
        "{}",
        log(host)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["userns"]["host_ids_jobs"],
        serde_json::json!(["hostids"])
    );
    assert!(
        manifest["userns"]["ids"]
            .as_str()
            .unwrap()
            .contains("by its first CPU"),
        "{manifest}"
    );
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_directory_roots_own_files_belong_to_the_runs_ids_inside() {
    if !privileged("a directory root's owners") {
        return;
    }
    // dash and the two libraries it links, and a root-only directory, as
    // an image's tree has them (owned by uid 0 on disk).
    let rootfs = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (from, to) in [
        ("/bin/dash", "bin/sh"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ] {
        let to = rootfs.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    }
    let private = rootfs.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("secret"), "image root's\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        private.join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (out, rec) = exec(
        &["--rootfs", rootfs.path().to_str().unwrap()],
        &["/bin/sh", "-c", "read s < /private/secret && echo $s"],
    );
    assert_eq!(
        rec["state"],
        "COMPLETED",
        "{rec} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "image root's\n");
    // Still the host's own on disk, and nothing was written into the tree.
    let m = std::fs::metadata(private.join("secret")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}
