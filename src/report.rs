//! The summary of a results folder: per job and parameter set, statistics
//! of what runs.csv holds (outliers counted, never dropped), summary.csv and
//! the one table both `packrun run` and `packrun report` print. The other
//! formats are in `formats`, the page in `html`. Never recomputes a
//! measurement.

pub mod compare;
pub mod formats;

use crate::counters::Counter;
use crate::fsx::PathError;
use crate::results::{csv_line, Row, State};
use std::collections::HashMap;
use std::path::Path;

/// Median, mean, sample standard deviation, min and max.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        if values.is_empty() {
            return Stats::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let mean = v.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stats {
            median,
            mean,
            stddev,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// Iglewicz and Hoaglin's cut-off: a modified z-score above 3.5 marks an outlier.
pub const OUTLIER_Z: f64 = 3.5;

/// Modified z-scores (Iglewicz and Hoaglin, 1993): 0.6745 (x - median) / MAD,
/// with MAD the median absolute deviation. When more than half the values
/// are equal the MAD is 0; then the mean absolute deviation stands in
/// (scaled by 1.253314 so both estimate the same σ), and when that is 0 too
/// every value is the median and every score 0.
pub fn modified_z_scores(values: &[f64]) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let med = Stats::of(values).median;
    let dev: Vec<f64> = values.iter().map(|x| (x - med).abs()).collect();
    let mad = Stats::of(&dev).median;
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

/// A job and one of its parameter sets: its runs and their statistics.
#[derive(Debug, Clone)]
pub struct Summary<'a> {
    pub job: String,
    pub params: Vec<(String, String)>,
    /// Measured runs (warmups left out), in rep order, every state.
    pub rows: Vec<&'a Row>,
    /// Statistics of the completed measured runs.
    pub wall: Stats,
    pub cpu: Stats,
    pub user_mean: f64,
    pub system_mean: f64,
    pub max_memory_peak: u64,
    /// Runs that did not complete.
    pub failures: usize,
    /// Count per state, in `State::ALL` order.
    pub states: Vec<(State, usize)>,
    /// Wall times of the completed measured runs, in rep order.
    pub wall_times: Vec<f64>,
    pub cpu_times: Vec<f64>,
    /// Completed runs whose wall time is an outlier.
    pub outliers: usize,
    /// Runs something outside disturbed while they ran (thermal throttling
    /// on their CPUs, swapping on the machine): flagged, not dropped.
    pub disturbed: usize,
    /// Per counter column of runs.csv: the statistics of the completed
    /// measured runs that have a value, and how many those are.
    pub counters: Vec<(Counter, Stats, usize)>,
    /// Median bytes received and sent by the completed runs on a private
    /// network (None: none of them was on one).
    pub net_median: Option<(f64, f64)>,
}

impl Summary<'_> {
    /// Measured runs.
    pub fn runs(&self) -> usize {
        self.rows.len()
    }

    /// The completed measured runs, in rep order.
    pub fn completed(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .copied()
            .filter(|r| r.state == State::Completed)
    }

    /// `job threads=2 size=1M`: the label of this group.
    pub fn label(&self) -> String {
        label(&self.job, &self.params)
    }
}

/// `job threads=2 size=1M`.
pub fn label(job: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        job.to_string()
    } else {
        format!("{job} {}", params_label(params))
    }
}

/// `threads=2 size=1M`.
pub fn params_label(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// A job and one of its parameter sets.
type GroupKey<'a> = (&'a str, &'a [(String, String)]);

/// Groups rows by job and parameter set (in first-seen order) and summarises
/// each; statistics cover the COMPLETED measured runs.
pub fn summarize(rows: &[Row]) -> Vec<Summary<'_>> {
    let mut order: Vec<GroupKey<'_>> = Vec::new();
    let mut groups: HashMap<GroupKey<'_>, Vec<&Row>> = HashMap::new();
    for r in rows.iter().filter(|r| !r.warmup) {
        let k = (r.job.as_str(), r.params.as_slice());
        groups
            .entry(k)
            .or_insert_with(|| {
                order.push(k);
                Vec::new()
            })
            .push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let mut g = groups.remove(&k).unwrap_or_default();
            g.sort_by_key(|r| r.rep);
            let ok: Vec<&Row> = g
                .iter()
                .copied()
                .filter(|r| r.state == State::Completed)
                .collect();
            let wall_times: Vec<f64> = ok.iter().map(|r| r.wall_s).collect();
            let cpu_times: Vec<f64> = ok.iter().map(|r| r.cpu_s).collect();
            let user: Vec<f64> = ok.iter().map(|r| r.user_s).collect();
            let system: Vec<f64> = ok.iter().map(|r| r.system_s).collect();
            Summary {
                job: k.0.to_string(),
                params: k.1.to_vec(),
                wall: Stats::of(&wall_times),
                cpu: Stats::of(&cpu_times),
                user_mean: mean(&user),
                system_mean: mean(&system),
                max_memory_peak: g.iter().map(|r| r.memory_peak).max().unwrap_or(0),
                failures: g.len() - ok.len(),
                states: State::ALL
                    .iter()
                    .map(|s| (*s, g.iter().filter(|r| r.state == *s).count()))
                    .collect(),
                outliers: count_outliers(&wall_times),
                disturbed: g.iter().filter(|r| disturbed(r)).count(),
                counters: counter_stats(&ok, rows),
                net_median: net_median(&ok),
                wall_times,
                cpu_times,
                rows: g,
            }
        })
        .collect()
}

/// The counter columns of `all` (a runs.csv's rows share them).
fn counter_columns(all: &[Row]) -> Vec<Counter> {
    all.first()
        .map(|r| r.counters.iter().map(|(c, _)| *c).collect())
        .unwrap_or_default()
}

/// Each counter's statistics over the runs `ok` that have a value of it.
fn counter_stats(ok: &[&Row], all: &[Row]) -> Vec<(Counter, Stats, usize)> {
    counter_columns(all)
        .into_iter()
        .map(|c| {
            let v: Vec<f64> = ok.iter().filter_map(|r| r.counter(c)).collect();
            (c, Stats::of(&v), v.len())
        })
        .collect()
}

/// The runs (keys) an SMT sibling of whose CPUs another run used while
/// they ran: two hardware threads of one core share its execution units,
/// so such runs slowed each other. Placement keeps a run's siblings
/// together, but runs narrower than a core can share one.
pub fn smt_shared(rows: &[Row], topo: &crate::topology::Topology) -> Vec<String> {
    let siblings = |cpus: &crate::cpulist::CpuList| {
        crate::cpulist::CpuList::from_ids(cpus.iter().flat_map(|c| {
            topo.cpus
                .iter()
                .find(|t| t.id == c)
                .map(|t| {
                    t.siblings
                        .iter()
                        .filter(move |&s| s != c)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }))
    };
    // A sweep in start order: each run meets only the runs still going
    // when it starts, so the cost grows with runs × runs at once, not
    // runs², for a batch of a million runs too.
    let near: Vec<crate::cpulist::CpuList> = rows.iter().map(|r| siblings(&r.cpus)).collect();
    let mut by_start: Vec<usize> = (0..rows.len()).collect();
    by_start.sort_by_key(|&i| rows[i].start_time);
    let mut hit = vec![false; rows.len()];
    let mut going: Vec<usize> = Vec::new();
    for &a in &by_start {
        going.retain(|&b| rows[b].end_time > rows[a].start_time);
        for &b in &going {
            // b started no later than a and ends after a starts: they overlap
            // when a also ends after b starts (a zero-length run does not).
            if rows[a].end_time > rows[b].start_time {
                hit[a] |= !rows[b].cpus.is_disjoint(&near[a]);
                hit[b] |= !rows[a].cpus.is_disjoint(&near[b]);
            }
        }
        going.push(a);
    }
    (0..rows.len())
        .filter(|&i| hit[i])
        .map(|i| rows[i].key.clone())
        .collect()
}

/// The median bytes received and sent of `rows` that were on a private
/// network.
fn net_median(rows: &[&Row]) -> Option<(f64, f64)> {
    let net: Vec<crate::results::NetTraffic> = rows.iter().filter_map(|r| r.net).collect();
    if net.is_empty() {
        return None;
    }
    let rx: Vec<f64> = net.iter().map(|t| t.rx_bytes as f64).collect();
    let tx: Vec<f64> = net.iter().map(|t| t.tx_bytes as f64).collect();
    Some((Stats::of(&rx).median, Stats::of(&tx).median))
}

/// Whether something outside the run's cgroup disturbed it.
pub fn disturbed(r: &Row) -> bool {
    r.thermal_throttles + r.swap_in_pages + r.swap_out_pages > 0
}

/// Parameter names of the summaries, first seen first.
fn summary_params(summaries: &[Summary]) -> Vec<String> {
    let mut params: Vec<String> = Vec::new();
    for s in summaries {
        for (p, _) in &s.params {
            if !params.contains(p) {
                params.push(p.clone());
            }
        }
    }
    params
}

/// The summary as CSV: job, parameters, runs, median/mean/stddev/min/max of
/// wall and CPU time, max peak memory, failures, a count per state and
/// outliers (summary.csv); `with_means` adds the mean user and system time
/// (`packrun report --format csv`).
pub fn summary_csv(summaries: &[Summary], with_means: bool) -> String {
    let params = summary_params(summaries);
    let mut head: Vec<String> = vec!["job".into()];
    head.extend(params.iter().map(|p| format!("parameter_{p}")));
    head.push("runs".into());
    for m in ["wall_time_s", "cpu_time_s"] {
        for st in ["median", "mean", "stddev", "min", "max"] {
            head.push(format!("{m}_{st}"));
        }
    }
    head.push("memory_peak_bytes_max".into());
    head.push("failures".into());
    head.extend(State::ALL.iter().map(|s| s.as_str().to_lowercase()));
    head.push("outliers".into());
    head.push("disturbed".into());
    // Only where some run was on a private network.
    let net = summaries.iter().any(|s| s.net_median.is_some());
    if net {
        head.push("net_rx_bytes_median".into());
        head.push("net_tx_bytes_median".into());
    }
    if with_means {
        head.push("user_time_s_mean".into());
        head.push("system_time_s_mean".into());
    }
    // The counters, as wall and CPU time (empty where a set counted none).
    let counters: Vec<Counter> = summaries
        .first()
        .map(|s| s.counters.iter().map(|(c, _, _)| *c).collect())
        .unwrap_or_default();
    for c in &counters {
        for st in ["median", "mean", "stddev", "min", "max"] {
            head.push(format!("{}_{st}", c.column()));
        }
    }
    let mut out = csv_line(&head);
    for s in summaries {
        let mut cells = vec![s.job.clone()];
        for p in &params {
            cells.push(
                s.params
                    .iter()
                    .find(|(k, _)| k == p)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
        }
        cells.push(s.runs().to_string());
        for st in [&s.wall, &s.cpu] {
            for v in [st.median, st.mean, st.stddev, st.min, st.max] {
                cells.push(format!("{v:.6}"));
            }
        }
        cells.push(s.max_memory_peak.to_string());
        cells.push(s.failures.to_string());
        cells.extend(s.states.iter().map(|(_, n)| n.to_string()));
        cells.push(s.outliers.to_string());
        cells.push(s.disturbed.to_string());
        if net {
            let (rx, tx) = s
                .net_median
                .map_or((String::new(), String::new()), |(rx, tx)| {
                    (format!("{rx:.0}"), format!("{tx:.0}"))
                });
            cells.push(rx);
            cells.push(tx);
        }
        if with_means {
            cells.push(format!("{:.6}", s.user_mean));
            cells.push(format!("{:.6}", s.system_mean));
        }
        for (c, st, n) in &s.counters {
            for v in [st.median, st.mean, st.stddev, st.min, st.max] {
                cells.push(if *n == 0 { String::new() } else { c.cell(v) });
            }
        }
        out.extend(csv_line(&cells));
    }
    String::from_utf8(out).expect("CSV of UTF-8 cells is UTF-8")
}

/// Writes summary.csv.
pub fn write_summary(path: &Path, summaries: &[Summary]) -> Result<(), PathError> {
    crate::fsx::write(path, summary_csv(summaries, false))
}

/// The cells of the summary table, header first (the terminal table,
/// Markdown and the page's table).
pub fn table_cells(summaries: &[Summary]) -> Vec<Vec<String>> {
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
    // Only where some run was on a private network.
    let net = summaries.iter().any(|s| s.net_median.is_some());
    if net {
        out[0].push("net rx / tx median".into());
    }
    for s in summaries {
        let none = s.wall_times.is_empty();
        let t = |x: f64| {
            if none {
                "-".to_string()
            } else {
                format!("{x:.3} s")
            }
        };
        let pm = |st: &Stats| {
            if none {
                "-".to_string()
            } else {
                format!("{:.3} ± {:.3} s", st.mean, st.stddev)
            }
        };
        let states = s
            .states
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(st, n)| format!("{n} {st}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(vec![
            s.job.clone(),
            params_label(&s.params),
            s.runs().to_string(),
            states,
            t(s.wall.median),
            pm(&s.wall),
            if none {
                "-".into()
            } else {
                format!("{:.3} … {:.3} s", s.wall.min, s.wall.max)
            },
            t(s.cpu.median),
            pm(&s.cpu),
            human_bytes(s.max_memory_peak),
            s.outliers.to_string(),
        ]);
        if net {
            let cell = s.net_median.map_or("-".into(), |(rx, tx)| {
                format!("{} / {}", human_bytes(rx as u64), human_bytes(tx as u64))
            });
            out.last_mut().expect("pushed above").push(cell);
        }
    }
    out
}

/// The summary as a plain text table: the end of `packrun run` and
/// `packrun report`'s default.
pub fn table(summaries: &[Summary]) -> String {
    let rows = table_cells(summaries);
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
    let n: usize = summaries.iter().map(|s| s.outliers).sum();
    if n > 0 {
        out.push_str(&format!(
            "{n} wall time outlier(s) (modified z-score > {OUTLIER_Z}) counted above, kept in every statistic\n"
        ));
    }
    let d: usize = summaries.iter().map(|s| s.disturbed).sum();
    if d > 0 {
        out.push_str(&format!(
            "{d} run(s) were disturbed while they ran (thermal throttling on their CPUs or swapping; see runs.csv), kept in every statistic\n"
        ));
    }
    out
}

/// The binary unit for an amount of bytes: its size and name (1 GiB and
/// "GiB" for 1.5 GiB).
pub fn byte_unit(bytes: f64) -> (f64, &'static str) {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut u = 0;
    while u + 1 < UNITS.len() && bytes >= (1u64 << (10 * (u + 1))) as f64 {
        u += 1;
    }
    ((1u64 << (10 * u)) as f64, UNITS[u])
}

/// Bytes as a short binary size ("1.5 GiB").
pub fn human_bytes(b: u64) -> String {
    match byte_unit(b as f64) {
        (_, "B") => format!("{b} B"),
        (div, name) => format!("{:.1} {name}", b as f64 / div),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::parse_runs;

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
    fn outliers_on_both_sides_are_counted_on_fixed_samples() {
        // median 10.0, MAD 0.1: 12.0 and 8.0 score ±13.5, 10.2 scores 1.35.
        let v = [10.0, 10.1, 9.9, 10.0, 12.0, 10.2, 8.0, 9.9, 10.1];
        assert_eq!(count_outliers(&v), 2);
        // One run is no distribution.
        assert_eq!(count_outliers(&[42.0]), 0);
        // Two values: the MAD is half their distance, each scores ±0.6745.
        assert_eq!(count_outliers(&[1.0, 100.0]), 0);
    }

    const HEAD: &str = "run_key,job,parameter_threads,rep,warmup,cpus,start_time,end_time,wall_time_s,user_time_s,system_time_s,cpu_time_s,memory_peak_bytes,exit_code,state\n";

    fn row(key: &str, threads: &str, rep: u32, warmup: bool, wall: f64, state: &str) -> String {
        format!("{key},xz,{threads},{rep},{warmup},0,2026-01-01T00:00:00Z,2026-01-01T00:00:01Z,{wall},0.5,0.25,0.75,{},0,{state}\n", 1000 * rep)
    }

    fn sample() -> Vec<Row> {
        let mut text = String::from(HEAD);
        text += &row("w", "1", 1, true, 99.0, "COMPLETED");
        for (i, wall) in [3.20, 3.12, 3.25, 6.90, 3.18].iter().enumerate() {
            text += &row(
                &format!("a{i}"),
                "1",
                i as u32 + 1,
                false,
                *wall,
                "COMPLETED",
            );
        }
        text += &row("b1", "2", 1, false, 2.0, "COMPLETED");
        text += &row("b2", "2", 2, false, 9.0, "TIMEOUT");
        parse_runs(Path::new("runs.csv"), &text).unwrap().rows
    }

    #[test]
    fn the_summary_leaves_out_warmups_and_counts_states_and_outliers() {
        let rows = sample();
        let s = summarize(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].runs(), s[0].outliers, s[0].failures), (5, 1, 0));
        assert_eq!(s[0].wall.max, 6.90);
        assert_eq!((s[1].runs(), s[1].failures), (2, 1));
        assert_eq!(s[1].wall_times, [2.0]);
        assert!(s[1].states.contains(&(State::Timeout, 1)));
        assert_eq!(s[1].user_mean, 0.5);
    }

    #[test]
    fn the_traffic_of_runs_on_a_private_network_gets_columns_only_where_there_is_some() {
        let mut rows = sample();
        let plain = table(&summarize(&rows));
        assert!(!plain.contains("net rx"), "{plain}");
        assert!(!summary_csv(&summarize(&rows), false).contains("net_"));
        for (i, r) in rows.iter_mut().filter(|r| r.job == "xz").enumerate() {
            if r.params[0].1 == "1" {
                r.net = Some(crate::results::NetTraffic {
                    rx_bytes: 1000 * (i as u64 + 1),
                    tx_bytes: 2 << 20,
                    rx_packets: 3,
                    tx_packets: 4,
                });
            }
        }
        let s = summarize(&rows);
        // a0..a4 (the warmup left out): rx 2000..6000, median 4000.
        assert_eq!(s[0].net_median, Some((4000.0, (2 << 20) as f64)));
        assert_eq!(s[1].net_median, None);
        let t = table(&s);
        assert!(t.contains("net rx / tx median"), "{t}");
        assert!(t.contains("3.9 KiB / 2.0 MiB"), "{t}");
        let csv = summary_csv(&s, false);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].ends_with(",disturbed,net_rx_bytes_median,net_tx_bytes_median"));
        assert!(lines[1].ends_with(",4000,2097152"), "{csv}");
        assert!(lines[2].ends_with(",,"), "{csv}");
    }

    #[test]
    fn runs_whose_smt_siblings_another_run_used_at_the_same_time_are_named() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/2socket-smt");
        let topo = crate::topology::read(&root, None, None).unwrap();
        let cpu0 = &topo.cpus[0];
        let sibling = cpu0
            .siblings
            .iter()
            .find(|&c| c != cpu0.id)
            .expect("an SMT fixture");
        let far = topo
            .cpus
            .iter()
            .find(|c| !cpu0.siblings.contains(c.id))
            .unwrap()
            .id;
        let at = |key: &str, cpu: u32, from: u32, to: u32| {
            let mut r =
                Row::from_record(&crate::results::sample_record(key, State::Completed), "h");
            r.cpus = crate::cpulist::CpuList::from_ids([cpu]);
            let t0 = r.start_time;
            r.start_time = t0 + chrono::Duration::seconds(from as i64);
            r.end_time = t0 + chrono::Duration::seconds(to as i64);
            r
        };
        let rows = [
            at("a", cpu0.id, 0, 10),
            at("b", sibling, 5, 15),
            at("c", far, 0, 20),
            at("d", sibling, 20, 30),
        ];
        assert_eq!(smt_shared(&rows, &topo), ["a", "b"]);
    }

    #[test]
    fn summary_csv_ends_with_the_outliers_and_disturbed_columns() {
        let mut rows = sample();
        let csv = summary_csv(&summarize(&rows), false);
        let mut lines = csv.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(head[head.len() - 2..], ["outliers", "disturbed"]);
        assert_eq!(head[head.len() - 4..head.len() - 2], ["cancelled", "error"]);
        assert!(lines.next().unwrap().ends_with(",1,0"));
        let with = summary_csv(&summarize(&rows), true);
        let head: Vec<&str> = with.lines().next().unwrap().split(',').collect();
        assert_eq!(
            head[head.len() - 4..],
            [
                "outliers",
                "disturbed",
                "user_time_s_mean",
                "system_time_s_mean"
            ]
        );
        // A run that swapped while it ran is flagged, and kept.
        for r in rows.iter_mut() {
            r.swap_in_pages = 3;
        }
        let s = summarize(&rows);
        assert_eq!(s[0].disturbed, s[0].runs());
        assert!(table(&s).contains("run(s) were disturbed"));
    }

    #[test]
    fn the_table_says_how_many_outliers_it_counted() {
        let rows = sample();
        let t = table(&summarize(&rows));
        assert!(t.lines().nth(1).unwrap().ends_with(" 1"), "{t}");
        assert!(t.contains("1 COMPLETED, 1 TIMEOUT"), "{t}");
        assert!(t.ends_with("1 wall time outlier(s) (modified z-score > 3.5) counted above, kept in every statistic\n"), "{t}");
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
        assert_eq!(byte_unit(2.0 * 1048576.0), (1048576.0, "MiB"));
    }
}
