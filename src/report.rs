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
        })
    }

    /// Appends one row in a single write and syncs it to disk.
    pub fn append(&mut self, rec: &Record) -> Result<(), PathError> {
        let line = csv_line(&row(rec, &self.params, &self.host));
        self.file.write_all(&line).at("write", &self.path)?;
        self.file.sync_data().at("sync", &self.path)
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

/// A record as a JSON object of the runs.csv columns (numbers as numbers).
pub fn record_json(rec: &Record, host: &str) -> String {
    let params: Vec<String> = rec.params.iter().map(|(k, _)| k.clone()).collect();
    let mut map = serde_json::Map::new();
    for (h, c) in header(&params).into_iter().zip(row(rec, &params, host)) {
        let v = if c.is_empty() {
            serde_json::Value::Null
        } else if let Ok(n) = c.parse::<u64>() {
            n.into()
        } else if let Ok(f) = c.parse::<f64>().map_err(|_| ()).and_then(|f| {
            if h.ends_with("_s") {
                Ok(f)
            } else {
                Err(())
            }
        }) {
            f.into()
        } else if c == "true" || c == "false" {
            (c == "true").into()
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
