//! A run keeps out of its neighbours' hair: the socket buffers it holds
//! count against its memory limit and show in its peak, and the locks it
//! takes on host files never reach the host's inodes. In each test a hog
//! run (`--cpus 1 --memory 64MiB`) takes the resource and holds it while
//! a second run and the host (this process, root) use a little of it.
//! Through the real binary, as root.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A hog and its neighbour take both CPUs of a small machine: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const LIMIT: u64 = 64 << 20;

/// A host path that exists only for this test, removed on drop.
struct HostPath(PathBuf);

impl HostPath {
    fn new(name: &str) -> HostPath {
        HostPath(PathBuf::from(format!(
            "/var/lib/packrun-test-{}-{name}",
            std::process::id()
        )))
    }
}

impl Drop for HostPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every hog script starts with: `ready(text)` tells the test it
/// holds the resource, `wait_done()` holds it until the test is through.
const SYNC: &str = r#"
import os, sys, time
sync = sys.argv[1]
def ready(text):
    with open(sync + "/ready.tmp", "w") as f:
        f.write(str(text))
    os.rename(sync + "/ready.tmp", sync + "/ready")
def wait_done():
    for _ in range(6000):
        if os.path.exists(sync + "/done"):
            return
        time.sleep(0.05)
"#;

/// A hog run in the background: `packrun exec --cpus 1 --memory 64MiB`
/// with a directory shared with the test bound in at its own path. Drop
/// lets it finish (or kills it) and removes the directory.
struct Hog {
    child: Option<Child>,
    sync: HostPath,
}

impl Hog {
    fn start(name: &str, script: &str, args: &[&str]) -> Hog {
        let sync = HostPath::new(&format!("{name}.sync"));
        std::fs::create_dir(&sync.0).unwrap();
        // The run's root inside is an unprivileged host id.
        std::fs::set_permissions(&sync.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let dir = sync.0.to_str().unwrap().to_string();
        let bind = format!("{dir}:{dir}");
        let code = format!("{SYNC}\n{script}");
        let child = Command::new(BIN)
            .args([
                "exec", "--cpus", "1", "--memory", "64MiB", "--format", "json", "--bind", &bind,
                "--", "python3", "-c", &code, &dir,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("packrun starts");
        Hog {
            child: Some(child),
            sync,
        }
    }

    /// What the hog wrote once it held the resource.
    fn ready(&mut self) -> String {
        let file = self.sync.0.join("ready");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(text) = std::fs::read_to_string(&file) {
                return text;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "the hog ended ({st}) before it held anything:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the hog never said it held the resource");
    }

    /// Lets the hog go and returns its usage record.
    fn finish(mut self) -> serde_json::Value {
        std::fs::write(self.sync.0.join("done"), "").unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        record(&out)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = std::fs::write(self.sync.0.join("done"), "");
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SIGTERM: packrun cancels the run and removes its cgroup.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

/// A second run pushes 1 MiB through a loopback TCP connection and a few
/// UDP datagrams, and the host does the same.
fn neighbours_use_sockets() {
    const LITTLE: &str = r#"
import socket, threading
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
data = b"y" * (1 << 20)
t = threading.Thread(target=c.sendall, args=(data,)); t.start()
got = 0
while got < len(data):
    got += len(a.recv(65536))
t.join()
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(4):
    s.sendto(b"z" * 1000, r.getsockname())
n = sum(len(r.recv(2000)) for _ in range(4))
print("tcp", got, "udp", n)
"#;
    let (out, rec) = exec(&["--cpus", "1"], &["python3", "-c", LITTLE]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(stdout(&out), "tcp 1048576 udp 4000\n");

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut a, _) = l.accept().unwrap();
    let sender = std::thread::spawn(move || c.write_all(&vec![b'y'; 1 << 20]).unwrap());
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got.len(), 1 << 20);
}

/// Checks a socket hog's record: held to its limit (its socket buffers
/// at most the limit and the kernel's one forced buffer per socket, see
/// docs/jobfile.md) or killed, and its peak at least what it held.
fn held_to_its_limit_and_in_its_peak(what: &str, held: u64, rec: &serde_json::Value) {
    let state = rec["state"].as_str().unwrap();
    eprintln!(
        "{what} hog: held {} bytes in socket buffers, peak {}, state {state}",
        held, rec["memory_peak_bytes"]
    );
    assert!(
        ["COMPLETED", "OUT_OF_MEMORY"].contains(&state),
        "{what} hog: {rec}"
    );
    assert!(
        held <= LIMIT * 3 / 2,
        "the {what} hog held {} MiB in socket buffers with a limit of {} MiB: {rec}",
        held >> 20,
        LIMIT >> 20
    );
    let peak = rec["memory_peak_bytes"].as_u64().unwrap();
    assert!(
        peak >= held,
        "the {what} hog held {} MiB in socket buffers, its peak says {} MiB: {rec}",
        held >> 20,
        peak >> 20
    );
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn tcp_buffers_a_run_holds_count_against_its_limit_and_show_in_its_peak() {
    if !privileged("tcp socket buffers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 300 connections, each pushing up to 4 MiB that nobody reads: the
    // bytes queued (unacknowledged or unread) of /proc/net/tcp are what
    // the hog holds, in its own network namespace.
    const TCP: &str = r#"
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(512)
keep = [l]
for i in range(300):
    c = socket.create_connection(l.getsockname()); a, _ = l.accept()
    c.setblocking(False)
    sent = 0
    try:
        while sent < 4 << 20:
            sent += c.send(b"x" * 65536)
    except OSError:
        pass
    keep += [c, a]
held = 0
for line in open("/proc/net/tcp").readlines()[1:]:
    tx, rx = line.split()[4].split(":")
    held += int(tx, 16) + int(rx, 16)
ready(held)
wait_done()
"#;
    let mut hog = Hog::start("tcp", TCP, &[]);
    let held: u64 = hog.ready().parse().unwrap();
    neighbours_use_sockets();
    let rec = hog.finish();
    held_to_its_limit_and_in_its_peak("TCP", held, &rec);
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn udp_buffers_a_run_holds_count_against_its_limit_and_show_in_its_peak() {
    if !privileged("udp socket buffers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 300 receivers asking for the largest buffer, each sent 480 kB it
    // never reads: the receive queues of /proc/net/udp are what it holds.
    const UDP: &str = r#"
import socket
keep = []
for i in range(300):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    r.bind(("127.0.0.1", 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for k in range(8):
        try:
            s.sendto(b"x" * 60000, r.getsockname())
        except OSError:
            break
    s.close()
    keep.append(r)
held = 0
for line in open("/proc/net/udp").readlines()[1:]:
    held += int(line.split()[4].split(":")[1], 16)
ready(held)
wait_done()
"#;
    let mut hog = Hog::start("udp", UDP, &[]);
    let held: u64 = hog.ready().parse().unwrap();
    neighbours_use_sockets();
    let rec = hog.finish();
    held_to_its_limit_and_in_its_peak("UDP", held, &rec);
}

/// A world-readable host file, as /var/cache/debconf/config.dat is.
fn host_file(name: &str) -> HostPath {
    let f = HostPath::new(name);
    std::fs::write(&f.0, "host data\n").unwrap();
    std::fs::set_permissions(&f.0, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    f
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_runs_flock_on_a_host_file_blocks_neither_the_host_nor_another_run() {
    if !privileged("flock on a host file") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = host_file("flock.dat");
    const FLOCK: &str = r#"
import fcntl
f = open(sys.argv[2])
fcntl.flock(f, fcntl.LOCK_EX)
ready("locked")
wait_done()
"#;
    let path = file.0.to_str().unwrap();
    let mut hog = Hog::start("flock", FLOCK, &[path]);
    assert_eq!(hog.ready(), "locked");

    // Another run takes the same lock, without waiting.
    const TRY: &str = "import fcntl,sys\nfcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX | fcntl.LOCK_NB)\nprint('locked')";
    let (out, rec) = exec(&["--cpus", "1"], &["python3", "-c", TRY, path]);
    assert_eq!(
        rec["state"],
        "COMPLETED",
        "a run's flock blocked another run's: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "locked\n");

    // So does the host.
    let f = std::fs::File::open(&file.0).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock);
    assert!(
        held.is_ok(),
        "a run's flock blocked the host's: {:?}",
        held.err()
    );
    drop(held);
    assert_eq!(hog.finish()["state"], "COMPLETED");
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_runs_read_lock_on_a_host_file_blocks_neither_the_hosts_write_lock_nor_another_run() {
    if !privileged("fcntl read lock on a host file") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = host_file("rdlock.dat");
    // F_RDLCK on a descriptor opened read-only, as the read-only host
    // tree allows (lockf's LOCK_SH).
    const RDLOCK: &str = r#"
import fcntl
f = open(sys.argv[2])
fcntl.lockf(f, fcntl.LOCK_SH)
ready("locked")
wait_done()
"#;
    let path = file.0.to_str().unwrap();
    let mut hog = Hog::start("rdlock", RDLOCK, &[path]);
    assert_eq!(hog.ready(), "locked");

    // Another run sees no lock that would stop a writer (F_GETLK).
    const TEST: &str = r#"
import fcntl, struct, sys
f = open(sys.argv[1])
r = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
print("unlocked" if struct.unpack("hhqqi", r)[0] == fcntl.F_UNLCK else "locked by another")
"#;
    let (out, rec) = exec(&["--cpus", "1"], &["python3", "-c", TEST, path]);
    assert_eq!(rec["state"], "COMPLETED", "{rec}");
    assert_eq!(
        stdout(&out),
        "unlocked\n",
        "a run's read lock reached another run"
    );

    // The host (root) takes a write lock on it, without waiting.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file.0)
        .unwrap();
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let taken = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETLK(&lock));
    assert!(
        taken.is_ok(),
        "a run's read lock blocked the host's write lock on {}: {:?}",
        Path::new(path).display(),
        taken.err()
    );
    assert_eq!(hog.finish()["state"], "COMPLETED");
}
