//! From the raw structs to the typed model: required keys, units, ranges,
//! references, defaults, matrix and placeholders. Every problem is collected.

use super::expand::{self, Combo, Matrix, Piece};
use super::raw::{
    CountValue, FloatValue, IdList, NumaPolicy, OrderKind, RawAxis, RawFile, RawJob, RawMatrix,
    RawStep, Scalar, SizeValue, Text, UserNsKind,
};
use super::runs::{ByRun, Expanded, JobRuns, Runs};
use super::types::*;
use super::units;
use super::yaml::{self, p, At, Seg, YPath};
use crate::cpulist::CpuList;
use serde_yaml::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A problem before it gets its line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issue {
    pub path: YPath,
    pub at: At,
    pub message: String,
}

pub struct Output {
    pub name: String,
    pub jobs: Vec<Job>,
    pub groups: Vec<Group>,
    pub networks: Vec<std::sync::Arc<PrivateNet>>,
    pub runs: Runs,
    pub order: Order,
    pub seed: Option<u64>,
}

fn order_of(k: OrderKind) -> Order {
    match k {
        OrderKind::Sequential => Order::Sequential,
        OrderKind::Interleave => Order::Interleave,
        OrderKind::Random => Order::Random,
    }
}

struct Ctx<'a> {
    root: &'a Value,
    pruned: &'a [YPath],
    base: &'a Path,
    issues: Vec<Issue>,
    /// The most runs the file may expand to, and how many the jobs so far did.
    max_runs: u64,
    runs_so_far: u64,
    /// The file's private networks (`networks:`).
    networks: Vec<std::sync::Arc<PrivateNet>>,
}

impl Ctx<'_> {
    fn err(&mut self, path: YPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            at: At::Value,
            message: message.into(),
        });
    }
    fn key_err(&mut self, path: YPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            at: At::Key(0),
            message: message.into(),
        });
    }
    /// True when a type error already removed this path (or something under it).
    fn pruned(&self, path: &[Seg]) -> bool {
        self.pruned
            .iter()
            .any(|q| q.starts_with(path) || path.starts_with(q))
    }
    /// Reports a missing key at its parent, unless it was there with a bad type.
    fn missing(&mut self, parent: &[Seg], key: &str, expected: &str) {
        let mut path = parent.to_vec();
        path.push(Seg::Key(key.into()));
        if !self.pruned(&path) {
            self.err(
                parent.to_vec(),
                format!("missing key `{key}`: expected {expected}"),
            );
        }
    }
}

/// A list of absolute paths inside the container (`container.hidden`, `.visible`).
fn abs_paths(cx: &mut Ctx<'_>, at: &[Seg], list: &Option<Vec<String>>, what: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, p) in list.iter().flatten().enumerate() {
        let path = Path::new(p);
        if !p.starts_with('/')
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            cx.err(
                [at, &[Seg::Index(i)]].concat(),
                format!("{what} path `{p}`: expected an absolute path without `..`"),
            );
        } else if path.parent().is_none() {
            cx.err(
                [at, &[Seg::Index(i)]].concat(),
                format!("{what} path `/`: expected a directory below the root"),
            );
        } else {
            out.push(path.to_path_buf());
        }
    }
    out
}

fn child(path: &[Seg], key: &str) -> YPath {
    let mut v = path.to_vec();
    v.push(Seg::Key(key.into()));
    v
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !s.starts_with('.')
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

const RESERVED: [&str; 5] = ["job", "rep", "cpus", "include", "exclude"];

const RLIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Validates a type-clean document (`root`, with `pruned` paths removed
/// because they had type errors) into jobs, groups and runs.
pub fn validate(
    raw: RawFile,
    root: &Value,
    pruned: &[YPath],
    base: &Path,
    max_runs: u64,
) -> (Output, Vec<Issue>) {
    let mut cx = Ctx {
        root,
        pruned,
        base,
        issues: Vec::new(),
        max_runs,
        runs_so_far: 0,
        networks: Vec::new(),
    };
    let (raw_order, raw_seed) = (raw.order, raw.seed);
    let name = version_and_name(&mut cx, raw.version, raw.name);

    let groups = groups(&mut cx, raw.groups.map(|g| g.0).unwrap_or_default());
    let group_names: HashSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let (networks, problems) =
        super::networks::networks(raw.networks.map(|n| n.0).unwrap_or_default());
    for (path, message) in problems {
        cx.err(path, message);
    }
    cx.networks = networks;

    let defaults = root.get("defaults").filter(|v| !v.is_null()).cloned();
    if let Some(d) = &defaults {
        for key in NOT_IN_DEFAULTS {
            if d.get(key).is_some() {
                cx.key_err(
                    p(&["defaults", key]),
                    format!("`{key}` is not allowed in defaults: give it per job"),
                );
            }
        }
    }

    let job_list = match raw.jobs {
        None => {
            cx.missing(&[], "jobs", "a map of job name to job");
            Vec::new()
        }
        Some(j) => {
            if j.0.is_empty() && !cx.pruned(&p(&["jobs"])) {
                cx.err(p(&["jobs"]), "no jobs: expected at least one job");
            }
            j.0
        }
    };
    let job_names: HashSet<&str> = job_list.iter().map(|(n, _)| n.as_str()).collect();

    let mut jobs = Vec::new();
    let mut runs = Runs::default();
    for (jname, _) in &job_list {
        let job_path = p(&["jobs", jname]);
        let own = root
            .get("jobs")
            .and_then(|j| j.get(jname.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let raw_job = match yaml::raw_job(&with_defaults(&own, defaults.as_ref())) {
            Ok(j) => j,
            Err(e) => {
                cx.err(job_path.clone(), e);
                continue;
            }
        };
        let jc = JobCx {
            name: jname,
            own: &own,
            defaults: defaults.as_ref(),
        };
        if !is_name(jname) {
            cx.key_err(
                job_path.clone(),
                format!("invalid job name `{jname}`: expected letters, digits, `.`, `_` and `-`"),
            );
        }
        let (job, job_runs) = job(&mut cx, &jc, raw_job, &group_names, &job_names);
        jobs.push(job);
        runs.push(job_runs);
    }
    cycles(&mut cx, &jobs);
    services(&mut cx, &jobs, &runs);

    let cx_networks = std::mem::take(&mut cx.networks);
    let mut seen = HashSet::new();
    let issues = cx
        .issues
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect();
    (
        Output {
            name,
            jobs,
            groups,
            networks: cx_networks,
            runs,
            order: raw_order.map(order_of).unwrap_or_default(),
            seed: raw_seed,
        },
        issues,
    )
}

/// `version` (1) and `name`: the batch's name, empty when missing.
fn version_and_name(cx: &mut Ctx, version: Option<u32>, name: Option<String>) -> String {
    match version {
        None => cx.missing(&[], "version", "`version: 1`"),
        Some(1) => {}
        Some(v) => cx.err(
            p(&["version"]),
            format!("unsupported version `{v}`: expected 1"),
        ),
    }
    match name {
        None => {
            cx.missing(&[], "name", "a batch name like `compress-sweep`");
            String::new()
        }
        Some(n) => {
            if !is_name(&n) {
                cx.err(
                    p(&["name"]),
                    format!("invalid name `{n}`: expected letters, digits, `.`, `_` and `-`"),
                );
            }
            n
        }
    }
}

/// Keys a job never inherits from `defaults` (an error there).
const NOT_IN_DEFAULTS: [&str; 6] = [
    "matrix",
    "depends_on",
    "service",
    "needs",
    "ready",
    "stop_grace",
];

/// A job's own keys over the defaults, without what is never inherited.
fn with_defaults(own: &Value, defaults: Option<&Value>) -> Value {
    let mut merged = match defaults {
        Some(d) => yaml::merge(d, own),
        None => own.clone(),
    };
    if let Some(m) = merged.as_mapping_mut() {
        // Never inherited (reported above when given in defaults).
        if own.get("matrix").is_none() {
            m.shift_remove("matrix");
        }
        for key in NOT_IN_DEFAULTS {
            if own.get(key).is_none() {
                m.shift_remove(key);
            }
        }
    }
    if merged.is_null() {
        merged = Value::Mapping(Default::default());
    }
    merged
}

fn groups(cx: &mut Ctx, raw: Vec<(String, super::raw::RawGroup)>) -> Vec<Group> {
    let mut out = Vec::new();
    for (name, g) in raw {
        let gp = p(&["groups", &name]);
        if !is_name(&name) {
            cx.key_err(
                gp.clone(),
                format!("invalid group name `{name}`: expected letters, digits, `.`, `_` and `-`"),
            );
        }
        let Some(r) = g.resources else {
            cx.missing(&gp, "resources", "`resources: {cpus: N}`");
            continue;
        };
        let rp = child(&gp, "resources");
        let cpus = match &r.cpus {
            None => {
                cx.missing(&rp, "cpus", "the number of CPUs of the group");
                0
            }
            Some(c) => count(cx, child(&rp, "cpus"), "cpus", &c.0, &|_| None).unwrap_or(0),
        };
        let cpus = u32::try_from(cpus).unwrap_or_else(|_| {
            cx.err(child(&rp, "cpus"), format!("cpus `{cpus}` is too large"));
            0
        });
        let memory = r
            .memory
            .as_ref()
            .and_then(|m| size(cx, child(&rp, "memory"), m, &|_| None));
        let gpus = r.gpus.as_ref().map_or(0, |g| {
            gpu_count(cx, child(&rp, "gpus"), &g.0, &|_| None).unwrap_or(0)
        });
        let nodes = r
            .numa
            .and_then(|n| n.nodes)
            .and_then(|n| id_list(cx, [&rp[..], &p(&["numa", "nodes"])].concat(), &n));
        out.push(Group {
            name,
            cpus,
            memory,
            gpus,
            nodes,
        });
    }
    out
}

/// Where a job's merged keys came from.
struct JobCx<'a> {
    name: &'a str,
    own: &'a Value,
    defaults: Option<&'a Value>,
}

impl JobCx<'_> {
    /// The path a merged key was written at: in the job, else in defaults.
    fn at(&self, rel: &[&str]) -> YPath {
        let relp = p(rel);
        let in_job = yaml::get(self.own, &relp).is_some();
        let in_defaults = self.defaults.and_then(|d| yaml::get(d, &relp)).is_some();
        let mut path = if !in_job && in_defaults {
            p(&["defaults"])
        } else {
            p(&["jobs", self.name])
        };
        path.extend(relp);
        path
    }
    fn path(&self) -> YPath {
        p(&["jobs", self.name])
    }
}

/// A templated field of a job: where it was written and its pieces.
struct Field {
    path: YPath,
    pieces: Vec<Piece>,
    raw: String,
}

/// Values of the placeholders of one run.
type Vars<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Whether every field that may hold a placeholder survived the type check
/// (otherwise "matrix key used in no placeholder" cannot be judged).
fn templated_complete(cx: &Ctx, jc: &JobCx) -> bool {
    let jp = jc.path();
    let templated: [&[&str]; 16] = [
        &["command"],
        &["shell"],
        &["env"],
        &["workdir"],
        &["matrix"],
        &["container", "hostname"],
        &["resources", "cpus"],
        &["resources", "cpuset"],
        &["resources", "memory"],
        &["resources", "cpu_quota"],
        &["resources", "pids"],
        &["resources", "disk"],
        &["resources", "files"],
        &["resources", "gpus"],
        &["resources", "io"],
        &["resources", "rlimits"],
    ];
    templated.iter().all(|rel| {
        !cx.pruned(&[&jp[..], &p(rel)].concat())
            && !cx.pruned(&[&p(&["defaults"])[..], &p(rel)].concat())
    })
}

fn field(path: YPath, raw: &str) -> Field {
    Field {
        path,
        pieces: expand::parse_template(raw),
        raw: raw.to_string(),
    }
}

/// `env`: names checked, values parsed as templates.
fn env_fields(cx: &mut Ctx, jc: &JobCx, raw: &RawJob) -> Vec<(String, Field)> {
    let fields: Vec<(String, Field)> = raw
        .env
        .as_ref()
        .map(|e| {
            e.0.iter()
                .map(|(k, Text(v))| (k.clone(), field(jc.at(&["env", k]), v)))
                .collect()
        })
        .unwrap_or_default();
    for (k, f) in &fields {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            cx.key_err(
                f.path.clone(),
                format!("invalid environment variable name `{k}`: expected a name without `=`"),
            );
        }
    }
    fields
}

/// time_limit, cpu_time_limit, estimate (else the time limit, else the
/// default) and log_limit.
fn limits(
    cx: &mut Ctx,
    jc: &JobCx,
    raw: &RawJob,
) -> (
    Option<std::time::Duration>,
    Option<std::time::Duration>,
    std::time::Duration,
    u64,
) {
    let mut duration = |key: &str, v: &Option<super::raw::DurationValue>| {
        v.as_ref().and_then(|d| {
            units::parse_duration(&d.0)
                .map_err(|e| cx.err(jc.at(&[key]), e))
                .ok()
        })
    };
    let time_limit = duration("time_limit", &raw.time_limit);
    let cpu_time_limit = duration("cpu_time_limit", &raw.cpu_time_limit);
    let estimate = duration("estimate", &raw.estimate)
        .or(time_limit)
        .unwrap_or(DEFAULT_ESTIMATE);
    let log_limit = raw
        .log_limit
        .as_ref()
        .and_then(|l| size(cx, jc.at(&["log_limit"]), l, &|_| None))
        .unwrap_or(DEFAULT_LOG_LIMIT);

    (time_limit, cpu_time_limit, estimate, log_limit)
}

/// The counters a job chose, by perf's names; an unknown name is an
/// error listing the known ones. Whether this machine can count them is
/// checked before the batch starts (see batch), not here: a job file
/// reads the same on every machine.
fn counters(cx: &mut Ctx, jc: &JobCx, names: &[String]) -> crate::counters::Chosen {
    use crate::counters::Counter;
    let mut chosen = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Counter::from_name(name) {
            Some(c) => chosen.push(c),
            None => cx.err(
                {
                    let mut at = jc.at(&["counters"]);
                    at.push(yaml::Seg::Index(i));
                    at
                },
                format!(
                    "unknown counter `{name}`: expected one of {}",
                    Counter::names()
                ),
            ),
        }
    }
    crate::counters::Chosen::of(chosen)
}

fn job(
    cx: &mut Ctx,
    jc: &JobCx,
    raw: RawJob,
    group_names: &HashSet<&str>,
    job_names: &HashSet<&str>,
) -> (Job, JobRuns) {
    let complete = templated_complete(cx, jc);

    // Command or shell, exactly one.
    let (command_fields, is_shell) = command_fields(cx, jc, &raw);

    // Matrix.
    let (mut matrix, param_names) = matrix(cx, jc, raw.matrix.as_ref());

    // Static placeholder check of every templated field.
    let env_fields = env_fields(cx, jc, &raw);
    let workdir = raw.workdir.as_ref().map(|w| field(jc.at(&["workdir"]), w));
    let container = raw.container.clone().unwrap_or_default();
    let hostname = field(
        if container.hostname.is_some() {
            jc.at(&["container", "hostname"])
        } else {
            jc.path()
        },
        container.hostname.as_deref().unwrap_or("{job}-{rep}"),
    );
    let res = raw.resources.clone().unwrap_or_default();
    let numeric = numeric_fields(jc, &res);

    let fields = Templated {
        command: &command_fields,
        env: &env_fields,
        workdir: workdir.as_ref(),
        hostname: &hostname,
        numeric: &numeric,
    };
    check_placeholders(cx, jc, &raw, &fields, &param_names, complete);

    let depends_on = references(cx, jc, &raw, group_names, job_names);
    let service = service(cx, jc, &raw);
    let needs = raw.needs.clone().unwrap_or_default();
    for (i, n) in needs.iter().enumerate() {
        if n == jc.name {
            let np = [&jc.at(&["needs"])[..], &[Seg::Index(i)]].concat();
            cx.err(np, format!("job `{n}` needs itself"));
        }
    }

    // Counts and durations.
    let repetitions = raw.repetitions.unwrap_or(1);
    if repetitions == 0 {
        cx.err(
            jc.at(&["repetitions"]),
            "repetitions `0` must be at least 1",
        );
    }
    let warmup = raw.warmup.unwrap_or(0);
    let (time_limit, cpu_time_limit, estimate, log_limit) = limits(cx, jc, &raw);
    let counters = counters(cx, jc, raw.counters.as_deref().unwrap_or_default());

    let shared = Shared {
        command: command_fields,
        is_shell,
        env: env_fields,
        workdir,
        hostname,
        resources: res,
        numeric,
        time_limit,
        cpu_time_limit,
        estimate,
        log_limit,
        counters,
        // Container parts that do not depend on the run.
        container: container_parts(cx, jc, &container),
        stdin: raw.stdin.as_ref().map(|s| cx.base.join(s)),
        steps: [
            ("setup", &raw.setup),
            ("prepare", &raw.prepare),
            ("conclude", &raw.conclude),
            ("cleanup", &raw.cleanup),
        ]
        .map(|(name, step)| {
            step.as_ref()
                .map(|s| step_argv(cx, jc, name, s, &param_names))
        }),
        group: raw.group.clone(),
        depends_on: depends_on.clone(),
        service,
        needs: needs.clone(),
    };

    // Counted before a run is made (see matrix).
    let count = count_runs(
        cx,
        jc,
        raw.repetitions.is_some(),
        matrix.len(),
        warmup,
        repetitions,
    );
    if count.is_none() {
        matrix = Matrix::empty(param_names.clone());
    }
    let reps = warmup.saturating_add(repetitions.max(1));
    let runs = expand_job(cx, jc, &shared, matrix, warmup, reps);
    let job = Job {
        name: jc.name.to_string(),
        group: raw.group.clone(),
        depends_on,
        needs,
        param_names,
        order: raw.order.map(order_of),
    };
    (job, runs)
}

/// What every run of a job shares, checked once; `expand_job` keeps it
/// with the job's matrix, and each run is rendered from it when it starts.
struct Shared {
    command: Vec<Field>,
    is_shell: bool,
    env: Vec<(String, Field)>,
    workdir: Option<Field>,
    hostname: Field,
    resources: super::raw::RawResources,
    numeric: Vec<Field>,
    time_limit: Option<std::time::Duration>,
    cpu_time_limit: Option<std::time::Duration>,
    estimate: std::time::Duration,
    log_limit: u64,
    counters: crate::counters::Chosen,
    container: Container,
    stdin: Option<PathBuf>,
    /// setup, prepare, conclude, cleanup.
    steps: [Option<Vec<Field>>; 4],
    group: Option<String>,
    depends_on: Vec<String>,
    service: Option<Service>,
    needs: Vec<String>,
}

/// Whether a field names a placeholder that differs between runs: a
/// parameter, or `{rep}` when `rep` is true.
fn varies(f: &Field, rep: bool) -> bool {
    expand::names(&f.pieces).any(|n| n != "job" && n != "cpus" && (rep || n != "rep"))
}

/// A job's runs in compact form: the shared parts with `{job}` filled,
/// the matrix and the repetitions. What can be wrong in one run only
/// (a workdir, a hostname, a resource given by a parameter) is checked
/// here for every combination that can differ, without keeping the runs.
fn expand_job(
    cx: &mut Ctx,
    jc: &JobCx,
    sh: &Shared,
    matrix: Matrix,
    warmup: u32,
    reps: u32,
) -> JobRuns {
    let only_job = |n: &str| (n == "job").then(|| jc.name.to_string());
    let template = |f: &Field| Template::partial(&f.pieces, only_job);
    let proto = proto_run(jc, sh);
    let mut e = Expanded {
        proto,
        workdir: sh.workdir.as_ref().map(template),
        hostname: template(&sh.hostname),
        matrix,
        warmup,
        reps,
        resources: ByRun::Job,
    };
    let combos = e.matrix.len();
    if combos == 0 {
        return JobRuns::Expanded(Box::new(e));
    }
    check_per_run(cx, jc, sh, &e);
    let by_rep = sh
        .numeric
        .iter()
        .any(|f| expand::names(&f.pieces).any(|n| n == "rep"));
    let by_combo = sh.numeric.iter().any(|f| varies(f, false));
    let mut of = |e: &Expanded, c: usize, rep: u32| {
        resources(cx, jc, &sh.resources, &|n: &str| e.var(c, rep, n))
    };
    if by_rep {
        let all = (0..combos)
            .flat_map(|c| (1..=reps).map(move |rep| (c, rep)))
            .map(|(c, rep)| of(&e, c, rep))
            .collect();
        e.resources = ByRun::Run(all);
    } else if by_combo {
        e.resources = ByRun::Combo((0..combos).map(|c| of(&e, c, 1)).collect());
    } else {
        e.proto.resources = of(&e, 0, 1);
    }
    JobRuns::Expanded(Box::new(e))
}

/// The job's run with `{job}` filled in and its parameters and `{rep}`
/// left as placeholders: what every run of the job is rendered from.
fn proto_run(jc: &JobCx, sh: &Shared) -> Run {
    let only_job = |n: &str| (n == "job").then(|| jc.name.to_string());
    let template = |f: &Field| Template::partial(&f.pieces, only_job);
    let mut command: Vec<Template> = sh.command.iter().map(template).collect();
    if sh.is_shell {
        command = vec![
            Template::literal("/bin/sh"),
            Template::literal("-c"),
            command.pop().unwrap_or_else(|| Template::literal("")),
        ];
    }
    let step = |i: usize| {
        sh.steps[i]
            .as_ref()
            .map(|f| f.iter().map(template).collect())
    };
    let mut proto = Run::with_defaults(jc.name, Vec::new());
    proto.key = String::new();
    proto.command = command;
    proto.env = sh
        .env
        .iter()
        .map(|(k, f)| (k.clone(), template(f)))
        .collect();
    proto.time_limit = sh.time_limit;
    proto.cpu_time_limit = sh.cpu_time_limit;
    proto.estimate = sh.estimate;
    proto.container = sh.container.clone();
    proto.log_limit = sh.log_limit;
    proto.counters = sh.counters;
    proto.group = sh.group.clone();
    proto.depends_on = sh.depends_on.clone();
    proto.service = sh.service.clone();
    proto.needs = sh.needs.clone();
    proto.stdin = sh.stdin.clone();
    proto.steps = Steps {
        setup: step(0),
        prepare: step(1),
        conclude: step(2),
        cleanup: step(3),
    };
    proto
}

/// What can be wrong in one run only: a relative workdir or a hostname
/// of the wrong length, checked for every combination where the text can
/// differ and the reps that tell for all others.
fn check_per_run(cx: &mut Ctx, jc: &JobCx, sh: &Shared, e: &Expanded) {
    let (combos, reps) = (e.matrix.len(), e.reps);
    let text = |e: &Expanded, t: &Template, c: usize, rep: u32| -> String {
        t.refill(|n| e.var(c, rep, n)).render(None)
    };
    // Every combination where the text can differ; the longest rep.
    let each = |f: &Field| if varies(f, false) { combos } else { 1 };
    let uses_rep = |f: &Field| expand::names(&f.pieces).any(|n| n == "rep");
    // A workdir's first character is the same for every rep (a leading
    // `{rep}` is a digit for all), so rep 1 tells whether all reps fail;
    // each that does is named, as when every run was checked.
    if let (Some(f), Some(w)) = (&sh.workdir, &e.workdir) {
        for c in 0..each(f) {
            if text(e, w, c, 1).starts_with('/') {
                continue;
            }
            for rep in 1..=if uses_rep(f) { reps } else { 1 } {
                let w = text(e, w, c, rep);
                cx.err(
                    jc.at(&["workdir"]),
                    format!(
                        "relative workdir `{w}`: expected an absolute path inside the container"
                    ),
                );
            }
        }
    }
    // A hostname's length depends on a rep's number of digits only: the
    // first rep of each digit count tells for all reps of that count.
    let classes: Vec<(u64, u64)> = match uses_rep(&sh.hostname) {
        false => vec![(1, 1)],
        true => (0..)
            .map(|d| 10u64.pow(d))
            .take_while(|&lo| lo <= u64::from(reps))
            .map(|lo| (lo, (lo * 10 - 1).min(u64::from(reps))))
            .collect(),
    };
    for c in 0..each(&sh.hostname) {
        for &(lo, hi) in &classes {
            let host = text(e, &e.hostname, c, lo as u32);
            if !host.is_empty() && host.len() <= 64 {
                continue;
            }
            for rep in lo..=hi {
                let host = text(e, &e.hostname, c, rep as u32);
                cx.err(
                    sh.hostname.path.clone(),
                    format!("hostname `{host}` must have 1 to 64 characters"),
                );
            }
        }
    }
}

fn sorted_list(names: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = names.iter().copied().collect();
    v.sort();
    v.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a parameter name was written: its matrix axis, else the first include naming it.
fn matrix_key_path(jc: &JobCx, name: &str) -> YPath {
    let mp = jc.at(&["matrix"]);
    let m = jc.own.get("matrix");
    if m.and_then(|m| m.get(name)).is_some() {
        return child(&mp, name);
    }
    if let Some(incs) = m
        .and_then(|m| m.get("include"))
        .and_then(Value::as_sequence)
    {
        for (i, inc) in incs.iter().enumerate() {
            if inc.get(name).is_some() {
                return [
                    &mp[..],
                    &[
                        Seg::Key("include".into()),
                        Seg::Index(i),
                        Seg::Key(name.into()),
                    ],
                ]
                .concat();
            }
        }
    }
    mp
}

fn matrix(cx: &mut Ctx, jc: &JobCx, m: Option<&RawMatrix>) -> (Matrix, Vec<String>) {
    let Some(m) = m else {
        return (Matrix::single(), Vec::new());
    };
    let mp = jc.at(&["matrix"]);
    let mut names: Vec<String> = Vec::new();
    let mut axes = Vec::new();
    for (name, axis) in &m.axes {
        let ap = child(&mp, name);
        let Some(values) = axis_values(cx, &ap, name, axis) else {
            continue;
        };
        if !is_ident(name) {
            cx.key_err(ap.clone(), format!("invalid matrix key `{name}`: expected letters, digits and `_`, not starting with a digit"));
        } else if RESERVED.contains(&name.as_str()) {
            cx.key_err(ap.clone(), format!("matrix key `{name}` is reserved: {{job}}, {{rep}} and {{cpus}} are filled in by packrun"));
        }
        if values.is_empty() {
            cx.err(
                ap.clone(),
                format!(
                    "empty list of values for matrix key `{name}`: expected at least one value"
                ),
            );
        }
        let mut vals: Vec<String> = Vec::new();
        for (i, Text(v)) in values.iter().enumerate() {
            if vals.contains(v) {
                cx.err(
                    [&ap[..], &[Seg::Index(i)]].concat(),
                    format!("duplicate value `{v}` for matrix key `{name}`"),
                );
            }
            vals.push(v.clone());
        }
        names.push(name.clone());
        axes.push((name.clone(), vals));
    }
    let entries = |list: &Vec<Vec<(String, Text)>>| -> Vec<Combo> {
        list.iter()
            .map(|e| {
                e.iter()
                    .map(|(k, Text(v))| (k.clone(), v.clone()))
                    .collect()
            })
            .collect()
    };
    let exclude = entries(&m.exclude);
    let include = entries(&m.include);
    check_exclude_include(cx, &mp, (&exclude, &include), &mut names);
    // Counted before a combination is made: a matrix that explodes is an
    // error, not an allocation that eats the machine.
    let product = axes
        .iter()
        .map(|(_, v)| v.len() as u128)
        .fold(1u128, |a, n| a.saturating_mul(n));
    if !axes.is_empty() && product.saturating_add(include.len() as u128) > cx.max_runs as u128 {
        let sizes: Vec<String> = axes
            .iter()
            .map(|(n, v)| format!("{} {n}", v.len()))
            .collect();
        cx.err(
            mp,
            format!(
                "the matrix has {} combinations ({}), more than the {} runs a batch may have (--max-runs changes the limit)",
                group_digits(product),
                sizes.join(" × "),
                group_digits(cx.max_runs as u128)
            ),
        );
        return (Matrix::empty(names.clone()), names);
    }
    let combos = expand::expand_matrix(&axes, &exclude, &include);
    if combos.is_empty() && axes.iter().all(|(_, v)| !v.is_empty()) {
        cx.err(
            mp,
            "no combinations left after `exclude`: expected at least one",
        );
    }
    (combos, names)
}

/// The values of one matrix key: a list, a range, or the lines of a file;
/// None (the problem told) when they cannot be had.
fn axis_values(cx: &mut Ctx, ap: &YPath, name: &str, axis: &RawAxis) -> Option<Vec<Text>> {
    let values: Vec<Text> = match axis {
        RawAxis::List(v) => v.clone(),
        RawAxis::Range(r) => match expand::range_values(r, cx.max_runs) {
            Ok(v) => v.into_iter().map(Text).collect(),
            Err(e) => {
                cx.err(ap.clone(), format!("matrix key `{name}`: {e}"));
                return None;
            }
        },
        RawAxis::Lines { lines } => {
            let file = cx.base.join(lines);
            match crate::fsx::read_to_string(&file) {
                Ok(text) => text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Text(l.to_string()))
                    .collect(),
                Err(e) => {
                    cx.err(
                        ap.clone(),
                        format!("matrix key `{name}`: {}", crate::fsx::chain(&e)),
                    );
                    return None;
                }
            }
        }
    };
    Some(values)
}

/// `exclude` entries must name keys of the matrix; `include` entries may
/// add parameters of their own (added to `names`).
fn check_exclude_include(
    cx: &mut Ctx,
    mp: &YPath,
    (exclude, include): (&[Combo], &[Combo]),
    names: &mut Vec<String>,
) {
    for (i, e) in exclude.iter().enumerate() {
        let ep = [&mp[..], &[Seg::Key("exclude".into()), Seg::Index(i)]].concat();
        if e.is_empty() {
            cx.err(
                ep.clone(),
                "empty exclude entry: expected keys of the matrix like {threads: 4}",
            );
        }
        for (k, _) in e {
            if !names.contains(k) {
                cx.key_err(
                    child(&ep, k),
                    format!(
                        "unknown matrix key `{k}` in exclude: expected one of {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    for (i, e) in include.iter().enumerate() {
        let ip = [&mp[..], &[Seg::Key("include".into()), Seg::Index(i)]].concat();
        if e.is_empty() {
            cx.err(
                ip.clone(),
                "empty include entry: expected parameters like {threads: 8}",
            );
        }
        for (k, _) in e {
            if !is_ident(k) || RESERVED.contains(&k.as_str()) {
                cx.key_err(child(&ip, k), format!("invalid matrix key `{k}`: expected letters, digits and `_`, and not job, rep or cpus"));
            }
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
}

/// A step's argv as fields; its placeholders may be the job's parameters,
/// `job`, `rep` and `cpus`.
fn step_argv(
    cx: &mut Ctx,
    jc: &JobCx,
    name: &str,
    step: &RawStep,
    params: &[String],
) -> Vec<Field> {
    let sp = jc.at(&[name]);
    let words: Vec<(YPath, String)> = match step {
        RawStep::Shell(line) => vec![
            (sp.clone(), "/bin/sh".into()),
            (sp.clone(), "-c".into()),
            (sp.clone(), line.clone()),
        ],
        RawStep::Argv(argv) => argv
            .iter()
            .enumerate()
            .map(|(i, Text(w))| ([&sp[..], &[Seg::Index(i)]].concat(), w.clone()))
            .collect(),
    };
    let empty = match step {
        RawStep::Shell(line) => line.trim().is_empty(),
        RawStep::Argv(argv) => argv.first().is_none_or(|w| w.0.trim().is_empty()),
    };
    if empty {
        cx.err(
            sp.clone(),
            format!("empty {name} step: expected a shell line or an argv list"),
        );
    }
    let mut fields = Vec::new();
    for (i, (path, word)) in words.into_iter().enumerate() {
        // A shell step's program words are no templates.
        let pieces = match (step, i) {
            (RawStep::Shell(_), 0 | 1) => vec![Piece::Lit(word.clone())],
            _ => expand::parse_template(&word),
        };
        for n in expand::names(&pieces) {
            if !params.iter().any(|p| p == n) && !["job", "rep", "cpus"].contains(&n) {
                cx.err(
                    path.clone(),
                    format!("unknown placeholder `{{{n}}}` in the {name} step: expected a matrix parameter, job, rep or cpus"),
                );
            }
        }
        fields.push(Field {
            path,
            pieces,
            raw: word,
        });
    }
    fields
}

/// The job's `command` (argv) or `shell` (one line) as fields; true for a
/// shell. Exactly one is needed, unless the root is an image (its
/// Entrypoint and Cmd then run).
fn command_fields(cx: &mut Ctx, jc: &JobCx, raw: &RawJob) -> (Vec<Field>, bool) {
    let jp = jc.path();
    let mut command_fields: Vec<Field> = Vec::new();
    let mut is_shell = false;
    let from_image = raw
        .container
        .as_ref()
        .and_then(|c| c.rootfs.as_deref())
        .is_some_and(|t| t.starts_with("oci:") || t.starts_with("docker-archive:"));
    match (&raw.command, &raw.shell) {
        (Some(_), Some(_)) => cx.err(
            jp.clone(),
            "both `command` and `shell` given: expected exactly one (`command` is an argv list, `shell` a /bin/sh line)",
        ),
        // An image's Entrypoint and Cmd run when the job gives neither.
        (None, None) if from_image => {}
        (None, None) => {
            if !cx.pruned(&child(&jp, "command")) && !cx.pruned(&child(&jp, "shell")) && !cx.pruned(&p(&["defaults", "command"])) && !cx.pruned(&p(&["defaults", "shell"])) {
                cx.err(jp.clone(), "missing key `command` or `shell`: expected an argv list like [\"xz\", \"-9\"] or a shell line");
            }
        }
        (Some(argv), None) => {
            let cp = jc.at(&["command"]);
            if argv.is_empty() {
                cx.err(cp.clone(), "empty command `[]`: expected at least the program, like [\"xz\", \"-9\"]");
            } else if argv[0].0.trim().is_empty() {
                cx.err([&cp[..], &[Seg::Index(0)]].concat(), format!("empty program name `{}`: expected a program like `xz`", argv[0].0));
            }
            for (i, Text(word)) in argv.iter().enumerate() {
                command_fields.push(Field {
                    path: [&cp[..], &[Seg::Index(i)]].concat(),
                    pieces: expand::parse_template(word),
                    raw: word.clone(),
                });
            }
        }
        (None, Some(line)) => {
            is_shell = true;
            let sp = jc.at(&["shell"]);
            if line.trim().is_empty() {
                cx.err(sp.clone(), format!("empty shell command `{line}`: expected a command line"));
            }
            command_fields.push(Field {
                path: sp,
                pieces: expand::parse_template(line),
                raw: line.clone(),
            });
        }
    }
    (command_fields, is_shell)
}

/// The jobs this one depends on, and its group: each must exist.
fn references(
    cx: &mut Ctx,
    jc: &JobCx,
    raw: &RawJob,
    group_names: &HashSet<&str>,
    job_names: &HashSet<&str>,
) -> Vec<String> {
    let depends_on = raw.depends_on.clone().unwrap_or_default();
    for (i, d) in depends_on.iter().enumerate() {
        let dp = [&jc.at(&["depends_on"])[..], &[Seg::Index(i)]].concat();
        if d == jc.name {
            cx.err(dp, format!("job `{d}` depends on itself"));
        } else if !job_names.contains(d.as_str()) {
            cx.err(
                dp,
                format!(
                    "unknown job `{d}` in depends_on: expected one of {}",
                    sorted_list(job_names)
                ),
            );
        }
    }
    if let Some(g) = &raw.group {
        if !group_names.contains(g.as_str()) {
            let expected = if group_names.is_empty() {
                "a group defined under top-level `groups` (there are none)".to_string()
            } else {
                format!("one of {}", sorted_list(group_names))
            };
            cx.err(
                jc.at(&["group"]),
                format!("unknown group `{g}`: expected {expected}"),
            );
        }
    }
    depends_on
}

/// What the runs of a job share of their container.
fn container_parts(cx: &mut Ctx, jc: &JobCx, container: &super::raw::RawContainer) -> Container {
    let image = match container.rootfs.as_deref() {
        Some(text) => match crate::image::parse_source(text, cx.base) {
            Some(Ok(source)) => Some(source),
            Some(Err(e)) => {
                cx.err(
                    jc.at(&["container", "rootfs"]),
                    format!("rootfs `{text}`: {e}"),
                );
                None
            }
            None => None,
        },
        None => None,
    };
    let rootfs = match container.rootfs.as_deref() {
        None | Some("host") => Rootfs::Host,
        Some(_) if image.is_some() => Rootfs::Host,
        Some("") => {
            cx.err(
                jc.at(&["container", "rootfs"]),
                "empty rootfs: expected `host` or a directory",
            );
            Rootfs::Host
        }
        Some(dir) => Rootfs::Dir(cx.base.join(dir)),
    };
    let network = super::networks::network(container.network.as_deref(), &cx.networks)
        .unwrap_or_else(|e| {
            cx.err(jc.at(&["container", "network"]), e);
            Network::None
        });
    let mut mounts = Vec::new();
    for (i, m) in container.mounts.iter().flatten().enumerate() {
        let mp = [&jc.at(&["container", "mounts"])[..], &[Seg::Index(i)]].concat();
        let source = m.source.clone().filter(|s| !s.is_empty());
        let target = m.target.clone().filter(|s| !s.is_empty());
        if source.is_none() {
            cx.missing(&mp, "source", "a host path");
        }
        match &target {
            None => cx.missing(&mp, "target", "an absolute path inside the container"),
            Some(t) if !t.starts_with('/') => cx.err(
                child(&mp, "target"),
                format!(
                    "relative mount target `{t}`: expected an absolute path inside the container"
                ),
            ),
            _ => {}
        }
        if let (Some(s), Some(t)) = (source, target) {
            mounts.push(Mount {
                source: cx.base.join(s),
                target: PathBuf::from(t),
                read_only: m.read_only.unwrap_or(false),
            });
        }
    }
    let mut writable = Vec::new();
    for (i, w) in container.writable.iter().flatten().enumerate() {
        if !w.starts_with('/') {
            cx.err(
                [&jc.at(&["container", "writable"])[..], &[Seg::Index(i)]].concat(),
                format!(
                    "relative writable path `{w}`: expected an absolute path inside the container"
                ),
            );
        }
        writable.push(PathBuf::from(w));
    }
    let user = container.user.as_ref().and_then(|Text(u)| {
        let parsed = u.split_once(':').and_then(|(a, b)| {
            Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
        });
        if parsed.is_none() {
            cx.err(
                jc.at(&["container", "user"]),
                format!("invalid user `{u}`: expected numeric `uid:gid` like \"1000:1000\""),
            );
        }
        parsed
    });
    let mut capabilities = Vec::new();
    for (i, c) in container.capabilities.iter().flatten().enumerate() {
        let up = c.trim().to_ascii_uppercase();
        let bare = up.strip_prefix("CAP_").unwrap_or(&up);
        if crate::jobfile::CAPABILITIES.contains(&bare) {
            capabilities.push(format!("CAP_{bare}"));
        } else {
            cx.err([&jc.at(&["container", "capabilities"])[..], &[Seg::Index(i)]].concat(), format!("unknown capability `{c}`: expected a name like CAP_NET_RAW (see capabilities(7))"));
        }
    }

    let userns = match container.userns {
        None | Some(UserNsKind::Private) => UserNs::Private,
        Some(UserNsKind::Host) => UserNs::Host,
    };
    let hidden = abs_paths(
        cx,
        &jc.at(&["container", "hidden"]),
        &container.hidden,
        "hidden",
    );
    let visible = abs_paths(
        cx,
        &jc.at(&["container", "visible"]),
        &container.visible,
        "visible",
    );
    // The hostname is filled per run.
    Container {
        image,
        rootfs,
        network,
        hostname: String::new(),
        mounts,
        writable,
        user,
        capabilities,
        userns,
        hidden,
        visible,
        aio: container.aio.unwrap_or(false),
    }
}

/// How many runs the job makes: combinations × (warmup + repetitions),
/// counted before any is made; None (an error said so) when that, with the
/// jobs before it, is more than the batch may have.
fn count_runs(
    cx: &mut Ctx,
    jc: &JobCx,
    reps_given: bool,
    combos: usize,
    warmup: u32,
    repetitions: u32,
) -> Option<u128> {
    let count = combos as u128 * (warmup as u128 + repetitions.max(1) as u128);
    let total = cx.runs_so_far as u128 + count;
    if total > cx.max_runs as u128 {
        let at = match reps_given {
            true => jc.at(&["repetitions"]),
            false => jc.path(),
        };
        cx.err(
            at,
            format!(
                "job `{}` expands to {} combination(s) × ({warmup} warmup + {} repetitions) = {} runs{}, more than the {} runs a batch may have (--max-runs changes the limit)",
                jc.name,
                group_digits(combos as u128),
                group_digits(repetitions.max(1) as u128),
                group_digits(count),
                if cx.runs_so_far > 0 {
                    format!(" ({} with the jobs before it)", group_digits(total))
                } else {
                    String::new()
                },
                group_digits(cx.max_runs as u128)
            ),
        );
        return None;
    }
    cx.runs_so_far = total as u64;
    Some(count)
}

/// The resource fields given as text, which may hold placeholders.
fn numeric_fields(jc: &JobCx, res: &super::raw::RawResources) -> Vec<Field> {
    let field = |path: YPath, raw: &str| Field {
        path,
        pieces: expand::parse_template(raw),
        raw: raw.to_string(),
    };
    let mut numeric: Vec<Field> = Vec::new();
    let mut add_num = |path: YPath, s: &Scalar| {
        if let Scalar::Str(t) = s {
            numeric.push(field(path, t));
        }
    };
    if let Some(c) = &res.cpus {
        add_num(jc.at(&["resources", "cpus"]), &c.0);
    }
    if let Some(IdList::Text(s)) = &res.cpuset {
        add_num(jc.at(&["resources", "cpuset"]), s);
    }
    if let Some(m) = &res.memory {
        add_num(jc.at(&["resources", "memory"]), &m.0);
    }
    if let Some(q) = &res.cpu_quota {
        add_num(jc.at(&["resources", "cpu_quota"]), &q.0);
    }
    if let Some(v) = &res.pids {
        add_num(jc.at(&["resources", "pids"]), &v.0);
    }
    if let Some(v) = &res.disk {
        add_num(jc.at(&["resources", "disk"]), &v.0);
    }
    if let Some(v) = &res.files {
        add_num(jc.at(&["resources", "files"]), &v.0);
    }
    if let Some(v) = &res.gpus {
        add_num(jc.at(&["resources", "gpus"]), &v.0);
    }
    if let Some(io) = &res.io {
        for (k, v) in [("read_bps", &io.read_bps), ("write_bps", &io.write_bps)] {
            if let Some(v) = v {
                add_num(jc.at(&["resources", "io", k]), &v.0);
            }
        }
        for (k, v) in [("read_iops", &io.read_iops), ("write_iops", &io.write_iops)] {
            if let Some(v) = v {
                add_num(jc.at(&["resources", "io", k]), &v.0);
            }
        }
    }
    if let Some(r) = &res.rlimits {
        for (k, v) in &r.0 {
            add_num(jc.at(&["resources", "rlimits", k]), &v.0);
        }
    }
    numeric
}

/// The fields of a job that may hold placeholders.
struct Templated<'a> {
    command: &'a [Field],
    env: &'a [(String, Field)],
    workdir: Option<&'a Field>,
    hostname: &'a Field,
    numeric: &'a [Field],
}

/// Every placeholder names a parameter, `job` or `rep` (`cpus` only where
/// it is known: command, shell, env), and every parameter is used.
fn check_placeholders(
    cx: &mut Ctx,
    jc: &JobCx,
    raw: &RawJob,
    f: &Templated,
    param_names: &[String],
    complete: bool,
) {
    let (command_fields, env_fields, workdir, hostname, numeric) =
        (f.command, f.env, f.workdir, f.hostname, f.numeric);
    let known: Vec<&str> = param_names
        .iter()
        .map(String::as_str)
        .chain(["job", "rep"])
        .collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut unknown_placeholder = false;
    let with_cpus = command_fields
        .iter()
        .chain(env_fields.iter().map(|(_, f)| f));
    let without_cpus = workdir
        .into_iter()
        .chain(std::iter::once(hostname))
        .chain(numeric.iter());
    for (f, cpus_ok) in with_cpus
        .map(|f| (f, true))
        .chain(without_cpus.map(|f| (f, false)))
    {
        for n in expand::names(&f.pieces) {
            used.insert(n.to_string());
            if let Some(job) = n.strip_prefix(expand::ADDR) {
                addr_placeholder(cx, f, job, raw, cpus_ok);
            } else if n == "cpus" {
                if !cpus_ok {
                    cx.err(f.path.clone(), format!("placeholder `{{cpus}}` in `{}` is only known at run start: it is allowed in command, shell and env", f.raw));
                }
            } else if !known.contains(&n) {
                unknown_placeholder = true;
                let list: Vec<String> = known
                    .iter()
                    .map(|k| format!("{{{k}}}"))
                    .chain(cpus_ok.then(|| "{cpus}".to_string()))
                    .collect();
                cx.err(
                    f.path.clone(),
                    format!(
                        "unknown placeholder `{{{n}}}` in `{}`: expected one of {}",
                        f.raw,
                        list.join(", ")
                    ),
                );
            }
        }
    }
    // A parameter used only by a step (a `prepare` that makes an input of
    // that size) is used too; steps check their own placeholders.
    for step in [&raw.setup, &raw.prepare, &raw.conclude, &raw.cleanup]
        .into_iter()
        .flatten()
    {
        let words: Vec<&str> = match step {
            RawStep::Shell(line) => vec![line.as_str()],
            RawStep::Argv(argv) => argv.iter().map(|Text(w)| w.as_str()).collect(),
        };
        for w in words {
            for n in expand::names(&expand::parse_template(w)) {
                used.insert(n.to_string());
            }
        }
    }
    // After a misspelt placeholder the unused key is the same mistake: say it once.
    if complete && !unknown_placeholder {
        for name in param_names {
            if !used.contains(name) {
                let path = matrix_key_path(jc, name);
                cx.key_err(path, format!("matrix key `{name}` is used in no placeholder: write `{{{name}}}` in command, shell, env, workdir, hostname, resources or a step, or remove it"));
            }
        }
    }
}

/// `{addr:JOB}`: only where it is known (command, shell, env: it is
/// filled when the run starts), and JOB must be a service the job needs.
fn addr_placeholder(cx: &mut Ctx, f: &Field, job: &str, raw: &RawJob, at_start: bool) {
    if !at_start {
        cx.err(f.path.clone(), format!("placeholder `{{addr:{job}}}` in `{}` is only known at run start: it is allowed in command, shell and env", f.raw));
    } else if !raw.needs.iter().flatten().any(|n| n == job) {
        cx.err(
            f.path.clone(),
            format!(
                "placeholder `{{addr:{job}}}` in `{}` names a job this one does not need: expected a service listed in `needs`, like `needs: [{job}]`",
                f.raw
            ),
        );
    }
}

/// `service: true` and what goes with it: one run (no matrix,
/// repetitions or warmup), no steps; `ready` and `stop_grace` only on a
/// service.
fn service(cx: &mut Ctx, jc: &JobCx, raw: &RawJob) -> Option<Service> {
    let is = raw.service == Some(true);
    if !is {
        for (key, given) in [
            ("ready", raw.ready.is_some()),
            ("stop_grace", raw.stop_grace.is_some()),
        ] {
            if given {
                cx.key_err(
                    jc.at(&[key]),
                    format!("`{key}` is only for a service: expected `service: true` beside it"),
                );
            }
        }
        return None;
    }
    let one_run = [
        ("matrix", raw.matrix.is_some(), "a matrix"),
        (
            "repetitions",
            raw.repetitions.is_some_and(|r| r > 1),
            "repetitions above 1",
        ),
        ("warmup", raw.warmup.is_some_and(|w| w > 0), "warmup runs"),
        ("setup", raw.setup.is_some(), "steps"),
        ("prepare", raw.prepare.is_some(), "steps"),
        ("conclude", raw.conclude.is_some(), "steps"),
        ("cleanup", raw.cleanup.is_some(), "steps"),
    ];
    for (key, given, what) in one_run {
        if given {
            cx.key_err(
                jc.at(&[key]),
                format!("a service (`service: true`) has exactly one run and no steps: remove {what} (`{key}`), or make the measured client a job of its own that needs it"),
            );
        }
    }
    let duration = |cx: &mut Ctx, path: &[&str], v: Option<&super::raw::DurationValue>| {
        v.and_then(|d| {
            units::parse_duration(&d.0)
                .map_err(|e| cx.err(jc.at(path), e))
                .ok()
        })
    };
    let ready = raw.ready.clone().unwrap_or_default();
    if raw.ready.is_some() {
        match ready.tcp {
            None => cx.missing(&jc.at(&["ready"]), "tcp", "a TCP port like `tcp: 6379`"),
            Some(0) => cx.err(
                jc.at(&["ready", "tcp"]),
                "port `0` in ready.tcp: expected a TCP port from 1 to 65535",
            ),
            Some(_) => {}
        }
    }
    Some(Service {
        ready_tcp: ready.tcp.filter(|&p| p > 0),
        ready_timeout: duration(cx, &["ready", "timeout"], ready.timeout.as_ref())
            .unwrap_or(DEFAULT_READY_TIMEOUT),
        stop_grace: duration(cx, &["stop_grace"], raw.stop_grace.as_ref())
            .unwrap_or(DEFAULT_STOP_GRACE),
    })
}

/// Across jobs: `needs` names services on the job's own network; every
/// service is needed; `depends_on` names no service.
fn services(cx: &mut Ctx, jobs: &[Job], runs: &Runs) {
    let net: HashMap<&str, (&Network, bool)> = runs
        .jobs()
        .map(|j| {
            let b = j.base();
            (b.job.as_str(), (&b.container.network, b.service.is_some()))
        })
        .collect();
    let services: HashSet<&str> = net
        .iter()
        .filter(|(_, (_, s))| *s)
        .map(|(n, _)| *n)
        .collect();
    let expected = match services.is_empty() {
        true => "a job with `service: true` (there is none)".to_string(),
        false => format!("one of {}", sorted_list(&services)),
    };
    let mut needed: HashSet<&str> = HashSet::new();
    for job in jobs {
        let Some(&(own_net, _)) = net.get(job.name.as_str()) else {
            continue;
        };
        for (i, n) in job.needs.iter().enumerate() {
            let at = [&p(&["jobs", &job.name, "needs"])[..], &[Seg::Index(i)]].concat();
            needed.insert(n.as_str());
            match net.get(n.as_str()) {
                _ if *n == job.name => {} // reported as "needs itself"
                None => cx.err(at, format!("unknown job `{n}` in needs: expected {expected}")),
                Some((_, false)) => cx.err(
                    at,
                    format!("job `{n}` in needs is not a service: expected {expected}, or give `{n}` `service: true`"),
                ),
                Some(&(svc_net, true)) if !same_network(own_net, svc_net) => cx.err(
                    at,
                    format!(
                        "job `{}` (network `{}`) cannot reach service `{n}` (network `{}`): a job that needs a service must be on its network; give both the same `container.network` (`host` or a network of `networks:`)",
                        job.name,
                        own_net.as_str(),
                        svc_net.as_str()
                    ),
                ),
                Some(_) => {}
            }
        }
        for (i, d) in job.depends_on.iter().enumerate() {
            if services.contains(d.as_str()) {
                let at = [&p(&["jobs", &job.name, "depends_on"])[..], &[Seg::Index(i)]].concat();
                cx.err(at, format!("`{d}` in depends_on is a service, which never completes before the runs that need it: list it in `needs` instead"));
            }
        }
    }
    for job in jobs {
        if services.contains(job.name.as_str()) && !needed.contains(job.name.as_str()) {
            cx.key_err(
                p(&["jobs", &job.name, "service"]),
                format!("service `{}` is needed by no job: list it in the `needs` of the jobs that talk to it, or remove `service: true`", job.name),
            );
        }
    }
}

/// 4249672965 as `4,249,672,965`.
fn group_digits(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Fills placeholders in a scalar; reports the expansion along with any error.
fn expand_scalar(s: &Scalar, vars: &Vars) -> (String, String) {
    let raw = s.text();
    match s {
        Scalar::Str(t) => {
            let pieces = expand::parse_template(t);
            let filled = expand::fill(&pieces, vars);
            let shown = if filled != raw {
                format!("`{raw}` expands to `{filled}`: ")
            } else {
                String::new()
            };
            (filled, shown)
        }
        _ => (raw, String::new()),
    }
}

fn count(cx: &mut Ctx, path: YPath, what: &str, s: &Scalar, vars: &Vars) -> Option<u64> {
    if let Scalar::Float(f) = s {
        cx.err(
            path,
            format!("invalid {what} `{f}`: expected a whole number"),
        );
        return None;
    }
    let (text, shown) = expand_scalar(s, vars);
    units::parse_count(&text, what)
        .map_err(|e| cx.err(path, format!("{shown}{e}")))
        .ok()
}

/// A count of whole GPUs: 0 says "none", as leaving it out does.
fn gpu_count(cx: &mut Ctx, path: YPath, s: &Scalar, vars: &Vars) -> Option<u32> {
    let (text, shown) = expand_scalar(s, vars);
    match text.trim().parse::<i64>() {
        Ok(0) => Some(0),
        Ok(n) if n < 0 => {
            cx.err(path, format!("{shown}gpus `{n}` must be 0 (none) or more"));
            None
        }
        _ => count(cx, path, "gpus", s, vars).and_then(|n| u32::try_from(n).ok()),
    }
}

fn size(cx: &mut Ctx, path: YPath, s: &SizeValue, vars: &Vars) -> Option<u64> {
    let (text, shown) = expand_scalar(&s.0, vars);
    let scalar = match &s.0 {
        Scalar::Str(_) => Scalar::Str(text),
        other => other.clone(),
    };
    units::parse_size(&scalar)
        .map_err(|e| cx.err(path, format!("{shown}{e}")))
        .ok()
}

fn id_list(cx: &mut Ctx, path: YPath, l: &IdList) -> Option<CpuList> {
    let list = match l {
        IdList::Ids(ids) => CpuList::from_ids(ids.iter().copied()),
        IdList::Text(s) => match CpuList::parse(&s.text()) {
            Ok(l) => l,
            Err(e) => {
                cx.err(path, e.to_string());
                return None;
            }
        },
    };
    if list.is_empty() {
        cx.err(path, "empty list: expected ids like \"0-3\" or [0, 1]");
        return None;
    }
    Some(list)
}

fn resources(cx: &mut Ctx, jc: &JobCx, r: &super::raw::RawResources, vars: &Vars) -> Resources {
    let at = |k: &[&str]| jc.at(&[&["resources"][..], k].concat());
    let cpuset = r.cpuset.as_ref().and_then(|c| match c {
        IdList::Text(s) => {
            let (text, _) = expand_scalar(s, vars);
            id_list(cx, at(&["cpuset"]), &IdList::Text(Scalar::Str(text)))
        }
        ids => id_list(cx, at(&["cpuset"]), ids),
    });
    let cpus = match (&r.cpus, &cpuset) {
        (Some(c), _) => count(cx, at(&["cpus"]), "cpus", &c.0, vars)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        (None, Some(set)) => set.len() as u32,
        (None, None) => 1,
    };
    if let (Some(set), Some(_)) = (&cpuset, &r.cpus) {
        if set.len() as u32 != cpus {
            cx.err(
                at(&["cpuset"]),
                format!(
                    "cpuset `{set}` has {} CPUs but cpus is {cpus}: give one, or make them agree",
                    set.len()
                ),
            );
        }
    }
    let memory = r
        .memory
        .as_ref()
        .and_then(|m| size(cx, at(&["memory"]), m, vars));
    let numa = numa(cx, jc, r.numa.as_ref());
    let cpu_quota = r.cpu_quota.as_ref().and_then(|FloatValue(q)| {
        let (text, shown) = expand_scalar(q, vars);
        units::parse_positive(&text, "cpu_quota")
            .map_err(|e| cx.err(at(&["cpu_quota"]), format!("{shown}{e}")))
            .ok()
    });
    let pids = r
        .pids
        .as_ref()
        .and_then(|CountValue(v)| count(cx, at(&["pids"]), "pids", v, vars))
        .unwrap_or(DEFAULT_PIDS);
    let disk = r
        .disk
        .as_ref()
        .and_then(|v| size(cx, at(&["disk"]), v, vars));
    let files = r
        .files
        .as_ref()
        .and_then(|CountValue(v)| count(cx, at(&["files"]), "files", v, vars));
    let gpus = r
        .gpus
        .as_ref()
        .and_then(|CountValue(v)| gpu_count(cx, at(&["gpus"]), v, vars));
    let io = io(cx, jc, r.io.as_ref(), vars);
    let rlimits = rlimits(cx, jc, r, vars);
    Resources {
        cpus,
        cpuset,
        memory,
        numa,
        cpu_quota,
        pids,
        io,
        disk,
        files,
        gpus: gpus.unwrap_or(0),
        rlimits,
    }
}

/// `resources.numa`: the policy, and the nodes where it takes them.
fn numa(cx: &mut Ctx, jc: &JobCx, n: Option<&super::raw::RawNuma>) -> Numa {
    let at = |k: &[&str]| jc.at(&[&["resources"][..], k].concat());
    match n {
        None => Numa::Local,
        Some(n) => {
            let nodes = n
                .nodes
                .as_ref()
                .and_then(|l| id_list(cx, at(&["numa", "nodes"]), l));
            match (n.policy, n.nodes.is_some()) {
                (None | Some(NumaPolicy::Local), false) => Numa::Local,
                (Some(NumaPolicy::Spread), false) => Numa::Spread,
                (
                    Some(p @ (NumaPolicy::Bind | NumaPolicy::Preferred | NumaPolicy::Interleave)),
                    false,
                ) => {
                    cx.err(at(&["numa", "policy"]), format!("policy `{}` needs `nodes`: expected `nodes: [0]` with it, or policy local or spread", policy_word(p)));
                    Numa::Local
                }
                (Some(p @ (NumaPolicy::Local | NumaPolicy::Spread)), true) => {
                    cx.err(at(&["numa", "policy"]), format!("policy `{}` does not take `nodes`: expected bind, preferred or interleave with nodes", policy_word(p)));
                    Numa::Local
                }
                (p, true) => Numa::Nodes {
                    nodes: nodes.unwrap_or_default(),
                    policy: match p {
                        Some(NumaPolicy::Preferred) => MemPolicy::Preferred,
                        Some(NumaPolicy::Interleave) => MemPolicy::Interleave,
                        _ => MemPolicy::Bind,
                    },
                },
            }
        }
    }
}

/// `resources.io`: throttles and the device they apply to.
fn io(cx: &mut Ctx, jc: &JobCx, io: Option<&super::raw::RawIo>, vars: &Vars) -> Io {
    let at = |k: &[&str]| jc.at(&[&["resources"][..], k].concat());
    match io {
        None => Io::default(),
        Some(io) => Io {
            read_bps: io
                .read_bps
                .as_ref()
                .and_then(|v| size(cx, at(&["io", "read_bps"]), v, vars)),
            write_bps: io
                .write_bps
                .as_ref()
                .and_then(|v| size(cx, at(&["io", "write_bps"]), v, vars)),
            read_iops: io
                .read_iops
                .as_ref()
                .and_then(|v| count(cx, at(&["io", "read_iops"]), "read_iops", &v.0, vars)),
            write_iops: io
                .write_iops
                .as_ref()
                .and_then(|v| count(cx, at(&["io", "write_iops"]), "write_iops", &v.0, vars)),
            device: io.device.as_ref().map(|d| cx.base.join(d)),
        },
    }
}

/// `resources.rlimits`: known names only, `unlimited` allowed, and the
/// default `nofile` unless one is given.
fn rlimits(
    cx: &mut Ctx,
    jc: &JobCx,
    r: &super::raw::RawResources,
    vars: &Vars,
) -> Vec<(String, u64)> {
    let at = |k: &[&str]| jc.at(&[&["resources"][..], k].concat());
    let mut rlimits: Vec<(String, u64)> = Vec::new();
    for (k, CountValue(v)) in r.rlimits.iter().flat_map(|m| m.0.iter()) {
        let path = at(&["rlimits", k]);
        if !RLIMITS.contains(&k.as_str()) {
            cx.key_err(
                path,
                format!(
                    "unknown rlimit `{k}`: expected one of {}",
                    RLIMITS.join(", ")
                ),
            );
            continue;
        }
        let value = match v {
            Scalar::Str(s) if s.trim() == "unlimited" => Some(u64::MAX),
            // 0 is a real limit here (core: 0 disables core dumps).
            Scalar::Int(0) => Some(0),
            _ => count(cx, path, k, v, vars),
        };
        if let Some(value) = value {
            rlimits.push((k.clone(), value));
        }
    }
    if !rlimits.iter().any(|(k, _)| k == "nofile") {
        rlimits.push(("nofile".into(), DEFAULT_NOFILE));
    }
    rlimits
}

fn policy_word(p: NumaPolicy) -> &'static str {
    match p {
        NumaPolicy::Local => "local",
        NumaPolicy::Spread => "spread",
        NumaPolicy::Bind => "bind",
        NumaPolicy::Preferred => "preferred",
        NumaPolicy::Interleave => "interleave",
    }
}

/// Reports each dependency cycle once, at the depends_on of its first job.
fn cycles(cx: &mut Ctx, jobs: &[Job]) {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; jobs.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        jobs: &[Job],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        found: &mut Vec<Vec<usize>>,
    ) {
        state[i] = 1;
        stack.push(i);
        for d in jobs[i].depends_on.iter().chain(&jobs[i].needs) {
            let Some(&j) = index.get(d.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported as "depends on itself"
            }
            match state[j] {
                0 => visit(j, jobs, index, state, stack, found),
                1 => {
                    let start = stack.iter().position(|&s| s == j).expect("on stack");
                    found.push(stack[start..].to_vec());
                }
                _ => {}
            }
        }
        stack.pop();
        state[i] = 2;
    }
    let mut found = Vec::new();
    for i in 0..jobs.len() {
        if state[i] == 0 {
            visit(i, jobs, &index, &mut state, &mut stack, &mut found);
        }
    }
    for cycle in found {
        let first = cycle[0];
        let names: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&first))
            .map(|&i| jobs[i].name.as_str())
            .collect();
        let root = cx.root;
        let key = match jobs[first].depends_on.is_empty() {
            true => "needs",
            false => "depends_on",
        };
        let own_has = yaml::get(root, &p(&["jobs", &jobs[first].name, key])).is_some();
        let path = if own_has {
            p(&["jobs", &jobs[first].name, key])
        } else {
            p(&["jobs", &jobs[first].name])
        };
        cx.err(
            path,
            format!(
                "dependency cycle `{}`: expected depends_on and needs to form no loop",
                names.join(" -> ")
            ),
        );
    }
}
