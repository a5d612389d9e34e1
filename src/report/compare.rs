//! `packrun compare`: two results folders, or one folder against a baseline
//! set of its own. Per job and parameter set on both sides: the medians of
//! wall time, CPU time and peak memory, the ratio B/A of the medians with a
//! percentile-bootstrap confidence interval, a two-sided Mann–Whitney U test
//! for the verdict, and a geometric mean over everything compared. Rows come
//! from the one runs.csv reader, groups from `summarize`; the page is in
//! `html`. docs/compare.md explains the method and why.

use super::{human_bytes, label, summarize, Stats, Summary};
use crate::counters::Counter;
use crate::results::{read_manifest_in, read_rows, Manifest, ResultsError, Row};
use crate::rng::SplitMix64;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bootstrap replicates per set.
pub const RESAMPLES: usize = 10_000;

/// Completed measured runs a side needs before its set gets a test or an
/// interval.
pub const MIN_RUNS: usize = 3;

/// The bootstrap's fixed seed; each set mixes in its own label, so a set's
/// interval does not change when other sets come or go.
const SEED: u64 = 0x7061_636b_7275_6e21;

/// What `packrun compare` was asked: folder A against folder B, or the sets
/// of folder A against its `baseline` set (`JOB` or `JOB:NAME=VALUE,...`).
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub a: PathBuf,
    pub b: Option<PathBuf>,
    pub baseline: Option<String>,
    /// Significance level of the verdicts; the intervals are at 1 - alpha.
    pub alpha: f64,
    /// What to compare, in order (`Metric::DEFAULT` when empty).
    pub metrics: Vec<Metric>,
}

/// What a comparison found. B/A ratios: below 1 means B is faster/smaller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    pub alpha: f64,
    /// 1 - alpha: the level of every interval.
    pub confidence: f64,
    pub resamples: usize,
    pub min_runs: usize,
    /// One per job and parameter set compared, in A's order.
    pub sets: Vec<SetComparison>,
    /// The geometric mean of the ratios, one per metric.
    pub geomean: Vec<Geomean>,
    /// Sets only one side has (the two-folder form), as labels.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// One side of a comparison: its folder and what its manifest says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub dir: PathBuf,
    /// The batch's name, host and start, when the folder has a manifest.
    pub name: Option<String>,
    pub host: Option<String>,
    pub start: Option<String>,
    /// The baseline set's label (the baseline form, side A).
    pub set: Option<String>,
}

impl Side {
    fn new(folder: &Folder, set: Option<String>) -> Side {
        let m = folder.manifest.as_ref();
        Side {
            dir: folder.dir.clone(),
            name: m.map(|m| m.name.clone()),
            host: m.map(|m| m.machine.host.clone()),
            start: m.map(|m| m.start.clone()),
            set,
        }
    }

    /// `baseline xz threads=1 in results/a (sweep on node1, 2026-03-02T10:00:00Z)`.
    pub fn describe(&self) -> String {
        let mut s = match &self.set {
            Some(set) => format!("baseline {set} in {}", self.dir.display()),
            None => self.dir.display().to_string(),
        };
        let about: Vec<String> = [
            self.name.clone(),
            self.host.as_ref().map(|h| format!("on {h}")),
            self.start.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|x| !x.is_empty())
        .collect();
        if !about.is_empty() {
            s.push_str(&format!(" ({})", about.join(", ")));
        }
        s
    }
}

/// One job and parameter set on both sides.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetComparison {
    pub job: String,
    #[serde(rename = "parameters", serialize_with = "as_map")]
    pub params: Vec<(String, String)>,
    /// Completed measured runs (warmups and runs that did not complete
    /// left out).
    pub runs_a: usize,
    pub runs_b: usize,
    /// Wall time, CPU time, peak memory.
    pub metrics: Vec<MetricComparison>,
}

impl SetComparison {
    /// `xz threads=2`.
    pub fn label(&self) -> String {
        label(&self.job, &self.params)
    }
}

fn as_map<S: serde::Serializer>(p: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(p.iter().map(|(k, v)| (k, v)))
}

/// What is compared; named (in JSON) as the runs.csv column it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Wall,
    Cpu,
    Memory,
    /// A counter's column (see `counters`).
    Counter(Counter),
    /// Another numeric column of runs.csv (see `Row::number`).
    Column(&'static str),
}

impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.column())
    }
}

impl Metric {
    /// What is compared unless `--metric` says otherwise.
    pub const DEFAULT: [Metric; 3] = [Metric::Wall, Metric::Cpu, Metric::Memory];

    /// The metric a `--metric` names: `wall`, `cpu`, `memory`, a counter
    /// (perf's name or its column) or a numeric runs.csv column.
    pub fn parse(name: &str) -> Result<Metric, CompareError> {
        let m = match name {
            "wall" | "wall_time_s" => Metric::Wall,
            "cpu" | "cpu_time_s" => Metric::Cpu,
            "memory" | "memory_peak_bytes" => Metric::Memory,
            _ => match Counter::from_name(name).or_else(|| Counter::from_column(name)) {
                Some(c) => Metric::Counter(c),
                None => match Row::NUMBERS.iter().find(|c| **c == name) {
                    Some(c) => Metric::Column(c),
                    None => {
                        return Err(CompareError::UnknownMetric {
                            name: name.to_string(),
                        })
                    }
                },
            },
        };
        Ok(m)
    }

    /// Its runs.csv column.
    pub fn column(self) -> &'static str {
        match self {
            Metric::Wall => "wall_time_s",
            Metric::Cpu => "cpu_time_s",
            Metric::Memory => "memory_peak_bytes",
            Metric::Counter(c) => c.column(),
            Metric::Column(c) => c,
        }
    }

    /// `wall time`, `CPU time`, `peak memory`, else the column.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Wall => "wall time",
            Metric::Cpu => "CPU time",
            Metric::Memory => "peak memory",
            m => m.column(),
        }
    }

    /// Its value in a row; none where the row has no such value.
    fn of(self, r: &Row) -> Option<f64> {
        match self {
            Metric::Wall => Some(r.wall_s),
            Metric::Cpu => Some(r.cpu_s),
            Metric::Memory => Some(r.memory_peak as f64),
            Metric::Counter(c) => r.counter(c),
            Metric::Column(c) => r.number(c),
        }
    }

    /// A value as the summary table shows it: `3.200 s`, `1.5 GiB`, `1234`.
    pub fn format(self, v: f64) -> String {
        let col = self.column();
        match self {
            Metric::Counter(Counter::TaskClock) => format!("{:.3} s", v / 1e9),
            Metric::Counter(Counter::EnergyPkg | Counter::EnergyDram) => format!("{v:.3} J"),
            Metric::Counter(_) => format!("{v:.0}"),
            _ if col.ends_with("_bytes") => human_bytes(v.round() as u64),
            _ if col.ends_with("_s") => format!("{v:.3} s"),
            _ => format!("{v:.0}"),
        }
    }

    /// Whether less of it means faster (a time) rather than smaller.
    fn is_time(self) -> bool {
        matches!(self, Metric::Counter(Counter::TaskClock))
            || (self.column().ends_with("_s") && self != Metric::Memory)
    }

    /// The verdict when B is significantly below (`lower`) or above A.
    fn verdict(self, lower: bool) -> Verdict {
        match (self.is_time(), lower) {
            (false, true) => Verdict::Smaller,
            (false, false) => Verdict::Larger,
            (true, true) => Verdict::Faster,
            (true, false) => Verdict::Slower,
        }
    }
}

/// B against A at the chosen level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Faster,
    Slower,
    Smaller,
    Larger,
    NoSignificantDifference,
    /// Fewer than `MIN_RUNS` completed runs on a side, or too few for the
    /// test to reach p < alpha at all.
    TooFewRuns,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Smaller => "smaller",
            Verdict::Larger => "larger",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::TooFewRuns => "too few runs",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the p-value was computed (as scipy's `mannwhitneyu` chooses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    Exact,
    Asymptotic,
}

/// One metric of one set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricComparison {
    pub metric: Metric,
    /// Medians of the completed measured runs; none without such runs.
    pub median_a: Option<f64>,
    pub median_b: Option<f64>,
    /// median B / median A; none when A's median is 0 or a side has no run.
    pub ratio: Option<f64>,
    /// The bootstrap interval of the ratio at `confidence`; none with too
    /// few runs or a value that is not positive.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Two-sided Mann–Whitney U p-value; none with too few runs.
    pub p_value: Option<f64>,
    pub test: Option<TestMethod>,
    pub verdict: Verdict,
}

/// The geometric mean of one metric's ratios over the sets that have an
/// interval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Geomean {
    pub metric: Metric,
    pub sets: usize,
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("alpha `{0}` is not between 0 and 1: 0.05 asks for 95% confidence")]
    Alpha(f64),
    #[error("compare needs a second results folder or a baseline set, and got {0}")]
    Form(&'static str),
    #[error("{} and {} have no job and parameter set in common: {} has {}; {} has {}", a.display(), b.display(), a.display(), list(a_sets), b.display(), list(b_sets))]
    NoCommonSets {
        a: PathBuf,
        b: PathBuf,
        a_sets: Vec<String>,
        b_sets: Vec<String>,
    },
    #[error("unknown metric `{name}`: expected wall, cpu, memory, a counter ({}) or a numeric runs.csv column ({})", counter_columns(), Row::NUMBERS.join(", "))]
    UnknownMetric { name: String },
    #[error("{}: no run has a value of `{column}` (its batch did not count it)", dir.display())]
    NoValues { dir: PathBuf, column: &'static str },
    #[error("invalid baseline `{baseline}`: {message}; expected JOB or JOB:NAME=VALUE,NAME=VALUE, like xz:threads=1")]
    BadBaseline { baseline: String, message: String },
    #[error("{}: baseline `{baseline}` {why}; the sets there are {}", dir.display(), list(sets))]
    UnknownBaseline {
        dir: PathBuf,
        baseline: String,
        why: &'static str,
        sets: Vec<String>,
    },
}

fn counter_columns() -> String {
    let c: Vec<&str> = Counter::ALL.iter().map(|c| c.column()).collect();
    c.join(", ")
}

fn list(sets: &[String]) -> String {
    if sets.is_empty() {
        "none (no measured runs)".into()
    } else {
        sets.join(", ")
    }
}

/// A results folder read for comparison.
struct Folder {
    dir: PathBuf,
    rows: Vec<Row>,
    manifest: Option<Manifest>,
}

fn read_folder(dir: &Path) -> Result<Folder, ResultsError> {
    let rows = read_rows(&dir.join("runs.csv"))?;
    let manifest = read_manifest_in(dir)?;
    Ok(Folder {
        dir: dir.to_path_buf(),
        rows,
        manifest,
    })
}

/// Compares what the request names; see `CompareRequest`.
pub fn compare(req: &CompareRequest) -> Result<Comparison, CompareError> {
    if !(req.alpha > 0.0 && req.alpha < 1.0) {
        return Err(CompareError::Alpha(req.alpha));
    }
    let metrics = match req.metrics.is_empty() {
        true => Metric::DEFAULT.to_vec(),
        false => req.metrics.clone(),
    };
    let read = |dir: &Path| -> Result<Folder, CompareError> {
        let f = read_folder(dir).map_err(CompareError::Results)?;
        for m in &metrics {
            if !f.rows.is_empty() && f.rows.iter().all(|r| m.of(r).is_none()) {
                return Err(CompareError::NoValues {
                    dir: dir.to_path_buf(),
                    column: m.column(),
                });
            }
        }
        Ok(f)
    };
    match (&req.b, &req.baseline) {
        (Some(b), None) => {
            let a = read(&req.a)?;
            let b = read(b)?;
            compare_folders(&a, &b, req.alpha, &metrics)
        }
        (None, Some(spec)) => compare_to_baseline(&read(&req.a)?, spec, req.alpha, &metrics),
        (Some(_), Some(_)) => Err(CompareError::Form("both")),
        (None, None) => Err(CompareError::Form("neither")),
    }
}

/// A set's identity across folders: its job and its parameters by name
/// (column order may differ between folders).
fn key(s: &Summary) -> (String, BTreeMap<String, String>) {
    (s.job.clone(), s.params.iter().cloned().collect())
}

/// `xz:threads=1,size=1M`: how a baseline names a set.
fn baseline_spec(s: &Summary) -> String {
    if s.params.is_empty() {
        return s.job.clone();
    }
    let p: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}:{}", s.job, p.join(","))
}

fn compare_folders(
    a: &Folder,
    b: &Folder,
    alpha: f64,
    metrics: &[Metric],
) -> Result<Comparison, CompareError> {
    let (sa, sb) = (summarize(&a.rows), summarize(&b.rows));
    let pairs: Vec<Pair> = sa
        .iter()
        .filter_map(|x| sb.iter().find(|y| key(x) == key(y)).map(|y| (x, y, x)))
        .collect();
    if pairs.is_empty() {
        return Err(CompareError::NoCommonSets {
            a: a.dir.clone(),
            b: b.dir.clone(),
            a_sets: sa.iter().map(Summary::label).collect(),
            b_sets: sb.iter().map(Summary::label).collect(),
        });
    }
    let only = |xs: &[Summary], ys: &[Summary]| -> Vec<String> {
        xs.iter()
            .filter(|x| !ys.iter().any(|y| key(x) == key(y)))
            .map(Summary::label)
            .collect()
    };
    let mut c = build(
        Side::new(a, None),
        Side::new(b, None),
        &pairs,
        alpha,
        metrics,
    );
    c.only_a = only(&sa, &sb);
    c.only_b = only(&sb, &sa);
    Ok(c)
}

/// Parses `JOB` or `JOB:NAME=VALUE,NAME=VALUE` (spaces may separate too).
fn parse_baseline(spec: &str) -> Result<(String, Option<BTreeMap<String, String>>), CompareError> {
    let bad = |message: &str| CompareError::BadBaseline {
        baseline: spec.to_string(),
        message: message.to_string(),
    };
    let (job, params) = match spec.split_once(':') {
        Some((j, p)) => (j.trim(), Some(p)),
        None => (spec.trim(), None),
    };
    if job.is_empty() {
        return Err(bad("no job name"));
    }
    let Some(params) = params else {
        return Ok((job.to_string(), None));
    };
    let mut map = BTreeMap::new();
    for item in params
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                if map.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(bad(&format!("parameter `{k}` is given twice")));
                }
            }
            _ => return Err(bad(&format!("`{item}` is not NAME=VALUE"))),
        }
    }
    if map.is_empty() {
        return Err(bad("no parameters after `:`"));
    }
    Ok((job.to_string(), Some(map)))
}

fn compare_to_baseline(
    a: &Folder,
    spec: &str,
    alpha: f64,
    metrics: &[Metric],
) -> Result<Comparison, CompareError> {
    let (job, params) = parse_baseline(spec)?;
    let sets = summarize(&a.rows);
    let found: Vec<&Summary> = sets
        .iter()
        .filter(|s| s.job == job && params.as_ref().is_none_or(|p| key(s).1 == *p))
        .collect();
    let unknown = |why| CompareError::UnknownBaseline {
        dir: a.dir.clone(),
        baseline: spec.to_string(),
        why,
        sets: sets.iter().map(baseline_spec).collect(),
    };
    let base = match found[..] {
        [one] => one,
        [] => return Err(unknown("is not a job and parameter set there")),
        _ => return Err(unknown("names several parameter sets: add which")),
    };
    let pairs: Vec<Pair> = sets
        .iter()
        .filter(|s| key(s) != key(base))
        .map(|s| (base, s, s))
        .collect();
    if pairs.is_empty() {
        return Err(unknown("is the only set there: nothing to compare it with"));
    }
    Ok(build(
        Side::new(a, Some(base.label())),
        Side::new(a, None),
        &pairs,
        alpha,
        metrics,
    ))
}

/// The completed measured runs of a set: each metric's value per run
/// (a run without a value of every metric is left out).
fn values(s: &Summary, metrics: &[Metric]) -> Vec<Vec<f64>> {
    s.completed()
        .filter_map(|r| metrics.iter().map(|m| m.of(r)).collect())
        .collect()
}

/// A's set, B's set, and the one whose name the row shows (A's in the
/// two-folder form, B's in the baseline form).
type Pair<'a, 'r> = (&'a Summary<'r>, &'a Summary<'r>, &'a Summary<'r>);

/// Compares each pair and the geometric means.
fn build(a: Side, b: Side, pairs: &[Pair], alpha: f64, metrics: &[Metric]) -> Comparison {
    let mut geo: Vec<GeoSum> = metrics.iter().map(|_| GeoSum::default()).collect();
    let sets = pairs
        .iter()
        .map(|(x, y, shown)| {
            let set = SetComparison {
                job: shown.job.clone(),
                params: shown.params.clone(),
                runs_a: 0,
                runs_b: 0,
                metrics: Vec::new(),
            };
            let seed = SEED ^ fnv1a(&set.label());
            let (va, vb) = (values(x, metrics), values(y, metrics));
            compare_set(set, (&va, &vb), metrics, alpha, seed, &mut geo)
        })
        .collect();
    let geomean = metrics
        .iter()
        .copied()
        .zip(geo)
        .map(|(m, g)| g.finish(m, alpha))
        .collect();
    Comparison {
        a,
        b,
        alpha,
        confidence: 1.0 - alpha,
        resamples: RESAMPLES,
        min_runs: MIN_RUNS,
        sets,
        geomean,
        only_a: Vec::new(),
        only_b: Vec::new(),
    }
}

fn column(v: &[Vec<f64>], i: usize) -> Vec<f64> {
    v.iter().map(|x| x[i]).collect()
}

fn compare_set(
    mut set: SetComparison,
    (a, b): (&[Vec<f64>], &[Vec<f64>]),
    metrics: &[Metric],
    alpha: f64,
    seed: u64,
    geo: &mut [GeoSum],
) -> SetComparison {
    set.runs_a = a.len();
    set.runs_b = b.len();
    let enough = a.len() >= MIN_RUNS && b.len() >= MIN_RUNS;
    let logs = enough.then(|| replicate_log_ratios(a, b, seed, RESAMPLES));
    for (i, &metric) in metrics.iter().enumerate() {
        let (xa, xb) = (column(a, i), column(b, i));
        let median = |x: &[f64]| (!x.is_empty()).then(|| Stats::of(x).median);
        let (ma, mb) = (median(&xa), median(&xb));
        let ratio = match (ma, mb) {
            (Some(ma), Some(mb)) if ma > 0.0 => Some(mb / ma),
            _ => None,
        };
        let positive = xa.iter().chain(&xb).all(|v| *v > 0.0);
        let mut ci = None;
        if let (Some(logs), true) = (&logs, positive) {
            ci = Some(percentile_interval(&logs[i], alpha));
            geo[i].add(&logs[i], ratio.map_or(0.0, f64::ln));
        }
        let test = enough.then(|| mann_whitney_u(&xa, &xb));
        let verdict = match &test {
            None => Verdict::TooFewRuns,
            Some(_) if min_p_value(a.len(), b.len()) >= alpha => Verdict::TooFewRuns,
            Some(t) if t.p < alpha => metric.verdict(t.b_lower(a.len(), b.len())),
            Some(_) => Verdict::NoSignificantDifference,
        };
        set.metrics.push(MetricComparison {
            metric,
            median_a: ma,
            median_b: mb,
            ratio,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
            p_value: test.as_ref().map(|t| t.p),
            test: test.as_ref().map(|t| t.method),
            verdict,
        });
    }
    set
}

/// The running sums of one metric's log ratios over sets: the point
/// estimate and each bootstrap replicate (the replicates of different sets
/// are independent draws, so their sum is a draw of the whole: a
/// stratified bootstrap).
#[derive(Default)]
struct GeoSum {
    sets: usize,
    point: f64,
    replicates: Vec<f64>,
}

impl GeoSum {
    fn add(&mut self, logs: &[f64], point: f64) {
        if self.replicates.is_empty() {
            self.replicates = vec![0.0; logs.len()];
        }
        for (s, l) in self.replicates.iter_mut().zip(logs) {
            *s += l;
        }
        self.point += point;
        self.sets += 1;
    }

    fn finish(self, metric: Metric, alpha: f64) -> Geomean {
        if self.sets == 0 {
            return Geomean {
                metric,
                sets: 0,
                ratio: None,
                ci_low: None,
                ci_high: None,
                verdict: Verdict::TooFewRuns,
            };
        }
        let n = self.sets as f64;
        let means: Vec<f64> = self.replicates.iter().map(|s| s / n).collect();
        let (lo, hi) = percentile_interval(&means, alpha);
        let verdict = if hi < 1.0 {
            metric.verdict(true)
        } else if lo > 1.0 {
            metric.verdict(false)
        } else {
            Verdict::NoSignificantDifference
        };
        Geomean {
            metric,
            sets: self.sets,
            ratio: Some((self.point / n).exp()),
            ci_low: Some(lo),
            ci_high: Some(hi),
            verdict,
        }
    }
}

/// FNV-1a: a stable hash of a set's label for its seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The median as `Stats::of` computes it, reordering `v` in place.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        *mid
    } else {
        let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + *mid) / 2.0
    }
}

/// ln(median(B*) / median(A*)) of `resamples` bootstrap replicates, per
/// metric: each replicate draws |A| runs of A and |B| runs of B with
/// replacement, and every metric uses the same draws (a run's wall time,
/// CPU time and memory stay together).
fn replicate_log_ratios(
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    seed: u64,
    resamples: usize,
) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64(seed);
    let metrics = a.first().map_or(0, Vec::len);
    let mut out: Vec<Vec<f64>> = (0..metrics)
        .map(|_| Vec::with_capacity(resamples))
        .collect();
    let (mut ia, mut ib) = (vec![0; a.len()], vec![0; b.len()]);
    let mut buf = Vec::with_capacity(a.len().max(b.len()));
    let mut med = |idx: &[usize], side: &[Vec<f64>], m: usize| {
        buf.clear();
        buf.extend(idx.iter().map(|&i| side[i][m]));
        median_in_place(&mut buf)
    };
    for _ in 0..resamples {
        ia.iter_mut().for_each(|i| *i = rng.below(a.len()));
        ib.iter_mut().for_each(|i| *i = rng.below(b.len()));
        for (m, logs) in out.iter_mut().enumerate() {
            logs.push((med(&ib, b, m) / med(&ia, a, m)).ln());
        }
    }
    out
}

/// The percentile interval at 1 - alpha of log ratios, as ratios; the
/// quantiles interpolate linearly (numpy's default).
fn percentile_interval(logs: &[f64], alpha: f64) -> (f64, f64) {
    let mut v = logs.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = (v.len() - 1) as f64 * p;
        let (lo, frac) = (h.floor() as usize, h - h.floor());
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + frac * (v[hi] - v[lo])
    };
    (q(alpha / 2.0).exp(), q(1.0 - alpha / 2.0).exp())
}

/// A two-sided Mann–Whitney U test of A against B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// U of A (scipy's `statistic`): the pairs (a, b) with a > b, ties
    /// counting one half.
    pub u_a: f64,
    pub p: f64,
    pub method: TestMethod,
}

impl RankTest {
    /// Whether B tends to be below A.
    pub fn b_lower(&self, na: usize, nb: usize) -> bool {
        self.u_a > (na * nb) as f64 / 2.0
    }
}

/// The two-sided Mann–Whitney U test as `scipy.stats.mannwhitneyu(a, b,
/// alternative='two-sided')` (method 'auto', use_continuity=True) computes
/// it: the exact null distribution when a side has at most 8 values and
/// there are no ties; else the normal approximation with the tie
/// correction and a continuity correction of 0.5. Both sides non-empty.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> RankTest {
    let (n1, n2) = (a.len(), b.len());
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks (1-based) and the sizes of tied groups.
    let (mut r1, mut tie_term, mut ties) = (0.0, 0.0, false);
    let mut i = 0;
    while i < all.len() {
        let j = i + all[i..].iter().take_while(|x| x.0 == all[i].0).count();
        let t = (j - i) as f64;
        let rank = (i + 1 + j) as f64 / 2.0;
        r1 += rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        ties |= j - i > 1;
        i = j;
    }
    let u_a = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u = u_a.max((n1 * n2) as f64 - u_a);
    let (p, method) = if (n1 <= 8 || n2 <= 8) && !ties {
        (
            2.0 * exact_sf(n1, n2, u.round() as usize),
            TestMethod::Exact,
        )
    } else {
        let n = (n1 + n2) as f64;
        let s = ((n1 * n2) as f64 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let p = if s > 0.0 {
            let z = (u - (n1 * n2) as f64 / 2.0 - 0.5) / s;
            2.0 * normal_sf(z)
        } else {
            1.0
        };
        (p, TestMethod::Asymptotic)
    };
    RankTest {
        u_a,
        p: p.clamp(0.0, 1.0),
        method,
    }
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// P(U >= u) under the null hypothesis without ties, for sizes m and n.
/// The counts of U are the coefficients of the Gaussian binomial
/// [m+n choose k]_q, k = min(m, n), built as the product over i = 1..k of
/// (1 - q^(l+i)) / (1 - q^i), l = max(m, n); every step only looks at
/// lower coefficients, so the series is cut at degree k·l.
fn exact_sf(m: usize, n: usize, u: usize) -> f64 {
    let (k, l) = (m.min(n), m.max(n));
    let len = k * l + 1;
    let mut c = vec![0.0f64; len];
    c[0] = 1.0;
    for i in 1..=k {
        for d in (l + i..len).rev() {
            c[d] -= c[d - l - i];
        }
        for d in i..len {
            c[d] += c[d - i];
        }
    }
    let total: f64 = c.iter().sum();
    c.get(u..).map_or(0.0, |t| t.iter().sum::<f64>() / total)
}

/// The smallest two-sided p-value the test can give for these sizes
/// (no ties): 2 / C(m+n, m). At or above alpha no difference can show.
pub fn min_p_value(m: usize, n: usize) -> f64 {
    let k = m.min(n);
    let choose = (0..k).fold(1.0, |c, i| c * (m + n - i) as f64 / (i + 1) as f64);
    (2.0 / choose).min(1.0)
}

/// `0.656`.
fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.3}"))
}

/// `[0.612, 0.701]`.
fn fmt_ci(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("[{lo:.3}, {hi:.3}]"),
        _ => "-".into(),
    }
}

/// Three significant digits (`0.936`, `0.0436`, `0.00216`), at least three
/// decimals; below 0.0001 in scientific notation.
fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p >= 1e-4 => {
            let decimals = (2 - p.log10().floor() as i32).max(3) as usize;
            format!("{p:.decimals$}")
        }
        Some(p) => format!("{p:.2e}"),
    }
}

/// The cells of the comparison table, header first: a row per set and
/// metric, then the geometric means (the terminal table, Markdown and the
/// page's table).
pub fn table_cells(c: &Comparison) -> Vec<Vec<String>> {
    let ci = format!("{}% CI", fmt_level(c.confidence));
    let mut out = vec![[
        "job",
        "parameters",
        "metric",
        "runs A",
        "runs B",
        "median A",
        "median B",
        "B/A",
        &ci,
        "p",
        "verdict",
    ]
    .map(String::from)
    .to_vec()];
    for s in &c.sets {
        for (i, m) in s.metrics.iter().enumerate() {
            let first = i == 0;
            out.push(vec![
                if first { s.job.clone() } else { String::new() },
                if first {
                    super::params_label(&s.params)
                } else {
                    String::new()
                },
                m.metric.name().into(),
                s.runs_a.to_string(),
                s.runs_b.to_string(),
                m.median_a.map_or("-".into(), |v| m.metric.format(v)),
                m.median_b.map_or("-".into(), |v| m.metric.format(v)),
                fmt_ratio(m.ratio),
                fmt_ci(m.ci_low, m.ci_high),
                fmt_p(m.p_value),
                m.verdict.to_string(),
            ]);
        }
    }
    for (i, g) in c.geomean.iter().enumerate() {
        out.push(vec![
            if i == 0 {
                "geometric mean".into()
            } else {
                String::new()
            },
            if i == 0 {
                format!("{} set(s)", g.sets)
            } else {
                String::new()
            },
            g.metric.name().into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            fmt_ratio(g.ratio),
            fmt_ci(g.ci_low, g.ci_high),
            String::new(),
            g.verdict.to_string(),
        ]);
    }
    out
}

/// `95`, or `99.9`.
fn fmt_level(confidence: f64) -> String {
    num(confidence * 100.0)
}

/// A number without trailing zeros: `0.05`, `95`.
fn num(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The lines above the table: what A and B are.
fn heading(c: &Comparison) -> [String; 2] {
    [
        format!("A: {}", c.a.describe()),
        format!("B: {}", c.b.describe()),
    ]
}

/// The lines below the table: sets on one side only, and the method.
pub fn notes(c: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    if !c.only_a.is_empty() {
        out.push(format!("only in A, not compared: {}", c.only_a.join(", ")));
    }
    if !c.only_b.is_empty() {
        out.push(format!("only in B, not compared: {}", c.only_b.join(", ")));
    }
    out.push(format!(
        "B/A is the ratio of the medians of the completed measured runs; {}% CI: percentile bootstrap, {} resamples; p: two-sided Mann–Whitney U; verdicts at alpha {}; a set needs {} completed runs on each side, and enough for the test to reach p < alpha; the geometric mean covers the sets with an interval",
        fmt_level(c.confidence),
        c.resamples,
        num(c.alpha),
        c.min_runs
    ));
    out
}

/// The comparison as a plain text table, aligned like the summary table.
pub fn render_table(c: &Comparison) -> String {
    let rows = table_cells(c);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = heading(c).join("\n") + "\n";
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes(c) {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// The comparison as GitHub-flavoured Markdown.
pub fn render_markdown(c: &Comparison) -> String {
    let rows = table_cells(c);
    let esc = |s: &str| s.replace('|', "\\|");
    let [a, b] = heading(c);
    let mut out = format!("{}  \n{}\n\n", esc(&a), esc(&b));
    out.push_str(&format!("| {} |\n", rows[0].join(" | ")));
    let align: Vec<&str> = (0..rows[0].len())
        .map(|i| match i {
            0..=2 | 10 => ":---",
            _ => "---:",
        })
        .collect();
    out.push_str(&format!("|{}|\n", align.join("|")));
    for r in &rows[1..] {
        let cells: Vec<String> = r.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    for n in notes(c) {
        out.push_str(&esc(&n));
        out.push_str("  \n");
    }
    out
}

/// The comparison as JSON: every number, unrounded.
pub fn render_json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).expect("JSON of plain values") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{sample_record, State};

    /// Asserts |x - want| <= tol.
    fn close(x: f64, want: f64, tol: f64) {
        assert!((x - want).abs() <= tol, "{x} is not {want} (± {tol})");
    }

    // p-values from scipy 1.17.1: scipy.stats.mannwhitneyu(a, b,
    // alternative='two-sided') with the default method='auto' and
    // use_continuity=True; its `statistic` is U of a.

    #[test]
    fn the_exact_p_value_matches_scipy_on_small_samples_without_ties() {
        // (a, b, scipy statistic, scipy pvalue); all method 'exact' by 'auto'.
        let cases: [(&[f64], &[f64], f64, f64); 5] = [
            (
                &[3.20, 3.12, 3.25, 3.31, 3.18],
                &[2.95, 3.01, 2.99, 3.05, 3.22],
                22.0,
                0.05555555555555555,
            ),
            (
                &[1.31, 1.42, 1.27],
                &[
                    1.05, 1.12, 1.33, 1.08, 1.21, 1.15, 1.10, 1.29, 1.02, 1.18, 1.24, 1.11,
                ],
                33.0,
                0.03076923076923077,
            ),
            (
                &[2.01, 2.13, 2.22, 2.34, 2.41, 2.53, 2.62, 2.74],
                &[
                    2.48, 2.55, 2.61, 2.66, 2.71, 2.76, 2.81, 2.86, 2.91, 2.96, 3.02, 3.06, 3.11,
                    3.16, 3.21, 3.26, 3.31, 3.36, 3.41, 3.46,
                ],
                9.0,
                6.177397481745307e-05,
            ),
            (
                &[5.1, 4.8, 5.6, 5.0, 4.9, 5.3, 5.2],
                &[5.25, 5.45, 4.95, 5.55, 5.7, 5.35, 5.05, 5.65, 5.8],
                14.0,
                0.07115384615384615,
            ),
            (
                &[1.0, 1.1, 1.2, 1.3],
                &[2.0, 2.1, 2.2, 2.3],
                0.0,
                0.02857142857142857,
            ),
        ];
        for (a, b, u, p) in cases {
            let t = mann_whitney_u(a, b);
            assert_eq!(t.method, TestMethod::Exact, "{a:?} {b:?}");
            assert_eq!(t.u_a, u, "{a:?} {b:?}");
            close(t.p, p, 1e-12);
        }
    }

    #[test]
    fn the_asymptotic_p_value_matches_scipy_with_ties_and_on_larger_samples() {
        let cases: [(&[f64], &[f64], f64, f64); 4] = [
            // Ties: the tie correction of the variance.
            (
                &[1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 7.0],
                &[3.0, 4.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 9.0, 10.0],
                23.0,
                0.04362506625240314,
            ),
            // Ties across the sides with one side of 8: still asymptotic.
            (
                &[2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7],
                &[
                    2.5, 2.55, 2.6, 2.65, 2.7, 2.75, 2.8, 2.85, 2.9, 2.95, 3.0, 3.05, 3.1, 3.15,
                    3.2, 3.25, 3.3, 3.35, 3.4, 3.45,
                ],
                7.5,
                0.0002492328427969181,
            ),
            // Both sides above 8, no ties.
            (
                &[10.41, 10.12, 9.87, 10.66, 10.23, 10.05, 9.94, 10.38, 10.51],
                &[
                    10.32, 10.71, 10.88, 10.45, 10.97, 10.59, 10.63, 11.02, 10.29, 10.77, 10.84,
                    10.55,
                ],
                13.0,
                0.0039993922493750025,
            ),
            // Identical samples: p would exceed 1 and is clipped, as scipy does.
            (&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 4.5, 1.0),
        ];
        for (a, b, u, p) in cases {
            let t = mann_whitney_u(a, b);
            assert_eq!(t.method, TestMethod::Asymptotic, "{a:?} {b:?}");
            assert_eq!(t.u_a, u, "{a:?} {b:?}");
            close(t.p, p, 1e-9);
        }
    }

    #[test]
    fn the_normal_tail_matches_scipy() {
        // scipy.special.ndtr(-z)
        for (z, sf) in [
            (0.0, 0.5),
            (0.5, 0.3085375387259869),
            (1.959963984540054, 0.025),
            (3.0, 0.0013498980316300933),
            (6.0, 9.865876450376946e-10),
        ] {
            close(normal_sf(z), sf, 1e-15);
        }
    }

    #[test]
    fn the_smallest_p_value_depends_on_the_sizes() {
        // 2 / math.comb(m + n, m)
        close(min_p_value(3, 3), 0.1, 1e-15);
        close(min_p_value(3, 4), 0.05714285714285714, 1e-15);
        close(min_p_value(4, 4), 0.02857142857142857, 1e-15);
        close(min_p_value(5, 3), 0.03571428571428571, 1e-15);
        assert_eq!(min_p_value(1, 1), 1.0);
    }

    #[test]
    fn the_exact_distribution_sums_to_one_and_is_symmetric() {
        for (m, n) in [(1, 1), (3, 5), (8, 8), (2, 30)] {
            close(exact_sf(m, n, 0), 1.0, 1e-12);
            let mn = m * n;
            for u in 0..=mn {
                // P(U >= u) = P(U <= mn - u)
                close(exact_sf(m, n, u), 1.0 - exact_sf(m, n, mn - u + 1), 1e-12);
            }
            assert_eq!(exact_sf(m, n, mn + 1), 0.0);
        }
    }

    #[test]
    fn the_median_in_place_is_the_summary_median() {
        // numpy.median: 3.2 and 2.35 (the two samples of the scipy cases)
        let mut odd = [3.20, 3.12, 3.25, 3.31, 3.18];
        assert_eq!(median_in_place(&mut odd), 3.2);
        let v = [2.3, 2.0, 2.7, 2.1, 2.5, 2.2, 2.6, 2.4];
        let mut even = v;
        assert_eq!(median_in_place(&mut even), Stats::of(&v).median);
        close(Stats::of(&v).median, 2.35, 1e-12);
    }

    fn side(values: &[f64]) -> Vec<Vec<f64>> {
        values.iter().map(|v| vec![*v; 3]).collect()
    }

    #[test]
    fn the_bootstrap_interval_holds_the_true_ratio_of_separated_samples() {
        // B is A scaled by 0.6 plus a little noise: the true ratio is 0.6.
        let a: Vec<f64> = (0..10)
            .map(|i| 5.0 + 0.05 * ((i * 7) % 10) as f64)
            .collect();
        let b: Vec<f64> = a.iter().map(|x| 0.6 * x + 0.001).collect();
        let logs = replicate_log_ratios(&side(&a), &side(&b), 1, RESAMPLES);
        let (lo, hi) = percentile_interval(&logs[0], 0.05);
        assert!((lo..=hi).contains(&0.6) && hi < 0.7, "[{lo}, {hi}]");
        // The same draws and seed give the same interval.
        let again = replicate_log_ratios(&side(&a), &side(&b), 1, RESAMPLES);
        assert_eq!(percentile_interval(&again[0], 0.05), (lo, hi));
    }

    #[test]
    fn the_bootstrap_interval_of_identical_samples_holds_one() {
        let a = [4.02, 4.10, 3.97, 4.05, 4.01, 4.07, 3.99];
        let logs = replicate_log_ratios(&side(&a), &side(&a), 7, RESAMPLES);
        let (lo, hi) = percentile_interval(&logs[0], 0.05);
        assert!(lo < 1.0 && 1.0 < hi, "[{lo}, {hi}]");
    }

    #[test]
    fn p_values_show_three_significant_digits() {
        let f = |p| fmt_p(Some(p));
        assert_eq!(
            [
                f(1.0),
                f(0.936),
                f(0.04362),
                f(0.0021645),
                f(0.00024923),
                f(6.1774e-5)
            ],
            ["1.000", "0.936", "0.0436", "0.00216", "0.000249", "6.18e-5"]
        );
        assert_eq!(fmt_p(None), "-");
    }

    #[test]
    fn quantiles_interpolate_as_numpy_does() {
        // numpy.quantile([0, 1, 2, 3, 4], [0.025, 0.975]) = [0.1, 3.9]
        let logs: Vec<f64> = (0..5).map(|i| i as f64).collect();
        let (lo, hi) = percentile_interval(&logs, 0.05);
        close(lo.ln(), 0.1, 1e-12);
        close(hi.ln(), 3.9, 1e-12);
    }

    /// Completed runs of `job` with these parameters and wall times (CPU
    /// time the same, memory 1 MiB).
    fn rows(job: &str, params: &[(&str, &str)], walls: &[f64]) -> Vec<Row> {
        walls
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut r =
                    Row::from_record(&sample_record(&format!("{job}{i}"), State::Completed), "h");
                r.job = job.into();
                r.params = params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                r.rep = i as u32 + 1;
                r.wall_s = *w;
                r.cpu_s = *w;
                r.memory_peak = 1 << 20;
                r
            })
            .collect()
    }

    fn folder(dir: &str, rows: Vec<Row>) -> Folder {
        Folder {
            dir: dir.into(),
            rows,
            manifest: None,
        }
    }

    const BASE: [f64; 5] = [3.20, 3.12, 3.25, 3.31, 3.18];

    fn scaled(f: f64) -> Vec<f64> {
        BASE.iter().map(|x| x * f).collect()
    }

    #[test]
    fn verdicts_say_faster_slower_or_no_difference() {
        let a = folder(
            "a",
            [
                rows("xz", &[("t", "1")], &BASE),
                rows("xz", &[("t", "2")], &BASE),
                rows("xz", &[("t", "4")], &BASE),
            ]
            .concat(),
        );
        let b = folder(
            "b",
            [
                rows("xz", &[("t", "1")], &scaled(0.5)),
                rows("xz", &[("t", "2")], &scaled(2.0)),
                rows("xz", &[("t", "4")], &[3.21, 3.11, 3.26, 3.30, 3.19]),
            ]
            .concat(),
        );
        let c = compare_folders(&a, &b, 0.05, &Metric::DEFAULT).unwrap();
        let wall = |i: usize| &c.sets[i].metrics[0];
        assert_eq!(wall(0).verdict, Verdict::Faster);
        close(wall(0).ratio.unwrap(), 0.5, 1e-12);
        // 5 against 5 fully separated: 2 / C(10, 5), as scipy's exact p.
        close(wall(0).p_value.unwrap(), 2.0 / 252.0, 1e-12);
        assert_eq!(wall(1).verdict, Verdict::Slower);
        close(wall(1).ratio.unwrap(), 2.0, 1e-12);
        assert_eq!(wall(2).verdict, Verdict::NoSignificantDifference);
        // Memory is the same everywhere: no difference, ratio 1, interval [1, 1].
        let mem = &c.sets[0].metrics[2];
        assert_eq!(mem.metric, Metric::Memory);
        assert_eq!(mem.verdict, Verdict::NoSignificantDifference);
        assert_eq!(
            (mem.ratio, mem.ci_low, mem.ci_high),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        assert_eq!((c.sets[0].runs_a, c.sets[0].runs_b), (5, 5));
    }

    #[test]
    fn memory_verdicts_say_smaller_or_larger() {
        let mut a = rows("sort", &[], &BASE);
        let mut b = rows("sort", &[], &BASE);
        for (i, r) in a.iter_mut().enumerate() {
            r.memory_peak = (100 + i as u64) << 20;
        }
        for (i, r) in b.iter_mut().enumerate() {
            r.memory_peak = (50 + i as u64) << 20;
        }
        let c = compare_folders(
            &folder("a", a.clone()),
            &folder("b", b.clone()),
            0.05,
            &Metric::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.sets[0].metrics[2].verdict, Verdict::Smaller);
        let c = compare_folders(&folder("b", b), &folder("a", a), 0.05, &Metric::DEFAULT).unwrap();
        assert_eq!(c.sets[0].metrics[2].verdict, Verdict::Larger);
    }

    #[test]
    fn too_few_runs_get_no_verdict() {
        // 2 runs on a side: no test, no interval; 3 against 3 cannot reach 0.05.
        let a = folder(
            "a",
            [
                rows("x", &[], &[1.0, 1.1]),
                rows("y", &[], &[1.0, 1.1, 1.2]),
            ]
            .concat(),
        );
        let b = folder(
            "b",
            [
                rows("x", &[], &[5.0, 5.1, 5.2]),
                rows("y", &[], &[5.0, 5.1, 5.2]),
            ]
            .concat(),
        );
        let c = compare_folders(&a, &b, 0.05, &Metric::DEFAULT).unwrap();
        let x = &c.sets[0].metrics[0];
        assert_eq!(x.verdict, Verdict::TooFewRuns);
        assert_eq!((x.p_value, x.ci_low), (None, None));
        close(x.ratio.unwrap(), 5.1 / 1.05, 1e-12);
        let y = &c.sets[1].metrics[0];
        assert_eq!(y.verdict, Verdict::TooFewRuns);
        close(y.p_value.unwrap(), 0.1, 1e-12);
        assert!(y.ci_low.is_some());
        // At alpha 0.2, 3 against 3 can show a difference.
        let c = compare_folders(&a, &b, 0.2, &Metric::DEFAULT).unwrap();
        assert_eq!(c.sets[1].metrics[0].verdict, Verdict::Slower);
        assert_eq!(c.geomean[0].sets, 1, "only y has an interval");
    }

    #[test]
    fn runs_that_did_not_complete_and_warmups_are_not_counted() {
        let mut a = rows("x", &[], &[1.0, 1.1, 1.2, 1.3, 50.0, 60.0]);
        a[4].state = State::Timeout;
        a[5].warmup = true;
        let c = compare_folders(
            &folder("a", a.clone()),
            &folder("b", a),
            0.05,
            &Metric::DEFAULT,
        )
        .unwrap();
        assert_eq!((c.sets[0].runs_a, c.sets[0].runs_b), (4, 4));
        close(c.sets[0].metrics[0].median_a.unwrap(), 1.15, 1e-12);
    }

    #[test]
    fn the_geomean_is_the_geometric_mean_of_the_ratios_with_an_interval() {
        let a = folder(
            "a",
            [
                rows("x", &[], &BASE),
                rows("y", &[], &BASE),
                rows("z", &[], &[1.0]),
            ]
            .concat(),
        );
        let b = folder(
            "b",
            [
                rows("x", &[], &scaled(0.5)),
                rows("y", &[], &scaled(0.8)),
                rows("z", &[], &[9.0]),
            ]
            .concat(),
        );
        let c = compare_folders(&a, &b, 0.05, &Metric::DEFAULT).unwrap();
        let g = &c.geomean[0];
        assert_eq!(g.sets, 2, "z has too few runs and is left out");
        close(g.ratio.unwrap(), (0.5f64 * 0.8).sqrt(), 1e-12);
        let (lo, hi) = (g.ci_low.unwrap(), g.ci_high.unwrap());
        assert!(lo <= g.ratio.unwrap() && g.ratio.unwrap() <= hi && hi < 1.0);
        assert_eq!(g.verdict, Verdict::Faster);
        // Memory is unchanged: [1, 1] is no difference.
        assert_eq!(c.geomean[2].verdict, Verdict::NoSignificantDifference);
    }

    #[test]
    fn sets_match_by_job_and_parameter_values_in_any_column_order() {
        let a = folder(
            "a",
            [
                rows("xz", &[("t", "1"), ("l", "9")], &BASE),
                rows("xz", &[("t", "2"), ("l", "9")], &BASE),
                rows("gz", &[], &BASE),
            ]
            .concat(),
        );
        let b = folder(
            "b",
            [
                rows("xz", &[("l", "9"), ("t", "2")], &scaled(2.0)),
                rows("xz", &[("l", "9"), ("t", "1")], &scaled(0.5)),
                rows("bz", &[], &BASE),
            ]
            .concat(),
        );
        let c = compare_folders(&a, &b, 0.05, &Metric::DEFAULT).unwrap();
        let labels: Vec<String> = c.sets.iter().map(|s| s.label()).collect();
        assert_eq!(
            labels,
            ["xz t=1 l=9", "xz t=2 l=9"],
            "A's sets, in its order"
        );
        assert_eq!(c.sets[0].metrics[0].verdict, Verdict::Faster);
        assert_eq!(c.sets[1].metrics[0].verdict, Verdict::Slower);
        assert_eq!(c.only_a, ["gz"]);
        assert_eq!(c.only_b, ["bz"]);
    }

    #[test]
    fn the_baseline_form_compares_every_other_set_with_the_baseline() {
        let a = folder(
            "a",
            [
                rows("xz", &[("level", "1"), ("threads", "2")], &BASE),
                rows("xz", &[("level", "9"), ("threads", "2")], &scaled(3.0)),
                rows("gz", &[], &scaled(0.5)),
            ]
            .concat(),
        );
        let c = compare_to_baseline(&a, "xz:threads=2, level=1", 0.05, &Metric::DEFAULT).unwrap();
        assert_eq!(c.a.set.as_deref(), Some("xz level=1 threads=2"));
        let labels: Vec<String> = c.sets.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["xz level=9 threads=2", "gz"]);
        assert_eq!(c.sets[0].metrics[0].verdict, Verdict::Slower);
        assert_eq!(c.sets[1].metrics[0].verdict, Verdict::Faster);
        close(c.sets[1].metrics[0].ratio.unwrap(), 0.5, 1e-12);
        // A job of one set needs no parameters.
        let c = compare_to_baseline(&a, "gz", 0.05, &Metric::DEFAULT).unwrap();
        assert_eq!(c.sets.len(), 2);
    }

    #[test]
    fn an_unknown_or_ambiguous_baseline_lists_the_sets_there_are() {
        let a = folder(
            "res/a",
            [
                rows("xz", &[("threads", "1")], &BASE),
                rows("xz", &[("threads", "2")], &BASE),
            ]
            .concat(),
        );
        let e = compare_to_baseline(&a, "zstd", 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "res/a: baseline `zstd` is not a job and parameter set there; the sets there are xz:threads=1, xz:threads=2");
        let e = compare_to_baseline(&a, "xz", 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names several parameter sets: add which"), "{e}");
        let e = compare_to_baseline(&a, "xz:threads", 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid baseline `xz:threads`: `threads` is not NAME=VALUE; expected JOB or JOB:NAME=VALUE,NAME=VALUE, like xz:threads=1");
        let one = folder("res/b", rows("xz", &[], &BASE));
        let e = compare_to_baseline(&one, "xz", 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is the only set there"), "{e}");
    }

    #[test]
    fn folders_without_a_common_set_list_what_each_has() {
        let a = folder("res/a", rows("xz", &[("threads", "1")], &BASE));
        let b = folder("res/b", rows("gz", &[], &BASE));
        let e = compare_folders(&a, &b, 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "res/a and res/b have no job and parameter set in common: res/a has xz threads=1; res/b has gz");
        let empty = folder("res/c", Vec::new());
        let e = compare_folders(&a, &empty, 0.05, &Metric::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("res/c has none (no measured runs)"), "{e}");
    }

    #[test]
    fn the_request_is_checked_before_anything_is_read() {
        let req = |b: Option<&str>, baseline: Option<&str>, alpha: f64| CompareRequest {
            a: "/nonexistent/a".into(),
            b: b.map(PathBuf::from),
            baseline: baseline.map(String::from),
            alpha,
            metrics: Vec::new(),
        };
        let e = |r| compare(&r).unwrap_err().to_string();
        assert!(e(req(Some("b"), None, 1.5)).starts_with("alpha `1.5`"));
        assert!(e(req(Some("b"), None, 0.0)).starts_with("alpha `0`"));
        assert!(e(req(None, None, 0.05)).ends_with("and got neither"));
        assert!(e(req(Some("b"), Some("x"), 0.05)).ends_with("and got both"));
        assert_eq!(
            e(req(Some("b"), None, 0.05)),
            "cannot read /nonexistent/a/runs.csv"
        );
    }
}
