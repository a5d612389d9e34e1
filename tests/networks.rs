//! Private networks as root, on real namespaces: who reaches whom, what a
//! run sees, a shaped link's goodput, a run's counters, and that nothing
//! is left, after a SIGKILL of packrun too.

mod common;
use common::*;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What each run does (see the file).
const NETTALK: &str = include_str!("helpers/nettalk.py");

/// A batch here needs both CPUs of a two-CPU machine: one at a time.
static CPUS: Mutex<()> = Mutex::new(());

fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("networks-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A job running nettalk.py with `args` on `network`, after `after`.
fn talk(network: &str, args: &[&str], after: Option<&str>) -> serde_json::Value {
    let mut command = vec!["python3", "-c", NETTALK];
    command.extend(args);
    let mut job = serde_json::json!({
        "command": command,
        "resources": {"cpus": 1},
        "time_limit": "60s",
        "container": {"network": network},
    });
    if let Some(a) = after {
        job["depends_on"] = serde_json::json!([a]);
    }
    job
}

/// Writes the job file (JSON is YAML) into `dir` and runs it there.
fn run_batch(dir: &Path, file: serde_json::Value) -> (std::process::Output, Vec<Row>) {
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out_dir = dir.join("out");
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let left = cgroups_of(pid);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    let rows = csv_rows(&out_dir.join("runs.csv"));
    (out, rows)
}

fn row<'a>(rows: &'a [Row], job: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["job"] == job)
        .unwrap_or_else(|| panic!("no row of {job}: {rows:#?}"))
}

fn log(r: &Row) -> String {
    std::fs::read_to_string(&r["stdout"]).unwrap_or_else(|e| panic!("{}: {e}", r["stdout"]))
}

/// The host's interfaces.
fn host_links() -> HashSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The network namespaces (`net:[inode]`) any process has, or holds a
/// descriptor of, and any mount of one in the initial mount namespace.
fn namespaces_in_use() -> HashSet<String> {
    let mut found = HashSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(l) = std::fs::read_link(e.path().join("ns/net")) {
            found.insert(l.to_string_lossy().into_owned());
        }
        found.extend(net_fds(&e.path()));
    }
    let mounts = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains("net:[")) {
        let at = l.find("net:[").unwrap();
        let end = l[at..].find(']').unwrap();
        found.insert(l[at..=at + end].to_string());
    }
    found
}

/// The network namespaces a process holds descriptors of.
fn net_fds(proc_dir: &Path) -> HashSet<String> {
    let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("net:["))
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces, veth links and a bridge"]
fn runs_on_one_network_talk_and_runs_elsewhere_and_the_host_cannot_reach_them() {
    if !privileged("runs_on_one_network_talk_and_runs_elsewhere_and_the_host_cannot_reach_them") {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let links_before = host_links();
    let dir = out_dir();
    // The server and the client get the first two addresses on lab, in
    // the order they start; the client sends to the one that is not its
    // own. The runs after it come one at a time while the server serves,
    // and try both.
    let server = "10.77.0.1,10.77.0.2";
    let file = serde_json::json!({
        "version": 1,
        "name": "networks",
        "networks": {"lab": {"subnet": "10.77.0.0/24"}, "other": {"subnet": "10.78.0.0/24"}},
        "jobs": {
            "server": talk("lab", &["serve", "5000", "2"], None),
            "client": talk("lab", &["send", server, "5000", "1000"], None),
            "other": talk("other", &["probe", server, "5000"], Some("client")),
            "alone": talk("none", &["probe", server, "5000"], Some("other")),
            "host": talk("host", &["probe", server, "5000"], Some("alone")),
            "last": talk("lab", &["send", server, "5000", "2000"], Some("host")),
        },
    });
    let (out, rows) = run_batch(dir.path(), file);
    let err = String::from_utf8_lossy(&out.stderr);
    // Each run's stdout and stderr, to tell why one failed.
    let logs: String = rows
        .iter()
        .map(|r| {
            let read = |c: &str| std::fs::read_to_string(&r[c]).unwrap_or_default();
            format!(
                "--- {} ({}, {}):\n{}{}",
                r["job"],
                r["state"],
                r["cpus"],
                read("stdout"),
                read("stderr")
            )
        })
        .collect();
    assert_eq!(out.status.code(), Some(0), "{err}\n{logs}");
    assert_eq!(rows.len(), 6, "{err}");
    // Two runs on lab talked, and no one else got through to the server.
    let served = log(row(&rows, "server"));
    let peers: Vec<Vec<&str>> = served
        .lines()
        .filter(|l| l.starts_with("peer"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(peers.len(), 2, "{served}");
    // The last client got the first one's link back: the same address.
    assert!(
        ["10.77.0.1", "10.77.0.2"].contains(&peers[0][1]),
        "{served}"
    );
    assert_eq!(
        (peers[0][1], peers[0][3]),
        (peers[1][1], "1000"),
        "{served}"
    );
    assert_eq!(peers[1][3], "2000", "{served}");
    assert!(log(row(&rows, "client")).contains("sent 1000"));
    for (job, devices) in [("other", "eth0 lo"), ("alone", "lo")] {
        let said = log(row(&rows, job));
        assert!(
            said.contains(&format!("devices {devices}\n")),
            "{job}: {said}"
        );
        for addr in ["10.77.0.1", "10.77.0.2"] {
            let want = format!("{addr} not reached: [Errno 101] Network is unreachable");
            assert!(said.contains(&want), "{job}: {said}");
        }
    }
    // The host's probes went out by its own routes (where a proxy may
    // even answer for any address): what counts is that the server above
    // saw the two lab clients and no one else.
    let said = log(row(&rows, "host"));
    assert_eq!(said.lines().count(), 3, "host: {said}");
    // A run on a network sees loopback and its eth0, nothing else.
    for job in ["server", "client", "last"] {
        assert!(
            log(row(&rows, job)).starts_with("devices eth0 lo\n"),
            "{job}"
        );
    }
    // Its traffic in its row; none for runs on no private network.
    let cell = |job: &str, c: &str| row(&rows, job)[c].clone();
    let rx: u64 = cell("server", "net_rx_bytes").parse().unwrap();
    assert!(rx > 3000, "{rx}");
    assert!(cell("server", "net_rx_packets").parse::<u64>().unwrap() > 2);
    assert!(cell("client", "net_tx_bytes").parse::<u64>().unwrap() > 1000);
    for job in ["alone", "host"] {
        for c in [
            "net_rx_bytes",
            "net_tx_bytes",
            "net_rx_packets",
            "net_tx_packets",
        ] {
            assert_eq!(cell(job, c), "", "{job} {c}");
        }
    }
    assert_eq!(host_links(), links_before, "links left on the host");
}

#[test]
#[ignore = "needs root: network namespaces, veth links, a bridge and tbf"]
fn a_rate_of_100mbit_gives_85_to_100_mbit_of_goodput_and_the_sender_counts_its_10_mb() {
    if !privileged(
        "a_rate_of_100mbit_gives_85_to_100_mbit_of_goodput_and_the_sender_counts_its_10_mb",
    ) {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = out_dir();
    let file = serde_json::json!({
        "version": 1,
        "name": "shaped",
        "networks": {"slow": {"subnet": "10.79.0.0/24", "rate": "100mbit"}},
        "jobs": {
            "sink": talk("slow", &["serve", "5000", "1"], None),
            "source": talk("slow", &["send", "10.79.0.1,10.79.0.2", "5000", "10000000"], None),
        },
    });
    let (out, rows) = run_batch(dir.path(), file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let got = log(row(&rows, "sink"));
    let line = got.lines().find(|l| l.starts_with("peer")).expect(&got);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[3], "10000000", "{line}");
    let mbit: f64 = words[5].parse().unwrap();
    eprintln!("goodput through a 100mbit link: {mbit} Mbit/s");
    assert!(
        (85.0..=100.0).contains(&mbit),
        "goodput {mbit} Mbit/s: {line}"
    );
    let sent: u64 = row(&rows, "source")["net_tx_bytes"].parse().unwrap();
    assert!(
        (10_000_000..=11_500_000).contains(&sent),
        "net_tx_bytes {sent} of a run that sent 10 MB"
    );
    let got: u64 = row(&rows, "sink")["net_rx_bytes"].parse().unwrap();
    assert!(
        (10_000_000..=11_500_000).contains(&got),
        "net_rx_bytes {got}"
    );
}

#[test]
#[ignore = "needs root: network namespaces, veth links and a bridge"]
fn nothing_of_a_network_is_left_after_packrun_is_killed_and_the_batch_resumed() {
    if !privileged("nothing_of_a_network_is_left_after_packrun_is_killed_and_the_batch_resumed") {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let links_before = host_links();
    let dir = out_dir();
    let out = dir.path().join("out");
    let file = serde_json::json!({
        "version": 1,
        "name": "killed",
        "networks": {"lab": {"rate": "10mbit"}},
        "jobs": {"long": {
            "command": ["sleep", "61.5"],
            "resources": {"cpus": 1},
            "time_limit": "3s",
            "container": {"network": "lab"},
        }},
    });
    let path = dir.path().join("job.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let _shared = PACKRUNS.read().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc_dir = Path::new("/proc").join(child.id().to_string());
    // Until its run is going: packrun holds its own namespace and the run's.
    let began = Instant::now();
    let mut held = HashSet::new();
    let mut run_ns = String::new();
    while began.elapsed() < Duration::from_secs(20) {
        held = net_fds(&proc_dir);
        run_ns = processes_with("sleep 61.5")
            .iter()
            .filter_map(|p| std::fs::read_link(format!("/proc/{p}/ns/net")).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .next()
            .unwrap_or_default();
        if !run_ns.is_empty() && held.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        held.contains(&run_ns),
        "packrun holds {held:?}, the run is in {run_ns:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // packrun's own namespace (its bridge, the links' host ends) went with it.
    let own: HashSet<String> = held.iter().filter(|n| **n != run_ns).cloned().collect();
    assert!(!own.is_empty(), "{held:?}");
    let in_use = namespaces_in_use();
    assert!(own.is_disjoint(&in_use), "left after SIGKILL: {own:?}");
    // The run outlived packrun; resuming ends it, and the batch.
    let resumed = Command::new(BIN)
        .args(["run", "--quiet", "--resume", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    let rows = csv_rows(&out.join("runs.csv"));
    assert_eq!(rows.len(), 1, "{err}");
    let in_use = namespaces_in_use();
    assert!(
        held.is_disjoint(&in_use),
        "left after the resumed batch: {held:?}"
    );
    assert_eq!(host_links(), links_before, "links left on the host");
}

#[test]
#[ignore = "needs root: network namespaces, veth links and a bridge"]
fn a_run_keeping_cap_net_admin_cannot_change_its_link() {
    if !privileged("a_run_keeping_cap_net_admin_cannot_change_its_link") {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = out_dir();
    // SIOCSIFMTU on eth0: the namespace is packrun's, not the run's user
    // namespace's, so the run's CAP_NET_ADMIN does not reach it.
    let mtu = "import socket, fcntl, struct\n\
               s = socket.socket()\n\
               try:\n    fcntl.ioctl(s, 0x8922, struct.pack('16si', b'eth0', 1400))\n    print('changed')\n\
               except OSError as e:\n    print('refused', e.errno)\n\
               print(open('/sys/class/net/eth0/mtu').read().strip())";
    let file = serde_json::json!({
        "version": 1,
        "name": "admin",
        "networks": {"lab": {}},
        "jobs": {"admin": {
            "command": ["python3", "-c", mtu],
            "resources": {"cpus": 1},
            "container": {"network": "lab", "capabilities": ["NET_ADMIN"]},
        }},
    });
    let (out, rows) = run_batch(dir.path(), file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(log(row(&rows, "admin")), "refused 1\n1500\n");
}

#[test]
#[ignore = "needs root: network namespaces and the netem qdisc, or its absence"]
fn delay_and_loss_run_where_the_kernel_has_netem_and_are_refused_before_anything_starts_where_not()
{
    if !privileged("delay_and_loss_run_where_the_kernel_has_netem_and_are_refused_before_anything_starts_where_not") {
        return;
    }
    let _cpus = CPUS.lock().unwrap_or_else(|e| e.into_inner());
    let netem = packrun::net::has_qdisc("netem").expect("a namespace to try netem in");
    let dir = out_dir();
    let file = serde_json::json!({
        "version": 1,
        "name": "netem",
        "networks": {"wan": {"delay": "5ms", "loss": 0.5}},
        "jobs": {"far": {
            "command": ["true"],
            "resources": {"cpus": 1},
            "container": {"network": "wan"},
        }},
    });
    let path = dir.path().join("job.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let out_dir = dir.path().join("out");
    let (out, _) = packrun(&[
        "run",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if netem {
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_eq!(csv_rows(&out_dir.join("runs.csv"))[0]["state"], "COMPLETED");
    } else {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("network `wan`: `delay` and `loss` need the netem qdisc (the kernel's sch_netem module, CONFIG_NET_SCH_NETEM), which this kernel does not have"),
            "{err}"
        );
        assert!(
            !out_dir.exists(),
            "a results folder for a batch that never started"
        );
    }
}
