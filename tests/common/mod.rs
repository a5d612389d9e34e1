//! Shared by the integration tests that drive the real binary as root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, RwLock, RwLockWriteGuard};

pub const BIN: &str = env!("CARGO_BIN_EXE_packrun");

/// Checks that this test may create cgroups and namespaces: true as root,
/// and a failure naming what is missing otherwise, so a privileged test run
/// with `--include-ignored` by another user never passes without having run.
/// (It returns a bool so the tests read `if !privileged(..) { return; }`.)
/// Plain `cargo test` never gets here: such tests are `#[ignore = "needs root: .."]`.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    panic!(
        "{test} needs root (it makes cgroups and namespaces): run it as root, \
         or run plain `cargo test`, which leaves it out as ignored"
    );
}

/// `program`'s path when some directory of PATH has it.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The helper C programs in tests/helpers, built once per test binary.
pub fn helper(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helpers");
        std::fs::create_dir_all(&dir).unwrap();
        for h in ["burn", "alloc"] {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/helpers/{h}.c"));
            let out = dir.join(format!("{h}.{}", std::process::id()));
            let st = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&out)
                .arg(&src)
                .status()
                .unwrap_or_else(|e| {
                    panic!("cc runs (needs a C compiler: apt-get install gcc libc6-dev): {e}")
                });
            assert!(st.success(), "cc {h}.c failed");
            std::fs::rename(&out, dir.join(h)).unwrap();
        }
        dir
    });
    dir.join(name)
}

/// Every packrun that `packrun` starts holds this shared; a test that
/// leaves something for the next packrun to tidy (the cgroups of a killed
/// batch, which any packrun that starts removes) holds it alone, so that
/// the tests running beside it in this binary cannot tidy it first.
pub static PACKRUNS: RwLock<()> = RwLock::new(());

/// Runs packrun with `args`, returns its output and pid.
pub fn packrun(args: &[&str]) -> (Output, u32) {
    let _shared = PACKRUNS.read().unwrap_or_else(|e| e.into_inner());
    packrun_unlocked(args)
}

/// `packrun` for a test that holds `PACKRUNS` alone (the guard shows it).
pub fn packrun_alone(_alone: &RwLockWriteGuard<()>, args: &[&str]) -> (Output, u32) {
    packrun_unlocked(args)
}

fn packrun_unlocked(args: &[&str]) -> (Output, u32) {
    let child = Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("packrun starts");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (out, pid)
}

/// Every cgroup directory of the batch that packrun process `pid` made
/// (`packrun/b<pid>-…`, or `packrun-b<pid>-…` for a single run).
pub fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("b{pid}-");
    let single = format!("packrun-b{pid}-");
    let mut found = Vec::new();
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            for dir in [e.path(), PathBuf::from(base)] {
                if let Ok(bs) = std::fs::read_dir(&dir) {
                    for b in bs.flatten() {
                        if b.file_name().to_string_lossy().starts_with(&single) {
                            found.push(b.path());
                        }
                    }
                }
            }
            for dir in [e.path().join("packrun"), Path::new(base).join("packrun")] {
                if let Ok(bs) = std::fs::read_dir(&dir) {
                    for b in bs.flatten() {
                        if b.file_name().to_string_lossy().starts_with(&prefix) {
                            found.push(b.path());
                        }
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The usage record that `packrun exec --format json` printed on stderr.
pub fn record(out: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    let start = err
        .find('{')
        .unwrap_or_else(|| panic!("no JSON record in stderr:\n{err}"));
    let end = err.rfind('}').unwrap();
    serde_json::from_str(&err[start..=end]).unwrap_or_else(|e| panic!("bad record: {e}\n{err}"))
}

/// Pids of host processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A runs.csv row: column name to cell.
pub type Row = std::collections::HashMap<String, String>;

/// Every row of a CSV file with a header line.
pub fn csv_rows(path: &Path) -> Vec<Row> {
    let mut rdr =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let head: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    rdr.records()
        .map(|r| {
            head.iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Runs `packrun exec --format json <flags> -- <cmd>`; checks nothing of the batch is left.
pub fn exec(flags: &[&str], cmd: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["exec".to_string(), "--format".into(), "json".into()];
    args.extend(flags.iter().map(|s| s.to_string()));
    let mut cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    // The helper programs live in the target directory, which may be below
    // /tmp (hidden by the run's own /tmp): bind their folder in.
    let helpers = helper("burn").parent().unwrap().to_path_buf();
    if let Some(name) = cmd[0]
        .strip_prefix(&format!("{}/", helpers.display()))
        .map(String::from)
    {
        args.push("--bind".into());
        args.push(format!("{}:/mnt:ro", helpers.display()));
        cmd[0] = format!("/mnt/{name}");
    }
    args.push("--".into());
    args.extend(cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, pid) = packrun(&args);
    let left = cgroups_of(pid);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    let rec = record(&out);
    (out, rec)
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
