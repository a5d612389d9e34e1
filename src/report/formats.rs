//! The summary in other shapes: Markdown, CSV and JSON, hyperfine's JSON
//! export and GNU parallel's joblog; and one run's record for `packrun
//! exec`. Each follows a schema someone else owns, so each lives here with
//! the test of its shape.

use super::{modified_z_scores, summary_csv, table_cells, Summary};
use crate::results::{column_kind, csv_line, header, Kind, Record, Row};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A GitHub-flavoured Markdown table.
pub fn markdown(summaries: &[Summary]) -> String {
    let rows = table_cells(summaries);
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

/// CSV: summary.csv's columns plus the mean user and system time.
pub fn csv(summaries: &[Summary]) -> String {
    summary_csv(summaries, true)
}

/// JSON: one object per job and parameter set.
pub fn json(summaries: &[Summary]) -> String {
    use serde_json::json;
    let v: Vec<serde_json::Value> = summaries
        .iter()
        .map(|s| {
            let mut v = json!({
                "job": s.job,
                "parameters": s.params.iter().cloned().collect::<BTreeMap<String, String>>(),
                "runs": s.runs(),
                "completed": s.wall_times.len(),
                "failures": s.failures,
                "states": s.states.iter().map(|(st, n)| (st.as_str(), *n)).collect::<BTreeMap<&str, usize>>(),
                "wall_time_s": s.wall,
                "cpu_time_s": s.cpu,
                "user_time_s_mean": s.user_mean,
                "system_time_s_mean": s.system_mean,
                "memory_peak_bytes_max": s.max_memory_peak,
                "outliers": s.outliers,
                "wall_times_s": s.wall_times,
                "modified_z_scores": modified_z_scores(&s.wall_times),
            });
            // Each counter's statistics, under its column (a set that
            // counted none of it: null).
            for (c, st, n) in &s.counters {
                v[c.column()] = if *n > 0 { json!(st) } else { json!(null) };
            }
            v
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
pub fn hyperfine_json(summaries: &[Summary]) -> (String, usize) {
    let mut left_out = 0;
    let results: Vec<HyperfineResult> = summaries
        .iter()
        .map(|s| {
            left_out += s.failures;
            let ok: Vec<&Row> = s.completed().collect();
            HyperfineResult {
                command: s.label(),
                mean: s.wall.mean,
                stddev: (ok.len() > 1).then_some(s.wall.stddev),
                median: s.wall.median,
                user: s.user_mean,
                system: s.system_mean,
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

/// Seconds since the epoch, with the microseconds.
pub fn epoch_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9
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
pub fn joblog(rows: &[Row]) -> String {
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by_key(|r| r.start_time);
    let mut out =
        String::from("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n");
    for (i, r) in order.iter().enumerate() {
        let mut cmd = super::label(&r.job, &r.params);
        cmd.push_str(&format!(" rep={}", r.rep));
        if r.warmup {
            cmd.push_str(" warmup");
        }
        out.push_str(&joblog_line(
            i + 1,
            ":",
            epoch_seconds(r.start_time),
            r.wall_s,
            r.exit_code.unwrap_or(-1),
            r.signal.unwrap_or(0),
            &cmd,
        ));
    }
    out
}

/// One record's runs.csv header and cells.
fn record_cells(rec: &Record, host: &str) -> (Vec<String>, Vec<String>) {
    let params: Vec<String> = rec.params.iter().map(|(k, _)| k.clone()).collect();
    let cells = Row::from_record(rec, host).cells(&params);
    let counters = crate::counters::Chosen::of(rec.counters.values.iter().map(|(c, _)| *c));
    (header(&params, counters), cells)
}

/// A record as `name: value` lines (packrun exec's table).
pub fn record_table(rec: &Record, host: &str) -> String {
    let (head, cells) = record_cells(rec, host);
    let w = head.iter().map(|h| h.len()).max().unwrap_or(0);
    head.iter()
        .zip(cells)
        .filter(|(h, _)| !matches!(h.as_str(), "stdout" | "stderr" | "job" | "rep" | "warmup"))
        .map(|(h, c)| format!("{h:<w$}  {c}\n"))
        .collect()
}

/// A record as CSV with its header (packrun exec --format csv).
pub fn record_csv(rec: &Record, host: &str) -> String {
    let (head, cells) = record_cells(rec, host);
    let mut out = csv_line(&head);
    out.extend(csv_line(&cells));
    String::from_utf8(out).expect("CSV of UTF-8 cells is UTF-8")
}

/// A record as a JSON object of the runs.csv columns (numbers as numbers).
pub fn record_json(rec: &Record, host: &str) -> String {
    let (head, cells) = record_cells(rec, host);
    let mut map = serde_json::Map::new();
    for (h, c) in head.into_iter().zip(cells) {
        let v = match column_kind(&h) {
            _ if c.is_empty() => serde_json::Value::Null,
            Kind::Text => c.into(),
            Kind::Bool => (c == "true").into(),
            Kind::Number => match (c.parse::<i64>(), c.parse::<f64>()) {
                (Ok(n), _) => n.into(),
                (_, Ok(f)) => f.into(),
                _ => c.into(),
            },
        };
        map.insert(h, v);
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).expect("JSON of plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{parse_runs, parse_time, sample_record, State};
    use std::path::Path;

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
        let t = epoch_seconds(parse_time("2026-03-02T10:00:00.050000Z").unwrap());
        assert_eq!(format!("{t:.3}"), "1772445600.050");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn joblog_takes_exit_codes_and_signals_from_the_rows_in_start_order() {
        let text = "run_key,job,rep,warmup,cpus,start_time,end_time,wall_time_s,user_time_s,system_time_s,cpu_time_s,memory_peak_bytes,exit_code,signal,state\n\
            k2,hog,1,false,1,2026-03-02T10:00:02Z,2026-03-02T10:00:03Z,1.5,0,0,0,0,,9,OUT_OF_MEMORY\n\
            k1,xz,1,true,0,2026-03-02T10:00:01Z,2026-03-02T10:00:02Z,1,0,0,0,0,0,,COMPLETED\n\
            k3,xz,2,false,0,2026-03-02T10:00:03Z,2026-03-02T10:00:04Z,1,0,0,0,0,3,,FAILED\n";
        let rows = parse_runs(Path::new("runs.csv"), text).unwrap().rows;
        let log = joblog(&rows);
        let lines: Vec<Vec<&str>> = log
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        let cols = |i: usize| (lines[i][6], lines[i][7], lines[i][8]);
        assert_eq!(cols(0), ("0", "0", "xz rep=1 warmup"));
        assert_eq!(cols(1), ("-1", "9", "hog rep=1"));
        assert_eq!(cols(2), ("3", "0", "xz rep=2"));
    }

    #[test]
    fn json_record_has_numbers_as_numbers() {
        let rec = sample_record("k", State::Completed);
        let j: serde_json::Value = serde_json::from_str(&record_json(&rec, "h")).unwrap();
        assert_eq!(j["wall_time_s"], 1.5);
        assert_eq!(j["exit_code"], 0);
        assert_eq!(j["signal"], serde_json::Value::Null);
        assert_eq!(j["state"], "COMPLETED");
    }
}
