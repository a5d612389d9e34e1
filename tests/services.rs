//! Services as root: a server run that serves the runs that need it, on
//! real namespaces and cgroups, through the real binary.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A results folder and the job file beside it (removed on drop).
struct Batch {
    dir: tempfile::TempDir,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            dir: tempfile::Builder::new()
                .prefix("services-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Runs `yaml` (written to a job file); checks the exit code and that
    /// nothing of the batch is left: no cgroup, no process of it.
    fn run(&self, yaml: &str, code: i32, marker: &str) -> Vec<Row> {
        let file = self.dir.path().join("job.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.run_file(&file, code, marker)
    }

    fn run_file(&self, file: &Path, code: i32, marker: &str) -> Vec<Row> {
        let out = self.out();
        let (o, pid) = packrun(&[
            "run",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        let left = cgroups_of(pid);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
        let procs = processes_with(marker);
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
        csv_rows(&out.join("runs.csv"))
    }

    fn log(&self, row: &Row) -> String {
        std::fs::read_to_string(self.out().join(&row["stdout"])).unwrap_or_default()
    }
}

/// A TCP port nothing listens on now (the kernel's pick).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn of<'a>(rows: &'a [Row], job: &str) -> Vec<&'a Row> {
    rows.iter().filter(|r| r["job"] == job).collect()
}

/// A web server that takes a second before it listens, and clients that
/// fetch a page from it by name and print the address `{addr:web}` gives.
fn web_and_clients(port: u16, delay: &str) -> String {
    format!(
        r#"version: 1
name: served
defaults:
  container: {{network: host}}
jobs:
  web:
    service: true
    shell: "sleep {delay}; exec python3 -m http.server {port} --bind 127.0.0.1"
    ready: {{tcp: {port}, timeout: 30s}}
    stop_grace: 3s
  client:
    shell: "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://web:{port}/\").status)'; echo addr={{addr:web}}"
    needs: [web]
    repetitions: 3
"#
    )
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_service_serves_its_dependants_from_when_it_is_ready_and_is_stopped_completed_after_the_last() {
    if !privileged("a_service_serves_its_dependants") {
        return;
    }
    let b = Batch::new();
    let port = free_port();
    let rows = b.run(
        &web_and_clients(port, "1"),
        0,
        &format!("http.server {port}"),
    );
    let web = of(&rows, "web");
    let clients = of(&rows, "client");
    assert_eq!((web.len(), clients.len()), (1, 3), "{rows:#?}");
    let web = web[0];
    assert_eq!(web["state"], "COMPLETED", "{web:?}");
    assert!(
        web["termination_reason"].starts_with("stopped by packrun (SIGTERM)"),
        "{web:?}"
    );
    for c in &clients {
        assert_eq!(c["state"], "COMPLETED", "{c:?}");
        // It fetched the page by the service's name: ready, and in /etc/hosts.
        assert_eq!(b.log(c), "200\naddr=127.0.0.1\n", "{c:?}");
        assert!(time(&c["start_time"]) > time(&web["start_time"]));
        assert!(time(&c["end_time"]) <= time(&web["end_time"]));
        assert!(
            (time(&c["start_time"]) - time(&web["start_time"])).num_milliseconds() >= 1000,
            "a client started before the service listened: {c:?} {web:?}"
        );
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_service_that_dies_cancels_its_dependants_with_a_reason_naming_it() {
    if !privileged("a_service_that_dies_cancels_its_dependants") {
        return;
    }
    let b = Batch::new();
    let port = free_port();
    let yaml = web_and_clients(port, "1").replace(
        &format!("sleep 1; exec python3 -m http.server {port} --bind 127.0.0.1"),
        "sleep 0.2; exit 3",
    );
    let rows = b.run(&yaml, 1, &format!("http.server {port}"));
    let web = of(&rows, "web")[0];
    assert_eq!(
        (web["state"].as_str(), web["termination_reason"].as_str()),
        ("FAILED", "exit code 3")
    );
    let clients = of(&rows, "client");
    assert_eq!(clients.len(), 3);
    for c in clients {
        assert_eq!(c["state"], "CANCELLED");
        assert_eq!(
            c["termination_reason"],
            "service `web` ended before this run could start (it ended FAILED: exit code 3)"
        );
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_service_not_ready_within_its_timeout_is_failed_and_its_dependants_cancelled() {
    if !privileged("a_service_not_ready_within_its_timeout") {
        return;
    }
    let b = Batch::new();
    let port = free_port();
    let marker = format!("sleep 4{port}");
    let yaml = web_and_clients(port, "1")
        .replace(
            &format!("sleep 1; exec python3 -m http.server {port} --bind 127.0.0.1"),
            &format!("exec {marker}"),
        )
        .replace("timeout: 30s", "timeout: 1s");
    let rows = b.run(&yaml, 1, &marker);
    let web = of(&rows, "web")[0];
    let why = format!("not ready: port {port} accepted no TCP connection within 1s");
    assert_eq!(web["state"], "FAILED");
    assert!(web["termination_reason"].starts_with(&why), "{web:?}");
    for c in of(&rows, "client") {
        assert_eq!(c["state"], "CANCELLED");
        assert!(
            c["termination_reason"].starts_with(&format!(
                "service `web` ended before this run could start (it ended FAILED: {why}"
            )),
            "{c:?}"
        );
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups, and redis-server and redis-tools"]
fn the_redis_example_benchmarks_redis_server_with_redis_benchmark() {
    if !privileged("the_redis_example") {
        return;
    }
    for tool in ["redis-server", "redis-benchmark"] {
        assert!(
            on_path(tool).is_some(),
            "{tool} is missing: apt-get install redis-server redis-tools"
        );
    }
    let b = Batch::new();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/redis-bench.yaml");
    let rows = b.run_file(&file, 0, "0.0.0.0:16379");
    let server = of(&rows, "redis");
    assert_eq!(server.len(), 1);
    assert_eq!(server[0]["state"], "COMPLETED", "{:?}", server[0]);
    // On the example's private network, every run's link counted its
    // traffic: the server's received bytes are what the clients sent.
    let bytes = |r: &Row, c: &str| r[c].parse::<u64>().unwrap_or_else(|_| panic!("{c}: {r:?}"));
    let sent: u64 = of(&rows, "bench")
        .iter()
        .map(|r| bytes(r, "net_tx_bytes"))
        .sum();
    let got = bytes(server[0], "net_rx_bytes");
    assert!(
        sent > 0 && got >= sent * 9 / 10 && got <= sent * 11 / 10,
        "clients sent {sent}, server got {got}"
    );
    let benches = of(&rows, "bench");
    assert_eq!(benches.len(), 6);
    for r in benches {
        assert_eq!(r["state"], "COMPLETED", "{r:?}");
        let out = b.log(r);
        assert!(
            out.contains("\"SET\",") && out.contains("\"GET\","),
            "{out}"
        );
    }
}

#[test]
#[ignore = "needs root: real namespaces and cgroups"]
fn a_batch_killed_while_its_service_serves_resumes_with_the_service_again_for_the_runs_left() {
    if !privileged("a_batch_killed_while_its_service_serves_resumes") {
        return;
    }
    let b = Batch::new();
    let port = free_port();
    let marker = format!("http.server {port}");
    let yaml = web_and_clients(port, "0")
        .replace("shell: \"python3", "shell: \"sleep 1; python3")
        .replace("repetitions: 3", "repetitions: 4");
    let file = b.dir.path().join("job.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = b.out();
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--quiet", "--out", out.to_str().unwrap()])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let csv = out.join("runs.csv");
    // Bounded, and long: the CPUs may be held by the batches of other
    // tests and other packruns for a while.
    for _ in 0..12_000 {
        if csv.exists() && !csv_rows(&csv).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = csv_rows(&csv);
    assert!(
        !before.is_empty() && before.iter().all(|r| r["job"] == "client"),
        "{before:#?}"
    );
    let (o, pid2) = packrun(&[
        "run",
        "--quiet",
        "--resume",
        out.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for p in [pid, pid2] {
        let left = cgroups_of(p);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
    assert!(processes_with(&marker).is_empty(), "the service still runs");
    let rows = csv_rows(&csv);
    let clients = of(&rows, "client");
    assert_eq!(clients.len(), 4, "{rows:#?}");
    for c in clients {
        assert_eq!(c["state"], "COMPLETED", "{c:?}");
        assert_eq!(b.log(c), "200\naddr=127.0.0.1\n", "{c:?}");
    }
    let web = of(&rows, "web");
    assert_eq!(web.len(), 1, "{rows:#?}");
    assert_eq!(web[0]["state"], "COMPLETED");
}
