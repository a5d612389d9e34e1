//! `packrun validate` on deliberately broken job files: exit code 2 and a
//! message that locates the problem and echoes the bad value.

use std::path::{Path, PathBuf};
use std::process::Command;

fn broken_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/broken exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// `# expect: LOCATION | VALUE` lines at the top of a broken file.
fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (loc, value) = e.split_once(" | ").expect("`# expect: LOCATION | VALUE`");
            (loc.to_string(), value.to_string())
        })
        .collect()
}

fn validate(file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_packrun"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("packrun runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `file:LINE:COL:` at the start of a message line.
fn has_line_column(line: &str) -> bool {
    let mut parts = line.splitn(4, ':');
    let (_, l, c) = (parts.next(), parts.next(), parts.next());
    l.is_some_and(|l| l.parse::<usize>().is_ok()) && c.is_some_and(|c| c.parse::<usize>().is_ok())
}

#[test]
fn each_broken_job_file_exits_2_with_a_located_message_naming_the_bad_value() {
    let files = broken_files();
    assert!(
        files.len() >= 20,
        "expected at least 20 broken files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        let expect = expectations(&text);
        assert!(
            !expect.is_empty(),
            "{} has no `# expect:` line",
            f.display()
        );
        let (code, stdout, stderr) = validate(f);
        if code != Some(2) {
            failures.push(format!(
                "{}: exit code {code:?}, expected 2\n{stdout}{stderr}",
                f.display()
            ));
            continue;
        }
        for (loc, value) in expect {
            // One message line must hold the location (YAML path or :line:col) and the value.
            let hit = stderr
                .lines()
                .any(|l| has_line_column(l) && l.contains(&loc) && l.contains(&value));
            if !hit {
                failures.push(format!(
                    "{}: no line with `{loc}` and `{value}` in:\n{stderr}",
                    f.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_broken_file_tests_a_different_problem() {
    let mut seen = std::collections::HashSet::new();
    for f in broken_files() {
        let text = std::fs::read_to_string(&f).expect("readable");
        for e in expectations(&text) {
            if !f.ends_with("three-problems.yaml") {
                assert!(seen.insert(e.clone()), "{} repeats {e:?}", f.display());
            }
        }
    }
}

#[test]
fn a_file_with_three_problems_reports_all_three_in_file_order() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/three-problems.yaml");
    let (code, _, stderr) = validate(&f);
    assert_eq!(code, Some(2));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains("jobs.xz.resources.memory") && lines[0].contains(":9:25:"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("jobs.xz.time_limit") && lines[1].contains(":10:17:"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("jobs.gz.depends_on[0]") && lines[2].contains(":13:18:"),
        "{stderr}"
    );
}

#[test]
fn a_valid_example_exits_0_and_counts_its_runs() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/quickstart.yaml");
    let (code, stdout, stderr) = validate(&f);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid: 4 jobs, 14 runs"), "{stdout}");
}

#[test]
fn a_missing_file_exits_2_and_names_the_path() {
    let (code, _, stderr) = validate(Path::new("/nonexistent/jobs.yaml"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent/jobs.yaml"), "{stderr}");
}

#[test]
fn schema_subcommand_prints_the_committed_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_packrun"))
        .arg("schema")
        .output()
        .expect("packrun runs");
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/jobfile.schema.json"),
    )
    .expect("committed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        committed.trim_end()
    );
}

#[test]
fn exec_flags_are_checked_by_the_job_files_rules_before_anything_starts() {
    let exec = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_packrun"))
            .arg("exec")
            .args(flags)
            .args(["--", "true"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = exec(&["--memory", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--memory: size `0` is zero"), "{err}");
    let (code, err) = exec(&["--time-limit", "0s"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--time-limit: duration `0s` is zero"), "{err}");
    // A bare number is seconds, as in a job file: not a flag error (exit 2).
    let (code, err) = exec(&["--time-limit", "30", "--memory", "1x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("--time-limit"), "{err}");
    assert!(err.contains("--memory"), "{err}");
}

/// `packrun validate FILE` with its address space limited to 512 MiB, so a
/// regression that allocates the runs fails here instead of eating the machine.
fn validate_in_512_mib(file: &Path) -> (Option<i32>, String) {
    let (code, _, err) = packrun_in_512_mib(&["validate".as_ref(), file.as_os_str()]);
    (code, err)
}

/// `packrun ARGS` with its address space limited to 512 MiB: exit code,
/// the length of its stdout, its stderr.
fn packrun_in_512_mib(args: &[&std::ffi::OsStr]) -> (Option<i32>, usize, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_packrun"));
    cmd.args(args);
    // SAFETY: setrlimit(2) is async-signal-safe and touches only a local.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 512 << 20,
                rlim_max: 512 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // stdout counted as it comes (a plan of a million runs is 400 MB).
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let len = std::io::copy(&mut child.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    let status = child.wait().unwrap();
    (status.code(), len as usize, err.join().unwrap())
}

#[test]
fn a_million_runs_validate_and_plan_in_a_512_mib_address_space() {
    // Each run a full struct of strings took 3 GB to validate and 7.7 GB
    // to plan; kept as (job, combination, rep) and rendered when printed,
    // both fit here.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/million.yaml");
    let (code, _, err) = packrun_in_512_mib(&["validate".as_ref(), file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    let plan = ["plan", "--format", "json"].map(std::ffi::OsStr::new);
    let (code, len, err) = packrun_in_512_mib(&[plan[0], plan[1], plan[2], file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    // Each run's entry is about 400 bytes of JSON.
    assert!(len > 1_000_000 * 300, "{len} bytes of plan");
    // The table too (it took 725 MB when it was made whole first).
    let (code, len, err) = packrun_in_512_mib(&[plan[0], file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(len > 1_000_000 * 50, "{len} bytes of table");
}

#[test]
fn a_typo_that_asks_for_billions_of_repetitions_is_an_error_not_an_allocation() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/huge-reps.yaml");
    let (code, err) = validate_in_512_mib(&file);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(":7:"), "points at repetitions: {err}");
    assert!(
        err.contains(
            "1 combination(s) × (0 warmup + 4,249,672,965 repetitions) = 4,249,672,965 runs"
        ),
        "{err}"
    );
    assert!(err.contains("more than the 10,000,000 runs"), "{err}");
}

#[test]
fn a_matrix_of_a_billion_combinations_is_an_error_not_an_allocation() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/huge-matrix.yaml");
    let (code, err) = validate_in_512_mib(&file);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("jobs.sweep.matrix: the matrix has 1,000,000,000 combinations (1000 a × 1000 b × 1000 c)"),
        "{err}"
    );
}
