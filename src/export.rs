//! `packrun report` formats: a terminal table, Markdown, CSV and JSON of the
//! summary, hyperfine's JSON export and GNU parallel's joblog. Formats what
//! runs.csv holds; outliers are counted, never dropped.

use crate::report::{self, human_bytes, Row, Stats, Summary};
use std::collections::BTreeMap;

/// Iglewicz and Hoaglin's cut-off: a modified z-score above 3.5 marks an outlier.
pub const OUTLIER_Z: f64 = 3.5;

fn median(v: &[f64]) -> f64 {
    Stats::of(v).median
}

/// Modified z-scores (Iglewicz and Hoaglin, 1993): 0.6745 (x - median) / MAD,
/// with MAD the median absolute deviation. When more than half the values
/// are equal the MAD is 0; then the mean absolute deviation stands in
/// (scaled by 1.253314 so both estimate the same σ), and when that is 0 too
/// every value is the median and every score 0.
pub fn modified_z_scores(values: &[f64]) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let med = median(values);
    let dev: Vec<f64> = values.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&dev);
    if mad > 0.0 {
        return values.iter().map(|x| 0.6745 * (x - med) / mad).collect();
    }
    let mean_ad = dev.iter().sum::<f64>() / dev.len() as f64;
    if mean_ad > 0.0 {
        values
            .iter()
            .map(|x| (x - med) / (1.253314 * mean_ad))
            .collect()
    } else {
        vec![0.0; values.len()]
    }
}

/// How many values have a modified z-score above 3.5 (either side).
pub fn count_outliers(values: &[f64]) -> usize {
    modified_z_scores(values)
        .iter()
        .filter(|z| z.abs() > OUTLIER_Z)
        .count()
}

/// A job and parameter set: report's summary plus what the exports need.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub summary: Summary,
    /// Measured runs (no warmups), in rep order, every state.
    pub rows: Vec<&'a Row>,
    /// Completed runs whose wall time is an outlier.
    pub outliers: usize,
}

impl Group<'_> {
    /// The completed measured runs, in rep order.
    pub fn completed(&self) -> impl Iterator<Item = &&Row> {
        self.rows.iter().filter(|r| r.state == "COMPLETED")
    }

    /// `job threads=2 size=1M`: the label of this group.
    pub fn label(&self) -> String {
        label(&self.summary.job, &self.summary.params)
    }
}

pub fn label(job: &str, params: &[(String, String)]) -> String {
    let mut s = job.to_string();
    for (k, v) in params {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// Groups the rows by job and parameter set, in the summary's order.
pub fn groups(rows: &[Row]) -> Vec<Group<'_>> {
    crate::report::summarize(rows)
        .into_iter()
        .map(|summary| {
            let mut g: Vec<&Row> = rows
                .iter()
                .filter(|r| !r.warmup && r.job == summary.job && r.params == summary.params)
                .collect();
            g.sort_by_key(|r| r.rep);
            Group {
                outliers: count_outliers(&summary.wall_times),
                summary,
                rows: g,
            }
        })
        .collect()
}

fn params_text(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn states_text(s: &Summary) -> String {
    s.states
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| format!("{n} {st}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cells of the summary: header first.
pub fn cells(groups: &[Group]) -> Vec<Vec<String>> {
    let mut out = vec![[
        "job",
        "parameters",
        "runs",
        "states",
        "wall median",
        "wall mean ± σ",
        "wall min … max",
        "cpu median",
        "cpu mean ± σ",
        "max memory",
        "outliers",
    ]
    .map(String::from)
    .to_vec()];
    for g in groups {
        let s = &g.summary;
        let ok = s.wall_times.len();
        let t = |x: f64| {
            if ok == 0 {
                "-".to_string()
            } else {
                format!("{x:.3} s")
            }
        };
        let pm = |st: &Stats| {
            if ok == 0 {
                "-".to_string()
            } else {
                format!("{:.3} ± {:.3} s", st.mean, st.stddev)
            }
        };
        out.push(vec![
            s.job.clone(),
            params_text(&s.params),
            s.runs.to_string(),
            states_text(s),
            t(s.wall.median),
            pm(&s.wall),
            if ok == 0 {
                "-".into()
            } else {
                format!("{:.3} … {:.3} s", s.wall.min, s.wall.max)
            },
            t(s.cpu.median),
            pm(&s.cpu),
            human_bytes(s.max_memory_peak),
            g.outliers.to_string(),
        ]);
    }
    out
}

/// A plain text table for the terminal.
pub fn table(groups: &[Group]) -> String {
    let rows = cells(groups);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out: String = rows
        .iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            line.join("  ").trim_end().to_string() + "\n"
        })
        .collect();
    let n: usize = groups.iter().map(|g| g.outliers).sum();
    if n > 0 {
        out.push_str(&format!(
            "{n} wall time outlier(s) (modified z-score > {OUTLIER_Z}) counted above, kept in every statistic\n"
        ));
    }
    out
}

/// A GitHub-flavoured Markdown table.
pub fn markdown(groups: &[Group]) -> String {
    let rows = cells(groups);
    let esc = |c: &str| c.replace('|', "\\|");
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", rows[0].join(" | ")));
    out.push_str(&format!(
        "|{}|\n",
        rows[0]
            .iter()
            .enumerate()
            .map(|(i, _)| if i < 4 { ":---" } else { "---:" })
            .collect::<Vec<_>>()
            .join("|")
    ));
    for r in &rows[1..] {
        out.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}

/// CSV: summary.csv's numbers plus mean user/system time and outliers.
pub fn csv(groups: &[Group]) -> String {
    let params = report::summary_params(groups.iter().map(|g| &g.summary));
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = report::summary_head(&params);
    head.extend(
        [
            "user_time_s_mean",
            "system_time_s_mean",
            "memory_peak_bytes_max",
            "failures",
            "outliers",
        ]
        .map(String::from),
    );
    head.extend(report::state_columns());
    w.write_record(&head).expect("CSV to memory");
    for g in groups {
        let s = &g.summary;
        let mut c = report::summary_cells(s, &params);
        let (user, system) = user_system(g);
        c.push(format!("{user:.6}"));
        c.push(format!("{system:.6}"));
        c.push(s.max_memory_peak.to_string());
        c.push(s.failures.to_string());
        c.push(g.outliers.to_string());
        c.extend(s.states.iter().map(|(_, n)| n.to_string()));
        w.write_record(&c).expect("CSV to memory");
    }
    String::from_utf8(w.into_inner().expect("CSV to memory")).expect("UTF-8 cells")
}

/// Mean user and system time of the completed runs.
fn user_system(g: &Group) -> (f64, f64) {
    let ok: Vec<&&Row> = g.completed().collect();
    if ok.is_empty() {
        return (0.0, 0.0);
    }
    let n = ok.len() as f64;
    (
        ok.iter().map(|r| r.user_s).sum::<f64>() / n,
        ok.iter().map(|r| r.system_s).sum::<f64>() / n,
    )
}

/// JSON: one object per job and parameter set.
pub fn json(groups: &[Group]) -> String {
    use serde_json::json;
    let v: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let s = &g.summary;
            let (user, system) = user_system(g);
            json!({
                "job": s.job,
                "parameters": s.params.iter().cloned().collect::<BTreeMap<String, String>>(),
                "runs": s.runs,
                "completed": s.wall_times.len(),
                "failures": s.failures,
                "states": s.states.iter().cloned().collect::<BTreeMap<String, usize>>(),
                "wall_time_s": s.wall,
                "cpu_time_s": s.cpu,
                "user_time_s_mean": user,
                "system_time_s_mean": system,
                "memory_peak_bytes_max": s.max_memory_peak,
                "outliers": g.outliers,
                "wall_times_s": s.wall_times,
                "modified_z_scores": modified_z_scores(&s.wall_times),
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).expect("JSON of plain values") + "\n"
}

/// hyperfine's `--export-json` schema (src/benchmark/benchmark_result.rs of
/// sharkdp/hyperfine): `{"results": [{command, mean, stddev, median, user,
/// system, min, max, times, memory_usage_byte, exit_codes, parameters}]}`.
/// Times are seconds; `stddev` is null with one run, as hyperfine writes it;
/// `parameters` is left out when empty, as hyperfine does.
///
/// The arrays and statistics cover the COMPLETED runs, the same numbers as
/// the summary; runs that did not complete are counted in the second value
/// so the caller can say so.
pub fn hyperfine_json(groups: &[Group]) -> (String, usize) {
    let mut left_out = 0;
    let results: Vec<HyperfineResult> = groups
        .iter()
        .map(|g| {
            let s = &g.summary;
            left_out += s.failures;
            let ok: Vec<&&Row> = g.completed().collect();
            let (user, system) = user_system(g);
            HyperfineResult {
                command: g.label(),
                mean: s.wall.mean,
                stddev: (ok.len() > 1).then_some(s.wall.stddev),
                median: s.wall.median,
                user,
                system,
                min: s.wall.min,
                max: s.wall.max,
                times: s.wall_times.clone(),
                memory_usage_byte: ok.iter().map(|r| r.memory_peak).collect(),
                exit_codes: ok.iter().map(|r| r.exit_code).collect(),
                parameters: s.params.iter().cloned().collect(),
            }
        })
        .collect();
    let text =
        serde_json::to_string_pretty(&HyperfineSummary { results }).expect("JSON of plain values");
    (text + "\n", left_out)
}

/// hyperfine's `HyperfineSummary`, field for field.
#[derive(serde::Serialize)]
struct HyperfineSummary {
    results: Vec<HyperfineResult>,
}

/// hyperfine's `BenchmarkResult` as it serializes (same names, order, types).
#[derive(serde::Serialize)]
struct HyperfineResult {
    command: String,
    mean: f64,
    stddev: Option<f64>,
    median: f64,
    user: f64,
    system: f64,
    min: f64,
    max: f64,
    times: Vec<f64>,
    memory_usage_byte: Vec<u64>,
    exit_codes: Vec<Option<i32>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    parameters: BTreeMap<String, String>,
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn epoch_seconds(rfc3339: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9)
}

/// One joblog line: GNU parallel writes `%10.3f` for start and run time.
pub fn joblog_line(
    seq: usize,
    host: &str,
    start: f64,
    runtime: f64,
    exitval: i32,
    signal: i32,
    command: &str,
) -> String {
    format!("{seq}\t{host}\t{start:10.3}\t{runtime:10.3}\t0\t0\t{exitval}\t{signal}\t{command}\n")
}

/// GNU parallel's `--joblog`: every run (warmups too) in start order; Host
/// is `:` (parallel's name for the local machine); Send and Receive are 0;
/// Exitval is -1 and Signal is set for a run killed by a signal.
pub fn joblog(rows: &[Row], signals: &BTreeMap<String, i32>) -> Result<String, String> {
    let mut order: Vec<(f64, &Row)> = Vec::new();
    for r in rows {
        let t = epoch_seconds(&r.start_time).ok_or_else(|| {
            format!(
                "run {}: start_time `{}` is not an RFC 3339 time",
                r.key, r.start_time
            )
        })?;
        order.push((t, r));
    }
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out =
        String::from("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n");
    for (i, (t, r)) in order.iter().enumerate() {
        let signal = signals.get(&r.key).copied().unwrap_or(0);
        let exitval = r.exit_code.unwrap_or(-1);
        let mut cmd = label(&r.job, &r.params);
        cmd.push_str(&format!(" rep={}", r.rep));
        if r.warmup {
            cmd.push_str(" warmup");
        }
        out.push_str(&joblog_line(
            i + 1,
            ":",
            *t,
            r.wall_s,
            exitval,
            signal,
            &cmd,
        ));
    }
    Ok(out)
}

/// The `signal` column of runs.csv by run_key (read_rows leaves it out).
pub fn read_signals(path: &std::path::Path) -> Result<BTreeMap<String, i32>, String> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = rdr
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let (Some(k), Some(s)) = (
        h.iter().position(|c| c == "run_key"),
        h.iter().position(|c| c == "signal"),
    ) else {
        return Err(format!("{}: no run_key or signal column", path.display()));
    };
    let mut out = BTreeMap::new();
    for rec in rdr.records().flatten() {
        if let Ok(sig) = rec[s].parse() {
            out.insert(rec[k].to_string(), sig);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_z_score_flags_one_slow_run_among_steady_ones() {
        let v = [3.20, 3.12, 3.25, 6.90];
        let z = modified_z_scores(&v);
        // median 3.225, MAD median(0.025, 0.105, 0.025, 3.675) = 0.065
        assert!(
            (z[3] - 0.6745 * (6.90 - 3.225) / 0.065).abs() < 1e-9,
            "{z:?}"
        );
        assert!(z[..3].iter().all(|z| z.abs() < OUTLIER_Z), "{z:?}");
        assert_eq!(count_outliers(&v), 1);
    }

    #[test]
    fn modified_z_score_falls_back_to_mean_deviation_when_most_values_are_equal() {
        let v = [1.0, 1.0, 1.0, 1.0, 9.0];
        let z = modified_z_scores(&v);
        // MAD is 0; mean absolute deviation is 8/5.
        assert!((z[4] - 8.0 / (1.253314 * 1.6)).abs() < 1e-9);
        assert_eq!(count_outliers(&v), 1);
        assert_eq!(count_outliers(&[2.0, 2.0, 2.0]), 0);
        assert_eq!(count_outliers(&[]), 0);
    }

    #[test]
    fn steady_runs_have_no_outliers() {
        assert_eq!(count_outliers(&[4.02, 4.10, 3.97, 4.05, 4.01]), 0);
    }

    #[test]
    fn joblog_lines_are_tab_separated_with_three_decimals() {
        let l = joblog_line(3, ":", 1772445600.05, 4.21, 0, 0, "xz threads=1 rep=1");
        assert_eq!(
            l,
            "3\t:\t1772445600.050\t     4.210\t0\t0\t0\t0\txz threads=1 rep=1\n"
        );
    }

    #[test]
    fn epoch_seconds_keep_the_microseconds() {
        let t = epoch_seconds("2026-03-02T10:00:00.050000Z").unwrap();
        assert_eq!(format!("{t:.3}"), "1772445600.050");
        assert_eq!(epoch_seconds("yesterday"), None);
    }
}
