//! `compare` on results folders written by packrun's own writers (runs.csv
//! through `RunsCsv`, manifest.json through `write_manifest`): the two-folder
//! and the baseline form, the table, Markdown, JSON and compare.html.

use chrono::TimeZone;
use packrun::account::Usage;
use packrun::cpulist::CpuList;
use packrun::html;
use packrun::report::compare::{
    compare, render_json, render_markdown, render_table, CompareRequest, Comparison,
};
use packrun::results::{read_manifest, write_manifest, Record, RunsCsv, State};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One run of `job` with `params`: wall time `wall` s, CPU time 0.9 of it,
/// `mem` MiB of peak memory.
fn record(job: &str, params: &[(&str, &str)], rep: u32, wall: f64, mem: u64) -> Record {
    let start = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
    let wall_time = Duration::from_secs_f64(wall);
    Record {
        key: format!("{job}-{}-{rep}", params.len()),
        job: job.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        rep,
        warmup: false,
        cpus: CpuList::parse("0").unwrap(),
        mems: CpuList::parse("0").unwrap(),
        gpu: Default::default(),
        userns: String::new(),
        start_time: start,
        end_time: start + wall_time,
        wall_time,
        usage: Usage {
            cpu_ns: (wall * 0.9e9) as u64,
            user_ns: (wall * 0.9e9) as u64,
            memory_peak_bytes: mem << 20,
            ..Usage::default()
        },
        disturbance: Default::default(),
        memory_limit: None,
        exit_code: Some(0),
        signal: None,
        state: State::Completed,
        termination_reason: "exited".into(),
        stdout: None,
        stderr: None,
        counters: Default::default(),
        net: None,
    }
}

/// A job and parameter set: job, parameters, wall times, MiB of memory
/// (the first run's; each next run uses 1 MiB more).
type Set<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [f64], u64);

/// A results folder `name` under `root` with these sets.
fn folder(root: &Path, name: &str, sets: &[Set]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let params = vec!["threads".to_string()];
    let mut csv =
        RunsCsv::open(&dir.join("runs.csv"), &params, Default::default(), "node1").unwrap();
    for (job, p, walls, mem) in sets {
        // A warmup, slower than everything, that no statistic may see.
        let mut w = record(job, p, 0, 99.0, *mem);
        w.warmup = true;
        csv.append(&w).unwrap();
        for (i, wall) in walls.iter().enumerate() {
            let mut r = record(job, p, i as u32 + 1, *wall, *mem + i as u64);
            r.key = format!("{job}-{:?}-{i}", p);
            csv.append(&r).unwrap();
        }
    }
    csv.sync().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-sample");
    let mut m = read_manifest(&fixture.join("manifest.json")).unwrap();
    m.name = format!("sweep-{name}");
    m.start = "2026-03-02T10:00:00Z".into();
    write_manifest(&dir.join("manifest.json"), &m).unwrap();
    dir
}

const A1: &[f64] = &[4.02, 4.10, 3.97, 4.05, 4.01, 4.07];
const A2: &[f64] = &[2.51, 2.48, 2.55, 2.50, 2.53, 2.49];

/// A and B: xz threads=1 twice as fast in B, threads=2 the same, gz only
/// in A, bz only in B.
fn two_folders(root: &Path) -> (PathBuf, PathBuf) {
    let a = folder(
        root,
        "a",
        &[
            ("xz", &[("threads", "1")], A1, 100),
            ("xz", &[("threads", "2")], A2, 200),
            ("gz", &[], A1, 10),
        ],
    );
    let half: Vec<f64> = A1.iter().map(|x| x / 2.0).collect();
    let b = folder(
        root,
        "b",
        &[
            (
                "xz",
                &[("threads", "2")],
                &[2.52, 2.47, 2.54, 2.51, 2.50, 2.52],
                200,
            ),
            ("xz", &[("threads", "1")], &half, 100),
            ("bz", &[], A1, 10),
        ],
    );
    (a, b)
}

fn two(a: &Path, b: &Path) -> Comparison {
    compare(&CompareRequest {
        a: a.into(),
        b: Some(b.into()),
        baseline: None,
        alpha: 0.05,
        metrics: Vec::new(),
    })
    .unwrap()
}

#[test]
fn two_folders_compare_the_sets_both_have_in_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_folders(tmp.path());
    let c = two(&a, &b);
    assert_eq!(c.sets.len(), 2);
    let t = render_table(&c);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "A: {} (sweep-a, on {}, 2026-03-02T10:00:00Z)",
            a.display(),
            c.a.host.as_deref().unwrap()
        )
    );
    assert!(lines[1].starts_with(&format!("B: {} (sweep-b", b.display())));
    let head: Vec<&str> = lines[2]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        head,
        [
            "job",
            "parameters",
            "metric",
            "runs A",
            "runs B",
            "median A",
            "median B",
            "B/A",
            "95% CI",
            "p",
            "verdict"
        ]
    );
    // xz threads=1: medians 4.035 s and 2.0175 s, 6 runs a side (the
    // warmup left out), fully separated: scipy's exact p is 2 / C(12, 6).
    let wall = lines[3];
    assert!(wall.starts_with("xz "), "{wall}");
    for want in [
        "threads=1",
        "wall time",
        " 6 ",
        "4.035 s",
        "2.018 s",
        " 0.500 ",
        "0.00216",
        "faster",
    ] {
        assert!(wall.contains(want), "{want} in {wall}\n{t}");
    }
    assert!(lines[4].contains("CPU time") && lines[4].ends_with("faster"));
    assert!(lines[5].contains("peak memory") && lines[5].contains("102.5 MiB"));
    assert!(lines[5].ends_with("no significant difference"), "{t}");
    let xz2 = lines[6];
    assert!(
        xz2.contains("threads=2") && xz2.ends_with("no significant difference"),
        "{t}"
    );
    let geo = lines[9];
    assert!(
        geo.starts_with("geometric mean  2 set(s)") && geo.contains("wall time"),
        "{t}"
    );
    assert!(t.contains("only in A, not compared: gz\n"), "{t}");
    assert!(t.contains("only in B, not compared: bz\n"), "{t}");
    assert!(t.contains("10000 resamples"), "{t}");
}

#[test]
fn markdown_and_json_carry_the_same_comparison() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_folders(tmp.path());
    let c = two(&a, &b);
    let md = render_markdown(&c);
    assert!(
        md.contains("| job | parameters | metric | runs A | runs B | median A | median B | B/A | 95% CI | p | verdict |\n|:---|:---|:---|---:|"),
        "{md}"
    );
    assert!(md.contains("| xz | threads=1 | wall time | 6 | 6 | 4.035 s | 2.018 s | 0.500 | ["));
    let j: serde_json::Value = serde_json::from_str(&render_json(&c)).unwrap();
    assert_eq!(j["alpha"], 0.05);
    assert_eq!(j["resamples"], 10000);
    let s0 = &j["sets"][0];
    assert_eq!(s0["job"], "xz");
    assert_eq!(s0["parameters"]["threads"], "1");
    assert_eq!(
        (s0["runs_a"].as_u64(), s0["runs_b"].as_u64()),
        (Some(6), Some(6))
    );
    let wall = &s0["metrics"][0];
    assert_eq!(wall["metric"], "wall_time_s");
    assert_eq!(wall["verdict"], "faster");
    assert_eq!(wall["test"], "exact");
    assert!((wall["ratio"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    // scipy.stats.mannwhitneyu(A1, [x / 2 for x in A1]).pvalue
    assert!((wall["p_value"].as_f64().unwrap() - 0.0021645021645021645).abs() < 1e-12);
    let (lo, hi) = (
        wall["ci_low"].as_f64().unwrap(),
        wall["ci_high"].as_f64().unwrap(),
    );
    assert!((lo..=hi).contains(&0.5) && hi < 1.0, "[{lo}, {hi}]");
    assert_eq!(s0["metrics"][2]["metric"], "memory_peak_bytes");
    assert_eq!(j["geomean"][0]["sets"], 2);
    assert_eq!(j["only_a"][0], "gz");
}

#[test]
fn the_baseline_form_compares_the_other_sets_of_one_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = two_folders(tmp.path());
    let c = compare(&CompareRequest {
        a: a.clone(),
        b: None,
        baseline: Some("xz:threads=1".into()),
        alpha: 0.05,
        metrics: Vec::new(),
    })
    .unwrap();
    let t = render_table(&c);
    assert!(
        t.starts_with(&format!("A: baseline xz threads=1 in {}", a.display())),
        "{t}"
    );
    let labels: Vec<String> = c.sets.iter().map(|s| s.label()).collect();
    assert_eq!(labels, ["xz threads=2", "gz"]);
    assert_eq!(c.sets[0].metrics[0].verdict.as_str(), "faster");
    assert_eq!(
        c.sets[1].metrics[0].verdict.as_str(),
        "no significant difference"
    );
    assert_eq!(c.sets[0].metrics[2].verdict.as_str(), "larger");
    assert_eq!(c.sets[1].metrics[2].verdict.as_str(), "smaller");

    let e = compare(&CompareRequest {
        a: a.clone(),
        b: None,
        baseline: Some("zstd".into()),
        alpha: 0.05,
        metrics: Vec::new(),
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: baseline `zstd` is not a job and parameter set there; the sets there are xz:threads=1, xz:threads=2, gz",
            a.display()
        )
    );
}

#[test]
fn errors_name_the_folder_and_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = two_folders(tmp.path());
    let other = folder(tmp.path(), "c", &[("sort", &[], A1, 5)]);
    let e = compare(&CompareRequest {
        a: a.clone(),
        b: Some(other.clone()),
        baseline: None,
        alpha: 0.05,
        metrics: Vec::new(),
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{0} and {1} have no job and parameter set in common: {0} has xz threads=1, xz threads=2, gz; {1} has sort",
            a.display(),
            other.display()
        )
    );
    let missing = tmp.path().join("nothing-here");
    let e = compare(&CompareRequest {
        a: a.clone(),
        b: Some(missing.clone()),
        baseline: None,
        alpha: 0.05,
        metrics: Vec::new(),
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot read {}", missing.join("runs.csv").display())
    );
}

#[test]
fn compare_html_is_written_with_a_ratio_chart_per_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_folders(tmp.path());
    let c = two(&a, &b);
    let out = html::write_compare_report(tmp.path(), &c).unwrap();
    assert_eq!(out, tmp.path().join("compare.html"));
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("Content-Security-Policy"));
    assert_eq!(page.matches("<svg ").count(), 3, "wall, CPU, memory");
    assert_eq!(page.matches("class=\"ratio-chart\"").count(), 3);
    // A point per set and one for the geometric mean, in each chart.
    assert_eq!(page.matches("<circle class=\"ratio ").count(), 6);
    assert_eq!(page.matches("class=\"ratio verdict-faster\"").count(), 2);
    assert_eq!(page.matches(" geomean\" points=").count(), 3);
    assert_eq!(
        page.matches("<line class=\"one\"").count(),
        3,
        "a line at 1"
    );
    assert!(page.contains("<g class=\"ci\""));
    assert!(page.contains("<td class=\"verdict-faster\">faster</td>"));
    assert!(!page.contains("src=") && !page.contains("<link"));
}

/// A folder whose runs counted task-clock (the run's wall time in ns)
/// and page-faults (the same in every run).
fn counted(root: &Path, name: &str, walls: &[f64]) -> PathBuf {
    use packrun::counters::{Chosen, Counter};
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let chosen = Chosen::of([Counter::TaskClock, Counter::PageFaults]);
    let mut csv = RunsCsv::open(&dir.join("runs.csv"), &[], chosen, "node1").unwrap();
    for (i, wall) in walls.iter().enumerate() {
        let mut r = record("xz", &[], i as u32 + 1, 3.0, 10);
        r.key = format!("{name}-{i}");
        r.counters.values = vec![
            (Counter::TaskClock, Some(wall * 1e9)),
            (Counter::PageFaults, Some(1000.0 + (i % 2) as f64)),
        ];
        csv.append(&r).unwrap();
    }
    csv.sync().unwrap();
    dir
}

#[test]
fn compare_on_a_counter_gives_its_own_statistics_and_verdict() {
    let root = tempfile::tempdir().unwrap();
    let a = counted(root.path(), "a", A1);
    let half: Vec<f64> = A1.iter().map(|x| x / 2.0).collect();
    let b = counted(root.path(), "b", &half);
    let metric = |names: &[&str]| {
        names
            .iter()
            .map(|n| packrun::report::compare::Metric::parse(n).unwrap())
            .collect()
    };
    let c = compare(&CompareRequest {
        a: a.clone(),
        b: Some(b.clone()),
        baseline: None,
        alpha: 0.05,
        metrics: metric(&["task_clock", "page-faults", "wall"]),
    })
    .unwrap();
    let m = &c.sets[0].metrics;
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].metric.column(), "task_clock");
    assert_eq!(m[0].verdict.as_str(), "faster");
    assert!((m[0].ratio.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(m[1].verdict.as_str(), "no significant difference");
    // Every run took 3 s of wall time on both sides.
    assert_eq!(m[2].ratio, Some(1.0));
    let table = render_table(&c);
    assert!(table.contains("task_clock"), "{table}");
    assert!(table.contains("4.035 s"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&render_json(&c)).unwrap();
    assert_eq!(json["geomean"][0]["metric"], "task_clock");
    // A column no run has a value of, and a name that is no column.
    let e = compare(&CompareRequest {
        a: a.clone(),
        b: Some(b.clone()),
        baseline: None,
        alpha: 0.05,
        metrics: metric(&["cycles"]),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("no run has a value of `cycles`"), "{e}");
    let e = packrun::report::compare::Metric::parse("speed")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown metric `speed`: expected wall, cpu, memory, a counter (task_clock,"),
        "{e}"
    );
}

#[test]
fn summary_csv_json_and_the_page_get_each_counters_statistics() {
    let root = tempfile::tempdir().unwrap();
    let a = counted(root.path(), "a", &[1.0, 2.0, 3.0]);
    let rows = packrun::results::read_rows(&a.join("runs.csv")).unwrap();
    let csv = packrun::report::summary_csv(&packrun::report::summarize(&rows), false);
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| cells[head.iter().position(|h| *h == name).unwrap()];
    assert_eq!(at("task_clock_median"), "2000000000");
    assert_eq!(at("task_clock_max"), "3000000000");
    assert_eq!(at("page_faults_min"), "1000");
    let json: serde_json::Value = serde_json::from_str(&packrun::report::formats::json(
        &packrun::report::summarize(&rows),
    ))
    .unwrap();
    assert_eq!(json[0]["task_clock"]["median"], 2e9);
    let page = packrun::html::render(&rows, None);
    assert!(page.contains("<h2>Counters</h2>"));
    assert!(page.contains("<td>task_clock</td>"));
}
