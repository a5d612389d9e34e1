//! The runs of a batch in a compact form: a run is (job, parameter
//! combination, repetition), 16 bytes; its strings (command, env,
//! hostname, key) are rendered only when it starts or is printed. A job
//! file of a million runs costs tens of megabytes before the first starts.

use super::expand::{run_key, Matrix, Template};
use super::types::{Container, Resources, Run};
use std::path::PathBuf;
use std::time::Duration;

/// One run as indices into its job's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    job: u32,
    combo: u32,
    /// 1-based over warmups and repetitions.
    rep: u32,
    warmup: bool,
}

/// Every run of a batch, in start order.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    jobs: Vec<JobRuns>,
    ids: Vec<Id>,
}

/// The runs of one job: either one ready run (`packrun exec`, tests) or
/// a job file's job with its matrix and repetitions.
#[derive(Debug, Clone)]
pub enum JobRuns {
    One(Box<Run>),
    Expanded(Box<Expanded>),
}

/// A job of a job file, before its runs are rendered.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// Everything runs share, `{job}` filled; the parameters and `{rep}`
    /// are still placeholders in command, env and steps. Its key, params,
    /// rep, workdir and hostname are not used.
    pub proto: Run,
    pub workdir: Option<Template>,
    pub hostname: Template,
    pub matrix: Matrix,
    pub warmup: u32,
    /// Warmups plus repetitions per combination.
    pub reps: u32,
    /// Resources whose fields hold placeholders, per combination (or per
    /// run where `{rep}` is one of them); else the proto's.
    pub resources: ByRun,
}

/// Where a run's resources come from.
#[derive(Debug, Clone, Default)]
pub enum ByRun {
    #[default]
    Job,
    Combo(Vec<Resources>),
    Run(Vec<Resources>),
}

impl Expanded {
    /// The value of placeholder `name` in combination `combo`, rep `rep`
    /// (a parameter this combination does not set is empty; `cpus` and
    /// unknown names stay placeholders).
    pub(super) fn var(&self, combo: usize, rep: u32, name: &str) -> Option<String> {
        if name == "rep" {
            return Some(rep.to_string());
        }
        if name == "job" {
            return Some(self.proto.job.clone());
        }
        match self.matrix.get(combo, name) {
            Some(v) => Some(v.to_string()),
            None => self
                .matrix
                .names
                .iter()
                .any(|n| n == name)
                .then(String::new),
        }
    }

    fn fill(&self, t: &Template, combo: usize, rep: u32) -> Template {
        t.refill(|n| self.var(combo, rep, n))
    }

    fn resources(&self, combo: usize, rep: u32) -> &Resources {
        match &self.resources {
            ByRun::Job => &self.proto.resources,
            ByRun::Combo(v) => &v[combo],
            ByRun::Run(v) => &v[combo * self.reps as usize + rep as usize - 1],
        }
    }
}

/// One run, by reference: what the planner and the run loop ask of a run
/// before it starts, without rendering it.
#[derive(Debug, Clone, Copy)]
pub struct RunRef<'a> {
    job: &'a JobRuns,
    id: Id,
}

impl<'a> RunRef<'a> {
    fn one(&self) -> Option<&'a Run> {
        match self.job {
            JobRuns::One(r) => Some(r),
            JobRuns::Expanded(_) => None,
        }
    }

    /// The run's shared parts (for an expanded job, its proto).
    fn base(&self) -> &'a Run {
        match self.job {
            JobRuns::One(r) => r,
            JobRuns::Expanded(e) => &e.proto,
        }
    }

    pub fn job(&self) -> &'a str {
        &self.base().job
    }

    /// Stable hash of job name, parameters, rep and warmup.
    pub fn key(&self) -> String {
        match self.job {
            JobRuns::One(r) => r.key.clone(),
            JobRuns::Expanded(e) => run_key(
                &e.proto.job,
                e.matrix.combo(self.id.combo as usize),
                self.id.rep,
                self.id.warmup,
            ),
        }
    }

    /// (name, value) of each parameter, in parameter order.
    pub fn params(&self) -> Vec<(&'a str, &'a str)> {
        match self.job {
            JobRuns::One(r) => r
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            JobRuns::Expanded(e) => e.matrix.combo(self.id.combo as usize).collect(),
        }
    }

    pub fn rep(&self) -> u32 {
        self.one().map_or(self.id.rep, |r| r.rep)
    }

    pub fn warmup(&self) -> bool {
        self.one().map_or(self.id.warmup, |r| r.warmup)
    }

    pub fn resources(&self) -> &'a Resources {
        match self.job {
            JobRuns::One(r) => &r.resources,
            JobRuns::Expanded(e) => e.resources(self.id.combo as usize, self.id.rep),
        }
    }

    pub fn estimate(&self) -> Duration {
        self.base().estimate
    }

    pub fn time_limit(&self) -> Option<Duration> {
        self.base().time_limit
    }

    pub fn cpu_time_limit(&self) -> Option<Duration> {
        self.base().cpu_time_limit
    }

    pub fn group(&self) -> Option<&'a str> {
        self.base().group.as_deref()
    }

    pub fn depends_on(&self) -> &'a [String] {
        &self.base().depends_on
    }

    /// Services its runs need.
    pub fn needs(&self) -> &'a [String] {
        &self.base().needs
    }

    /// Whether the job is a service.
    pub fn is_service(&self) -> bool {
        self.base().service.is_some()
    }

    /// Whether the job has steps around its runs.
    pub fn has_steps(&self) -> bool {
        self.base().steps != Default::default()
    }

    /// The container's run-independent parts (its hostname is not rendered).
    pub fn container(&self) -> &'a Container {
        &self.base().container
    }

    /// Whether `other` is a run of the same job and parameter set.
    pub fn same_set(&self, other: &RunRef) -> bool {
        match (self.job, other.job) {
            (JobRuns::Expanded(a), JobRuns::Expanded(b)) if std::ptr::eq(a, b) => a
                .matrix
                .same(self.id.combo as usize, other.id.combo as usize),
            _ => self.job() == other.job() && self.params() == other.params(),
        }
    }

    /// The run with every placeholder but `{cpus}` filled.
    pub fn render(&self) -> Run {
        let e = match self.job {
            JobRuns::One(r) => return (**r).clone(),
            JobRuns::Expanded(e) => e,
        };
        let (combo, rep) = (self.id.combo as usize, self.id.rep);
        let fill = |t: &Template| e.fill(t, combo, rep);
        let mut run = e.proto.clone();
        run.key = self.key();
        run.params = self
            .params()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run.rep = rep;
        run.warmup = self.id.warmup;
        run.command = e.proto.command.iter().map(fill).collect();
        run.env = e
            .proto
            .env
            .iter()
            .map(|(k, t)| (k.clone(), fill(t)))
            .collect();
        for argv in [
            &mut run.steps.setup,
            &mut run.steps.prepare,
            &mut run.steps.conclude,
            &mut run.steps.cleanup,
        ]
        .into_iter()
        .flatten()
        {
            *argv = argv.iter().map(fill).collect();
        }
        run.workdir = e
            .workdir
            .as_ref()
            .map(|w| PathBuf::from(fill(w).render(None)));
        run.container.hostname = fill(&e.hostname).render(None);
        run.resources = self.resources().clone();
        run
    }
}

impl JobRuns {
    /// How many runs this job has.
    pub fn len(&self) -> usize {
        match self {
            JobRuns::One(_) => 1,
            JobRuns::Expanded(e) => e.matrix.len() * e.reps as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts every run of the job shares.
    pub fn base(&self) -> &Run {
        match self {
            JobRuns::One(r) => r,
            JobRuns::Expanded(e) => &e.proto,
        }
    }

    pub fn base_mut(&mut self) -> &mut Run {
        match self {
            JobRuns::One(r) => r,
            JobRuns::Expanded(e) => &mut e.proto,
        }
    }

    /// The most GPUs any run of this job asks for.
    pub fn max_gpus(&self) -> u32 {
        match self {
            JobRuns::One(r) => r.resources.gpus,
            JobRuns::Expanded(e) => match &e.resources {
                ByRun::Job => e.proto.resources.gpus,
                ByRun::Combo(v) | ByRun::Run(v) => v.iter().map(|r| r.gpus).max().unwrap_or(0),
            },
        }
    }

    /// Whether the job gives a working directory.
    pub fn has_workdir(&self) -> bool {
        match self {
            JobRuns::One(r) => r.workdir.is_some(),
            JobRuns::Expanded(e) => e.workdir.is_some(),
        }
    }

    pub fn set_workdir(&mut self, dir: PathBuf) {
        match self {
            JobRuns::One(r) => r.workdir = Some(dir),
            JobRuns::Expanded(e) => e.workdir = Some(Template::literal(&dir.to_string_lossy())),
        }
    }
}

impl Runs {
    /// Adds a job's runs in expansion order: combination, then rep.
    pub fn push(&mut self, runs: JobRuns) {
        let job = self.jobs.len() as u32;
        match &runs {
            JobRuns::One(r) => self.ids.push(Id {
                job,
                combo: 0,
                rep: r.rep,
                warmup: r.warmup,
            }),
            JobRuns::Expanded(e) => {
                self.ids.reserve(e.matrix.len() * e.reps as usize);
                for combo in 0..e.matrix.len() as u32 {
                    for rep in 1..=e.reps {
                        self.ids.push(Id {
                            job,
                            combo,
                            rep,
                            warmup: rep <= e.warmup,
                        });
                    }
                }
            }
        }
        self.jobs.push(runs);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The counters any job of the batch chose: runs.csv's counter columns.
    pub fn counters(&self) -> crate::counters::Chosen {
        self.jobs
            .iter()
            .fold(Default::default(), |all, j| all.union(j.base().counters))
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, i: usize) -> RunRef<'_> {
        let id = self.ids[i];
        RunRef {
            job: &self.jobs[id.job as usize],
            id,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = RunRef<'_>> + '_ {
        (0..self.ids.len()).map(|i| self.get(i))
    }

    /// Every run rendered: for a few runs (tests, `packrun exec`).
    pub fn to_vec(&self) -> Vec<Run> {
        self.iter().map(|r| r.render()).collect()
    }

    /// Run `i` rendered.
    pub fn render(&self, i: usize) -> Run {
        self.get(i).render()
    }

    /// The jobs' runs (to fill in what an image gives).
    pub fn jobs_mut(&mut self) -> impl Iterator<Item = &mut JobRuns> {
        self.jobs.iter_mut()
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobRuns> {
        self.jobs.iter()
    }

    /// Puts the runs in the order `perm` gives (run `perm[k]` becomes run `k`).
    pub fn permute(&mut self, perm: &[usize]) {
        self.ids = perm.iter().map(|&i| self.ids[i]).collect();
    }

    /// Keeps the runs `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, RunRef) -> bool) {
        let ids = std::mem::take(&mut self.ids);
        let kept: Vec<Id> = ids
            .iter()
            .enumerate()
            .filter(|(i, id)| {
                keep(
                    *i,
                    RunRef {
                        job: &self.jobs[id.job as usize],
                        id: **id,
                    },
                )
            })
            .map(|(_, id)| *id)
            .collect();
        self.ids = kept;
    }
}

/// Ready runs, each its own job (`packrun exec`, tests).
impl From<Vec<Run>> for Runs {
    fn from(runs: Vec<Run>) -> Runs {
        let mut out = Runs::default();
        for r in runs {
            out.push(JobRuns::One(Box::new(r)));
        }
        out
    }
}
