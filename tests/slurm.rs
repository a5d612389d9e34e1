//! `packrun slurm` against a real Slurm started on this machine: munged with
//! its own key and socket, slurmctld and two slurmd (nodes <prefix>1 and <prefix>2) on
//! 127.0.0.1 with their own ports, configs in a temp dir, cgroup v1 task
//! and proctrack plugins. Every daemon is stopped by pid in `Drop`.

mod common;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DAEMONS: [&str; 6] = ["munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue"];

/// Checks that this test can start a Slurm here: root, and the Slurm and
/// munge programs (tests/ci-install-slurm.sh). Where one is missing the
/// test fails naming the packages; it is never passed without a cluster.
/// (It returns a bool so the tests read `if !slurm_available(..) { return; }`.)
fn slurm_available(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let missing: Vec<&str> = DAEMONS
        .iter()
        .copied()
        .filter(|d| which(d).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{test} needs {}, not found on PATH, /usr/sbin or /sbin: install them with \
         `apt-get install slurmctld slurmd slurm-client munge` (tests/ci-install-slurm.sh)",
        missing.join(", ")
    );
    true
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running test cluster. Dropping it cancels its jobs, stops every daemon
/// it started (SIGTERM, then SIGKILL), removes the cgroups slurmd made and
/// the temp dir.
struct Cluster {
    /// Node names: unique per test, since slurmd names its cgroups after them.
    nodes: [String; 2],
    dir: tempfile::TempDir,
    /// munged's socket, key, pid and seed; removed (dropped) after the daemons stop.
    _munge: tempfile::TempDir,
    conf: PathBuf,
    /// In start order; stopped in reverse.
    daemons: Vec<(String, Child)>,
    /// Cgroup directories (`<controller>/slurm_<node>`) that did not exist before.
    cgroups: Vec<PathBuf>,
}

impl Cluster {
    fn start(prefix: &str) -> Cluster {
        let nodes = [format!("{prefix}1"), format!("{prefix}2")];
        let dir = tempfile::Builder::new()
            .prefix("slurm-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["state", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        set_mode(dir.path(), 0o755);
        // munged wants every directory above its socket searchable by all,
        // which the target directory is not where the checkout is in root's
        // private home (/root is 0700 on Debian): its socket, key, pid and
        // seed get a directory of their own in the system's temp dir. The
        // key is owned by munged and private.
        let munge = tempfile::Builder::new()
            .prefix("packrun-test-munge-")
            .tempdir()
            .unwrap();
        set_mode(munge.path(), 0o755);
        let m = munge.path().to_path_buf();
        let key: Vec<u8> = (0..1024).map(|_| rand_byte()).collect();
        std::fs::write(m.join("munge.key"), key).unwrap();
        set_mode(&m.join("munge.key"), 0o400);

        let cgroups = nodes
            .iter()
            .flat_map(|n| {
                [
                    "cpuset", "freezer", "memory", "devices", "cpuacct", "cpu", "pids",
                ]
                .map(|c| {
                    Path::new("/sys/fs/cgroup")
                        .join(c)
                        .join(format!("slurm_{n}"))
                })
            })
            .filter(|p| !p.exists())
            .collect();

        let conf = d.join("slurm.conf");
        let (ctld, p1, p2) = (free_port(), free_port(), free_port());
        let host = nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/slurm.conf.in"),
        )
        .unwrap()
        .replace("@DIR@", &d.display().to_string())
        .replace("@MUNGE@", &m.display().to_string())
        .replace("@HOST@", &host)
        .replace("@CTLD_PORT@", &ctld.to_string())
        .replace("@N1@", &nodes[0])
        .replace("@N2@", &nodes[1])
        .replace("@N1_PORT@", &p1.to_string())
        .replace("@N2_PORT@", &p2.to_string());
        std::fs::write(&conf, text).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cgroup.conf"),
            d.join("cgroup.conf"),
        )
        .unwrap();

        for n in &nodes {
            std::fs::create_dir_all(d.join("spool").join(n)).unwrap();
        }
        let mut c = Cluster {
            nodes: nodes.clone(),
            dir,
            _munge: munge,
            conf,
            daemons: Vec::new(),
            cgroups,
        };
        let sock = m.join("munge.socket");
        c.spawn(
            "munged",
            Command::new(which("munged").unwrap())
                .arg("--foreground")
                .arg(format!("--socket={}", sock.display()))
                .arg(format!("--key-file={}", m.join("munge.key").display()))
                .arg(format!("--pid-file={}", m.join("munged.pid").display()))
                .arg(format!("--seed-file={}", m.join("munged.seed").display()))
                .arg(format!("--log-file={}", d.join("log/munged.log").display())),
        );
        c.wait_for("munge socket", |_| sock.exists());
        let conf = c.conf.clone();
        c.spawn(
            "slurmctld",
            Command::new(which("slurmctld").unwrap())
                .arg("-D")
                .arg("-f")
                .arg(&conf),
        );
        for n in &nodes {
            c.spawn(
                &format!("slurmd-{n}"),
                Command::new(which("slurmd").unwrap())
                    .args(["-D", "-N", n, "-f"])
                    .arg(&conf),
            );
        }
        c.wait_for("both nodes idle in sinfo", |c| {
            let out = c
                .cmd("sinfo")
                .args(["-h", "-N", "-o", "%N %T"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let idle: BTreeSet<&str> = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(_, s)| *s == "idle")
                .map(|(n, _)| n)
                .collect();
            idle == c.nodes.iter().map(String::as_str).collect()
        });
        c
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("log/{name}.out"))).unwrap();
        cmd.env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // If this test process dies without unwinding (SIGKILL), the kernel
        // kills the daemon too.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push((name.to_string(), child));
    }

    /// A Slurm client command aimed at this cluster.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(which(prog).unwrap_or_else(|| prog.into()));
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Polls `ok` every 100 ms for up to 60 s; panics with the daemon logs after.
    fn wait_for(&mut self, what: &str, mut ok: impl FnMut(&Cluster) -> bool) {
        let t0 = Instant::now();
        while !ok(self) {
            let exited = self.daemons.iter_mut().find_map(|(name, child)| {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|st| format!("{name} exited ({st})"))
            });
            if let Some(exited) = exited {
                panic!("{exited} while waiting for {what}\n{}", self.logs());
            }
            if t0.elapsed() > Duration::from_secs(60) {
                panic!("no {what} after 60 s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every daemon log, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                s += &format!("== {}\n", e.path().display());
                for l in &lines[lines.len().saturating_sub(30)..] {
                    s += l;
                    s += "\n";
                }
            }
        }
        s
    }

    /// Waits until job `id` has left the queue (polling squeue; `sbatch --wait`
    /// returns seconds late).
    fn wait_job(&mut self, id: &str, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let out = self
                .cmd("squeue")
                .args(["-h", "-j", id, "-o", "%T"])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // squeue fails for a job that has left the controller's memory.
            if state.is_empty() || !out.status.success() {
                return;
            }
            if t0.elapsed() > limit {
                panic!("job {id} still {state} after {limit:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first, so no slurmstepd (not our child) is left behind.
        let _ = self.cmd("scancel").args(["-u", "root"]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let out = self.cmd("squeue").args(["-h", "-o", "%i"]).output();
            match out {
                Ok(o) if o.status.success() && !o.stdout.is_empty() => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                _ => break,
            }
        }
        // Any task still in a node's cgroup is one of this cluster's.
        for cg in &self.cgroups {
            for pid in tasks_under(cg) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
            let t0 = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for cg in &self.cgroups {
            remove_tree(cg);
        }
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rand_byte() -> u8 {
    use std::io::Read;
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b[0]
}

fn tasks_under(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pids;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            pids.extend(tasks_under(&p));
        } else if e.file_name() == "tasks" || e.file_name() == "cgroup.procs" {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// Removes a cgroup directory tree, children first (cgroupfs only allows rmdir).
fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            remove_tree(&e.path());
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("cannot remove {}", dir.display());
}

fn packrun_in(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SLURM_CONF", &cluster.conf)
        .stdin(Stdio::null())
        .output()
        .expect("packrun starts")
}

#[test]
#[ignore = "needs root and Slurm (tests/ci-install-slurm.sh)"]
fn a_two_node_job_runs_one_task_on_each_test_node() {
    if !slurm_available("a_two_node_job_runs_one_task_on_each_test_node") {
        return;
    }
    let mut cluster = Cluster::start("hello");
    let script = cluster.dir.path().join("hello.sh");
    let out_file = cluster.dir.path().join("hello.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --exclusive\n#SBATCH --output={}\nsrun sh -c 'echo node=$SLURMD_NODENAME id=$SLURM_NODEID'\n",
            out_file.display()
        ),
    )
    .unwrap();
    let out = cluster
        .cmd("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    cluster.wait_job(&id, Duration::from_secs(120));
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["node=hello1 id=0", "node=hello2 id=1"],
        "job output:\n{text}\n{}",
        cluster.logs()
    );
}

/// The job file of the cluster test: 20 short runs of 1 CPU.
const TWENTY: &str = "version: 1
name: twenty
defaults:
  resources: {cpus: 1, memory: 64MiB}
  time_limit: 30s
jobs:
  short:
    shell: \"echo i={i} rep={rep}; sleep 0.2\"
    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    repetitions: 2
";

/// Runs `packrun slurm submit ARGS`, waits until its job has left the
/// queue, returns the job id.
fn submit_and_wait(cluster: &mut Cluster, args: &[&str], out_dir: &Path) -> String {
    let mut all = vec!["slurm", "submit"];
    all.extend_from_slice(args);
    let out = packrun_in(cluster, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "packrun slurm submit failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("slurm.json")).unwrap())
            .unwrap();
    let id = meta["job_id"]
        .as_str()
        .expect("slurm.json has the job id")
        .to_string();
    assert!(
        stdout.contains(&id),
        "submit does not print job {id}: {stdout}"
    );
    cluster.wait_job(&id, Duration::from_secs(600));
    let merged = out_dir.join("runs.csv");
    let slurm_log =
        std::fs::read_to_string(out_dir.join(format!("slurm-{id}.out"))).unwrap_or_default();
    assert!(
        merged.exists(),
        "no merged runs.csv; job output:\n{slurm_log}\n{}",
        cluster.logs()
    );
    id
}

/// Each run exactly once, COMPLETED, on one of the cluster's nodes; both
/// nodes ran some. Returns the rows.
fn check_merged(cluster: &Cluster, out_dir: &Path, runs: usize) -> Vec<Row> {
    let rows = csv_rows(&out_dir.join("runs.csv"));
    let keys: BTreeSet<&str> = rows.iter().map(|r| r["run_key"].as_str()).collect();
    assert_eq!(rows.len(), runs, "rows: {rows:?}");
    assert_eq!(keys.len(), runs, "a run_key appears twice");
    let hosts: BTreeSet<&str> = rows.iter().map(|r| r["host"].as_str()).collect();
    let nodes: BTreeSet<&str> = cluster.nodes.iter().map(String::as_str).collect();
    assert_eq!(hosts, nodes, "host column");
    for r in &rows {
        assert_eq!(
            (r["state"].as_str(), r["exit_code"].as_str()),
            ("COMPLETED", "0"),
            "run {} on {}: {r:?}",
            r["run_key"],
            r["host"]
        );
    }
    for n in &cluster.nodes {
        let node_rows = csv_rows(&out_dir.join("nodes").join(n).join("runs.csv"));
        assert!(!node_rows.is_empty(), "node {n} ran nothing");
        assert!(node_rows.iter().all(|r| &r["host"] == n));
    }
    let summary = std::fs::read_to_string(out_dir.join("summary.csv")).unwrap();
    assert!(summary.lines().count() > 1, "summary.csv: {summary}");
    rows
}

#[test]
#[ignore = "needs root and Slurm (tests/ci-install-slurm.sh)"]
fn twenty_runs_across_two_nodes_are_merged_into_one_runs_csv() {
    if !slurm_available("twenty_runs_across_two_nodes_are_merged_into_one_runs_csv") {
        return;
    }
    let t0 = Instant::now();
    let mut cluster = Cluster::start("n");
    eprintln!("cluster up after {:.1} s", t0.elapsed().as_secs_f64());
    let job = cluster.dir.path().join("twenty.yaml");
    std::fs::write(&job, TWENTY).unwrap();
    let out_dir = cluster.dir.path().join("results");
    let (j, o) = (job.to_str().unwrap(), out_dir.to_str().unwrap());
    let id = submit_and_wait(&mut cluster, &[j, "--nodes", "2", "--out", o], &out_dir);
    eprintln!("job {id} done after {:.1} s", t0.elapsed().as_secs_f64());
    check_merged(&cluster, &out_dir, 20);
    eprintln!(
        "{}",
        std::fs::read_to_string(out_dir.join("runs.csv")).unwrap()
    );

    let status = packrun_in(&cluster, &["slurm", "status", o]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "status: {text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for n in &cluster.nodes {
        assert!(
            text.contains(n.as_str()),
            "status does not name node {n}:\n{text}"
        );
    }
    assert!(text.contains("20 of 20 runs recorded"), "status:\n{text}");
    eprintln!("test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root and Slurm (tests/ci-install-slurm.sh)"]
fn resume_resubmits_only_the_runs_missing_from_the_merged_results() {
    if !slurm_available("resume_resubmits_only_the_runs_missing_from_the_merged_results") {
        return;
    }
    let mut cluster = Cluster::start("r");
    let job = cluster.dir.path().join("six.yaml");
    std::fs::write(
        &job,
        TWENTY.replace("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "[1, 2, 3]"),
    )
    .unwrap();
    let out_dir = cluster.dir.path().join("results");
    let (j, o) = (job.to_str().unwrap(), out_dir.to_str().unwrap());
    submit_and_wait(&mut cluster, &[j, "--nodes", "2", "--out", o], &out_dir);
    let first = check_merged(&cluster, &out_dir, 6);

    // A node lost its last rows (as if killed): cut node r1's runs.csv to its header.
    let lost_csv = out_dir.join("nodes/r1/runs.csv");
    let text = std::fs::read_to_string(&lost_csv).unwrap();
    let lost: Vec<String> = csv_rows(&lost_csv)
        .into_iter()
        .map(|r| r["run_key"].clone())
        .collect();
    std::fs::write(&lost_csv, format!("{}\n", text.lines().next().unwrap())).unwrap();

    submit_and_wait(&mut cluster, &[j, "--nodes", "2", "--resume", o], &out_dir);
    let second = check_merged(&cluster, &out_dir, 6);
    let before: HashMap<&str, &str> = first
        .iter()
        .map(|r| (r["run_key"].as_str(), r["start_time"].as_str()))
        .collect();
    for r in &second {
        let k = r["run_key"].as_str();
        let again = r["start_time"] != before[k];
        assert_eq!(
            again,
            lost.contains(&r["run_key"]),
            "run {k} ran again: {again}"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("slurm.json")).unwrap())
            .unwrap();
    assert_eq!(meta["runs"], lost.len(), "runs resubmitted");
    assert_eq!(meta["previous"].as_array().map(Vec::len), Some(1));
}
