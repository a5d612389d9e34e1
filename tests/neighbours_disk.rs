//! The disk under the results is shared by every run: a run that writes
//! without end is stopped at its disk budget, its neighbours' writes and
//! stdout survive, and packrun's own records survive a full disk. On a
//! small ext4 file system of the test's own (a loop-mounted image), through
//! the real binary, as root.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A 64 MiB ext4 file system (no blocks reserved for root, so root and the
/// runs see the same free space) mounted on a temp dir; unmounted, and its
/// image removed, on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl SmallDisk {
    /// None (with the reason printed) where mkfs.ext4 is missing, except
    /// under CI=true, where that is a failure.
    fn new() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        match Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img)
            .status()
        {
            Ok(s) => assert!(s.success(), "mkfs.ext4 failed"),
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("mkfs.ext4: {e} (install e2fsprogs)");
                }
                eprintln!("skipping: mkfs.ext4: {e} (install e2fsprogs)");
                return None;
            }
        }
        let st = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success(), "mount -o loop failed");
        Some(SmallDisk { _dir: dir, mnt })
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // The loop device goes with the mount (autoclear); lazily if a
        // process of a failed test still holds it.
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// The hog writes 1 MiB at a time into its writable dir without end (its
/// failed writes too); the neighbour starts beside it, writes 2 MiB a
/// second later and prints how much it wrote.
fn job(hog_resources: &str) -> String {
    format!(
        "version: 1
name: disk
jobs:
  hog:
    shell: \"i=0; while :; do head -c 1048576 /dev/zero >> /out/f$((i % 4)) || true; i=$((i+1)); done\"
    time_limit: 20s
    resources: {{cpus: 1{hog_resources}}}
    container: {{writable: [/out]}}
  neighbour:
    shell: \"sleep 1; head -c 2097152 /dev/urandom > /out/data && echo neighbour wrote $(wc -c < /out/data) bytes\"
    resources: {{cpus: 1}}
    container: {{writable: [/out]}}
"
    )
}

/// Runs `job` with its results on `disk`; returns the exit code, stderr,
/// the results folder and its rows by job.
fn run_batch(disk: &SmallDisk, job: &str) -> (i32, String, PathBuf, Vec<Row>) {
    let file = disk.mnt.join("job.yaml");
    std::fs::write(&file, job).unwrap();
    let out = disk.mnt.join("results");
    let (o, pid) = packrun(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(cgroups_of(pid).is_empty(), "cgroups left behind");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let rows = if out.join("runs.csv").exists() {
        csv_rows(&out.join("runs.csv"))
    } else {
        Vec::new()
    };
    (o.status.code().unwrap_or(-1), err, out, rows)
}

fn row<'a>(rows: &'a [Row], job: &str, err: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["job"] == job)
        .unwrap_or_else(|| panic!("no row of {job}: {rows:?}\n{err}"))
}

/// The neighbour completed, its 2 MiB are in its writable dir and its
/// stdout is in its log, named in its row.
fn assert_neighbour_whole(out: &Path, rows: &[Row], err: &str) {
    let n = row(rows, "neighbour", err);
    assert_eq!(n["state"], "COMPLETED", "{n:?}\n{err}");
    let data = out.join("scratch").join(&n["run_key"]).join("out/data");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 2 << 20);
    assert!(
        !n["stdout"].is_empty(),
        "the neighbour's stdout is lost: {n:?}"
    );
    let text = std::fs::read_to_string(&n["stdout"]).unwrap();
    assert_eq!(text, "neighbour wrote 2097152 bytes\n");
}

/// summary.csv has a line for each job.
fn assert_summary_complete(out: &Path, err: &str) {
    let summary = csv_rows(&out.join("summary.csv"));
    let jobs: Vec<&str> = summary.iter().map(|r| r["job"].as_str()).collect();
    assert!(
        jobs.contains(&"hog") && jobs.contains(&"neighbour"),
        "summary.csv: {jobs:?}\n{err}"
    );
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and a loop mount"]
fn a_hog_is_stopped_at_its_disk_budget_and_its_neighbours_writes_and_stdout_survive() {
    if !privileged("a disk hog with a budget") {
        return;
    }
    let Some(disk) = SmallDisk::new() else { return };
    let (code, err, out, rows) = run_batch(&disk, &job(", disk: 8MiB"));
    let hog = row(&rows, "hog", &err);
    assert_eq!(hog["state"], "FAILED", "{hog:?}\n{err}");
    assert!(
        hog["termination_reason"].starts_with("disk budget 8.0 MiB exceeded: "),
        "{hog:?}"
    );
    // It was stopped near its budget, long before the disk filled.
    let kept = out.join("scratch").join(&hog["run_key"]).join("out");
    let written: u64 = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        (8 << 20..40 << 20).contains(&written),
        "the hog wrote {written} bytes"
    );
    assert_neighbour_whole(&out, &rows, &err);
    assert_summary_complete(&out, &err);
    // Exit 1: a run did not complete (README's exit codes).
    assert_eq!(code, 1, "{err}");
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and a loop mount"]
fn without_a_budget_in_the_job_file_a_hog_gets_its_share_and_cannot_fill_the_results_disk() {
    if !privileged("a disk hog with the default budget") {
        return;
    }
    let Some(disk) = SmallDisk::new() else { return };
    let (code, err, out, rows) = run_batch(&disk, &job(""));
    let hog = row(&rows, "hog", &err);
    assert_eq!(hog["state"], "FAILED", "{hog:?}\n{err}");
    assert!(
        hog["termination_reason"].starts_with("disk budget "),
        "{hog:?}"
    );
    assert_neighbour_whole(&out, &rows, &err);
    assert_summary_complete(&out, &err);
    assert!(disk.free() > 0, "the disk filled up");
    assert_eq!(code, 1, "{err}");
}

/// Fills the file system at `mnt` from the host: 1 MiB writes, then 4 KiB
/// ones, until it is full.
fn fill(mnt: &Path) {
    let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
    for chunk in [1 << 20, 4096, 1024] {
        let buf = vec![1u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and a loop mount"]
fn a_results_disk_filled_by_the_host_mid_batch_keeps_every_row_the_summary_and_names_the_lost_stdout(
) {
    if !privileged("a results disk filled by the host") {
        return;
    }
    let Some(disk) = SmallDisk::new() else { return };
    // Only the neighbour, and longer: the host fills the disk while it sleeps.
    let file = disk.mnt.join("job.yaml");
    let job = "version: 1
name: full
jobs:
  neighbour:
    shell: \"sleep 2; echo to stdout; head -c 1048576 /dev/urandom > /out/data; echo done\"
    container: {writable: [/out]}
  after:
    command: [/bin/true]
    depends_on: [neighbour]
";
    std::fs::write(&file, job).unwrap();
    let out = disk.mnt.join("results");
    let child = Command::new(BIN)
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the neighbour runs (its writable dir is made), the host fills the disk.
    let began = Instant::now();
    let started = || std::fs::read_dir(out.join("scratch")).is_ok_and(|mut d| d.next().is_some());
    while !started() && began.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    fill(&disk.mnt);
    let free = disk.free();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(free, 0, "the host did not fill the disk\n{err}");
    let rows = csv_rows(&out.join("runs.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}\n{err}");
    let n = row(&rows, "neighbour", &err);
    // Its stdout could not be kept: the row says so.
    assert!(
        n["termination_reason"].contains("the disk under the results filled up while it ran"),
        "{n:?}\n{err}"
    );
    let summary = csv_rows(&out.join("summary.csv"));
    assert_eq!(summary.len(), 2, "summary.csv: {summary:?}\n{err}");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"end\""), "{manifest}");
    // The runs ran: a run that did not complete is exit 1, not exit 3.
    assert_eq!(o.status.code(), Some(1), "{err}");
}

#[test]
#[ignore = "needs root: real namespaces, cgroups and a loop mount"]
fn exec_kills_a_run_at_its_disk_and_file_budgets() {
    if !privileged("exec with a disk budget") {
        return;
    }
    let Some(disk) = SmallDisk::new() else { return };
    let tmp = disk.mnt.to_str().unwrap();
    let run = |flags: &[&str], script: &str| {
        let mut args = vec!["exec", "--format", "json", "--writable", "/out"];
        args.extend(flags);
        args.extend(["--", "/bin/sh", "-c", script]);
        let o = Command::new(BIN)
            .args(&args)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (o.status.code(), record(&o))
    };
    let (code, rec) = run(
        &["--disk", "4MiB"],
        "while :; do head -c 1048576 /dev/zero >> /out/f; done",
    );
    assert_eq!(rec["state"], "FAILED", "{rec}");
    assert!(
        rec["termination_reason"]
            .as_str()
            .unwrap()
            .starts_with("disk budget 4.0 MiB exceeded"),
        "{rec}"
    );
    assert_eq!(code, Some(128 + 9), "{rec}");
    let (_, rec) = run(
        &["--files", "100"],
        "i=0; while :; do : > /out/f$i; i=$((i+1)); done",
    );
    assert_eq!(rec["state"], "FAILED", "{rec}");
    assert!(
        rec["termination_reason"]
            .as_str()
            .unwrap()
            .starts_with("file budget 100 exceeded"),
        "{rec}"
    );
    assert!(disk.free() > 0);
}

#[test]
fn exec_refuses_a_disk_budget_without_a_writable_dir_to_limit() {
    let o = Command::new(BIN)
        .args(["exec", "--disk", "1MiB", "--", "/bin/true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--disk and --files limit the run's writable dirs, and it has none: expected --writable DIR"),
        "{err}"
    );
}
