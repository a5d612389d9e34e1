//! Output: runs.csv, summary.csv, manifest.json. Formats what was measured;
//! never recomputes a measurement.

use crate::fsx::{Context, PathError};
use crate::run::{Record, State};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The fixed columns of runs.csv; `parameter_<name>` columns go after `job`.
const HEAD: &[&str] = &["run_key", "job"];
const TAIL: &[&str] = &[
    "rep",
    "warmup",
    "host",
    "cpus",
    "mems",
    "userns",
    "start_time",
    "end_time",
    "wall_time_s",
    "user_time_s",
    "system_time_s",
    "cpu_time_s",
    "memory_peak_bytes",
    "memory_limit_bytes",
    "oom_kills",
    "io_read_bytes",
    "io_write_bytes",
    "pids_peak",
    "cpu_throttled_s",
    "exit_code",
    "signal",
    "state",
    "termination_reason",
    "stdout",
    "stderr",
];

/// The header of runs.csv for these matrix parameter names.
pub fn header(param_names: &[String]) -> Vec<String> {
    HEAD.iter()
        .map(|s| s.to_string())
        .chain(param_names.iter().map(|p| format!("parameter_{p}")))
        .chain(TAIL.iter().map(|s| s.to_string()))
        .collect()
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

fn ns_secs(ns: u64) -> String {
    format!("{:.6}", ns as f64 / 1e9)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One record as the cells of a runs.csv row (same order as `header`).
pub fn row(rec: &Record, param_names: &[String], host: &str) -> Vec<String> {
    let u = &rec.usage;
    let mut cells = vec![rec.key.clone(), rec.job.clone()];
    for p in param_names {
        cells.push(
            rec.params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        );
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    cells.extend([
        rec.rep.to_string(),
        rec.warmup.to_string(),
        host.to_string(),
        rec.cpus.to_string(),
        rec.mems.to_string(),
        rec.userns.clone(),
        rec.start_time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        rec.end_time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        secs(rec.wall_time),
        ns_secs(u.user_ns),
        ns_secs(u.system_ns),
        ns_secs(u.cpu_ns),
        u.memory_peak_bytes.to_string(),
        opt(rec.memory_limit),
        u.oom_kills.to_string(),
        u.io_read_bytes.to_string(),
        u.io_write_bytes.to_string(),
        u.pids_peak.to_string(),
        ns_secs(u.cpu_throttled_ns),
        opt(rec.exit_code),
        opt(rec.signal),
        rec.state.as_str().to_string(),
        rec.termination_reason.clone(),
        path(&rec.stdout),
        path(&rec.stderr),
    ]);
    cells
}

fn csv_line(cells: &[String]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells)
        .expect("writing CSV to memory cannot fail");
    w.into_inner().expect("flushing CSV to memory cannot fail")
}

/// runs.csv, appended one whole row at a time and fsync'd, so a crash never
/// leaves half a row.
pub struct RunsCsv {
    path: PathBuf,
    file: File,
    params: Vec<String>,
    host: String,
    /// Rows written since the last sync.
    unsynced: bool,
}

impl RunsCsv {
    /// Opens `path` for appending; writes the header when the file is new.
    /// An existing file must have the same header (same parameter columns).
    pub fn open(path: &Path, param_names: &[String], host: &str) -> Result<RunsCsv, ReportError> {
        let want = header(param_names);
        let exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if exists {
            let mut rdr = csv::Reader::from_path(path).map_err(|e| csv_err(path, e.to_string()))?;
            let have: Vec<String> = rdr
                .headers()
                .map_err(|e| csv_err(path, e.to_string()))?
                .iter()
                .map(String::from)
                .collect();
            if have != want {
                return Err(csv_err(
                    path,
                    format!(
                        "its columns are [{}], expected [{}]",
                        have.join(","),
                        want.join(",")
                    ),
                ));
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at("open", path)?;
        if exists {
            drop_torn_last_line(&file, path)?;
        } else {
            file.write_all(&csv_line(&want)).at("write", path)?;
            file.sync_data().at("sync", path)?;
        }
        Ok(RunsCsv {
            path: path.to_path_buf(),
            file,
            params: param_names.to_vec(),
            host: host.to_string(),
            unsynced: false,
        })
    }

    /// Appends one row in a single write: a crash of packrun never leaves
    /// half a row. `sync` makes the rows appended so far durable.
    pub fn append(&mut self, rec: &Record) -> Result<(), PathError> {
        let line = csv_line(&row(rec, &self.params, &self.host));
        self.file.write_all(&line).at("write", &self.path)?;
        self.unsynced = true;
        Ok(())
    }

    /// Syncs the rows appended since the last call to disk (one fdatasync
    /// for all the runs that ended together).
    pub fn sync(&mut self) -> Result<(), PathError> {
        if self.unsynced {
            self.file.sync_data().at("sync", &self.path)?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// A crash mid-write can leave a last line without its newline: cut it off
/// so the next row starts on a line of its own (the run is then run again).
fn drop_torn_last_line(file: &File, path: &Path) -> Result<(), PathError> {
    let text = std::fs::read(path).at("read", path)?;
    if text.last().is_some_and(|&b| b != b'\n') {
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        file.set_len(keep as u64).at("truncate", path)?;
    }
    Ok(())
}

fn csv_err(path: &Path, message: impl ToString) -> ReportError {
    ReportError::Csv {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{}: {message}", path.display())]
    Csv { path: PathBuf, message: String },
}

/// The run_keys already in a runs.csv and their states (for --resume).
/// A last line without its newline (a crash mid-write) is ignored.
pub fn read_done(path: &Path) -> Result<HashMap<String, State>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(PathError::new("read", path, e).into()),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut rdr = csv::Reader::from_reader(complete.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| csv_err(path, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(k), Some(s)) = (col("run_key"), col("state")) else {
        return Err(csv_err(path, "no run_key or state column"));
    };
    let mut done = HashMap::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| csv_err(path, format!("row {}: {e}", i + 2)))?;
        let state = State::parse(&r[s])
            .ok_or_else(|| csv_err(path, format!("row {}: unknown state `{}`", i + 2, &r[s])))?;
        done.insert(r[k].to_string(), state);
    }
    Ok(done)
}

/// A record as `name: value` lines (packrun exec's table).
pub fn record_table(rec: &Record, host: &str) -> String {
    let params: Vec<String> = rec.params.iter().map(|(k, _)| k.clone()).collect();
    let head = header(&params);
    let cells = row(rec, &params, host);
    let w = head.iter().map(|h| h.len()).max().unwrap_or(0);
    head.iter()
        .zip(cells)
        .filter(|(h, _)| !matches!(h.as_str(), "stdout" | "stderr" | "job" | "rep" | "warmup"))
        .map(|(h, c)| format!("{h:<w$}  {c}\n"))
        .collect()
}

/// A record as CSV with its header (packrun exec --format csv).
pub fn record_csv(rec: &Record, host: &str) -> String {
    let params: Vec<String> = rec.params.iter().map(|(k, _)| k.clone()).collect();
    let mut out = csv_line(&header(&params));
    out.extend(csv_line(&row(rec, &params, host)));
    String::from_utf8(out).expect("CSV of UTF-8 cells is UTF-8")
}

/// Columns that hold text even when the text looks like a number ("1" as a CPU list).
const TEXT_COLUMNS: [&str; 12] = [
    "run_key",
    "job",
    "host",
    "cpus",
    "mems",
    "userns",
    "start_time",
    "end_time",
    "state",
    "termination_reason",
    "stdout",
    "stderr",
];

/// A record as a JSON object of the runs.csv columns (numbers as numbers).
pub fn record_json(rec: &Record, host: &str) -> String {
    let params: Vec<String> = rec.params.iter().map(|(k, _)| k.clone()).collect();
    let mut map = serde_json::Map::new();
    for (h, c) in header(&params).into_iter().zip(row(rec, &params, host)) {
        let v = if c.is_empty() {
            serde_json::Value::Null
        } else if TEXT_COLUMNS.contains(&h.as_str()) || h.starts_with("parameter_") {
            c.into()
        } else if h == "warmup" {
            (c == "true").into()
        } else if let Ok(n) = c.parse::<i64>() {
            n.into()
        } else if let Ok(f) = c.parse::<f64>() {
            f.into()
        } else {
            c.into()
        };
        map.insert(h, v);
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).expect("JSON of plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Usage;
    use crate::cpulist::CpuList;
    use chrono::TimeZone;
    use std::time::Duration;

    fn record(key: &str, state: State) -> Record {
        Record {
            key: key.into(),
            job: "xz".into(),
            params: vec![("threads".into(), "2".into())],
            rep: 1,
            warmup: false,
            cpus: CpuList::parse("0-1").unwrap(),
            mems: CpuList::parse("0").unwrap(),
            userns: "0:1610612736:65536".into(),
            start_time: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            end_time: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap(),
            wall_time: Duration::from_millis(1500),
            usage: Usage {
                user_ns: 1_250_000_000,
                cpu_ns: 1_500_000_000,
                memory_peak_bytes: 4096,
                ..Usage::default()
            },
            memory_limit: Some(1 << 20),
            exit_code: Some(0),
            signal: None,
            state,
            termination_reason: "exited, \"quoted\"".into(),
            stdout: None,
            stderr: None,
        }
    }

    #[test]
    fn header_puts_parameter_columns_after_job() {
        let h = header(&["threads".into()]);
        assert_eq!(&h[..4], &["run_key", "job", "parameter_threads", "rep"]);
        assert_eq!(h.last().unwrap(), "stderr");
    }

    #[test]
    fn rows_format_seconds_bytes_and_rfc3339_times() {
        let cells = row(&record("k1", State::Completed), &["threads".into()], "h");
        let h = header(&["threads".into()]);
        let get = |name: &str| cells[h.iter().position(|x| x == name).unwrap()].clone();
        assert_eq!(get("wall_time_s"), "1.500000");
        assert_eq!(get("user_time_s"), "1.250000");
        assert_eq!(get("memory_limit_bytes"), "1048576");
        assert_eq!(get("start_time"), "2026-01-02T03:04:05.000000Z");
        assert_eq!(get("signal"), "");
        assert_eq!(get("parameter_threads"), "2");
    }

    #[test]
    fn resume_reads_back_keys_and_states_and_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let params = vec!["threads".to_string()];
        let mut w = RunsCsv::open(&p, &params, "h").unwrap();
        w.append(&record("aaa", State::Completed)).unwrap();
        w.append(&record("bbb", State::Timeout)).unwrap();
        drop(w);
        // A crash mid-write leaves a line without its newline.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"ccc,xz,2,1,fal").unwrap();
        let done = read_done(&p).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(done["aaa"], State::Completed);
        assert_eq!(done["bbb"], State::Timeout);
        // Appending after the crash starts a clean line.
        let mut w = RunsCsv::open(&p, &params, "h").unwrap();
        w.append(&record("ddd", State::Completed)).unwrap();
        let done = read_done(&p).unwrap();
        assert_eq!(done.len(), 3, "{}", std::fs::read_to_string(&p).unwrap());
        assert!(done.contains_key("ddd"));
    }

    #[test]
    fn reopening_with_other_parameter_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        RunsCsv::open(&p, &["threads".into()], "h").unwrap();
        let e = RunsCsv::open(&p, &["level".into()], "h").err().unwrap();
        assert!(e.to_string().contains("parameter_level"), "{e}");
    }

    #[test]
    fn json_record_has_numbers_as_numbers() {
        let j: serde_json::Value =
            serde_json::from_str(&record_json(&record("k", State::Completed), "h")).unwrap();
        assert_eq!(j["wall_time_s"], 1.5);
        assert_eq!(j["exit_code"], 0);
        assert_eq!(j["signal"], serde_json::Value::Null);
        assert_eq!(j["state"], "COMPLETED");
    }
}

/// The columns of a runs.csv row that the summary and the report need.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub job: String,
    pub params: Vec<(String, String)>,
    pub rep: u32,
    pub warmup: bool,
    pub cpus: String,
    pub start_time: String,
    pub end_time: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub memory_peak: u64,
    pub exit_code: Option<i32>,
    pub state: String,
}

/// Reads every complete row of a runs.csv.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, ReportError> {
    let text = crate::fsx::read_to_string(path)?;
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut rdr = csv::Reader::from_reader(complete.as_bytes());
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| csv_err(path, format!("no `{name}` column")))
    };
    let params: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("parameter_").map(|p| (i, p.to_string())))
        .collect();
    let c = [
        col("run_key")?,
        col("job")?,
        col("rep")?,
        col("warmup")?,
        col("cpus")?,
        col("start_time")?,
        col("end_time")?,
        col("wall_time_s")?,
        col("cpu_time_s")?,
        col("user_time_s")?,
        col("system_time_s")?,
        col("memory_peak_bytes")?,
        col("exit_code")?,
        col("state")?,
    ];
    let mut rows = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| csv_err(path, format!("row {}: {e}", i + 2)))?;
        let num = |j: usize| -> Result<f64, ReportError> {
            r[j].parse::<f64>().map_err(|_| {
                csv_err(
                    path,
                    format!(
                        "row {}: `{}` in {} is not a number",
                        i + 2,
                        &r[j],
                        &headers[j]
                    ),
                )
            })
        };
        rows.push(Row {
            key: r[c[0]].to_string(),
            job: r[c[1]].to_string(),
            params: params
                .iter()
                .filter(|(j, _)| !r[*j].is_empty())
                .map(|(j, p)| (p.clone(), r[*j].to_string()))
                .collect(),
            rep: num(c[2])? as u32,
            warmup: &r[c[3]] == "true",
            cpus: r[c[4]].to_string(),
            start_time: r[c[5]].to_string(),
            end_time: r[c[6]].to_string(),
            wall_s: num(c[7])?,
            cpu_s: num(c[8])?,
            user_s: num(c[9])?,
            system_s: num(c[10])?,
            memory_peak: num(c[11])? as u64,
            exit_code: r[c[12]].parse().ok(),
            state: r[c[13]].to_string(),
        });
    }
    Ok(rows)
}

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

/// One line of summary.csv: a job and parameter set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub job: String,
    pub params: Vec<(String, String)>,
    /// Measured runs (warmups left out).
    pub runs: usize,
    pub wall: Stats,
    pub cpu: Stats,
    pub max_memory_peak: u64,
    /// Runs that did not complete.
    pub failures: usize,
    /// Count per state, in a fixed order.
    pub states: Vec<(String, usize)>,
    /// Wall times of completed measured runs, in rep order.
    pub wall_times: Vec<f64>,
    pub cpu_times: Vec<f64>,
}

const STATES: [&str; 6] = [
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "CANCELLED",
    "ERROR",
];

/// A job and one of its parameter sets.
type GroupKey<'a> = (&'a str, &'a [(String, String)]);

/// Groups rows by job and parameter set (in first-seen order) and summarises
/// each; statistics cover the COMPLETED measured runs.
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    use rayon::prelude::*;
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
        .par_iter()
        .map(|k| {
            let mut g = groups[k].clone();
            g.sort_by_key(|r| r.rep);
            let ok: Vec<&&Row> = g.iter().filter(|r| r.state == "COMPLETED").collect();
            let wall_times: Vec<f64> = ok.iter().map(|r| r.wall_s).collect();
            let cpu_times: Vec<f64> = ok.iter().map(|r| r.cpu_s).collect();
            Summary {
                job: k.0.to_string(),
                params: k.1.to_vec(),
                runs: g.len(),
                wall: Stats::of(&wall_times),
                cpu: Stats::of(&cpu_times),
                max_memory_peak: g.iter().map(|r| r.memory_peak).max().unwrap_or(0),
                failures: g.len() - ok.len(),
                states: STATES
                    .iter()
                    .map(|s| (s.to_string(), g.iter().filter(|r| r.state == *s).count()))
                    .collect(),
                wall_times,
                cpu_times,
            }
        })
        .collect()
}

/// Parameter names of the summaries, first seen first.
pub fn summary_params<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> Vec<String> {
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

/// The leading columns every summary CSV shares: job, parameters, runs,
/// and median/mean/stddev/min/max of wall and CPU time.
pub fn summary_head(params: &[String]) -> Vec<String> {
    let mut head: Vec<String> = vec!["job".into()];
    head.extend(params.iter().map(|p| format!("parameter_{p}")));
    head.push("runs".into());
    for m in ["wall_time_s", "cpu_time_s"] {
        for st in ["median", "mean", "stddev", "min", "max"] {
            head.push(format!("{m}_{st}"));
        }
    }
    head
}

/// The cells under `summary_head` for one summary.
pub fn summary_cells(s: &Summary, params: &[String]) -> Vec<String> {
    let mut cells = vec![s.job.clone()];
    for p in params {
        cells.push(
            s.params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        );
    }
    cells.push(s.runs.to_string());
    for st in [&s.wall, &s.cpu] {
        for v in [st.median, st.mean, st.stddev, st.min, st.max] {
            cells.push(format!("{v:.6}"));
        }
    }
    cells
}

/// The per-state count columns (lower-case state names), in `Summary::states` order.
pub fn state_columns() -> impl Iterator<Item = String> {
    STATES.iter().map(|s| s.to_lowercase())
}

/// Writes summary.csv.
pub fn write_summary(path: &Path, summaries: &[Summary]) -> Result<(), PathError> {
    let params = summary_params(summaries);
    let mut head = summary_head(&params);
    head.push("memory_peak_bytes_max".into());
    head.push("failures".into());
    head.extend(state_columns());
    let mut out = csv_line(&head);
    for s in summaries {
        let mut cells = summary_cells(s, &params);
        cells.push(s.max_memory_peak.to_string());
        cells.push(s.failures.to_string());
        cells.extend(s.states.iter().map(|(_, n)| n.to_string()));
        out.extend(csv_line(&cells));
    }
    crate::fsx::write(path, out)
}

/// Bytes as a short binary size ("1.5 GiB").
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The end-of-batch table: per job and parameter set, runs, states, median
/// wall and CPU time, max memory.
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut rows = vec![vec![
        "job".to_string(),
        "parameters".into(),
        "runs".into(),
        "states".into(),
        "wall median".into(),
        "cpu median".into(),
        "max memory".into(),
    ]];
    for s in summaries {
        let params = s
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let states = s
            .states
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(st, n)| format!("{n} {st}"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(vec![
            s.job.clone(),
            params,
            s.runs.to_string(),
            states,
            format!("{:.3} s", s.wall.median),
            format!("{:.3} s", s.cpu.median),
            human_bytes(s.max_memory_peak),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

/// manifest.json: what ran, where, when.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub packrun_version: String,
    pub name: String,
    pub job_file: String,
    pub job_file_sha256: String,
    pub machine: crate::machine::Machine,
    pub cgroup_version: String,
    pub topology: serde_json::Value,
    pub start: String,
    pub end: Option<String>,
    /// pid of the packrun process that runs (or ran) the batch.
    pub runner_pid: u32,
    pub runs: usize,
    /// Whose ids the runs had.
    #[serde(default)]
    pub userns: UserNsManifest,
}

/// The manifest's account of the runs' user namespaces.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UserNsManifest {
    /// Where each run's own ids came from.
    pub ids: String,
    /// Jobs that kept the host's ids (`userns: host`).
    pub host_ids_jobs: Vec<String>,
}

pub fn write_manifest(path: &Path, m: &Manifest) -> Result<(), PathError> {
    let text = serde_json::to_string_pretty(m).expect("manifest serializes");
    crate::fsx::write(path, text + "\n")
}

pub fn read_manifest(path: &Path) -> Result<Manifest, ReportError> {
    let text = crate::fsx::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| csv_err(path, format!("not a packrun manifest: {e}")))
}

/// SHA-256 of the job file, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first lines where two versions of a job file differ, for the
/// "job file changed" refusal of --resume.
pub fn describe_change(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            out.push(format!(
                "line {}: `{}` is now `{}`",
                i + 1,
                x.unwrap_or("(absent)").trim(),
                y.unwrap_or("(absent)").trim()
            ));
            if out.len() == 3 {
                break;
            }
        }
    }
    out.join("; ")
}
