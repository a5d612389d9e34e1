//! `packrun report` formats and joblog, completions, man page and --help,
//! through the real binary on the sample results folder.

mod common;
use common::*;
use std::path::Path;

fn sample() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/results-sample")
        .display()
        .to_string()
}

fn ok(args: &[&str]) -> String {
    let (out, _) = packrun(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b') && !err.contains('\x1b'),
        "{args:?}: colour escapes in piped output"
    );
    text
}

#[test]
fn the_table_counts_the_outlier_and_keeps_it_in_the_statistics() {
    let t = ok(&["report", &sample()]);
    let line = t
        .lines()
        .find(|l| l.starts_with("sort") && l.contains("size=10M"))
        .unwrap();
    assert!(line.contains("4 COMPLETED"), "{line}");
    assert!(
        line.contains("3.120 … 6.900 s"),
        "the outlier is the max: {line}"
    );
    assert!(line.trim_end().ends_with(" 1"), "one outlier: {line}");
    assert!(t.contains("1 wall time outlier(s)"), "{t}");
    let hog = t.lines().find(|l| l.starts_with("hog")).unwrap();
    assert!(hog.contains("1 COMPLETED, 1 OUT_OF_MEMORY"), "{hog}");
}

#[test]
fn markdown_csv_and_json_hold_the_same_groups() {
    let md = ok(&["report", "--format", "markdown", &sample()]);
    assert_eq!(md.lines().count(), 2 + 7, "{md}");
    assert!(md.lines().nth(1).unwrap().starts_with("|:---|"));
    let csv = ok(&["report", "--format", "csv", &sample()]);
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let head = rdr.headers().unwrap().clone();
    assert!(head.iter().any(|h| h == "outliers") && head.iter().any(|h| h == "parameter_size"));
    assert_eq!(rdr.records().count(), 7);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["report", "--format", "json", &sample()])).unwrap();
    let groups = json.as_array().unwrap();
    assert_eq!(groups.len(), 7);
    let sleeper = groups.iter().find(|g| g["job"] == "sleeper").unwrap();
    assert_eq!(sleeper["states"]["TIMEOUT"], 1);
    assert_eq!(sleeper["failures"], 1);
}

#[test]
fn joblog_has_parallels_columns_one_line_per_run_in_start_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    ok(&["report", "--joblog", log.to_str().unwrap(), &sample()]);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 20, "every run, warmups too");
    let mut last = 0.0;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 9, "{r:?}");
        assert_eq!(r[0], (i + 1).to_string());
        let start = r[2].trim();
        assert_eq!(start.split('.').nth(1).map(str::len), Some(3), "{start}");
        let t: f64 = start.parse().unwrap();
        assert!(t >= last, "start order");
        last = t;
    }
    let timeout = rows.iter().find(|r| r[8] == "sleeper rep=1").unwrap();
    assert_eq!(
        (timeout[6], timeout[7]),
        ("-1", "9"),
        "killed: Exitval -1, Signal 9"
    );
    let failed = rows.iter().find(|r| r[8] == "flaky rep=1").unwrap();
    assert_eq!((failed[6], failed[7]), ("1", "0"));
}

#[test]
fn a_folder_without_runs_csv_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = packrun(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.path().join("runs.csv").display().to_string()),
        "{err}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let s = ok(&["completions", shell]);
        for sub in ["run", "report", "doctor", "plan", "exec"] {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(
            s.contains("hyperfine-json"),
            "{shell}: report formats complete"
        );
    }
}

#[test]
fn the_man_page_is_roff_naming_the_subcommands() {
    let m = ok(&["man"]);
    assert!(
        m.starts_with(".ie") || m.contains(".TH packrun"),
        "{}",
        &m[..200.min(m.len())]
    );
    assert!(m.contains("doctor") && m.contains("report"));
}

#[test]
fn every_subcommand_help_shows_examples() {
    for sub in [
        "validate",
        "schema",
        "topology",
        "run",
        "exec",
        "plan",
        "report",
        "doctor",
        "completions",
        "man",
    ] {
        let h = ok(&[sub, "--help"]);
        assert!(
            h.contains("Examples:"),
            "{sub} --help has no examples:\n{h}"
        );
        assert!(
            h.contains(&format!("packrun {sub}")),
            "{sub}: examples do not use it:\n{h}"
        );
    }
    assert!(ok(&["--help"]).contains("Examples:"));
}
