//! `packrun run` as root: whole job files through the real binary.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn job(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/jobs")
        .join(name)
}

/// A fresh results folder (removed on drop).
fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("batch-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn rows(dir: &Path) -> Vec<Row> {
    csv_rows(&dir.join("runs.csv"))
}

fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn cpus(s: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => v.extend(a.parse::<u32>().unwrap()..=b.parse().unwrap()),
            None => v.push(part.parse().unwrap()),
        }
    }
    v
}

/// No two rows that overlap in time share a CPU.
fn assert_no_cpu_overlap(rows: &[Row]) {
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let overlap = time(&a["start_time"]) < time(&b["end_time"])
                && time(&b["start_time"]) < time(&a["end_time"]);
            let shared: Vec<u32> = cpus(&a["cpus"])
                .into_iter()
                .filter(|c| cpus(&b["cpus"]).contains(c))
                .collect();
            assert!(
                !overlap || shared.is_empty(),
                "runs {} and {} ran at once on CPUs {shared:?}",
                a["run_key"],
                b["run_key"]
            );
        }
    }
}

fn no_leftovers(pid: u32) {
    let left = cgroups_of(pid);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// `packrun run --quiet` on tests/jobs/NAME into a fresh folder: checks the
/// exit code and that no cgroup is left; returns the folder, the rows and
/// packrun's stderr.
fn run_job_file(name: &str, code: i32) -> (tempfile::TempDir, Vec<Row>, String) {
    let dir = out_dir();
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
        job(name).to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    no_leftovers(pid);
    let rows = rows(dir.path());
    (dir, rows, err)
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn thirty_runs_with_matrix_repetitions_and_warmup_give_thirty_rows() {
    if !privileged("thirty_runs_with_matrix_repetitions_and_warmup_give_thirty_rows") {
        return;
    }
    let (dir, rows, err) = run_job_file("thirty.yaml", 0);
    // sweep: 3 levels × 2 sizes × (4 + 1 warmup) = 30; single: 5 + 1 = 6.
    assert_eq!(rows.len(), 36, "{err}");
    let sweep: Vec<&Row> = rows.iter().filter(|r| r["job"] == "sweep").collect();
    assert_eq!(sweep.len(), 30);
    assert_eq!(sweep.iter().filter(|r| r["warmup"] == "true").count(), 6);
    for r in &sweep {
        assert_eq!(r["state"], "COMPLETED", "{r:?}");
        assert!(["1", "2", "3"].contains(&r["parameter_level"].as_str()));
        assert!(["small", "large"].contains(&r["parameter_size"].as_str()));
        assert_eq!(cpus(&r["cpus"]).len(), 1);
        assert!(!r["mems"].is_empty());
        // The job saw the CPU it was given.
        let log = std::fs::read_to_string(&r["stdout"]).unwrap();
        assert!(
            log.contains(&format!(
                "level={} size={}",
                r["parameter_level"], r["parameter_size"]
            )),
            "{log}"
        );
        assert!(
            log.contains(&format!("Cpus_allowed_list:\t{}\n", r["cpus"])),
            "{log} vs {}",
            r["cpus"]
        );
    }
    let keys: std::collections::HashSet<&str> =
        rows.iter().map(|r| r["run_key"].as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "run_keys are not unique");
    assert_no_cpu_overlap(&rows);
    for f in ["summary.csv", "manifest.json", "job.yaml"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let summary = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 6 + 1, "{summary}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn failures_are_rows_with_their_state_and_the_batch_exits_one() {
    if !privileged("failures_are_rows_with_their_state_and_the_batch_exits_one") {
        return;
    }
    let (_dir, rows, err) = run_job_file("failures.yaml", 1);
    let by_job: HashMap<&str, &Row> = rows.iter().map(|r| (r["job"].as_str(), r)).collect();
    assert_eq!(by_job.len(), 6, "{err}");
    let check = |job: &str, state: &str, reason: &str| {
        let r = by_job[job];
        assert_eq!(r["state"], state, "{job}: {r:?}");
        assert!(r["termination_reason"].contains(reason), "{job}: {r:?}");
    };
    check("ok", "COMPLETED", "exited");
    check("sleeper", "TIMEOUT", "wall time limit");
    check("hog", "OUT_OF_MEMORY", "OOM");
    check("three", "FAILED", "exit code 3");
    check("missing", "ERROR", "ENOENT");
    check("nodisk", "ERROR", "not a block device");
    assert_eq!(by_job["three"]["exit_code"], "3");
    assert!(by_job["hog"]["oom_kills"].parse::<u64>().unwrap() >= 1);
}

/// Starts `packrun run` on long.yaml with a unique tag; returns the child and the tag.
fn start_long(dir: &Path, extra: &[&str]) -> (std::process::Child, String, PathBuf) {
    let tag = format!("t{}x{}", std::process::id(), rand_suffix());
    let text = std::fs::read_to_string(job("long.yaml"))
        .unwrap()
        .replace("TAG", &tag);
    let file = dir.with_extension("yaml");
    std::fs::write(&file, text).unwrap();
    let mut args = vec!["run".to_string(), "--quiet".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(file.to_str().unwrap().into());
    let child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, tag, file)
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// `packrun run --quiet [EXTRA] --resume DIR FILE`.
fn resume(dir: &Path, file: &Path, extra: &[&str]) -> (std::process::Output, u32) {
    let mut args = vec!["run", "--quiet"];
    args.extend_from_slice(extra);
    args.extend(["--resume", dir.to_str().unwrap(), file.to_str().unwrap()]);
    packrun(&args)
}

/// Waits until runs.csv holds at least `n` rows (bounded).
fn wait_rows(dir: &Path, n: usize) {
    for _ in 0..600 {
        if dir.join("runs.csv").exists() && rows(dir).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("runs.csv never reached {n} rows");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn sigint_cancels_running_runs_and_exits_130_leaving_nothing() {
    if !privileged("sigint_cancels_running_runs_and_exits_130_leaving_nothing") {
        return;
    }
    let dir = out_dir();
    let d = dir.path().join("res");
    let (child, tag, _file) = start_long(&d, &["--out", d.to_str().unwrap()]);
    let pid = child.id();
    wait_rows(&d, 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    no_leftovers(pid);
    assert!(
        processes_with(&format!("packrun-nap-{tag}")).is_empty(),
        "runs still alive"
    );
    let rows = rows(&d);
    assert_eq!(rows.len(), 12, "every run has a row, cancelled or not");
    assert!(rows.iter().any(|r| r["state"] == "CANCELLED"), "{rows:?}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn sigkill_then_resume_records_each_run_once_and_leaves_nothing() {
    if !privileged("sigkill_then_resume_records_each_run_once_and_leaves_nothing") {
        return;
    }
    let dir = out_dir();
    let d = dir.path().join("res");
    let (mut child, tag, file) = start_long(&d, &["--out", d.to_str().unwrap()]);
    let pid = child.id();
    wait_rows(&d, 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = rows(&d).len();
    assert!(before < 12, "the batch finished before it was killed");
    let (out, pid2) = resume(&d, &file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    no_leftovers(pid);
    no_leftovers(pid2);
    assert!(
        processes_with(&format!("packrun-nap-{tag}")).is_empty(),
        "orphaned runs still alive"
    );
    let rows = rows(&d);
    let mut keys: Vec<&str> = rows.iter().map(|r| r["run_key"].as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 12, "{err}");
    assert_eq!(rows.len(), 12, "a run_key appears twice");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn resume_with_a_changed_job_file_is_refused_naming_the_change() {
    if !privileged("resume_with_a_changed_job_file_is_refused_naming_the_change") {
        return;
    }
    let dir = out_dir();
    let d = dir.path().join("res");
    let (child, _tag, file) = start_long(&d, &["--out", d.to_str().unwrap()]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("repetitions: 12", "repetitions: 13");
    std::fs::write(&file, text).unwrap();
    let (out, _) = resume(&d, &file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("repetitions: 13"), "{err}");
    let (out, _) = resume(&d, &file, &["--force"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&d).len(), 13);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn two_batches_at_once_never_share_a_cpu() {
    if !privileged("two_batches_at_once_never_share_a_cpu") {
        return;
    }
    let dir = out_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (ca, _, _) = start_long(&a, &["--out", a.to_str().unwrap()]);
    let (cb, _, _) = start_long(&b, &["--out", b.to_str().unwrap()]);
    let (pa, pb) = (ca.id(), cb.id());
    for (c, name) in [(ca, "a"), (cb, "b")] {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "batch {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    no_leftovers(pa);
    no_leftovers(pb);
    let mut all = rows(&a);
    all.extend(rows(&b));
    assert_eq!(all.len(), 24);
    assert_no_cpu_overlap(&all);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn runs_join_the_cpu_and_blkio_hierarchies_only_for_their_limits() {
    if !privileged("runs_join_the_cpu_and_blkio_hierarchies_only_for_their_limits") {
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cpuacct").is_dir()
        || root.join("cpu").is_symlink()
        || !root.join("blkio").is_dir()
    {
        println!("cgroup v2 or co-mounted cpu,cpuacct: hierarchy membership not checked");
        return;
    }
    // Runs have cgroup namespaces of their own, so they cannot tell which
    // hierarchies they joined: watch the run cgroups (named by run key)
    // appear from outside while the batch runs.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<(String, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            fn walk(dir: &Path, depth: usize, ctrl: &str, seen: &mut HashSet<(String, String)>) {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !e.path().is_dir() {
                        continue;
                    }
                    if name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                        seen.insert((ctrl.to_string(), name));
                    } else if depth < 4 && (depth > 0 || name.starts_with("packrun")) {
                        walk(&e.path(), depth + 1, ctrl, seen);
                    }
                }
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut now = HashSet::new();
                for c in ["cpu", "blkio", "cpuacct"] {
                    walk(&Path::new("/sys/fs/cgroup").join(c), 0, c, &mut now);
                }
                seen.lock().unwrap().extend(now);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let (_dir, rows, _) = run_job_file("limits.yaml", 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let by_job: HashMap<&str, &Row> = rows.iter().map(|r| (r["job"].as_str(), r)).collect();
    let quota = by_job["quota"];
    let throttled: f64 = quota["cpu_throttled_s"].parse().unwrap();
    assert!(throttled > 0.0, "a 10% quota never throttled: {quota:?}");
    let seen = seen.lock().unwrap();
    let joined =
        |job: &str, ctrl: &str| seen.contains(&(ctrl.to_string(), by_job[job]["run_key"].clone()));
    assert!(!joined("plain", "cpu"), "no quota, no cpu group");
    assert!(!joined("plain", "blkio"), "no throttle, no blkio group");
    assert!(joined("quota", "cpu"), "a quota: a cpu group");
    assert!(joined("io", "blkio"), "a throttle: a blkio group");
    for job in ["plain", "quota", "io"] {
        assert!(joined(job, "cpuacct"), "{job}: cpuacct");
    }
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn runs_at_once_have_their_own_network_and_later_runs_reuse_a_clean_one() {
    if !privileged("runs_at_once_have_their_own_network_and_later_runs_reuse_a_clean_one") {
        return;
    }
    let dir = out_dir();
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--max-parallel",
        "2",
        "--out",
        dir.path().to_str().unwrap(),
        job("netns.yaml").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    no_leftovers(pid);
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 11, "{err}");
    // What each run saw: its namespace and a clean loopback-only network.
    let net: Vec<String> = rows
        .iter()
        .map(|r| {
            let log = std::fs::read_to_string(&r["stdout"]).unwrap();
            assert!(
                log.contains("lo=0x9 mtu=65536 devices=lo tcp=0"),
                "{}: {log}",
                r["run_key"]
            );
            log.split_whitespace().next().unwrap().to_string()
        })
        .collect();
    for (i, a) in rows.iter().enumerate() {
        for (j, b) in rows.iter().enumerate().skip(i + 1) {
            let overlap = time(&a["start_time"]) < time(&b["end_time"])
                && time(&b["start_time"]) < time(&a["end_time"]);
            assert!(
                !overlap || net[i] != net[j],
                "runs {} and {} ran at once in {}",
                a["run_key"],
                b["run_key"],
                net[i]
            );
        }
    }
    let distinct = |job: &str| -> std::collections::HashSet<&String> {
        (0..rows.len())
            .filter(|&i| rows[i]["job"] == job)
            .map(|i| &net[i])
            .collect()
    };
    // Two at a time: the eight runs without capabilities need two namespaces.
    let pooled: std::collections::HashSet<&String> = distinct("plain")
        .union(&distinct("server"))
        .copied()
        .collect();
    assert!(pooled.len() <= 2, "{pooled:?}");
    // A job keeping CAP_NET_ADMIN gets a fresh one per run: none of the
    // pooled ones (alive all along, so their ids are not reused), and each
    // admin run found the default MTU the one before it changed.
    let admin = distinct("admin");
    assert!(admin.is_disjoint(&pooled), "{admin:?} {pooled:?}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_log_file_that_cannot_be_made_makes_an_error_row_that_names_it() {
    if !privileged("a_log_file_that_cannot_be_made_makes_an_error_row_that_names_it") {
        return;
    }
    // The run's key, from a first batch.
    let (_first, first, _) = run_job_file("single.yaml", 0);
    let key = first[0]["run_key"].clone();
    // A directory where the run's stdout file would go: it cannot be made
    // (nor a stale file there removed).
    let dir = out_dir();
    let blocker = dir.path().join("logs").join(format!("{key}.out"));
    std::fs::create_dir_all(&blocker).unwrap();
    let (out, pid) = packrun(&[
        "run",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
        job("single.yaml").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    no_leftovers(pid);
    let rows = rows(dir.path());
    assert_eq!(rows.len(), 1, "{err}");
    let row = &rows[0];
    assert_eq!(row["state"], "ERROR", "{row:?}");
    assert!(
        row["termination_reason"].contains(blocker.to_str().unwrap())
            && row["termination_reason"].contains("EISDIR"),
        "{row:?}"
    );
    // Only files that were made are named.
    assert_eq!(row["stdout"], "", "{row:?}");
    assert_eq!(row["stderr"], "", "{row:?}");
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn only_output_a_job_wrote_is_kept_in_logs_and_named_in_its_row() {
    if !privileged("only_output_a_job_wrote_is_kept_in_logs_and_named_in_its_row") {
        return;
    }
    let (dir, rows, err) = run_job_file("logs.yaml", 1);
    assert_eq!(rows.len(), 6, "{err}");
    let mut kept = Vec::new();
    for r in &rows {
        let (out, err) = match r["job"].as_str() {
            "quiet" => (None, None),
            "loud" => (
                Some(format!("out-{}\n", r["cpus"])),
                Some("err\n".to_string()),
            ),
            "errors" => (None, Some("only-stderr\n".to_string())),
            other => panic!("{other}"),
        };
        for (column, want, ext) in [("stdout", out, "out"), ("stderr", err, "err")] {
            match want {
                None => assert_eq!(r[column], "", "{r:?}"),
                Some(text) => {
                    let path = dir
                        .path()
                        .join("logs")
                        .join(format!("{}.{ext}", r["run_key"]));
                    assert_eq!(Path::new(&r[column]), path, "{r:?}");
                    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
                    kept.push(path);
                }
            }
        }
    }
    // Nothing else: no empty file for what a job never wrote.
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    kept.sort();
    assert_eq!(found, kept);
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn cpus_placeholder_fills_only_itself_not_the_shells_or_an_escaped_one() {
    if !privileged("cpus_placeholder_fills_only_itself_not_the_shells_or_an_escaped_one") {
        return;
    }
    let (_dir, rows, _) = run_job_file("cpus.yaml", 0);
    let cpus = &rows[0]["cpus"];
    let out = std::fs::read_to_string(&rows[0]["stdout"]).unwrap();
    assert_eq!(out, format!("shellvar {{cpus}} {cpus} at-{cpus}\n"));
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn a_run_reads_the_file_its_job_gives_as_stdin_and_a_missing_one_is_an_error_row() {
    if !privileged("a_run_reads_the_file_its_job_gives_as_stdin_and_a_missing_one_is_an_error_row")
    {
        return;
    }
    let (_dir, rows, _) = run_job_file("stdin.yaml", 1);
    let row = |job: &str| rows.iter().find(|r| r["job"] == job).unwrap();
    let out = |job: &str| std::fs::read_to_string(&row(job)["stdout"]).unwrap();
    assert_eq!(out("reads"), "second line\n");
    assert_eq!(out("nothing"), "0\n");
    let missing = row("missing");
    assert_eq!(missing["state"], "ERROR");
    assert!(
        missing["termination_reason"].contains("no-such-input.txt"),
        "{missing:?}"
    );
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn major_faults_are_counted_in_a_run_that_maps_and_touches_a_file_and_not_in_one_that_does_not() {
    if !privileged("major_faults_are_counted_in_a_run_that_maps_and_touches_a_file_and_not_in_one_that_does_not") {
        return;
    }
    let (_dir, rows, _) = run_job_file("faults.yaml", 0);
    // The fewest major faults of a job's runs.
    let faults = |job: &str| -> u64 {
        rows.iter()
            .filter(|r| r["job"] == job)
            .map(|r| r["major_faults"].parse().unwrap())
            .min()
            .unwrap()
    };
    assert!(faults("maps") >= 1, "{rows:?}");
    assert_eq!(faults("idle"), 0, "{rows:?}");
    // Nothing swapped or throttled here, and the columns are there.
    for r in &rows {
        for c in ["thermal_throttles", "swap_in_pages", "swap_out_pages"] {
            assert!(r[c].parse::<u64>().is_ok(), "{c} of {r:?}");
        }
    }
}

/// The runs of runs.csv in start order, as `job[x].rep`.
fn start_order(rows: &[Row]) -> Vec<String> {
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| time(&r["start_time"]));
    rows.iter()
        .map(|r| format!("{}{}.{}", r["job"], r["parameter_x"], r["rep"]))
        .collect()
}

fn run_ordered(extra: &[&str]) -> (Vec<String>, serde_json::Value) {
    let dir = out_dir();
    let mut args = vec![
        "run",
        "--quiet",
        "--max-parallel",
        "1",
        "--out",
        dir.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let file = job("order.yaml");
    args.push(file.to_str().unwrap());
    let (out, pid) = packrun(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_leftovers(pid);
    let manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    (start_order(&rows(dir.path())), manifest)
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn interleave_alternates_the_sets_and_random_replays_with_its_seed() {
    if !privileged("interleave_alternates_the_sets_and_random_replays_with_its_seed") {
        return;
    }
    let (seq, m) = run_ordered(&[]);
    assert_eq!(
        seq,
        ["a1.1", "a1.2", "a1.3", "a2.1", "a2.2", "a2.3", "b.1", "b.2"]
    );
    assert_eq!(m["order"], "sequential");
    let (inter, _) = run_ordered(&["--order", "interleave"]);
    assert_eq!(
        inter,
        ["a1.1", "a2.1", "b.1", "a1.2", "a2.2", "b.2", "a1.3", "a2.3"]
    );
    let (r1, m1) = run_ordered(&["--order", "random", "--seed", "7"]);
    let (r2, _) = run_ordered(&["--order", "random", "--seed", "7"]);
    assert_eq!(r1, r2, "the same seed, the same order");
    assert_ne!(r1, seq, "shuffled");
    assert_eq!(
        (m1["order"].as_str(), m1["seed"].as_u64()),
        (Some("random"), Some(7))
    );
    // Without a seed one is chosen and recorded.
    let (_, m3) = run_ordered(&["--order", "random"]);
    assert!(m3["seed"].as_u64().is_some(), "{m3}");
}

/// The mount namespaces packrun `pid` holds descriptors of (`mnt:[inode]`).
fn mount_namespaces_held(pid: u32) -> HashSet<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("mnt:["))
        .collect()
}

#[test]
#[ignore = "needs root: real cgroups and namespaces"]
fn later_runs_reuse_a_runs_overlays_without_its_locks_or_the_hosts() {
    if !privileged("later_runs_reuse_a_runs_overlays_without_its_locks_or_the_hosts") {
        return;
    }
    let dir = out_dir();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // A world-readable host file the host holds an exclusive flock on for
    // the whole batch, on the host's tree where runs see it (not below
    // /tmp, which they get fresh, where a checkout may be).
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let file = Removed(std::path::PathBuf::from(format!(
        "/var/lib/packrun-test-{}-treepool.lock",
        std::process::id()
    )));
    let file = &file.0;
    std::fs::write(file, "host").unwrap();
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let host = nix::fcntl::Flock::lock(
        std::fs::File::open(file).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .expect("the host takes the lock");
    // Each run, one after the other, takes the lock without waiting and
    // leaves a process behind that holds it.
    let script = r#"
import fcntl, os, sys, time
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
if os.fork() == 0:
    os.setsid()
    os.close(1)
    os.close(2)
    time.sleep(30)
time.sleep(0.2)
"#;
    let jobs = dir.path().join("jobs.yaml");
    std::fs::write(
        &jobs,
        format!(
            "version: 1\nname: treepool\ndefaults:\n  resources: {{cpus: 1}}\n  time_limit: 60s\n\
             jobs:\n  lock:\n    command: {}\n    repetitions: 4\n",
            serde_json::json!(["python3", "-c", script, file.to_str().unwrap()]),
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let _shared = PACKRUNS.read().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(BIN)
        .args(["run", "--quiet", "--max-parallel", "1", "--out"])
        .args([&out_dir, &jobs])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("packrun starts");
    let pid = child.id();
    // The overlays' mount namespaces packrun holds while the batch runs.
    let mut held = HashSet::new();
    while child.try_wait().unwrap().is_none() {
        held.extend(mount_namespaces_held(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    drop(host);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    no_leftovers(pid);
    let rows = rows(&out_dir);
    assert_eq!(rows.len(), 4, "{err}");
    for r in &rows {
        assert_eq!(r["state"], "COMPLETED", "{r:?}");
        // Neither the host's lock nor the one an earlier run's process
        // held blocked this run's.
        let log = std::fs::read_to_string(&r["stdout"]).unwrap();
        assert_eq!(log, "locked\n", "{}", r["run_key"]);
    }
    // The runs' overlays were a pooled namespace's, not each run's own.
    assert!(
        !held.is_empty(),
        "packrun held no overlays for later runs: each run mounted its own"
    );
}
