//! The event loop: start what fits, wait for exits and deadlines, account,
//! record, free, repeat. One thread. What to start and what to cancel is
//! `sched`'s; the machine is behind the `Launcher` seam: `host::Host`
//! starts real containers in real cgroups and watches them through pidfds
//! and Ctrl-C through a signalfd, all in one poll(2); tests script one.

pub mod cpulock;
mod host;
pub mod journal;

use crate::account::Usage;
use crate::cgroup::{self, Hierarchy};
use crate::container::ids::IdSource;
use crate::cpulist::CpuList;
use crate::fsx::PathError;
use crate::plan::{Allocator, Placement};
use crate::sched::Scheduler;
use crate::spec::Run;
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How a run ended, in Slurm's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
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
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "COMPLETED" => State::Completed,
            "FAILED" => State::Failed,
            "TIMEOUT" => State::Timeout,
            "OUT_OF_MEMORY" => State::OutOfMemory,
            "CANCELLED" => State::Cancelled,
            "ERROR" => State::Error,
            _ => return None,
        })
    }
}

/// Everything measured about one run: one row of runs.csv.
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
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub wall_time: Duration,
    pub usage: Usage,
    pub memory_limit: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub state: State,
    pub termination_reason: String,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

/// What the loop tells its one owner (progress display and CSV writer).
// One event at a time, moved once: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event<'a> {
    Started {
        run: &'a Run,
        placement: &'a Placement,
    },
    Finished(Record),
    /// The rows of the runs finished so far may be synced to disk now: the
    /// loop has started what the freed CPUs allow (and does so once more
    /// before it returns).
    Flush,
}

/// Where a run's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// `logs/<key>.out` and `.err` below this directory, capped at the run's log_limit.
    Logs(PathBuf),
    /// The runner's own stdout and stderr (packrun exec).
    Inherit,
}

/// How to run a set of runs.
pub struct Options {
    pub hierarchy: Hierarchy,
    /// Top cgroup name: "packrun" for a batch; empty for `packrun exec`,
    /// whose group `packrun-<batch>` sits at the top itself.
    pub cgroup_base: String,
    /// Batch cgroup name below the base (unique per packrun process).
    pub batch_id: String,
    pub output: Output,
    /// Per-run writable dirs are created under `<scratch>/<key>/`.
    pub scratch: PathBuf,
    pub max_parallel: Option<usize>,
    /// The machine-wide claims file; None only in tests that own the machine.
    pub cpu_lock: Option<PathBuf>,
    /// One run only (`packrun exec`): its cgroup is `<base>/<batch_id>`
    /// itself, one level less to make and remove in every hierarchy.
    pub single: bool,
    /// Where each run's user namespace takes its host ids from.
    pub ids: IdSource,
}

/// How often a batch waiting for CPUs that another packrun holds looks again.
const FOREIGN_RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("cannot set up the batch's cgroups: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("cannot watch signals: {0}")]
    Signals(nix::Error),
    #[error("a single-run batch was given {0} runs")]
    Single(usize),
    #[error("poll failed: {0}")]
    Poll(nix::Error),
}

/// What the loop ended with.
#[derive(Debug, Default)]
pub struct Outcome {
    pub interrupted: bool,
    pub all_completed: bool,
}

/// What the loop needs of the machine: to start, watch, stop and measure
/// runs. `host::Host` is the real one; the tests script one.
pub trait Launcher {
    /// Starts run `index` on `placement`. A run that cannot start is its
    /// ERROR record (the launcher cleaned up after it).
    fn start(&mut self, index: usize, run: &Run, placement: &Placement) -> Result<(), Box<Record>>;
    /// Waits until something happens to a started run, or a signal comes,
    /// or `until` passes (None: no limit); returns what happened.
    fn wait(&mut self, until: Option<Instant>) -> Result<Vec<Happened>, RunError>;
    /// The launcher's clock.
    fn now(&self) -> Instant;
    /// The CPU time run `index` used so far.
    fn cpu_time(&mut self, index: usize) -> Result<Duration, String>;
    /// Notes run `index`'s memory and pids where the kernel keeps no peak;
    /// false when it keeps them (no more samples needed).
    fn sample(&mut self, index: usize) -> bool;
    /// Starts killing run `index` (without waiting): `wait` reports it ended.
    fn kill(&mut self, index: usize) -> Result<(), String>;
    /// Run `index` ended: its record. `killed_for`, when set, is its state
    /// and the reason (a limit, an interrupt).
    fn collect(&mut self, index: usize, run: &Run, killed_for: Option<(State, String)>) -> Record;
    /// Work nothing waits on (removing emptied cgroups), done between passes.
    fn tidy(&mut self);
}

/// What `Launcher::wait` saw.
#[derive(Debug)]
pub enum Happened {
    /// Run `index` ended: every process of it is gone (`collect` it).
    Ended(usize),
    /// Run `index` failed while setting up: its ERROR record (cleaned up).
    SetupFailed(usize, Box<Record>),
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// How often memory and pids are sampled where the kernel keeps no peak
/// (cgroup v2 before 5.19 has no memory.peak, before 6.1 no pids.peak).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How soon a kill that failed is tried again.
const KILL_RETRY: Duration = Duration::from_millis(50);

/// A run the loop started, with its deadlines.
struct Live {
    index: usize,
    placement: Placement,
    deadline: Option<Instant>,
    next_cpu_check: Option<Instant>,
    next_sample: Option<Instant>,
    /// When to try a failed kill again, and what the last try said.
    kill_retry: Option<Instant>,
    kill_error: Option<String>,
    killed_for: Option<(State, String)>,
}

impl Live {
    fn new(index: usize, run: &Run, placement: Placement, now: Instant) -> Live {
        let cpus = placement.cpus.len();
        Live {
            index,
            deadline: run.time_limit.map(|d| now + d),
            next_cpu_check: run
                .cpu_time_limit
                .map(|d| now + cpu_check_interval(d.as_nanos() as u64, cpus)),
            next_sample: Some(now + SAMPLE_EVERY),
            kill_retry: None,
            kill_error: None,
            killed_for: None,
            placement,
        }
    }

    fn wake(&self) -> Option<Instant> {
        [
            self.deadline.filter(|_| self.killed_for.is_none()),
            self.next_cpu_check.filter(|_| self.killed_for.is_none()),
            self.next_sample,
            self.kill_retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Kills it for `state` and `reason` (the first reason stays); a kill
    /// that fails is tried again soon.
    fn kill(&mut self, launcher: &mut dyn Launcher, state: State, reason: String) {
        if self.killed_for.is_none() {
            self.killed_for = Some((state, reason));
        }
        match launcher.kill(self.index) {
            Ok(()) => self.kill_retry = None,
            Err(e) => {
                self.kill_retry = Some(launcher.now() + KILL_RETRY);
                self.kill_error = Some(e);
            }
        }
    }
}

/// Runs `runs`, skipping those whose key is in `done` (with their recorded
/// state, for depends_on), in real containers and cgroups. Emits an event
/// per start and per finish.
pub fn execute(
    runs: &[Run],
    mut alloc: Allocator,
    opts: &Options,
    done: &HashMap<String, State>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, RunError> {
    if opts.single && runs.len() > 1 {
        return Err(RunError::Single(runs.len()));
    }
    let mut host = host::Host::new(opts, runs)?;
    let mut lock = match &opts.cpu_lock {
        Some(path) => Some(cpulock::CpuLock::new(path)?),
        None => None,
    };
    drive(
        runs,
        &mut alloc,
        &mut host,
        lock.as_mut(),
        opts.max_parallel,
        done,
        on_event,
    )
}

/// The loop itself, on any launcher: starts what `sched` says, watches
/// deadlines and CPU-time budgets, kills, collects, records, repeats.
/// `lock`: the machine-wide CPU claims shared with other packruns.
pub fn drive(
    runs: &[Run],
    alloc: &mut Allocator,
    launcher: &mut dyn Launcher,
    mut lock: Option<&mut cpulock::CpuLock>,
    max_parallel: Option<usize>,
    done: &HashMap<String, State>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, RunError> {
    let was_done = |i: usize| done.get(&runs[i].key).map(|s| *s == State::Completed);
    let mut sched = Scheduler::new(
        runs,
        crate::plan::place_classes(runs),
        &was_done,
        max_parallel,
    );
    let mut outcome = Outcome {
        all_completed: true,
        ..Outcome::default()
    };
    let mut live: Vec<Live> = Vec::new();
    // CPUs other packrun processes hold, as last seen (reserved in `alloc`).
    let mut foreign = CpuList::new();
    fn report(outcome: &mut Outcome, on_event: &mut dyn FnMut(Event<'_>), rec: Record) {
        if rec.state != State::Completed {
            outcome.all_completed = false;
        }
        on_event(Event::Finished(rec));
    }

    loop {
        // Start, in file order, every pending run that fits now (backfill).
        let mut blocked_by_others = false;
        let mut placed_any = false;
        if !outcome.interrupted && sched.pending() > 0 {
            let decided = match lock.as_deref_mut() {
                // Other packrun processes' CPUs are off limits while we choose.
                Some(lock) => {
                    let decided = lock.update(|others| {
                        alloc.unreserve(&foreign);
                        foreign = others.clone();
                        alloc.reserve(&foreign);
                        let d = sched.next(alloc, live.len());
                        let mine = live
                            .iter()
                            .map(|l| &l.placement.cpus)
                            .chain(d.start.iter().map(|(_, p)| &p.cpus))
                            .fold(CpuList::new(), |acc, c| acc.union(c));
                        (mine, d)
                    })?;
                    blocked_by_others = !foreign.is_empty();
                    decided
                }
                None => sched.next(alloc, live.len()),
            };
            for (i, dep) in decided.cancelled {
                let why = format!("dependency `{dep}` did not complete");
                report(
                    &mut outcome,
                    on_event,
                    not_started(&runs[i], State::Cancelled, why),
                );
            }
            placed_any = !decided.start.is_empty();
            for (index, placement) in decided.start {
                let run = &runs[index];
                on_event(Event::Started {
                    run,
                    placement: &placement,
                });
                match launcher.start(index, run, &placement) {
                    Ok(()) => live.push(Live::new(index, run, placement, launcher.now())),
                    Err(rec) => {
                        alloc.release(&placement);
                        sched.finished(index, false);
                        report(&mut outcome, on_event, *rec);
                    }
                }
            }
        }
        on_event(Event::Flush);
        launcher.tidy();
        if live.is_empty() && (sched.pending() == 0 || outcome.interrupted) {
            break;
        }
        if live.is_empty() && placed_any {
            // Every run just placed failed to start (its row is written)
            // and gave its CPUs back: place again before concluding anything.
            continue;
        }
        if live.is_empty() && !blocked_by_others {
            // Nothing runs and nothing pending fits: only possible when the
            // allocator's view is wrong (feasibility is checked before).
            let never = "no placement fits this run on the CPUs packrun may use";
            for i in sched.drain() {
                report(
                    &mut outcome,
                    on_event,
                    not_started(&runs[i], State::Error, never.into()),
                );
            }
            break;
        }

        // Wait for an exit, a deadline, a check or a signal.
        let mut until = live.iter().filter_map(Live::wake).min();
        if blocked_by_others && sched.pending() > 0 {
            let recheck = launcher.now() + FOREIGN_RECHECK;
            until = Some(until.map_or(recheck, |u| u.min(recheck)));
        }
        for happened in launcher.wait(until)? {
            match happened {
                Happened::Interrupted => {
                    outcome.interrupted = true;
                    for l in live.iter_mut() {
                        l.kill(launcher, State::Cancelled, "packrun was interrupted".into());
                    }
                }
                Happened::SetupFailed(index, rec) => {
                    if let Some(k) = live.iter().position(|l| l.index == index) {
                        let l = live.swap_remove(k);
                        alloc.release(&l.placement);
                    }
                    sched.finished(index, false);
                    report(&mut outcome, on_event, *rec);
                }
                Happened::Ended(index) => {
                    let Some(k) = live.iter().position(|l| l.index == index) else {
                        continue;
                    };
                    let l = live.swap_remove(k);
                    alloc.release(&l.placement);
                    let mut rec = launcher.collect(index, &runs[index], l.killed_for);
                    if let Some(e) = l.kill_error {
                        rec.termination_reason
                            .push_str(&format!("; a kill failed first: {e}"));
                    }
                    sched.finished(index, rec.state == State::Completed);
                    report(&mut outcome, on_event, rec);
                }
            }
        }

        // Deadlines, CPU-time budgets, samples and kills to try again.
        let now = launcher.now();
        for l in live.iter_mut() {
            let run = &runs[l.index];
            if l.kill_retry.is_some_and(|t| now >= t) {
                let (state, reason) = l.killed_for.clone().expect("set before a kill");
                l.kill(launcher, state, reason);
            }
            if l.next_sample.is_some_and(|t| now >= t) {
                l.next_sample = launcher.sample(l.index).then_some(now + SAMPLE_EVERY);
            }
            if l.killed_for.is_some() {
                continue;
            }
            if l.deadline.is_some_and(|d| now >= d) {
                let limit = run.time_limit.unwrap_or_default();
                let why = format!("wall time limit {}", humantime::format_duration(limit));
                l.kill(launcher, State::Timeout, why);
                continue;
            }
            if l.next_cpu_check.is_some_and(|t| now >= t) {
                let limit = run.cpu_time_limit.unwrap_or_default();
                match launcher.cpu_time(l.index) {
                    Ok(used) if used >= limit => {
                        let why = format!("cpu time limit {}", humantime::format_duration(limit));
                        l.kill(launcher, State::Timeout, why);
                    }
                    Ok(used) => {
                        let left = (limit - used).as_nanos() as u64;
                        l.next_cpu_check =
                            Some(now + cpu_check_interval(left, l.placement.cpus.len()));
                    }
                    // A budget that cannot be watched is not silently off.
                    Err(e) => {
                        let why =
                            format!("cannot read its CPU time to enforce cpu_time_limit: {e}");
                        l.kill(launcher, State::Error, why);
                    }
                }
            }
        }
    }

    if outcome.interrupted {
        let why = "packrun was interrupted before it started";
        for i in sched.drain() {
            report(
                &mut outcome,
                on_event,
                not_started(&runs[i], State::Cancelled, why.into()),
            );
        }
    }
    on_event(Event::Flush);
    Ok(outcome)
}

/// When to look at a run's CPU time again: not before it could have used up
/// what is left with every CPU busy, and at least every 10 ms near the end.
fn cpu_check_interval(left_ns: u64, cpus: usize) -> Duration {
    let ns = left_ns / cpus.max(1) as u64;
    Duration::from_nanos(ns.clamp(5_000_000, 1_000_000_000))
}

/// A record for a run that never started.
fn not_started(run: &Run, state: State, reason: String) -> Record {
    let now = Utc::now();
    Record {
        key: run.key.clone(),
        job: run.job.clone(),
        params: run.params.clone(),
        rep: run.rep,
        warmup: run.warmup,
        cpus: CpuList::new(),
        mems: CpuList::new(),
        userns: String::new(),
        start_time: now,
        end_time: now,
        wall_time: Duration::ZERO,
        usage: Usage::default(),
        memory_limit: run.resources.memory,
        exit_code: None,
        signal: None,
        state,
        termination_reason: reason,
        stdout: None,
        stderr: None,
    }
}

pub fn signal_name(s: i32) -> &'static str {
    Signal::try_from(s).map(|s| s.as_str()).unwrap_or("unknown")
}
