//! The results folder: runs.csv (its one writer and its one reader, typed
//! `Row`s), manifest.json, the job file's hash. Holds what was measured;
//! computes no statistics (that is `report`).

use crate::account::Usage;
use crate::counters::{Chosen, Counter, Reading};
use crate::cpulist::CpuList;
use crate::fsx::{self, Context, PathError};
use crate::topology::Topology;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How a run ended, in Slurm's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Completed,
    Failed,
    Timeout,
    OutOfMemory,
    Cancelled,
    Error,
}

impl State {
    /// Every state, in the order of summary.csv's count columns.
    pub const ALL: [State; 6] = [
        State::Completed,
        State::Failed,
        State::Timeout,
        State::OutOfMemory,
        State::Cancelled,
        State::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Completed => "COMPLETED",
            State::Failed => "FAILED",
            State::Timeout => "TIMEOUT",
            State::OutOfMemory => "OUT_OF_MEMORY",
            State::Cancelled => "CANCELLED",
            State::Error => "ERROR",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `state` cell that is none of Slurm's words packrun uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state `{0}`: expected COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED or ERROR"
)]
pub struct ParseStateError(pub String);

impl FromStr for State {
    type Err = ParseStateError;
    fn from_str(s: &str) -> Result<State, ParseStateError> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError(s.to_string()))
    }
}

/// Everything measured about one run, as the run loop hands it over.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub job: String,
    pub params: Vec<(String, String)>,
    pub rep: u32,
    pub warmup: bool,
    pub cpus: CpuList,
    pub mems: CpuList,
    /// The run's uid map (`inside:outside:count`, space-separated), or
    /// `host` when it kept the host's ids (`userns: host`); empty when it
    /// never got that far.
    pub userns: String,
    /// Its GPUs and what it used of them.
    pub gpu: GpuUse,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub wall_time: Duration,
    pub usage: Usage,
    /// What disturbed it from outside its cgroup while it ran.
    pub disturbance: crate::account::Disturbance,
    pub memory_limit: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub state: State,
    pub termination_reason: String,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// What its counters read (see `counters`); empty when none were chosen.
    pub counters: Reading,
    /// What went through the run's link on its private network, from its
    /// side; None for a run on none.
    pub net: Option<NetTraffic>,
}

/// Bytes and packets through a run's `eth0`, from the run's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTraffic {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// One row of runs.csv, typed. Seconds are what the file holds (six
/// decimals), so a row read back writes the same cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub job: String,
    /// This run's matrix parameters (an empty cell is another job's parameter).
    pub params: Vec<(String, String)>,
    pub rep: u32,
    pub warmup: bool,
    pub host: String,
    pub cpus: CpuList,
    pub mems: CpuList,
    /// As `Record::userns`; empty in folders written before the column existed.
    pub userns: String,
    /// Empty in folders written before the GPU columns existed.
    pub gpu: GpuUse,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub wall_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub cpu_s: f64,
    pub memory_peak: u64,
    pub memory_limit: Option<u64>,
    pub oom_kills: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids_peak: u64,
    pub cpu_throttled_s: f64,
    /// What disturbed the run (see account::Disturbance); 0 in folders
    /// written before these columns existed.
    pub major_faults: u64,
    pub thermal_throttles: u64,
    pub swap_in_pages: u64,
    pub swap_out_pages: u64,
    /// As `Record::net`; empty cells for a run on no private network,
    /// and in folders written before these columns existed.
    pub net: Option<NetTraffic>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub state: State,
    pub termination_reason: String,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// The counter columns of its runs.csv, in order, with this run's
    /// values (none: not counted); empty in a folder without counters.
    pub counters: Vec<(Counter, Option<f64>)>,
    /// `counters_note`: scaled counters, energy not the run's own, ...
    pub counters_note: String,
}

/// A run's GPUs (the `gpus` cell: bus ids, comma-separated, and ` (bound
/// only)` where no device control could enforce them) and, where NVIDIA's
/// management library was there to ask, its GPUs' peak memory (summed
/// over them) and mean utilization in percent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuUse {
    pub gpus: String,
    pub memory_peak: Option<u64>,
    pub utilization: Option<f64>,
}

/// What a runs.csv column holds (JSON exports type their values by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text even when it looks like a number ("1" as a CPU list).
    Text,
    Number,
    Bool,
}

/// The fixed columns of runs.csv; `parameter_<name>` columns (text) go
/// after `run_key` and `job`. Each with what it holds and whether a
/// runs.csv must have it to be read: the others came later, and an older
/// folder without them reads as empty (or 0).
const TAIL: &[(&str, Kind, bool)] = &[
    ("rep", Kind::Number, true),
    ("warmup", Kind::Bool, true),
    ("host", Kind::Text, false),
    ("cpus", Kind::Text, true),
    ("mems", Kind::Text, false),
    ("userns", Kind::Text, false),
    ("start_time", Kind::Text, true),
    ("end_time", Kind::Text, true),
    ("wall_time_s", Kind::Number, true),
    ("user_time_s", Kind::Number, true),
    ("system_time_s", Kind::Number, true),
    ("cpu_time_s", Kind::Number, true),
    ("memory_peak_bytes", Kind::Number, true),
    ("memory_limit_bytes", Kind::Number, false),
    ("oom_kills", Kind::Number, false),
    ("io_read_bytes", Kind::Number, false),
    ("io_write_bytes", Kind::Number, false),
    ("pids_peak", Kind::Number, false),
    ("cpu_throttled_s", Kind::Number, false),
    ("major_faults", Kind::Number, false),
    ("thermal_throttles", Kind::Number, false),
    ("swap_in_pages", Kind::Number, false),
    ("swap_out_pages", Kind::Number, false),
    ("net_rx_bytes", Kind::Number, false),
    ("net_tx_bytes", Kind::Number, false),
    ("net_rx_packets", Kind::Number, false),
    ("net_tx_packets", Kind::Number, false),
    ("gpus", Kind::Text, false),
    ("gpu_memory_peak_bytes", Kind::Number, false),
    ("gpu_utilization", Kind::Number, false),
    ("exit_code", Kind::Number, true),
    ("signal", Kind::Number, false),
    ("state", Kind::Text, true),
    ("termination_reason", Kind::Text, false),
    ("stdout", Kind::Text, false),
    ("stderr", Kind::Text, false),
];

/// The column after the counters' (when the batch chose any): what the
/// reader of their values should know.
pub const COUNTERS_NOTE: &str = "counters_note";

/// What the column `name` holds.
pub fn column_kind(name: &str) -> Kind {
    if Counter::from_column(name).is_some() {
        return Kind::Number;
    }
    TAIL.iter()
        .find(|(n, _, _)| *n == name)
        .map_or(Kind::Text, |(_, k, _)| *k)
}

/// The header of runs.csv for these matrix parameter names and the
/// counters the batch chose: after the fixed columns, a column per
/// counter and `counters_note` (none of them without counters).
pub fn header(param_names: &[String], counters: Chosen) -> Vec<String> {
    ["run_key", "job"]
        .into_iter()
        .map(String::from)
        .chain(param_names.iter().map(|p| format!("parameter_{p}")))
        .chain(TAIL.iter().map(|(name, _, _)| name.to_string()))
        .chain(counter_columns(counters))
        .collect()
}

/// The counters' columns and `counters_note`; none without counters.
pub fn counter_columns(counters: Chosen) -> Vec<String> {
    let mut cols: Vec<String> = counters.iter().map(|c| c.column().to_string()).collect();
    if !cols.is_empty() {
        cols.push(COUNTERS_NOTE.to_string());
    }
    cols
}

/// The cells under `counter_columns` of `values` (in that order).
fn counter_cells(values: &[(Counter, Option<f64>)], note: &str) -> Vec<String> {
    let mut cells: Vec<String> = values
        .iter()
        .map(|(c, v)| v.map(|v| c.cell(v)).unwrap_or_default())
        .collect();
    if !cells.is_empty() {
        cells.push(note.to_string());
    }
    cells
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An RFC 3339 time as runs.csv holds it.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

impl Row {
    /// The row a finished run gets on `host`.
    pub fn from_record(rec: &Record, host: &str) -> Row {
        let u = &rec.usage;
        let secs = |ns: u64| ns as f64 / 1e9;
        Row {
            key: rec.key.clone(),
            job: rec.job.clone(),
            params: rec.params.clone(),
            rep: rec.rep,
            warmup: rec.warmup,
            host: host.to_string(),
            cpus: rec.cpus.clone(),
            mems: rec.mems.clone(),
            userns: rec.userns.clone(),
            gpu: rec.gpu.clone(),
            start_time: rec.start_time,
            end_time: rec.end_time,
            wall_s: rec.wall_time.as_secs_f64(),
            user_s: secs(u.user_ns),
            system_s: secs(u.system_ns),
            cpu_s: secs(u.cpu_ns),
            memory_peak: u.memory_peak_bytes,
            memory_limit: rec.memory_limit,
            oom_kills: u.oom_kills,
            io_read_bytes: u.io_read_bytes,
            io_write_bytes: u.io_write_bytes,
            pids_peak: u.pids_peak,
            cpu_throttled_s: secs(u.cpu_throttled_ns),
            major_faults: u.major_faults,
            thermal_throttles: rec.disturbance.thermal_throttles,
            swap_in_pages: rec.disturbance.swap_in_pages,
            swap_out_pages: rec.disturbance.swap_out_pages,
            net: rec.net,
            exit_code: rec.exit_code,
            signal: rec.signal,
            state: rec.state,
            termination_reason: rec.termination_reason.clone(),
            stdout: rec.stdout.clone(),
            stderr: rec.stderr.clone(),
            counters: rec.counters.values.clone(),
            counters_note: rec.counters.note.clone(),
        }
    }

    /// The same row with a counter column for each of `chosen` (a run
    /// that did not count one has an empty cell).
    pub fn with_columns(mut self, chosen: Chosen) -> Row {
        let have = std::mem::take(&mut self.counters);
        self.counters = chosen
            .iter()
            .map(|c| (c, have.iter().find(|(k, _)| *k == c).and_then(|(_, v)| *v)))
            .collect();
        self
    }

    /// The measurements among runs.csv's fixed numeric columns (what
    /// `number` reads).
    pub const NUMBERS: [&'static str; 15] = [
        "wall_time_s",
        "user_time_s",
        "system_time_s",
        "cpu_time_s",
        "memory_peak_bytes",
        "oom_kills",
        "io_read_bytes",
        "io_write_bytes",
        "pids_peak",
        "cpu_throttled_s",
        "major_faults",
        "thermal_throttles",
        "swap_in_pages",
        "swap_out_pages",
        "exit_code",
    ];

    /// The value of a column of `NUMBERS` or a counter's; none for another
    /// column, or a cell that is empty.
    pub fn number(&self, column: &str) -> Option<f64> {
        Some(match column {
            "wall_time_s" => self.wall_s,
            "user_time_s" => self.user_s,
            "system_time_s" => self.system_s,
            "cpu_time_s" => self.cpu_s,
            "memory_peak_bytes" => self.memory_peak as f64,
            "oom_kills" => self.oom_kills as f64,
            "io_read_bytes" => self.io_read_bytes as f64,
            "io_write_bytes" => self.io_write_bytes as f64,
            "pids_peak" => self.pids_peak as f64,
            "cpu_throttled_s" => self.cpu_throttled_s,
            "major_faults" => self.major_faults as f64,
            "thermal_throttles" => self.thermal_throttles as f64,
            "swap_in_pages" => self.swap_in_pages as f64,
            "swap_out_pages" => self.swap_out_pages as f64,
            "exit_code" => self.exit_code? as f64,
            _ => return Counter::from_column(column).and_then(|c| self.counter(c)),
        })
    }

    /// The value of counter `c`, when the row has it.
    pub fn counter(&self, c: Counter) -> Option<f64> {
        self.counters
            .iter()
            .find(|(k, _)| *k == c)
            .and_then(|(_, v)| *v)
    }

    /// The cells of this row under `header(param_names)`.
    pub fn cells(&self, param_names: &[String]) -> Vec<String> {
        let secs = |s: f64| format!("{s:.6}");
        let opt = |v: Option<String>| v.unwrap_or_default();
        let path = |p: &Option<PathBuf>| opt(p.as_ref().map(|p| p.display().to_string()));
        let net = |f: fn(&NetTraffic) -> u64| opt(self.net.as_ref().map(|t| f(t).to_string()));
        let mut cells = vec![self.key.clone(), self.job.clone()];
        for p in param_names {
            cells.push(opt(self
                .params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.clone())));
        }
        cells.extend([
            self.rep.to_string(),
            self.warmup.to_string(),
            self.host.clone(),
            self.cpus.to_string(),
            self.mems.to_string(),
            self.userns.clone(),
            rfc3339(&self.start_time),
            rfc3339(&self.end_time),
            secs(self.wall_s),
            secs(self.user_s),
            secs(self.system_s),
            secs(self.cpu_s),
            self.memory_peak.to_string(),
            opt(self.memory_limit.map(|v| v.to_string())),
            self.oom_kills.to_string(),
            self.io_read_bytes.to_string(),
            self.io_write_bytes.to_string(),
            self.pids_peak.to_string(),
            secs(self.cpu_throttled_s),
            self.major_faults.to_string(),
            self.thermal_throttles.to_string(),
            self.swap_in_pages.to_string(),
            self.swap_out_pages.to_string(),
            net(|t| t.rx_bytes),
            net(|t| t.tx_bytes),
            net(|t| t.rx_packets),
            net(|t| t.tx_packets),
            self.gpu.gpus.clone(),
            opt(self.gpu.memory_peak.map(|v| v.to_string())),
            opt(self.gpu.utilization.map(|v| format!("{v:.1}"))),
            opt(self.exit_code.map(|v| v.to_string())),
            opt(self.signal.map(|v| v.to_string())),
            self.state.as_str().to_string(),
            self.termination_reason.clone(),
            path(&self.stdout),
            path(&self.stderr),
        ]);
        cells.extend(counter_cells(&self.counters, &self.counters_note));
        cells
    }
}

/// One CSV line of these cells, quoted where needed.
pub fn csv_line(cells: &[String]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells)
        .expect("writing CSV to memory cannot fail");
    w.into_inner().expect("flushing CSV to memory cannot fail")
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Io(#[from] PathError),
    /// A file that is not CSV, or has the wrong columns.
    #[error("{}: {message}", path.display())]
    Csv { path: PathBuf, message: String },
    /// A cell that does not hold what its column does.
    #[error("{}: line {line}, column {column}: `{value}` is not {expected}", path.display())]
    Cell {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
    #[error("{}: not a packrun manifest: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
}

fn csv_err(path: &Path, message: impl ToString) -> ResultsError {
    ResultsError::Csv {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The whole lines of a runs.csv's text: a crash mid-write can leave a
/// last line without its newline, which is not a row yet.
fn whole_lines(text: &str) -> &str {
    &text[..text.rfind('\n').map_or(0, |i| i + 1)]
}

/// The columns of a runs.csv (its first line).
pub fn read_header(path: &Path) -> Result<Vec<String>, ResultsError> {
    let text = fsx::read_to_string(path)?;
    let mut rdr = csv::Reader::from_reader(whole_lines(&text).as_bytes());
    let h = rdr.headers().map_err(|e| csv_err(path, e))?;
    Ok(h.iter().map(String::from).collect())
}

/// A runs.csv read back: its parameter names (in column order) and rows.
#[derive(Debug, Clone)]
pub struct Runs {
    pub params: Vec<String>,
    pub rows: Vec<Row>,
}

/// Reads every whole row of a runs.csv; a row that does not parse is an
/// error naming the file, the line, the column and the value.
///
/// Read as a stream (a runs.csv of 100,000 rows is 25 MB), up to its last
/// newline.
pub fn read_runs(path: &Path) -> Result<Runs, ResultsError> {
    read_file_rows(path, true)
}

/// The rows of a runs.csv without the text that no summary reads (host,
/// userns, termination_reason, stdout, stderr: left empty): what the end of
/// a batch needs, in two thirds of the memory.
pub fn read_rows_brief(path: &Path) -> Result<Vec<Row>, ResultsError> {
    Ok(read_file_rows(path, false)?.rows)
}

fn read_file_rows(path: &Path, full: bool) -> Result<Runs, ResultsError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| ResultsError::from(PathError::new("read", path, e));
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let tail_at = len.saturating_sub(64 << 10);
    file.seek(SeekFrom::Start(tail_at)).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    let whole = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => tail_at + i as u64 + 1,
        None if tail_at == 0 => 0,
        // A last line over 64 KiB: look for its start in the whole file.
        None => {
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut all = Vec::new();
            file.read_to_end(&mut all).map_err(io)?;
            all.iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i as u64 + 1)
        }
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file.take(whole));
    read_from(path, csv::Reader::from_reader(reader), full)
}

/// The rows of a runs.csv.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, ResultsError> {
    Ok(read_runs(path)?.rows)
}

/// The run_keys already in a runs.csv and their states (for --resume);
/// none when there is no runs.csv yet.
///
/// Reads only the `run_key` and `state` cells of each row: a million rows
/// are read in well under a second, not parsed whole.
pub fn read_done(path: &Path) -> Result<HashMap<String, State>, ResultsError> {
    let Some(text) = fsx::read_if_present(path)? else {
        return Ok(HashMap::new());
    };
    let mut rdr = csv::Reader::from_reader(whole_lines(&text).as_bytes());
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| csv_err(path, format!("no `{name}` column")))
    };
    let (key, state) = (column("run_key")?, column("state")?);
    let mut done = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(match e.position() {
                    Some(p) => csv_err(path, format!("line {}: {e}", p.line())),
                    None => csv_err(path, e),
                })
            }
        }
        let cell = |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or_default());
        let st: State = cell(state).parse().map_err(|_| ResultsError::Cell {
            path: path.to_path_buf(),
            line: record.position().map_or(0, |p| p.line()),
            column: "state".into(),
            value: cell(state).to_string(),
            expected: "a state",
        })?;
        done.insert(cell(key).into_owned(), st);
    }
    Ok(done)
}

/// Parses the text of a runs.csv (`path` names it in errors).
pub fn parse_runs(path: &Path, text: &str) -> Result<Runs, ResultsError> {
    read_from(
        path,
        csv::Reader::from_reader(whole_lines(text).as_bytes()),
        true,
    )
}

fn read_from<R: std::io::Read>(
    path: &Path,
    mut rdr: csv::Reader<R>,
    full: bool,
) -> Result<Runs, ResultsError> {
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let required = ["run_key", "job"]
        .into_iter()
        .chain(TAIL.iter().filter(|c| c.2).map(|c| c.0));
    if let Some(missing) = required
        .into_iter()
        .find(|c| !headers.iter().any(|h| h == *c))
    {
        return Err(csv_err(path, format!("no `{missing}` column")));
    }
    let params: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("parameter_").map(|p| (i, p.to_string())))
        .collect();
    let counters: Vec<(usize, Counter)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Counter::from_column(h).map(|c| (i, c)))
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| match e.position() {
            Some(p) => csv_err(path, format!("line {}: {e}", p.line())),
            None => csv_err(path, e),
        })?;
        let cells = Cells {
            path,
            headers: &headers,
            record: &r,
        };
        let mut row = cells.row(&params)?;
        row.counters = counters
            .iter()
            .map(|&(i, c)| cells.counter(i, c))
            .collect::<Result<_, _>>()?;
        if full {
            row.counters_note = cells.text(COUNTERS_NOTE);
        }
        if !full {
            (row.host, row.userns, row.termination_reason) = Default::default();
            row.gpu.gpus = String::new();
            (row.stdout, row.stderr) = (None, None);
        }
        rows.push(row);
    }
    Ok(Runs {
        params: params.into_iter().map(|(_, p)| p).collect(),
        rows,
    })
}

/// One CSV record and what its cells mean.
struct Cells<'a> {
    path: &'a Path,
    headers: &'a csv::StringRecord,
    record: &'a csv::StringRecord,
}

impl Cells<'_> {
    /// The cell of `column`; `None` when the file has no such column.
    fn get(&self, column: &str) -> Option<&str> {
        let i = self.headers.iter().position(|h| h == column)?;
        self.record.get(i)
    }

    fn text(&self, column: &str) -> String {
        self.get(column).unwrap_or_default().to_string()
    }

    /// Parses a cell; `None` when the file has no such column.
    fn parse_cell<T>(
        &self,
        column: &str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ResultsError> {
        let Some(value) = self.get(column) else {
            return Ok(None);
        };
        parse(value).map(Some).ok_or_else(|| ResultsError::Cell {
            path: self.path.to_path_buf(),
            line: self.record.position().map_or(0, |p| p.line()),
            column: column.to_string(),
            value: value.to_string(),
            expected,
        })
    }

    /// Parses a cell; an absent column (an older folder) gives `T::default()`.
    fn parse<T: Default>(
        &self,
        column: &str,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ResultsError> {
        Ok(self
            .parse_cell(column, expected, parse)?
            .unwrap_or_default())
    }

    fn num<T: FromStr + Default>(
        &self,
        column: &str,
        expected: &'static str,
    ) -> Result<T, ResultsError> {
        // An empty cell of a column a runs.csv need not have (a counter
        // added later, written empty by another tool) counts as 0.
        let optional = TAIL
            .iter()
            .any(|(n, _, required)| *n == column && !required);
        if optional && self.get(column).is_some_and(str::is_empty) {
            return Ok(T::default());
        }
        self.parse(column, expected, |s| s.parse().ok())
    }

    /// An empty cell is `None`.
    fn opt<T: FromStr>(
        &self,
        column: &str,
        expected: &'static str,
    ) -> Result<Option<T>, ResultsError> {
        self.parse(column, expected, |s| {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        })
    }

    /// The counter `c` in column `i`: an empty cell was not counted.
    fn counter(&self, i: usize, c: Counter) -> Result<(Counter, Option<f64>), ResultsError> {
        let value = self.record.get(i).unwrap_or_default();
        if value.is_empty() {
            return Ok((c, None));
        }
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok((c, Some(v))),
            _ => Err(ResultsError::Cell {
                path: self.path.to_path_buf(),
                line: self.record.position().map_or(0, |p| p.line()),
                column: c.column().to_string(),
                value: value.to_string(),
                expected: "a number",
            }),
        }
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, ResultsError> {
        self.parse(column, "an RFC 3339 time", |s| parse_time(s).ok())
    }

    fn path(&self, column: &str) -> Option<PathBuf> {
        self.get(column)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }

    /// The `net_*` cells: all empty (or absent) for a run on no private
    /// network.
    fn net(&self) -> Result<Option<NetTraffic>, ResultsError> {
        const BYTES: &str = "a number of bytes";
        const COUNT: &str = "a whole number";
        let rx_bytes = self.opt("net_rx_bytes", BYTES)?;
        let tx_bytes = self.opt("net_tx_bytes", BYTES)?;
        let rx_packets = self.opt("net_rx_packets", COUNT)?;
        let tx_packets = self.opt("net_tx_packets", COUNT)?;
        Ok(match (rx_bytes, tx_bytes, rx_packets, tx_packets) {
            (None, None, None, None) => None,
            (a, b, c, d) => Some(NetTraffic {
                rx_bytes: a.unwrap_or_default(),
                tx_bytes: b.unwrap_or_default(),
                rx_packets: c.unwrap_or_default(),
                tx_packets: d.unwrap_or_default(),
            }),
        })
    }

    fn row(&self, params: &[(usize, String)]) -> Result<Row, ResultsError> {
        const SECONDS: &str = "a number of seconds";
        const BYTES: &str = "a number of bytes";
        const COUNT: &str = "a whole number";
        const LIST: &str = "a list like 0-3,8";
        Ok(Row {
            key: self.text("run_key"),
            job: self.text("job"),
            params: params
                .iter()
                .filter(|(i, _)| !self.record[*i].is_empty())
                .map(|(i, p)| (p.clone(), self.record[*i].to_string()))
                .collect(),
            rep: self.num("rep", COUNT)?,
            warmup: self.parse("warmup", "true or false", |s| s.parse().ok())?,
            host: self.text("host"),
            cpus: self.num("cpus", LIST)?,
            mems: self.num("mems", LIST)?,
            userns: self.text("userns"),
            gpu: GpuUse {
                gpus: self.text("gpus"),
                memory_peak: self.opt("gpu_memory_peak_bytes", BYTES)?,
                utilization: self.opt("gpu_utilization", "a percentage")?,
            },
            start_time: self.time("start_time")?,
            end_time: self.time("end_time")?,
            wall_s: self.num("wall_time_s", SECONDS)?,
            user_s: self.num("user_time_s", SECONDS)?,
            system_s: self.num("system_time_s", SECONDS)?,
            cpu_s: self.num("cpu_time_s", SECONDS)?,
            memory_peak: self.num("memory_peak_bytes", BYTES)?,
            memory_limit: self.opt("memory_limit_bytes", BYTES)?,
            oom_kills: self.num("oom_kills", COUNT)?,
            io_read_bytes: self.num("io_read_bytes", BYTES)?,
            io_write_bytes: self.num("io_write_bytes", BYTES)?,
            pids_peak: self.num("pids_peak", COUNT)?,
            cpu_throttled_s: self.num("cpu_throttled_s", SECONDS)?,
            major_faults: self.num("major_faults", COUNT)?,
            thermal_throttles: self.num("thermal_throttles", COUNT)?,
            swap_in_pages: self.num("swap_in_pages", COUNT)?,
            swap_out_pages: self.num("swap_out_pages", COUNT)?,
            net: self.net()?,
            exit_code: self.opt("exit_code", "an exit code")?,
            signal: self.opt("signal", "a signal number")?,
            state: self
                .parse_cell("state", "a state", |s| s.parse().ok())?
                .ok_or_else(|| csv_err(self.path, "no `state` column"))?,
            termination_reason: self.text("termination_reason"),
            stdout: self.path("stdout"),
            stderr: self.path("stderr"),
            counters: Vec::new(),
            counters_note: String::new(),
        })
    }
}

/// One step around a run (setup, prepare, conclude, cleanup): a row of
/// steps.csv. Its time and usage are its own, never the run's.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub run_key: String,
    pub job: String,
    pub step: &'static str,
    pub start_time: DateTime<Utc>,
    pub wall_time: std::time::Duration,
    pub cpu_ns: u64,
    pub memory_peak_bytes: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub state: State,
    pub termination_reason: String,
    /// What its counters read: the run's choice, counted for the step.
    pub counters: Reading,
}

/// The columns of steps.csv (then those of `counter_columns`).
pub const STEPS_HEADER: [&str; 11] = [
    "run_key",
    "job",
    "step",
    "start_time",
    "wall_time_s",
    "cpu_time_s",
    "memory_peak_bytes",
    "exit_code",
    "signal",
    "state",
    "termination_reason",
];

/// Appends `rec` to steps.csv in `dir` (made with its header when new),
/// with a column per counter of `counters` (the batch's, as runs.csv).
pub fn append_step(dir: &Path, rec: &StepRecord, counters: Chosen) -> Result<(), PathError> {
    let path = dir.join("steps.csv");
    let new = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .at("open", &path)?;
    let mut out = Vec::new();
    if new {
        let mut head = STEPS_HEADER.map(String::from).to_vec();
        head.extend(counter_columns(counters));
        out.extend(csv_line(&head));
    }
    let opt = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
    let values: Vec<(Counter, Option<f64>)> =
        counters.iter().map(|c| (c, rec.counters.get(c))).collect();
    let mut cells = vec![
        rec.run_key.clone(),
        rec.job.clone(),
        rec.step.to_string(),
        rfc3339(&rec.start_time),
        format!("{:.6}", rec.wall_time.as_secs_f64()),
        format!("{:.6}", rec.cpu_ns as f64 / 1e9),
        rec.memory_peak_bytes.to_string(),
        opt(rec.exit_code),
        opt(rec.signal),
        rec.state.as_str().to_string(),
        rec.termination_reason.clone(),
    ];
    cells.extend(counter_cells(&values, &rec.counters.note));
    out.extend(csv_line(&cells));
    if let Err(e) = f.write_all(&out) {
        // A full disk can take part of it: leave no torn line behind, so
        // that it can be written again whole.
        let _ = match new {
            true => std::fs::remove_file(&path).at("remove", &path),
            false => drop_torn_last_line(&f, &path),
        };
        return Err(PathError::new("write", &path, e));
    }
    Ok(())
}

/// runs.csv, appended one whole row at a time and fsync'd, so a crash never
/// leaves half a row.
pub struct RunsCsv {
    path: PathBuf,
    file: File,
    params: Vec<String>,
    counters: Chosen,
    host: String,
    /// Rows written since the last sync.
    unsynced: bool,
}

impl RunsCsv {
    /// Opens `path` for appending; writes the header when the file is new.
    /// An existing file must have the same header (same parameter and
    /// counter columns).
    pub fn open(
        path: &Path,
        param_names: &[String],
        counters: Chosen,
        host: &str,
    ) -> Result<RunsCsv, ResultsError> {
        let want = header(param_names, counters);
        let exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if exists {
            let have = read_header(path)?;
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
            counters,
            host: host.to_string(),
            unsynced: false,
        })
    }

    /// Appends one row in a single write: a crash of packrun never leaves
    /// half a row. `sync` makes the rows appended so far durable.
    pub fn append(&mut self, rec: &Record) -> Result<(), PathError> {
        let row = Row::from_record(rec, &self.host).with_columns(self.counters);
        let line = csv_line(&row.cells(&self.params));
        if let Err(e) = self.file.write_all(&line) {
            // A full disk can take half a row: cut it, so that the row can
            // be written again whole.
            let _ = drop_torn_last_line(&self.file, &self.path);
            return Err(PathError::new("write", &self.path, e));
        }
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

/// Space packrun keeps for its own records in a results folder: the rows
/// still to come (about 2 KiB each, with room for a long reason), the
/// summary, the manifest and the names of the logs. 2 MiB + 2 KiB a run,
/// at most 256 MiB.
pub fn reserve_for(runs: usize) -> u64 {
    ((2u64 << 20) + 2048 * runs as u64).min(256 << 20)
}

/// The disk budget of a run whose job gives none: an equal share, among
/// the runs that can go at once (`slots`), of the space free under the
/// results folder less packrun's reserve. None when nothing is left.
pub fn disk_share(free: u64, reserve: u64, slots: usize) -> Option<u64> {
    let left = free.checked_sub(reserve)?;
    Some(left / slots.max(1) as u64).filter(|&s| s > 0)
}

/// Free space under `path` for unprivileged ids (what a run may write
/// there; root may have the file system's reserve besides). None for a
/// file system that reports no size (ramfs): nothing to share out.
pub fn free_space(path: &Path) -> Result<Option<u64>, PathError> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| PathError::new("statvfs", path, e.into()))?;
    Ok((st.blocks() > 0).then(|| st.blocks_available() as u64 * st.fragment_size() as u64))
}

/// Whether a write failed because the disk (or a quota) is full.
pub fn disk_full(e: &PathError) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A file of preallocated blocks in the results folder (`.reserve`) that
/// packrun frees when the disk fills, so that the rows, the summary and
/// the manifest still get written. It is removed when dropped.
pub struct Reserve {
    path: PathBuf,
    held: u64,
}

impl Reserve {
    /// Allocates `bytes` at `dir/.reserve` (fallocate; zeros where the
    /// file system has no fallocate).
    pub fn make(dir: &Path, bytes: u64) -> Result<Reserve, PathError> {
        let path = dir.join(".reserve");
        let f = File::create(&path).at("create", &path)?;
        let mut reserve = Reserve { path, held: 0 };
        match nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, bytes as i64) {
            Ok(()) => {}
            Err(nix::errno::Errno::EOPNOTSUPP) => {
                let zeros = vec![0u8; 64 << 10];
                let mut left = bytes;
                let mut w = &f;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    w.write_all(&zeros[..n]).at("write", &reserve.path)?;
                    left -= n as u64;
                }
            }
            Err(e) => return Err(PathError::new("fallocate", &reserve.path, e.into())),
        }
        // No sync: the blocks are the file's once fallocate returns (and
        // an fsync here cost 8 ms a batch); after a crash the next batch
        // makes its own.
        reserve.held = bytes;
        Ok(reserve)
    }

    /// Frees the reserve for packrun's records; returns how many bytes it
    /// freed (0: nothing was left to free).
    pub fn release(&mut self) -> u64 {
        let freed = std::mem::take(&mut self.held);
        if freed > 0 {
            let _ = std::fs::remove_file(&self.path);
        }
        freed
    }

    /// Runs `write`; when it fails because the disk is full and the reserve
    /// still holds space, frees it and runs `write` once more. `freed` is
    /// told how much was freed.
    pub fn write<T>(
        &mut self,
        mut write: impl FnMut() -> Result<T, PathError>,
        freed: &mut dyn FnMut(u64),
    ) -> Result<T, PathError> {
        match write() {
            Err(e) if disk_full(&e) && self.held > 0 => {
                freed(self.release());
                write()
            }
            r => r,
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes a whole runs.csv at once (the merge of several), atomically.
/// Its counter columns are those any row has.
pub fn write_runs(path: &Path, param_names: &[String], rows: &[Row]) -> Result<(), PathError> {
    let counters = rows.iter().fold(Chosen::default(), |all, r| {
        all.union(Chosen::of(r.counters.iter().map(|(c, _)| *c)))
    });
    let mut data = csv_line(&header(param_names, counters));
    for r in rows {
        data.extend(csv_line(
            &r.clone().with_columns(counters).cells(param_names),
        ));
    }
    fsx::write_atomic(path, data)
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

/// manifest.json: what ran, where, when.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub packrun_version: String,
    pub name: String,
    pub job_file: String,
    pub job_file_sha256: String,
    pub machine: crate::machine::Machine,
    pub cgroup_version: String,
    pub topology: Topology,
    pub start: String,
    pub end: Option<String>,
    /// pid of the packrun process that runs (or ran) the batch.
    pub runner_pid: u32,
    pub runs: usize,
    /// The order runs started in, and the seed of a random one (to replay it: `--seed`).
    #[serde(default)]
    pub order: crate::jobfile::Order,
    #[serde(default)]
    pub seed: Option<u64>,
    /// The images jobs ran in.
    #[serde(default)]
    pub images: Vec<ImageUse>,
    /// Runs an SMT sibling of whose CPUs another run used at the same time
    /// (see report::smt_shared), filled in when the batch ends.
    #[serde(default)]
    pub smt_shared_runs: Vec<String>,
    /// Whose ids the runs had.
    #[serde(default)]
    pub userns: UserNsManifest,
}

/// An image a job's runs ran in.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageUse {
    pub job: String,
    /// `oci:PATH:TAG` or `docker-archive:PATH`, as resolved.
    pub source: String,
    /// `sha256:…` of its manifest (of its config for a docker archive).
    pub digest: String,
    pub platform: String,
}

/// The manifest's account of the runs' user namespaces.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UserNsManifest {
    /// Where each run's own ids came from.
    pub ids: String,
    /// Jobs that kept the host's ids (`userns: host`).
    pub host_ids_jobs: Vec<String>,
}

/// Writes manifest.json so that a crash leaves the old one or the new one.
pub fn write_manifest(path: &Path, m: &Manifest) -> Result<(), PathError> {
    let text = serde_json::to_string_pretty(m).expect("manifest serializes");
    fsx::write_atomic(path, text + "\n")
}

pub fn read_manifest(path: &Path) -> Result<Manifest, ResultsError> {
    let text = fsx::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| ResultsError::Manifest {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `dir/manifest.json`, or None when the folder has none (one written by
/// hand, or by a tool that only writes runs.csv).
pub fn read_manifest_in(dir: &Path) -> Result<Option<Manifest>, ResultsError> {
    let path = dir.join("manifest.json");
    match path.exists() {
        true => read_manifest(&path).map(Some),
        false => Ok(None),
    }
}

/// A new batch's folder when none is given: `results/<name>-<UTC timestamp>/`.
pub fn default_dir(name: &str) -> PathBuf {
    Path::new("results").join(format!(
        "{name}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
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

/// A finished run's record for tests.
#[cfg(test)]
pub(crate) fn sample_record(key: &str, state: State) -> Record {
    use chrono::TimeZone;
    Record {
        key: key.into(),
        job: "xz".into(),
        params: vec![("threads".into(), "2".into())],
        rep: 1,
        warmup: false,
        cpus: CpuList::parse("0-1").unwrap(),
        mems: CpuList::parse("0").unwrap(),
        gpu: Default::default(),
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
        disturbance: Default::default(),
        memory_limit: Some(1 << 20),
        exit_code: Some(0),
        signal: None,
        state,
        termination_reason: "exited, \"quoted\"".into(),
        stdout: None,
        stderr: None,
        counters: Default::default(),
        net: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn record(key: &str, state: State) -> Record {
        sample_record(key, state)
    }

    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-sample")
    }

    #[test]
    fn header_puts_parameter_columns_after_job() {
        let h = header(&["threads".into()], Chosen::default());
        assert_eq!(&h[..4], &["run_key", "job", "parameter_threads", "rep"]);
        assert_eq!(h.last().unwrap(), "stderr");
    }

    #[test]
    fn rows_format_seconds_bytes_and_rfc3339_times() {
        let cells =
            Row::from_record(&record("k1", State::Completed), "h").cells(&["threads".into()]);
        let h = header(&["threads".into()], Chosen::default());
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
        let mut w = RunsCsv::open(&p, &params, Chosen::default(), "h").unwrap();
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
        let mut w = RunsCsv::open(&p, &params, Chosen::default(), "h").unwrap();
        w.append(&record("ddd", State::Completed)).unwrap();
        let done = read_done(&p).unwrap();
        assert_eq!(done.len(), 3, "{}", std::fs::read_to_string(&p).unwrap());
        assert!(done.contains_key("ddd"));
    }

    #[test]
    fn a_torn_last_line_longer_than_the_tail_read_is_left_out_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let mut w = RunsCsv::open(&p, &[], Chosen::default(), "h").unwrap();
        w.append(&record("aaa", State::Completed)).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(format!("bbb,xz,{}", "x".repeat(100_000)).as_bytes())
            .unwrap();
        let rows = read_rows(&p).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["aaa"]
        );
    }

    #[test]
    fn rows_are_read_up_to_the_last_newline_and_brief_rows_leave_out_the_texts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let mut w = RunsCsv::open(&p, &[], Chosen::default(), "h").unwrap();
        w.append(&record("aaa", State::Completed)).unwrap();
        w.append(&record("bbb", State::Timeout)).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"ccc,xz,2,1,fal").unwrap();
        let full = read_rows(&p).unwrap();
        let brief = read_rows_brief(&p).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(brief.len(), 2);
        for (a, b) in full.iter().zip(&brief) {
            assert_eq!(a.host, "h");
            assert!(b.host.is_empty() && b.termination_reason.is_empty() && b.stdout.is_none());
            assert_eq!(
                (&a.key, a.state, a.wall_s, &a.cpus),
                (&b.key, b.state, b.wall_s, &b.cpus)
            );
        }
    }

    #[test]
    fn resume_takes_its_done_keys_and_states_from_the_one_reader() {
        let p = sample_dir().join("runs.csv");
        let done = read_done(&p).unwrap();
        let rows = read_rows(&p).unwrap();
        assert_eq!(done.len(), rows.len());
        for r in &rows {
            assert_eq!(done[&r.key], r.state, "{}", r.key);
        }
        assert!(done.values().any(|s| *s == State::Timeout));
        // A batch that has not begun has no runs.csv: nothing is done.
        assert!(read_done(&sample_dir().join("absent.csv"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reopening_with_other_parameter_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        RunsCsv::open(&p, &["threads".into()], Chosen::default(), "h").unwrap();
        let e = RunsCsv::open(&p, &["level".into()], Chosen::default(), "h")
            .err()
            .unwrap();
        assert!(e.to_string().contains("parameter_level"), "{e}");
    }

    #[test]
    fn a_row_that_does_not_parse_is_an_error_naming_file_line_column_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let mut w = RunsCsv::open(&p, &[], Chosen::default(), "h").unwrap();
        w.append(&record("aaa", State::Completed)).unwrap();
        w.append(&record("bbb", State::Completed)).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&p).unwrap();
        let (first, second) = text.split_at(text.find("\nbbb").unwrap());
        // wall_time_s comes before cpu_time_s, which holds the same value.
        std::fs::write(
            &p,
            first.to_string() + &second.replacen("1.500000", "1.5s", 1),
        )
        .unwrap();
        let e = read_rows(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: line 3, column wall_time_s: `1.5s` is not a number of seconds",
                p.display()
            )
        );
        // Resume reads keys and states only: bbb is done, not run again.
        assert_eq!(read_done(&p).unwrap()["bbb"], State::Completed);
        // A state it cannot read stops it rather than run bbb again.
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen(",COMPLETED,", ",DONE,", 2)).unwrap();
        assert_eq!(
            read_done(&p).unwrap_err().to_string(),
            format!(
                "{}: line 2, column state: `DONE` is not a state",
                p.display()
            )
        );
    }

    #[test]
    fn an_unknown_state_or_a_missing_column_is_an_error_too() {
        let head = header(&[], Chosen::default()).join(",");
        let row = csv_line(&Row::from_record(&record("a", State::Completed), "h").cells(&[]));
        let bad = String::from_utf8(row).unwrap().replace("COMPLETED", "DONE");
        let e = parse_runs(Path::new("r.csv"), &format!("{head}\n{bad}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.csv: line 2, column state: `DONE` is not a state"
        );
        let e = parse_runs(Path::new("r.csv"), "run_key,job\nk,j\n").unwrap_err();
        assert_eq!(e.to_string(), "r.csv: no `rep` column");
    }

    #[test]
    fn states_round_trip_through_their_names_and_other_names_are_refused() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
        }
        for bad in ["completed", "", "OOM", " FAILED"] {
            let e = bad.parse::<State>().unwrap_err();
            assert_eq!(e, ParseStateError(bad.into()));
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn a_row_read_back_writes_the_same_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let params = vec!["threads".to_string(), "size".to_string()];
        let mut w = RunsCsv::open(&p, &params, Chosen::default(), "node1").unwrap();
        let mut rec = record("aaa", State::OutOfMemory);
        rec.signal = Some(9);
        rec.exit_code = None;
        rec.stdout = Some("logs/aaa.out".into());
        w.append(&rec).unwrap();
        w.append(&record("bbb", State::Completed)).unwrap();
        drop(w);
        let written = std::fs::read_to_string(&p).unwrap();
        let runs = read_runs(&p).unwrap();
        assert_eq!(runs.params, params);
        assert_eq!(runs.rows[0], Row::from_record(&rec, "node1"));
        assert_eq!(runs.rows[0].signal, Some(9));
        let copy = dir.path().join("copy.csv");
        write_runs(&copy, &runs.params, &runs.rows).unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), written);
    }

    #[test]
    fn counter_columns_follow_the_fixed_ones_and_read_back_with_their_note() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.csv");
        let chosen = Chosen::of([Counter::PageFaults, Counter::TaskClock]);
        let mut w = RunsCsv::open(&p, &[], chosen, "h").unwrap();
        let mut rec = record("aaa", State::Completed);
        rec.counters.values = vec![
            (Counter::TaskClock, Some(1_000_000.0)),
            (Counter::PageFaults, None),
        ];
        rec.counters.note = "page-faults: not read".into();
        w.append(&rec).unwrap();
        // A run of a job that chose no counters: empty cells.
        w.append(&record("bbb", State::Completed)).unwrap();
        drop(w);
        let head = read_header(&p).unwrap();
        assert_eq!(
            head[head.len() - 3..],
            ["task_clock", "page_faults", "counters_note"]
        );
        let rows = read_rows(&p).unwrap();
        assert_eq!(rows[0].counter(Counter::TaskClock), Some(1e6));
        assert_eq!(rows[0].counter(Counter::PageFaults), None);
        assert_eq!(rows[0].counters_note, "page-faults: not read");
        assert_eq!(rows[1].counters.len(), 2);
        assert_eq!(rows[1].counter(Counter::TaskClock), None);
        // Resuming with the same choice keeps the header; another is refused.
        RunsCsv::open(&p, &[], chosen, "h").unwrap();
        assert!(RunsCsv::open(&p, &[], Chosen::default(), "h").is_err());
        // Without counters the header is as it was.
        assert_eq!(header(&[], Chosen::default()).last().unwrap(), "stderr");
    }

    #[test]
    fn steps_csv_gets_the_batchs_counter_columns() {
        let dir = tempfile::tempdir().unwrap();
        let chosen = Chosen::of([Counter::ContextSwitches]);
        let mut counters = Reading::default();
        counters.values.push((Counter::ContextSwitches, Some(12.0)));
        let rec = StepRecord {
            run_key: "k".into(),
            job: "j".into(),
            step: "prepare",
            start_time: Utc::now(),
            wall_time: Duration::from_millis(5),
            cpu_ns: 1,
            memory_peak_bytes: 2,
            exit_code: Some(0),
            signal: None,
            state: State::Completed,
            termination_reason: "exited".into(),
            counters,
        };
        append_step(dir.path(), &rec, chosen).unwrap();
        let text = std::fs::read_to_string(dir.path().join("steps.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(",termination_reason,context_switches,counters_note"));
        assert!(lines[1].ends_with(",exited,12,"), "{}", lines[1]);
    }

    #[test]
    fn a_folder_from_before_the_userns_column_still_reads() {
        let runs = read_runs(&sample_dir().join("runs.csv")).unwrap();
        assert_eq!(runs.rows.len(), 20);
        assert_eq!(runs.params, ["threads", "size"]);
        assert!(runs.rows.iter().all(|r| r.userns.is_empty()));
        assert!(runs.rows.iter().any(|r| r.state == State::OutOfMemory));
    }

    #[test]
    fn the_manifest_reads_back_with_its_topology_typed() {
        let m = read_manifest(&sample_dir().join("manifest.json")).unwrap();
        assert!(!m.topology.cpus.is_empty());
        assert_eq!(m.topology.nodes[0].id, 0);
        let text = serde_json::to_value(&m).unwrap();
        let orig: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sample_dir().join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            text["topology"], orig["topology"],
            "same JSON keys and values"
        );
    }

    #[test]
    fn the_manifest_is_replaced_whole_and_a_temp_file_left_by_a_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        let mut m = read_manifest(&sample_dir().join("manifest.json")).unwrap();
        write_manifest(&p, &m).unwrap();
        // A crash between writing the temp file and renaming it.
        let tmp = dir.path().join(".manifest.json.tmp");
        std::fs::write(&tmp, "{\"packrun_ver").unwrap();
        assert_eq!(read_manifest(&p).unwrap().name, "sample");
        m.end = Some("2026-03-02T11:00:00Z".into());
        write_manifest(&p, &m).unwrap();
        assert_eq!(read_manifest(&p).unwrap().end, m.end);
        assert!(
            !tmp.exists(),
            "the stale temp file was replaced and renamed"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_write_that_finds_the_disk_full_frees_the_reserve_and_is_tried_once_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut reserve = Reserve::make(dir.path(), 1 << 20).unwrap();
        let file = dir.path().join(".reserve");
        assert!(std::fs::metadata(&file).unwrap().blocks() * 512 >= 1 << 20);
        let full = || {
            PathError::new(
                "write",
                "x",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )
        };
        let mut tries = 0;
        let mut freed = 0;
        let r = reserve.write(
            || {
                tries += 1;
                match tries {
                    1 => Err(full()),
                    _ => Ok(tries),
                }
            },
            &mut |n| freed += n,
        );
        assert_eq!(r.unwrap(), 2);
        assert_eq!(freed, 1 << 20);
        assert!(!file.exists());
        // Nothing left to free: the next full disk is an error.
        assert!(disk_full(
            &reserve
                .write(|| Err::<(), _>(full()), &mut |_| panic!())
                .unwrap_err()
        ));
        // Another error is not retried.
        let mut reserve = Reserve::make(dir.path(), 4096).unwrap();
        let other = || PathError::new("write", "x", std::io::Error::from_raw_os_error(libc::EIO));
        assert!(reserve
            .write(|| Err::<(), _>(other()), &mut |_| panic!())
            .is_err());
        drop(reserve);
        assert!(!file.exists(), "dropped with the batch");
    }

    #[test]
    fn each_run_gets_an_equal_share_of_what_is_free_less_the_reserve() {
        assert_eq!(reserve_for(0), 2 << 20);
        assert_eq!(reserve_for(1000), (2 << 20) + 2_048_000);
        assert_eq!(reserve_for(10_000_000), 256 << 20);
        assert_eq!(disk_share(10 << 20, 2 << 20, 2), Some(4 << 20));
        assert_eq!(disk_share(1 << 20, 2 << 20, 2), None);
        assert_eq!(disk_share(2 << 20, 2 << 20, 0), None);
    }
}
