//! The event loop: start what fits, wait for exits and deadlines, account,
//! record, free, repeat. One thread. What to start and what to cancel is
//! `sched`'s; the machine is behind the `Launcher` seam: `host::Host`
//! starts real containers in real cgroups and watches them through pidfds
//! and Ctrl-C through a signalfd, all in one poll(2); tests script one.

pub mod cpulock;
mod gpus;
mod host;
pub mod journal;
mod logs;
mod ready;
mod teardown;

use crate::account::Usage;
use crate::cgroup::{self, Hierarchy};
use crate::container::ids::IdSource;
use crate::cpulist::CpuList;
use crate::fsx::PathError;
use crate::jobfile::{Network, Run, Runs};
use crate::plan::{Allocator, Placement};
use crate::results::{Record, State};
use crate::sched::{Cancel, Scheduler};
use chrono::Utc;
use nix::sys::signal::Signal;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the loop tells its one owner (progress display and CSV writer).
// One event at a time, moved once: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event<'a> {
    Started {
        run: &'a Run,
        placement: &'a Placement,
    },
    Finished(Record),
    /// A step around a run ended (its row of steps.csv).
    Step(crate::results::StepRecord),
    /// Something the user should know that is no run's row (a finished
    /// run's cgroup that could not be removed).
    Note(String),
    /// The rows of the runs finished so far may be synced to disk now: the
    /// loop has started what the freed CPUs allow. At most every
    /// FLUSH_EVERY while runs go, whenever none does, and once more before
    /// it returns.
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
    /// The disk budget of a run whose job gives none (`resources.disk`):
    /// its share of the free space under the results (see
    /// `batch::disk_share`); None: no budget.
    pub disk_default: Option<u64>,
    /// The machine's GPUs when the batch asks for any (else empty: runs
    /// then get no device rules), and the root their device nodes are
    /// below (`/`; a tree like it in tests).
    pub gpus: Vec<crate::gpus::Gpu>,
    pub gpu_root: PathBuf,
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
    #[error("cannot set up the private networks: {0}")]
    Network(std::io::Error),
}

/// What a run has on the disk under the results: the blocks allocated to
/// its writable dirs and its stdout and stderr logs, and how many files
/// and directories its writable dirs hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskUse {
    pub bytes: u64,
    pub files: u64,
    /// How long finding that out took (the walk of its writable dirs).
    pub took: Duration,
}

/// Why the launcher could not do what the loop asked of a started run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// It is not running (any more): nothing to read or kill.
    #[error("not running")]
    NotRunning,
    /// Its cgroup could not be read or killed, or its init signalled.
    #[error("{0}")]
    Failed(String),
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
    /// Starts run `index` on `placement`: Ok(true) when its job began now,
    /// Ok(false) when steps come first (`Happened::JobStarted` follows). A
    /// run that cannot start is its ERROR record (the launcher cleaned up).
    fn start(
        &mut self,
        index: usize,
        run: &Run,
        placement: &Placement,
    ) -> Result<bool, Box<Record>>;
    /// Waits until something happens to a started run, or a signal comes,
    /// or `until` passes (None: no limit); returns what happened.
    fn wait(&mut self, until: Option<Instant>) -> Result<Vec<Happened>, RunError>;
    /// The launcher's clock.
    fn now(&self) -> Instant;
    /// The CPU time run `index` used so far.
    fn cpu_time(&mut self, index: usize) -> Result<Duration, LaunchError>;
    /// Notes run `index`'s memory and pids where the kernel keeps no peak;
    /// false when it keeps them (no more samples needed).
    fn sample(&mut self, index: usize) -> bool;
    /// Starts killing run `index` (without waiting): `wait` reports it ended.
    fn kill(&mut self, index: usize) -> Result<(), LaunchError>;
    /// Asks run `index` to end: SIGTERM to its job (a service told to
    /// stop); `wait` reports it ended.
    fn terminate(&mut self, index: usize) -> Result<(), LaunchError>;
    /// Run `index` ended: its record. `killed_for`, when set, is its state
    /// and the reason (a limit, an interrupt). None: steps after the job
    /// run now, and `Ended` comes again when they are over.
    fn collect(
        &mut self,
        index: usize,
        run: &Run,
        killed_for: Option<(State, String)>,
    ) -> Option<Record>;
    /// The disk budget of runs whose job gives none (see Options::disk_default).
    fn disk_default(&self) -> Option<u64>;
    /// What run `index` has on disk now; None: nothing of it is on disk
    /// (no writable dirs, no log files), so no budget to watch.
    fn disk_use(&mut self, index: usize) -> Option<Result<DiskUse, LaunchError>>;
    /// Work nothing waits on (removing emptied cgroups), done between passes.
    /// Returns what to tell (a group that could not be removed).
    fn tidy(&mut self) -> Vec<String>;
    /// Run `index`'s own IPv4 address on its private network, from its
    /// start until it is collected: what other runs on that network
    /// reach it at. None for a run on no private network.
    fn addr(&self, _index: usize) -> Option<std::net::Ipv4Addr> {
        None
    }
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
    /// Run `index`'s job began after its steps: its limits count from now.
    JobStarted(usize),
    /// A step around a run ended.
    Step(crate::results::StepRecord),
    /// Service run `index` is ready (its port accepts connections, or it
    /// has no `ready` and its command started).
    Ready(usize),
    /// Service run `index` was not ready in time: why.
    NotReady(usize, String),
}

/// How often memory and pids are sampled where the kernel keeps no peak
/// (cgroup v2 before 5.19 has no memory.peak, before 6.1 no pids.peak).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How long the rows of ended runs may wait for their fdatasync: what a
/// power loss could take from runs.csv's tail (a crash of packrun takes
/// nothing: each row is written when its run ends).
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// How soon a kill that failed is tried again.
const KILL_RETRY: Duration = Duration::from_millis(50);

/// The write rate a disk check assumes: the next check comes when a run
/// writing this fast could have used up what is left of its budget.
const DISK_RATE: u64 = 1 << 30;
/// Files and directories per second a check assumes (see DISK_RATE).
const FILES_RATE: u64 = 100_000;
/// Disk checks come at least this often, and at most this often near the end of a budget.
const DISK_CHECK_MAX: Duration = Duration::from_secs(1);
const DISK_CHECK_MIN: Duration = Duration::from_millis(5);
/// A check waits at least this many times as long as the last one took,
/// so that watching a huge tree takes at most 1/20 of a CPU.
const DISK_CHECK_COST: u32 = 20;

/// A run the loop started, with its deadlines.
struct Live {
    index: usize,
    /// The run, rendered when it started.
    run: Run,
    placement: Placement,
    deadline: Option<Instant>,
    next_cpu_check: Option<Instant>,
    next_sample: Option<Instant>,
    /// Its disk budget (bytes, files), and when to look at its use again.
    disk: Option<(u64, Option<u64>)>,
    next_disk_check: Option<Instant>,
    /// When to try a failed kill again, and what the last try said.
    kill_retry: Option<Instant>,
    kill_error: Option<LaunchError>,
    killed_for: Option<(State, String)>,
    /// A service told to stop: when SIGKILL follows the SIGTERM.
    stop_deadline: Option<Instant>,
}

impl Live {
    fn new(
        index: usize,
        run: Run,
        placement: Placement,
        now: Instant,
        began: bool,
        disk_default: Option<u64>,
    ) -> Live {
        let disk = match (run.resources.disk.or(disk_default), run.resources.files) {
            (None, None) => None,
            (bytes, files) => Some((bytes.unwrap_or(u64::MAX), files)),
        };
        let mut l = Live {
            index,
            run,
            deadline: None,
            next_cpu_check: None,
            next_sample: None,
            disk,
            next_disk_check: None,
            kill_retry: None,
            kill_error: None,
            killed_for: None,
            stop_deadline: None,
            placement,
        };
        if began {
            l.begin(now);
        }
        l
    }

    /// The job began: its limits count from `now`.
    fn begin(&mut self, now: Instant) {
        let cpus = self.placement.cpus.len();
        self.deadline = self.run.time_limit.map(|d| now + d);
        self.next_cpu_check = self
            .run
            .cpu_time_limit
            .map(|d| now + cpu_check_interval(d.as_nanos() as u64, cpus));
        self.next_sample = Some(now + SAMPLE_EVERY);
        self.next_disk_check = self
            .disk
            .map(|(bytes, files)| now + disk_check_interval(bytes, files, DiskUse::default()));
    }

    fn wake(&self) -> Option<Instant> {
        [
            self.deadline.filter(|_| self.killed_for.is_none()),
            self.next_cpu_check.filter(|_| self.killed_for.is_none()),
            self.next_disk_check.filter(|_| self.killed_for.is_none()),
            self.next_sample,
            self.kill_retry,
            self.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Stops a service: SIGTERM now, SIGKILL after its grace period. It
    /// is COMPLETED when it ends so (unless it was killed for a limit
    /// before).
    fn stop(&mut self, launcher: &mut dyn Launcher) {
        if self.killed_for.is_some() {
            return;
        }
        let reason = "stopped by packrun (SIGTERM) after the last run that needs it ended";
        self.killed_for = Some((State::Completed, reason.into()));
        let grace = self
            .run
            .service
            .as_ref()
            .map_or(Duration::ZERO, |s| s.stop_grace);
        match launcher.terminate(self.index) {
            Ok(()) | Err(LaunchError::NotRunning) => {
                self.stop_deadline = Some(launcher.now() + grace);
            }
            Err(e) => {
                self.killed_for = Some((
                    State::Completed,
                    format!("{reason}; SIGTERM failed ({e}), so SIGKILL"),
                ));
                self.kill(launcher, State::Completed, String::new());
            }
        }
    }

    /// A stopped service still going after its grace period: SIGKILL.
    fn stop_overdue(&mut self, launcher: &mut dyn Launcher) {
        self.stop_deadline = None;
        let grace = self
            .run
            .service
            .as_ref()
            .map_or(Duration::ZERO, |s| s.stop_grace);
        if let Some((_, reason)) = &mut self.killed_for {
            reason.push_str(&format!(
                "; still running after the {} grace period: SIGKILL",
                humantime::format_duration(grace)
            ));
        }
        self.kill(launcher, State::Completed, String::new());
    }

    /// Kills it for `state` and `reason` (the first reason stays); a kill
    /// that fails is tried again soon.
    fn kill(&mut self, launcher: &mut dyn Launcher, state: State, reason: String) {
        if self.killed_for.is_none() {
            self.killed_for = Some((state, reason));
        }
        match launcher.kill(self.index) {
            // Gone already: its end is on its way.
            Ok(()) | Err(LaunchError::NotRunning) => self.kill_retry = None,
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
    runs: &Runs,
    mut alloc: Allocator,
    opts: &Options,
    done: &HashMap<String, State>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, RunError> {
    if opts.single && runs.len() > 1 {
        return Err(RunError::Single(runs.len()));
    }
    let mut host = host::Host::new(opts, runs, done)?;
    let mut lock = match &opts.cpu_lock {
        Some(path) => Some(cpulock::Claims {
            cpus: cpulock::CpuLock::new(path)?,
            // The GPUs' claims sit beside the CPUs', used only by batches
            // that ask for GPUs (the others never touch the file).
            gpus: match runs.jobs().any(|j| j.max_gpus() > 0) {
                true => Some(cpulock::CpuLock::new(&path.with_file_name("gpus"))?),
                false => None,
            },
        }),
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
    runs: &Runs,
    alloc: &mut Allocator,
    launcher: &mut dyn Launcher,
    lock: Option<&mut cpulock::Claims>,
    max_parallel: Option<usize>,
    done: &HashMap<String, State>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, RunError> {
    let was_done = |i: usize| match done.is_empty() {
        true => None,
        false => done.get(&runs.get(i).key()).map(|s| *s == State::Completed),
    };
    let mut l = Loop {
        runs,
        sched: Scheduler::new(
            runs,
            crate::plan::place_classes(runs),
            &was_done,
            max_parallel,
        ),
        alloc,
        launcher,
        lock,
        on_event,
        live: Vec::new(),
        foreign: CpuList::new(),
        foreign_gpus: false,
        outcome: Outcome {
            all_completed: true,
            ..Outcome::default()
        },
        services: runs
            .jobs()
            .filter(|j| j.base().service.is_some())
            .map(|j| j.base().job.clone())
            .collect(),
        service_ends: HashMap::new(),
    };
    let mut flushed_at = l.launcher.now();
    loop {
        let pass = l.start_what_fits()?;
        // The rows of runs that ended are written at once; their sync to
        // disk waits up to FLUSH_EVERY, so that it is one fdatasync for the
        // runs of that time, not one per run.
        let now = l.launcher.now();
        let flushed = now >= flushed_at + FLUSH_EVERY || l.live.is_empty();
        if flushed {
            (l.on_event)(Event::Flush);
            flushed_at = now;
        }
        for note in l.launcher.tidy() {
            (l.on_event)(Event::Note(note));
        }
        if l.live.is_empty() && (l.sched.pending() == 0 || l.outcome.interrupted) {
            break;
        }
        if l.live.is_empty() && pass.placed_any {
            // Every run just placed failed to start (its row is written)
            // and gave its CPUs back: place again before concluding anything.
            continue;
        }
        if l.live.is_empty() && !pass.blocked_by_others {
            // Nothing runs and nothing pending fits: only possible when the
            // allocator's view is wrong (feasibility is checked before).
            l.end_pending(
                State::Error,
                "no placement fits this run on the CPUs packrun may use",
            );
            break;
        }
        if !pass.placed_any
            && !pass.blocked_by_others
            && l.sched.pending() > 0
            && l.live.iter().all(|x| l.sched.serving(x.index))
        {
            // Only ready services run, and nothing pending fits beside
            // them: none of them ends by itself, so nothing will.
            l.end_pending(
                State::Error,
                "it does not fit on the CPUs and memory left beside the services that run",
            );
            for x in l.live.iter_mut() {
                x.stop(&mut *l.launcher);
            }
        }
        let mut until = l.live.iter().filter_map(Live::wake).min();
        if !flushed {
            let due = flushed_at + FLUSH_EVERY;
            until = Some(until.map_or(due, |u| u.min(due)));
        }
        if pass.blocked_by_others && l.sched.pending() > 0 {
            let recheck = l.launcher.now() + FOREIGN_RECHECK;
            until = Some(until.map_or(recheck, |u| u.min(recheck)));
        }
        for happened in l.launcher.wait(until)? {
            l.handle(happened);
        }
        l.check_limits();
    }
    if l.outcome.interrupted {
        l.end_pending(
            State::Cancelled,
            "packrun was interrupted before it started",
        );
    }
    (l.on_event)(Event::Flush);
    Ok(l.outcome)
}

/// The run loop's state (see `drive`).
struct Loop<'a, 'r> {
    runs: &'r Runs,
    sched: Scheduler<'r>,
    alloc: &'a mut Allocator,
    launcher: &'a mut dyn Launcher,
    lock: Option<&'a mut cpulock::Claims>,
    on_event: &'a mut dyn FnMut(Event<'_>),
    live: Vec<Live>,
    /// CPUs other packrun processes hold, as last seen (reserved in `alloc`).
    foreign: CpuList,
    /// Whether other packrun processes held GPUs when last seen.
    foreign_gpus: bool,
    outcome: Outcome,
    /// The service jobs, and how each one's run ended ("STATE: reason").
    services: HashSet<String>,
    service_ends: HashMap<String, String>,
}

/// What a pass of starts found.
struct Pass {
    placed_any: bool,
    /// Runs wait for CPUs that other packruns hold.
    blocked_by_others: bool,
}

impl Loop<'_, '_> {
    fn report(&mut self, rec: Record) {
        if rec.state != State::Completed {
            self.outcome.all_completed = false;
        }
        if self.services.contains(&rec.job) {
            let end = format!("{}: {}", rec.state.as_str(), rec.termination_reason);
            self.service_ends.insert(rec.job.clone(), end);
        }
        (self.on_event)(Event::Finished(rec));
    }

    /// Starts, in file order, every pending run that fits now (backfill);
    /// records the runs a failed dependency cancels.
    fn start_what_fits(&mut self) -> Result<Pass, RunError> {
        let pass = self.start_pass()?;
        self.obey_orders();
        Ok(pass)
    }

    /// Stops the services no run needs any more; kills the runs whose
    /// service ended under them.
    fn obey_orders(&mut self) {
        let orders = self.sched.orders();
        for index in orders.stop {
            if let Some(l) = self.live.iter_mut().find(|l| l.index == index) {
                l.stop(&mut *self.launcher);
            }
        }
        for (index, job) in orders.kill {
            let end = self.service_ends.get(&job).cloned().unwrap_or_default();
            let why = format!("service `{job}` ended while this run went (it ended {end})");
            if let Some(l) = self.live.iter_mut().find(|l| l.index == index) {
                l.kill(&mut *self.launcher, State::Cancelled, why);
            }
        }
    }

    fn start_pass(&mut self) -> Result<Pass, RunError> {
        let mut pass = Pass {
            placed_any: false,
            blocked_by_others: false,
        };
        if self.outcome.interrupted || self.sched.pending() == 0 {
            return Ok(pass);
        }
        let (sched, alloc, live) = (&mut self.sched, &mut *self.alloc, &self.live);
        let decided = match self.lock.as_deref_mut() {
            // Other packrun processes' CPUs (and GPUs) are off limits while we choose.
            Some(claims) => {
                let foreign = &mut self.foreign;
                let gpus_held = &mut self.foreign_gpus;
                let decided = claims.cpus.update(|others| {
                    alloc.unreserve(foreign);
                    *foreign = others.clone();
                    alloc.reserve(foreign);
                    let d = match claims.gpus.as_mut() {
                        // Locked inside the CPUs' lock, always in this order.
                        Some(gpu_lock) => gpu_lock.update(|others| {
                            alloc.unreserve_gpus();
                            let ids: Vec<String> =
                                others.iter().map(crate::gpus::bus_id_of_key).collect();
                            *gpus_held = !ids.is_empty();
                            alloc.reserve_gpus(&ids);
                            let d = sched.next(alloc, live.len());
                            let mine = live
                                .iter()
                                .flat_map(|l| &l.placement.gpus)
                                .chain(d.start.iter().flat_map(|(_, p)| &p.gpus))
                                .filter_map(|b| crate::gpus::bus_key(b));
                            (CpuList::from_ids(mine), d)
                        }),
                        None => Ok(sched.next(alloc, live.len())),
                    };
                    let mine = match &d {
                        Ok(d) => live
                            .iter()
                            .map(|l| &l.placement.cpus)
                            .chain(d.start.iter().map(|(_, p)| &p.cpus))
                            .fold(CpuList::new(), |acc, c| acc.union(c)),
                        Err(_) => live
                            .iter()
                            .fold(CpuList::new(), |acc, l| acc.union(&l.placement.cpus)),
                    };
                    (mine, d)
                })??;
                pass.blocked_by_others = !self.foreign.is_empty() || self.foreign_gpus;
                decided
            }
            None => sched.next(alloc, live.len()),
        };
        for (i, why) in decided.cancelled {
            let mut text = why.to_string();
            if let Cancel::Service(job) = &why {
                if let Some(end) = self.service_ends.get(job) {
                    text.push_str(&format!(" (it ended {end})"));
                }
            }
            self.report(not_started(&self.runs.render(i), State::Cancelled, text));
        }
        pass.placed_any = !decided.start.is_empty();
        for (index, placement) in decided.start {
            let mut run = self.runs.render(index);
            if !run.needs.is_empty() {
                if let Err(why) = reach_services(&mut run, &self.live, &*self.launcher) {
                    self.alloc.release(&placement);
                    self.sched.finished(index, false);
                    let mut rec = not_started(&run, State::Error, why);
                    rec.cpus = placement.cpus.clone();
                    self.report(rec);
                    continue;
                }
            }
            (self.on_event)(Event::Started {
                run: &run,
                placement: &placement,
            });
            match self.launcher.start(index, &run, &placement) {
                Ok(began) => {
                    let now = self.launcher.now();
                    let disk = self.launcher.disk_default();
                    self.live
                        .push(Live::new(index, run, placement, now, began, disk));
                }
                Err(rec) => {
                    self.alloc.release(&placement);
                    self.sched.finished(index, false);
                    self.report(*rec);
                }
            }
        }
        Ok(pass)
    }

    /// Takes in what the launcher saw.
    fn handle(&mut self, happened: Happened) {
        match happened {
            Happened::Interrupted => {
                self.outcome.interrupted = true;
                for l in self.live.iter_mut() {
                    l.kill(
                        &mut *self.launcher,
                        State::Cancelled,
                        "packrun was interrupted".into(),
                    );
                }
            }
            Happened::SetupFailed(index, rec) => {
                if let Some(k) = self.live.iter().position(|l| l.index == index) {
                    let l = self.live.swap_remove(k);
                    self.alloc.release(&l.placement);
                }
                self.sched.finished(index, false);
                self.report(*rec);
            }
            Happened::JobStarted(index) => {
                let now = self.launcher.now();
                if let Some(l) = self.live.iter_mut().find(|l| l.index == index) {
                    l.begin(now);
                }
            }
            Happened::Step(rec) => (self.on_event)(Event::Step(rec)),
            Happened::Ready(index) => self.sched.ready(index),
            Happened::NotReady(index, why) => {
                if let Some(l) = self.live.iter_mut().find(|l| l.index == index) {
                    l.kill(&mut *self.launcher, State::Failed, why);
                }
            }
            Happened::Ended(index) => {
                let Some(k) = self.live.iter().position(|l| l.index == index) else {
                    return;
                };
                // A run that went over its disk budget since the last
                // check and ended is over it all the same.
                if self.live[k].killed_for.is_none() && self.live[k].next_disk_check.is_some() {
                    let now = self.launcher.now();
                    self.live[k].check_disk(&mut *self.launcher, now, true);
                }
                let killed_for = self.live[k].killed_for.clone();
                let Some(mut rec) = self.launcher.collect(index, &self.live[k].run, killed_for)
                else {
                    // Steps after the job run now: no more limits to watch.
                    let l = &mut self.live[k];
                    (l.deadline, l.next_cpu_check, l.next_sample) = (None, None, None);
                    l.next_disk_check = None;
                    return;
                };
                let l = self.live.swap_remove(k);
                self.alloc.release(&l.placement);
                if let Some(e) = l.kill_error {
                    rec.termination_reason
                        .push_str(&format!("; a kill failed first: {e}"));
                }
                self.sched.finished(index, rec.state == State::Completed);
                self.report(rec);
            }
        }
    }

    /// Deadlines, CPU-time budgets, samples and kills to try again.
    fn check_limits(&mut self) {
        let now = self.launcher.now();
        for l in self.live.iter_mut() {
            let launcher = &mut *self.launcher;
            if l.kill_retry.is_some_and(|t| now >= t) {
                let (state, reason) = l.killed_for.clone().expect("set before a kill");
                l.kill(launcher, state, reason);
            }
            if l.next_sample.is_some_and(|t| now >= t) {
                l.next_sample = launcher.sample(l.index).then_some(now + SAMPLE_EVERY);
            }
            if l.stop_deadline.is_some_and(|t| now >= t) {
                l.stop_overdue(launcher);
            }
            if l.killed_for.is_some() {
                continue;
            }
            if l.deadline.is_some_and(|d| now >= d) {
                let limit = l.run.time_limit.unwrap_or_default();
                let why = format!("wall time limit {}", humantime::format_duration(limit));
                l.kill(launcher, State::Timeout, why);
            } else if l.next_cpu_check.is_some_and(|t| now >= t) {
                l.check_cpu_time(launcher, now);
            }
            if l.killed_for.is_none() && l.next_disk_check.is_some_and(|t| now >= t) {
                l.check_disk(launcher, now, false);
            }
        }
    }

    /// Records every run neither started nor over with `state` and `why`.
    fn end_pending(&mut self, state: State, why: &str) {
        for i in self.sched.drain() {
            self.report(not_started(&self.runs.render(i), state, why.into()));
        }
    }
}

impl Live {
    /// Kills the run once its CPU time reached the budget; else looks again
    /// when it could have. A budget that cannot be watched is not silently
    /// off: the run ends as ERROR.
    fn check_cpu_time(&mut self, launcher: &mut dyn Launcher, now: Instant) {
        let limit = self.run.cpu_time_limit.unwrap_or_default();
        match launcher.cpu_time(self.index) {
            Ok(used) if used >= limit => {
                let why = format!("cpu time limit {}", humantime::format_duration(limit));
                self.kill(launcher, State::Timeout, why);
            }
            Ok(used) => {
                let left = (limit - used).as_nanos() as u64;
                self.next_cpu_check =
                    Some(now + cpu_check_interval(left, self.placement.cpus.len()));
            }
            // Ended between the wait and now: collected next, nothing
            // more to check.
            Err(LaunchError::NotRunning) => self.next_cpu_check = None,
            Err(e) => {
                let why = format!("cannot read its CPU time to enforce cpu_time_limit: {e}");
                self.kill(launcher, State::Error, why);
            }
        }
    }
}

impl Live {
    /// Kills the run once what it has on disk is over its budget (as
    /// BenchExec's --filesSizeLimit and --filesCountLimit do), else looks
    /// again when it could be. `ended`: the run is over, this is the last
    /// look (it is not killed, its row says the same).
    fn check_disk(&mut self, launcher: &mut dyn Launcher, now: Instant, ended: bool) {
        let Some((bytes, files)) = self.disk else {
            return;
        };
        self.next_disk_check = None;
        let used = match launcher.disk_use(self.index) {
            // Nothing of it on disk: nothing to watch.
            None => return,
            Some(Ok(u)) => u,
            Some(Err(e)) => {
                let why = format!("cannot measure its disk use to enforce its disk budget: {e}");
                self.kill(launcher, State::Error, why);
                return;
            }
        };
        let over = if used.bytes > bytes {
            Some(format!(
                "disk budget {} exceeded: {} in its writable dirs and logs",
                crate::report::human_bytes(bytes),
                crate::report::human_bytes(used.bytes)
            ))
        } else {
            files.filter(|&f| used.files > f).map(|f| {
                format!(
                    "file budget {f} exceeded: {} files and directories in its writable dirs",
                    used.files
                )
            })
        };
        match over {
            Some(why) if ended => {
                self.killed_for = Some((State::Failed, format!("{why} (seen as it ended)")))
            }
            Some(why) => self.kill(launcher, State::Failed, why),
            None => self.next_disk_check = Some(now + disk_check_interval(bytes, files, used)),
        }
    }
}

/// When to look at a run's disk use again: when, writing at DISK_RATE (or
/// making FILES_RATE files a second), it could have used up what is left;
/// within DISK_CHECK_MIN..DISK_CHECK_MAX, and not sooner than
/// DISK_CHECK_COST times what the last look took.
fn disk_check_interval(bytes: u64, files: Option<u64>, used: DiskUse) -> Duration {
    let left = |budget: u64, used: u64, rate: u64| {
        Duration::from_secs_f64(budget.saturating_sub(used) as f64 / rate as f64)
    };
    let mut t = left(bytes, used.bytes, DISK_RATE);
    if let Some(f) = files {
        t = t.min(left(f, used.files, FILES_RATE));
    }
    t.clamp(DISK_CHECK_MIN, DISK_CHECK_MAX)
        .max(used.took * DISK_CHECK_COST)
}

/// When to look at a run's CPU time again: not before it could have used up
/// what is left with every CPU busy, and at least every 10 ms near the end.
fn cpu_check_interval(left_ns: u64, cpus: usize) -> Duration {
    let ns = left_ns / cpus.max(1) as u64;
    Duration::from_nanos(ns.clamp(5_000_000, 1_000_000_000))
}

/// The address at which runs reach service `l`: the one place that
/// knows. On `network: host` a service listens on the host's loopback;
/// on `none` no other run reaches it (validation keeps runs that need
/// it off `none`). A private network gives each run its own address
/// when it is launched: that address is returned here.
fn service_addr(l: &Live, launcher: &dyn Launcher) -> Option<IpAddr> {
    match l.run.container.network {
        Network::Host => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Network::None => None,
        Network::Private(_) => launcher.addr(l.index).map(IpAddr::V4),
    }
}

/// Fills in `run.reaches` (its /etc/hosts entries) and `{addr:JOB}` in
/// its command, env and steps from the services it needs, which run now.
fn reach_services(run: &mut Run, live: &[Live], launcher: &dyn Launcher) -> Result<(), String> {
    run.reaches.clear();
    for job in &run.needs {
        let svc = live
            .iter()
            .find(|l| &l.run.job == job && l.run.service.is_some());
        let addr = match svc.map(|l| service_addr(l, launcher)) {
            Some(Some(a)) => a,
            Some(None) => return Err(format!("service `{job}` has no address this run can reach")),
            None => return Err(format!("service `{job}` is not running")),
        };
        run.reaches.push((job.clone(), addr));
    }
    let reaches = run.reaches.clone();
    let value = |name: &str| {
        let job = name.strip_prefix(crate::jobfile::ADDR)?;
        reaches
            .iter()
            .find(|(j, _)| j == job)
            .map(|(_, a)| a.to_string())
    };
    for t in run.command.iter_mut() {
        *t = t.refill(value);
    }
    for (_, t) in run.env.iter_mut() {
        *t = t.refill(value);
    }
    Ok(())
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
        gpu: Default::default(),
        userns: String::new(),
        start_time: now,
        end_time: now,
        wall_time: Duration::ZERO,
        usage: Usage::default(),
        disturbance: Default::default(),
        memory_limit: run.resources.memory,
        exit_code: None,
        signal: None,
        state,
        termination_reason: reason,
        stdout: None,
        stderr: None,
        counters: Default::default(),
        net: None,
    }
}

pub fn signal_name(s: i32) -> &'static str {
    Signal::try_from(s).map(|s| s.as_str()).unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Allocator;
    use std::collections::HashMap;

    /// What a scripted run does.
    #[derive(Debug, Clone)]
    struct Script {
        /// Seconds until it ends by itself.
        secs: f64,
        exit: i32,
        /// CPU seconds it uses per second.
        cpu_rate: f64,
        /// It cannot start (an ERROR record from `start`).
        start_error: bool,
        /// Its setup fails this long after the start.
        setup_error: Option<f64>,
        /// Kills that fail before one works.
        kill_fails: u32,
        cpu_unreadable: bool,
        /// Its processes are gone before the loop hears it ended: its CPU
        /// time finds it not running.
        gone: bool,
        /// Bytes it writes a second on disk (None: nothing of it on disk).
        disk_rate: Option<u64>,
        /// Files it makes a second.
        files_rate: u64,
        /// A service: ready this many seconds after its start (None:
        /// never; `NotReady` then, at that time... see `not_ready_at`).
        ready_after: Option<f64>,
        /// A service that never gets ready: `NotReady` this long after its start.
        not_ready_at: f64,
        /// It goes on after SIGTERM (a SIGKILL ends it).
        ignores_term: bool,
    }

    impl Default for Script {
        fn default() -> Script {
            Script {
                secs: 1.0,
                exit: 0,
                cpu_rate: 1.0,
                start_error: false,
                setup_error: None,
                kill_fails: 0,
                cpu_unreadable: false,
                gone: false,
                disk_rate: None,
                files_rate: 0,
                ready_after: Some(0.0),
                not_ready_at: 1.0,
                ignores_term: false,
            }
        }
    }

    struct Started {
        at: Duration,
        script: Script,
        killed_at: Option<Duration>,
        kill_tries: u32,
        /// A service whose readiness is not told yet.
        ready_due: Option<Duration>,
    }

    /// A machine on a virtual clock: runs end when their script says,
    /// waiting costs no real time.
    struct Fake {
        base: Instant,
        now: Duration,
        /// By job name.
        scripts: HashMap<String, Script>,
        running: HashMap<usize, Started>,
        interrupt_at: Option<Duration>,
        /// Start times of runs by index, in start order.
        starts: Vec<(usize, Duration)>,
        samples: HashMap<usize, u32>,
        /// What `tidy` has to tell, once.
        tidy_notes: Vec<String>,
        disk_default: Option<u64>,
        disk_checks: u32,
        /// SIGTERMs sent, by run and time.
        terminated: Vec<(usize, Duration)>,
    }

    impl Fake {
        fn new(scripts: &[(&str, Script)]) -> Fake {
            Fake {
                base: Instant::now(),
                now: Duration::ZERO,
                scripts: scripts
                    .iter()
                    .map(|(j, s)| (j.to_string(), s.clone()))
                    .collect(),
                running: HashMap::new(),
                interrupt_at: None,
                starts: Vec::new(),
                samples: HashMap::new(),
                tidy_notes: Vec::new(),
                disk_default: None,
                disk_checks: 0,
                terminated: Vec::new(),
            }
        }

        fn end_of(s: &Started) -> Duration {
            let own = s.at + Duration::from_secs_f64(s.script.secs);
            let setup = s
                .script
                .setup_error
                .map(|t| s.at + Duration::from_secs_f64(t));
            [Some(own), s.killed_at, setup]
                .into_iter()
                .flatten()
                .min()
                .expect("own end")
        }
    }

    impl Launcher for Fake {
        fn start(&mut self, index: usize, run: &Run, p: &Placement) -> Result<bool, Box<Record>> {
            let script = self.scripts.get(&run.job).cloned().unwrap_or_default();
            if script.start_error {
                let mut rec = not_started(run, State::Error, "cgroup: scripted".into());
                rec.cpus = p.cpus.clone();
                return Err(Box::new(rec));
            }
            self.starts.push((index, self.now));
            let ready_due = run.service.as_ref().map(|_| {
                self.now
                    + Duration::from_secs_f64(script.ready_after.unwrap_or(script.not_ready_at))
            });
            self.running.insert(
                index,
                Started {
                    at: self.now,
                    script,
                    killed_at: None,
                    kill_tries: 0,
                    ready_due,
                },
            );
            Ok(true)
        }

        fn wait(&mut self, until: Option<Instant>) -> Result<Vec<Happened>, RunError> {
            let next = self
                .running
                .values()
                .map(Fake::end_of)
                .chain(self.running.values().filter_map(|s| s.ready_due))
                .chain(self.interrupt_at)
                .min();
            let until = until.map(|u| u.saturating_duration_since(self.base));
            let t = match (next, until) {
                (Some(n), Some(u)) => n.min(u),
                (Some(n), None) => n,
                (None, Some(u)) => u,
                (None, None) => panic!("the loop would wait forever"),
            };
            self.now = self.now.max(t);
            let mut out = Vec::new();
            if self.interrupt_at.is_some_and(|i| i <= self.now) {
                self.interrupt_at = None;
                out.push(Happened::Interrupted);
            }
            let mut due: Vec<usize> = self
                .running
                .iter()
                .filter(|(_, s)| {
                    s.ready_due.is_some_and(|t| t <= self.now) && Fake::end_of(s) > self.now
                })
                .map(|(&i, _)| i)
                .collect();
            due.sort();
            for i in due {
                let s = self.running.get_mut(&i).expect("listed");
                s.ready_due = None;
                out.push(match s.script.ready_after {
                    Some(_) => Happened::Ready(i),
                    None => Happened::NotReady(i, "not ready: scripted".into()),
                });
            }
            let mut ended: Vec<usize> = self
                .running
                .iter()
                .filter(|(_, s)| Fake::end_of(s) <= self.now)
                .map(|(&i, _)| i)
                .collect();
            ended.sort();
            for i in ended {
                let s = &self.running[&i];
                let setup_failed = s.killed_at.is_none()
                    && s.script
                        .setup_error
                        .is_some_and(|t| s.at + Duration::from_secs_f64(t) <= self.now);
                if setup_failed {
                    self.running.remove(&i);
                    let mut run = Run::with_defaults("setup", Vec::new());
                    run.key = format!("run-{i}");
                    let rec = not_started(
                        &run,
                        State::Error,
                        "container setup failed at scripted".into(),
                    );
                    out.push(Happened::SetupFailed(i, Box::new(rec)));
                } else {
                    out.push(Happened::Ended(i));
                }
            }
            Ok(out)
        }

        fn now(&self) -> Instant {
            self.base + self.now
        }

        fn cpu_time(&mut self, index: usize) -> Result<Duration, LaunchError> {
            let s = &self.running[&index];
            if s.script.cpu_unreadable {
                return Err(LaunchError::Failed("cpu.stat: scripted".into()));
            }
            if s.script.gone {
                return Err(LaunchError::NotRunning);
            }
            Ok((self.now - s.at).mul_f64(s.script.cpu_rate))
        }

        fn sample(&mut self, index: usize) -> bool {
            *self.samples.entry(index).or_default() += 1;
            true
        }

        fn kill(&mut self, index: usize) -> Result<(), LaunchError> {
            let now = self.now;
            let s = self.running.get_mut(&index).expect("kill of a running run");
            s.kill_tries += 1;
            if s.kill_tries <= s.script.kill_fails {
                return Err(LaunchError::Failed("cgroup.kill: scripted".into()));
            }
            s.killed_at.get_or_insert(now);
            Ok(())
        }

        fn terminate(&mut self, index: usize) -> Result<(), LaunchError> {
            let now = self.now;
            let s = self
                .running
                .get_mut(&index)
                .ok_or(LaunchError::NotRunning)?;
            self.terminated.push((index, now));
            if !s.script.ignores_term {
                s.killed_at.get_or_insert(now);
            }
            Ok(())
        }

        fn collect(
            &mut self,
            index: usize,
            run: &Run,
            killed_for: Option<(State, String)>,
        ) -> Option<Record> {
            let s = self
                .running
                .remove(&index)
                .expect("collect of a running run");
            let (state, reason) = killed_for.unwrap_or(match s.script.exit {
                0 => (State::Completed, "exited".into()),
                c => (State::Failed, format!("exit code {c}")),
            });
            let mut rec = not_started(run, state, reason);
            rec.wall_time = self.now - s.at;
            rec.exit_code = Some(s.script.exit);
            Some(rec)
        }

        fn tidy(&mut self) -> Vec<String> {
            self.tidy_notes.drain(..).collect()
        }

        fn disk_default(&self) -> Option<u64> {
            self.disk_default
        }

        fn disk_use(&mut self, index: usize) -> Option<Result<DiskUse, LaunchError>> {
            let s = &self.running[&index];
            let rate = s.script.disk_rate?;
            self.disk_checks += 1;
            let secs = (self.now - s.at).as_secs_f64();
            Some(Ok(DiskUse {
                bytes: (secs * rate as f64) as u64,
                files: (secs * s.script.files_rate as f64) as u64,
                took: Duration::ZERO,
            }))
        }
    }

    fn run(job: &str, cpus: u32, secs: u64) -> Run {
        let mut r = Run::with_defaults(job, vec!["true".into()]);
        r.resources.cpus = cpus;
        r.estimate = Duration::from_secs(secs);
        r
    }

    fn keyed(mut runs: Vec<Run>) -> Vec<Run> {
        for (i, r) in runs.iter_mut().enumerate() {
            r.key = format!("{}-{i}", r.job);
        }
        runs
    }

    fn two_cpus() -> crate::topology::Topology {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/this-machine");
        crate::topology::read(&root, None, None).unwrap()
    }

    #[test]
    fn gpus_another_packrun_claims_are_not_given_and_ours_are_claimed_while_they_run() {
        let dir = tempfile::tempdir().unwrap();
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/2socket-4gpu");
        let topo = crate::topology::read(&root, None, None).unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = other.id() as i32;
        let ticks = cpulock::start_ticks(pid).unwrap();
        let held: Vec<u32> = topo.gpus[..3]
            .iter()
            .map(|g| crate::gpus::bus_key(&g.bus_id).unwrap())
            .collect();
        let gpus_file = dir.path().join("gpus");
        std::fs::write(
            &gpus_file,
            format!("{pid} {ticks} {}\n", CpuList::from_ids(held)),
        )
        .unwrap();
        let mut claims = cpulock::Claims {
            cpus: cpulock::CpuLock::new(&dir.path().join("cpus")).unwrap(),
            gpus: Some(cpulock::CpuLock::new(&gpus_file).unwrap()),
        };
        let mut r = run("g", 1, 1);
        r.resources.gpus = 1;
        let runs: Runs = keyed(vec![r]).into();
        let mut alloc = Allocator::new(&topo, &[]);
        let mut fake = Fake::new(&[("g", script(1.0))]);
        let (mut given, mut claimed) = (Vec::new(), String::new());
        drive(
            &runs,
            &mut alloc,
            &mut fake,
            Some(&mut claims),
            None,
            &HashMap::new(),
            &mut |ev| {
                if let Event::Started { placement, .. } = ev {
                    given = placement.gpus.clone();
                    claimed = std::fs::read_to_string(&gpus_file).unwrap();
                }
            },
        )
        .unwrap();
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(given, [topo.gpus[3].bus_id.clone()]);
        let mine = crate::gpus::bus_key(&topo.gpus[3].bus_id).unwrap();
        assert!(
            claimed
                .lines()
                .any(|l| l.starts_with(&format!("{} ", std::process::id()))
                    && l.ends_with(&format!(" {mine}"))),
            "{claimed}"
        );
    }

    struct Batch {
        rows: Vec<Record>,
        outcome: Outcome,
        starts: Vec<(usize, Duration)>,
        samples: HashMap<usize, u32>,
    }

    fn drive_with(
        runs: &[Run],
        fake: &mut Fake,
        max: Option<usize>,
        done: &HashMap<String, State>,
    ) -> Batch {
        let mut alloc = Allocator::new(&two_cpus(), &[]);
        let mut rows = Vec::new();
        let runs: Runs = runs.to_vec().into();
        let outcome = drive(&runs, &mut alloc, fake, None, max, done, &mut |ev| {
            if let Event::Finished(rec) = ev {
                rows.push(rec);
            }
        })
        .unwrap();
        Batch {
            rows,
            outcome,
            starts: fake.starts.clone(),
            samples: fake.samples.clone(),
        }
    }

    /// Drives `runs` on two CPUs, every event to `on`.
    fn drive_events(runs: &Runs, fake: &mut Fake, on: &mut dyn FnMut(Event<'_>)) {
        let mut alloc = Allocator::new(&two_cpus(), &[]);
        drive(runs, &mut alloc, fake, None, None, &HashMap::new(), on).unwrap();
    }

    fn script(secs: f64) -> Script {
        Script {
            secs,
            ..Script::default()
        }
    }

    fn state_of<'a>(b: &'a Batch, key: &str) -> &'a Record {
        b.rows
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no row for {key}"))
    }

    /// A service on the host's network, and runs of `job` that need it.
    fn served(needers: usize, cpus: u32) -> Vec<Run> {
        let mut s = run("db", 1, 1);
        s.service = Some(crate::jobfile::Service {
            ready_tcp: Some(7),
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
        });
        s.container.network = Network::Host;
        let mut runs = vec![s];
        for _ in 0..needers {
            let mut c = run("client", cpus, 1);
            c.container.network = Network::Host;
            c.needs = vec!["db".into()];
            c.command = vec!["ping".into(), "{addr:db}".into()];
            runs.push(c);
        }
        keyed(runs)
    }

    fn service_script(ready_after: Option<f64>) -> Script {
        Script {
            secs: 1000.0,
            ready_after,
            ..Script::default()
        }
    }

    #[test]
    fn a_service_runs_from_before_its_first_needer_to_after_its_last_and_is_completed() {
        let runs = served(3, 1);
        let mut fake = Fake::new(&[("db", service_script(Some(2.0))), ("client", script(1.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let order: Vec<(usize, u64)> = b.starts.iter().map(|(i, t)| (*i, t.as_secs())).collect();
        // One CPU beside the service: the clients one after the other, from when it is ready.
        assert_eq!(order, [(0, 0), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(fake.terminated, [(0, Duration::from_secs(5))]);
        let db = state_of(&b, "db-0");
        assert_eq!(db.state, State::Completed);
        assert!(
            db.termination_reason
                .starts_with("stopped by packrun (SIGTERM) after the last run that needs it ended"),
            "{}",
            db.termination_reason
        );
        assert_eq!(b.rows.last().map(|r| r.job.as_str()), Some("db"));
        assert!(b.outcome.all_completed);
    }

    #[test]
    fn addr_placeholders_and_hosts_entries_of_a_needer_are_filled_when_it_starts() {
        let runs: Runs = served(1, 1).into();
        let mut fake = Fake::new(&[("db", service_script(Some(0.5))), ("client", script(1.0))]);
        let mut seen = Vec::new();
        drive_events(&runs, &mut fake, &mut |ev| {
            if let Event::Started { run, .. } = ev {
                let argv: Vec<String> = run.command.iter().map(|a| a.render(None)).collect();
                seen.push((argv, run.reaches.clone()));
            }
        });
        let lo: std::net::IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(
            seen[1],
            (
                vec!["ping".to_string(), "127.0.0.1".into()],
                vec![("db".to_string(), lo)]
            )
        );
        assert!(seen[0].1.is_empty());
    }

    #[test]
    fn a_service_that_dies_cancels_its_dependants_with_a_reason_naming_it() {
        let runs = served(3, 1);
        let mut dies = service_script(Some(0.0));
        dies.secs = 1.5;
        dies.exit = 3;
        let mut fake = Fake::new(&[("db", dies), ("client", script(1.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(state_of(&b, "db-0").state, State::Failed);
        assert_eq!(state_of(&b, "client-1").state, State::Completed);
        let going = state_of(&b, "client-2");
        assert_eq!(going.state, State::Cancelled);
        assert_eq!(
            going.termination_reason,
            "service `db` ended while this run went (it ended FAILED: exit code 3)"
        );
        let waiting = state_of(&b, "client-3");
        assert_eq!(waiting.state, State::Cancelled);
        assert_eq!(
            waiting.termination_reason,
            "service `db` ended before this run could start (it ended FAILED: exit code 3)"
        );
        assert!(fake.terminated.is_empty());
    }

    #[test]
    fn a_service_never_ready_is_failed_and_its_dependants_are_cancelled() {
        let runs = served(2, 1);
        let mut fake = Fake::new(&[("db", service_script(None)), ("client", script(1.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let db = state_of(&b, "db-0");
        assert_eq!(
            (db.state, db.termination_reason.as_str()),
            (State::Failed, "not ready: scripted")
        );
        for key in ["client-1", "client-2"] {
            let c = state_of(&b, key);
            assert_eq!(c.state, State::Cancelled);
            assert!(
                c.termination_reason.contains("service `db`")
                    && c.termination_reason.contains("not ready: scripted"),
                "{}",
                c.termination_reason
            );
        }
        assert_eq!(b.starts.len(), 1);
    }

    #[test]
    fn a_service_that_ignores_sigterm_is_killed_after_its_grace_period_and_still_completed() {
        let runs = served(1, 1);
        let mut stubborn = service_script(Some(0.0));
        stubborn.ignores_term = true;
        let mut fake = Fake::new(&[("db", stubborn), ("client", script(1.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let db = state_of(&b, "db-0");
        assert_eq!(db.state, State::Completed);
        assert!(
            db.termination_reason
                .ends_with("still running after the 5s grace period: SIGKILL"),
            "{}",
            db.termination_reason
        );
        assert_eq!(db.wall_time, Duration::from_secs(6));
    }

    #[test]
    fn a_needer_that_cannot_fit_beside_its_service_is_an_error_and_the_service_stops() {
        // The service starts with room for the first client beside it;
        // the second, of 2 CPUs, never fits beside it.
        let mut runs = served(2, 1);
        runs[2].resources.cpus = 2;
        let mut fake = Fake::new(&[("db", service_script(Some(0.0))), ("client", script(1.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(state_of(&b, "client-1").state, State::Completed);
        let c = state_of(&b, "client-2");
        assert_eq!(c.state, State::Error);
        assert!(
            c.termination_reason.contains("beside the services"),
            "{}",
            c.termination_reason
        );
        assert_eq!(state_of(&b, "db-0").state, State::Completed);
    }

    #[test]
    fn a_small_run_backfills_while_a_wide_one_waits_for_cpus() {
        let runs = keyed(vec![run("a", 1, 10), run("wide", 2, 1), run("c", 1, 1)]);
        let mut fake = Fake::new(&[
            ("a", script(10.0)),
            ("wide", script(1.0)),
            ("c", script(1.0)),
        ]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let order: Vec<(usize, u64)> = b.starts.iter().map(|(i, t)| (*i, t.as_secs())).collect();
        assert_eq!(order, [(0, 0), (2, 0), (1, 10)]);
        assert!(b.outcome.all_completed);
        assert_eq!(b.rows.len(), 3);
    }

    #[test]
    fn rows_are_synced_together_within_the_flush_interval_not_once_per_run() {
        // 20 runs of 10 ms on 2 CPUs end within 0.1 s; a long one goes on.
        let mut runs = vec![run("long", 1, 5)];
        runs.extend((0..20).map(|_| run("short", 1, 1)));
        let runs: Runs = keyed(runs).into();
        let mut fake = Fake::new(&[("long", script(5.0)), ("short", script(0.01))]);
        let mut events: Vec<String> = Vec::new();
        drive_events(&runs, &mut fake, &mut |ev| match ev {
            Event::Finished(rec) => events.push(rec.job),
            Event::Flush => events.push("flush".into()),
            _ => {}
        });
        // A flush with rows written since the one before is an fdatasync.
        let syncs = events
            .windows(2)
            .filter(|w| w[0] != "flush" && w[1] == "flush")
            .count();
        assert!(syncs < 5, "one sync per run: {events:?}");
        // The last short row is synced before the long run ends, not after.
        let last_short = events.iter().rposition(|e| e == "short").unwrap();
        let long = events.iter().position(|e| e == "long").unwrap();
        assert!(
            events[last_short..long].iter().any(|e| e == "flush"),
            "{events:?}"
        );
        assert_eq!(events.last().map(String::as_str), Some("flush"));
    }

    #[test]
    fn what_tidying_could_not_remove_is_told_not_dropped() {
        let runs: Runs = keyed(vec![run("a", 1, 1)]).into();
        let mut fake = Fake::new(&[("a", script(1.0))]);
        fake.tidy_notes
            .push("packrun: a finished run's cgroup was not removed: EACCES".into());
        let mut notes = Vec::new();
        drive_events(&runs, &mut fake, &mut |ev| {
            if let Event::Note(n) = ev {
                notes.push(n);
            }
        });
        assert_eq!(
            notes,
            ["packrun: a finished run's cgroup was not removed: EACCES"]
        );
    }

    #[test]
    fn max_parallel_keeps_runs_from_overlapping() {
        let runs = keyed(vec![run("a", 1, 1), run("a", 1, 1), run("a", 1, 1)]);
        let mut fake = Fake::new(&[("a", script(2.0))]);
        let b = drive_with(&runs, &mut fake, Some(1), &HashMap::new());
        let times: Vec<u64> = b.starts.iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(times, [0, 2, 4]);
    }

    #[test]
    fn a_dependent_job_starts_once_every_run_of_its_dependency_ended() {
        let mut runs = keyed(vec![run("a", 1, 1), run("a", 1, 3), run("b", 1, 1)]);
        runs[2].depends_on = vec!["a".into()];
        let mut fake = Fake::new(&[("a", script(1.0))]);
        fake.scripts.insert("a".into(), script(1.0));
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(
            b.starts.last().map(|(i, t)| (*i, t.as_secs())),
            Some((2, 1))
        );
    }

    #[test]
    fn a_failed_dependency_cancels_its_dependents_and_theirs_with_a_row_each() {
        let mut runs = keyed(vec![
            run("a", 1, 1),
            run("b", 1, 1),
            run("c", 1, 1),
            run("d", 1, 1),
        ]);
        runs[1].depends_on = vec!["a".into()];
        runs[2].depends_on = vec!["b".into()];
        let mut fake = Fake::new(&[(
            "a",
            Script {
                exit: 3,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(state_of(&b, "a-0").state, State::Failed);
        let cancelled = state_of(&b, "b-1");
        assert_eq!(cancelled.state, State::Cancelled);
        assert_eq!(
            cancelled.termination_reason,
            "dependency `a` did not complete"
        );
        assert_eq!(
            state_of(&b, "c-2").termination_reason,
            "dependency `b` did not complete"
        );
        assert_eq!(state_of(&b, "d-3").state, State::Completed);
        assert!(!b.outcome.all_completed);
    }

    #[test]
    fn a_wall_time_limit_ends_a_run_as_timeout_at_its_deadline() {
        let mut runs = keyed(vec![run("slow", 1, 60)]);
        runs[0].time_limit = Some(Duration::from_secs(2));
        let mut fake = Fake::new(&[("slow", script(60.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = &b.rows[0];
        assert_eq!(r.state, State::Timeout);
        assert_eq!(r.termination_reason, "wall time limit 2s");
        assert_eq!(r.wall_time.as_secs(), 2);
    }

    #[test]
    fn a_cpu_time_limit_ends_a_run_once_its_cpus_used_it_up() {
        let mut runs = keyed(vec![run("burn", 2, 60)]);
        runs[0].cpu_time_limit = Some(Duration::from_secs(4));
        let mut fake = Fake::new(&[(
            "burn",
            Script {
                secs: 60.0,
                cpu_rate: 2.0,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = &b.rows[0];
        assert_eq!(r.state, State::Timeout);
        assert_eq!(r.termination_reason, "cpu time limit 4s");
        // Checked often enough near the end: within 10 ms of 2 s of wall time.
        assert!(
            (r.wall_time.as_secs_f64() - 2.0).abs() <= 0.011,
            "{:?}",
            r.wall_time
        );
    }

    #[test]
    fn a_run_within_its_cpu_budget_completes() {
        let mut runs = keyed(vec![run("light", 1, 5)]);
        runs[0].cpu_time_limit = Some(Duration::from_secs(4));
        let mut fake = Fake::new(&[(
            "light",
            Script {
                secs: 5.0,
                cpu_rate: 0.5,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(b.rows[0].state, State::Completed);
    }

    #[test]
    fn an_unreadable_cpu_time_ends_the_run_as_error_instead_of_turning_its_budget_off() {
        let mut runs = keyed(vec![run("blind", 1, 60)]);
        runs[0].cpu_time_limit = Some(Duration::from_secs(4));
        let mut fake = Fake::new(&[(
            "blind",
            Script {
                secs: 60.0,
                cpu_unreadable: true,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = &b.rows[0];
        assert_eq!(r.state, State::Error);
        assert!(
            r.termination_reason.contains("cannot read its CPU time"),
            "{}",
            r.termination_reason
        );
        assert!(r.wall_time < Duration::from_secs(60));
    }

    #[test]
    fn a_run_that_is_gone_when_its_cpu_time_is_read_ends_as_it_ended_not_as_error() {
        let mut runs = keyed(vec![run("quick", 1, 2)]);
        runs[0].cpu_time_limit = Some(Duration::from_secs(4));
        let mut fake = Fake::new(&[(
            "quick",
            Script {
                secs: 2.0,
                gone: true,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = &b.rows[0];
        assert_eq!(r.state, State::Completed, "{}", r.termination_reason);
        assert!(
            !r.termination_reason.contains("cannot read"),
            "{}",
            r.termination_reason
        );
    }

    #[test]
    fn sigint_cancels_the_running_runs_and_records_the_rest_as_cancelled() {
        let runs = keyed(vec![run("a", 1, 9), run("a", 1, 9), run("a", 1, 9)]);
        let mut fake = Fake::new(&[("a", script(9.0))]);
        fake.interrupt_at = Some(Duration::from_secs(1));
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert!(b.outcome.interrupted);
        assert_eq!(b.rows.len(), 3);
        assert!(
            b.rows.iter().all(|r| r.state == State::Cancelled),
            "{:?}",
            b.rows
        );
        assert_eq!(
            state_of(&b, "a-2").termination_reason,
            "packrun was interrupted before it started"
        );
        assert_eq!(
            state_of(&b, "a-0").termination_reason,
            "packrun was interrupted"
        );
        assert_eq!(state_of(&b, "a-0").wall_time.as_secs(), 1);
    }

    #[test]
    fn resume_runs_only_what_is_not_done_and_cancels_dependents_of_failed_runs() {
        let mut runs = keyed(vec![
            run("a", 1, 1),
            run("a", 1, 1),
            run("b", 1, 1),
            run("c", 1, 1),
        ]);
        runs[3].depends_on = vec!["b".into()];
        let done = HashMap::from([
            ("a-0".to_string(), State::Completed),
            ("b-2".to_string(), State::Failed),
        ]);
        let mut fake = Fake::new(&[]);
        let b = drive_with(&runs, &mut fake, None, &done);
        let keys: Vec<&str> = b.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(state_of(&b, "a-1").state, State::Completed);
        assert_eq!(state_of(&b, "c-3").state, State::Cancelled);
    }

    #[test]
    fn a_run_that_cannot_start_is_an_error_row_and_its_cpus_go_to_the_next() {
        let runs = keyed(vec![run("bad", 2, 1), run("good", 2, 1)]);
        let mut fake = Fake::new(&[(
            "bad",
            Script {
                start_error: true,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(state_of(&b, "bad-0").state, State::Error);
        assert_eq!(state_of(&b, "good-1").state, State::Completed);
        assert_eq!(b.starts, [(1, Duration::ZERO)]);
    }

    #[test]
    fn a_setup_error_is_an_error_row_and_the_batch_goes_on() {
        let runs = keyed(vec![run("broken", 2, 1), run("fine", 2, 1)]);
        let mut fake = Fake::new(&[(
            "broken",
            Script {
                setup_error: Some(0.01),
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.rows[0].state, State::Error);
        assert!(b.rows[0]
            .termination_reason
            .starts_with("container setup failed"));
        assert_eq!(state_of(&b, "fine-1").state, State::Completed);
    }

    #[test]
    fn a_kill_that_fails_is_tried_again_until_the_run_ends() {
        let mut runs = keyed(vec![run("stubborn", 1, 60)]);
        runs[0].time_limit = Some(Duration::from_secs(1));
        let mut fake = Fake::new(&[(
            "stubborn",
            Script {
                secs: 60.0,
                kill_fails: 2,
                ..Script::default()
            },
        )]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = &b.rows[0];
        assert_eq!(r.state, State::Timeout);
        assert!(
            r.termination_reason
                .contains("a kill failed first: cgroup.kill: scripted"),
            "{}",
            r.termination_reason
        );
        // Two failed tries, KILL_RETRY apart, then the third worked.
        assert_eq!(r.wall_time, Duration::from_secs(1) + 2 * KILL_RETRY);
    }

    #[test]
    fn memory_and_pids_are_sampled_on_a_tick_while_a_run_lives() {
        let runs = keyed(vec![run("a", 1, 1)]);
        let mut fake = Fake::new(&[("a", script(1.05))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert_eq!(b.samples.get(&0), Some(&10), "every 100 ms for 1.05 s");
    }

    #[test]
    fn every_run_gets_exactly_one_row_whatever_becomes_of_it() {
        let mut runs = keyed(vec![
            run("ok", 1, 1),
            run("fail", 1, 1),
            run("slow", 1, 9),
            run("nostart", 1, 1),
            run("after", 1, 1),
        ]);
        runs[2].time_limit = Some(Duration::from_secs(1));
        runs[4].depends_on = vec!["fail".into()];
        let mut fake = Fake::new(&[
            (
                "fail",
                Script {
                    exit: 1,
                    ..Script::default()
                },
            ),
            ("slow", script(9.0)),
            (
                "nostart",
                Script {
                    start_error: true,
                    ..Script::default()
                },
            ),
        ]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let mut keys: Vec<&str> = b.rows.iter().map(|r| r.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["after-4", "fail-1", "nostart-3", "ok-0", "slow-2"]);
    }

    #[test]
    fn an_error_after_the_batch_cgroup_was_made_removes_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu memory pids\n").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let blocker = t.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let opts = Options {
            hierarchy: Hierarchy::V2 {
                root: root.clone(),
                parent: PathBuf::new(),
            },
            cgroup_base: "packrun".into(),
            batch_id: "b1-1".into(),
            output: Output::Inherit,
            scratch: t.path().join("scratch"),
            max_parallel: None,
            // The claims file cannot be made: execute fails after the
            // batch's cgroup exists.
            cpu_lock: Some(blocker.join("cpus")),
            single: false,
            ids: IdSource::Own { uid: 0, gid: 0 },
            disk_default: None,
            gpus: Vec::new(),
            gpu_root: PathBuf::from("/"),
        };
        let runs = keyed(vec![run("a", 1, 1)]);
        let alloc = Allocator::new(&two_cpus(), &[]);
        assert!(execute(&runs.into(), alloc, &opts, &HashMap::new(), &mut |_| {}).is_err());
        assert!(root.join("packrun").exists(), "the base group stays");
        assert!(
            !root.join("packrun/b1-1").exists(),
            "the batch's group is gone"
        );
    }

    mod same_order_as_the_plan {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// plan::simulate and the run loop, given the same durations,
            /// start the same runs in the same order at the same times.
            #[test]
            fn the_run_loop_starts_runs_as_plan_simulate_predicts(
                specs in proptest::collection::vec((1u32..=2, 1u64..=5, 0usize..3), 1..12)
            ) {
                let mut runs = Vec::new();
                for (i, (cpus, secs, dep)) in specs.iter().enumerate() {
                    let mut r = run(&format!("j{}", i % 4), *cpus, *secs);
                    // Depend on an earlier job only (no cycles).
                    if *dep > 0 && i % 4 >= *dep {
                        r.depends_on = vec![format!("j{}", i % 4 - dep)];
                    }
                    runs.push(r);
                }
                let runs = keyed(runs);
                let topo = two_cpus();
                let Ok(plan) = crate::plan::simulate(&runs.clone().into(), &topo, &[], None) else {
                    return Ok(());
                };
                let predicted: Vec<(usize, u64)> = plan
                    .entries
                    .iter()
                    .map(|e| (e.run, e.start.round() as u64))
                    .collect();
                // Each run's duration is its estimate, scripted by run key.
                let mut fake = Fake::new(&[]);
                for r in &runs {
                    fake.scripts.insert(r.key.clone(), script(r.estimate.as_secs_f64()));
                }
                let mut alloc = Allocator::new(&topo, &[]);
                let mut scripted = ScriptByKey { fake: &mut fake };
                drive(&runs.clone().into(), &mut alloc, &mut scripted, None, None, &HashMap::new(), &mut |_| {}).unwrap();
                let actual: Vec<(usize, u64)> = fake
                    .starts
                    .iter()
                    .map(|(i, t)| (*i, t.as_secs_f64().round() as u64))
                    .collect();
                prop_assert_eq!(actual, predicted);
            }
        }

        /// The fake, scripted by run key instead of job name.
        struct ScriptByKey<'a> {
            fake: &'a mut Fake,
        }

        impl Launcher for ScriptByKey<'_> {
            fn start(
                &mut self,
                index: usize,
                run: &Run,
                p: &Placement,
            ) -> Result<bool, Box<Record>> {
                let mut r = run.clone();
                r.job = run.key.clone();
                self.fake.start(index, &r, p)
            }
            fn wait(&mut self, until: Option<Instant>) -> Result<Vec<Happened>, RunError> {
                self.fake.wait(until)
            }
            fn now(&self) -> Instant {
                self.fake.now()
            }
            fn cpu_time(&mut self, index: usize) -> Result<Duration, LaunchError> {
                self.fake.cpu_time(index)
            }
            fn terminate(&mut self, index: usize) -> Result<(), LaunchError> {
                self.fake.terminate(index)
            }
            fn sample(&mut self, index: usize) -> bool {
                self.fake.sample(index)
            }
            fn kill(&mut self, index: usize) -> Result<(), LaunchError> {
                self.fake.kill(index)
            }
            fn collect(
                &mut self,
                index: usize,
                run: &Run,
                k: Option<(State, String)>,
            ) -> Option<Record> {
                self.fake.collect(index, run, k)
            }
            fn tidy(&mut self) -> Vec<String> {
                Vec::new()
            }
            fn disk_default(&self) -> Option<u64> {
                None
            }
            fn disk_use(&mut self, _: usize) -> Option<Result<DiskUse, LaunchError>> {
                None
            }
        }
    }

    fn disk_hog(rate: u64, secs: f64) -> Script {
        Script {
            secs,
            disk_rate: Some(rate),
            ..Script::default()
        }
    }

    #[test]
    fn a_run_over_its_disk_budget_is_killed_as_failed_with_the_budget_in_its_row() {
        let mut runs = keyed(vec![run("hog", 1, 60), run("calm", 1, 1)]);
        runs[0].resources.disk = Some(100 << 20);
        runs[1].resources.disk = Some(100 << 20);
        // 50 MiB a second: over 100 MiB after 2 s; the calm one writes 1 MiB/s.
        let mut fake = Fake::new(&[
            ("hog", disk_hog(50 << 20, 60.0)),
            ("calm", disk_hog(1 << 20, 5.0)),
        ]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let hog = state_of(&b, "hog-0");
        assert_eq!(hog.state, State::Failed);
        assert!(
            hog.termination_reason
                .starts_with("disk budget 100.0 MiB exceeded: "),
            "{}",
            hog.termination_reason
        );
        // Caught within the shortest check interval of the budget's end.
        assert!(
            hog.wall_time >= Duration::from_secs(2),
            "{:?}",
            hog.wall_time
        );
        assert!(
            hog.wall_time <= Duration::from_secs(2) + DISK_CHECK_MIN * 2,
            "{:?}",
            hog.wall_time
        );
        assert_eq!(state_of(&b, "calm-1").state, State::Completed);
    }

    #[test]
    fn the_default_disk_budget_applies_to_runs_whose_job_gives_none_and_files_count_too() {
        let mut runs = keyed(vec![run("hog", 1, 60), run("maker", 1, 60)]);
        runs[1].resources.files = Some(1000);
        let mut maker = disk_hog(0, 60.0);
        maker.files_rate = 100;
        let mut fake = Fake::new(&[("hog", disk_hog(10 << 20, 60.0)), ("maker", maker)]);
        fake.disk_default = Some(30 << 20);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let hog = state_of(&b, "hog-0");
        assert_eq!(hog.state, State::Failed);
        assert!(hog.termination_reason.starts_with("disk budget 30.0 MiB"));
        let maker = state_of(&b, "maker-1");
        assert_eq!(maker.state, State::Failed);
        assert!(
            maker
                .termination_reason
                .starts_with("file budget 1000 exceeded: "),
            "{}",
            maker.termination_reason
        );
        assert!(maker.wall_time >= Duration::from_secs(10));
    }

    #[test]
    fn a_run_that_went_over_its_budget_between_checks_and_ended_is_failed_all_the_same() {
        // 2 GiB/s for 30 ms against 32 MiB: ends before its first check.
        let mut runs = keyed(vec![run("burst", 1, 1)]);
        runs[0].resources.disk = Some(32 << 20);
        let mut fake = Fake::new(&[("burst", disk_hog(2 << 30, 0.03))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        let r = state_of(&b, "burst-0");
        assert_eq!(r.state, State::Failed);
        assert!(
            r.termination_reason.ends_with("(seen as it ended)"),
            "{}",
            r.termination_reason
        );
    }

    #[test]
    fn runs_without_a_disk_budget_are_never_measured() {
        let runs = keyed(vec![run("a", 1, 1), run("a", 1, 1)]);
        let mut fake = Fake::new(&[("a", disk_hog(1 << 30, 5.0))]);
        let b = drive_with(&runs, &mut fake, None, &HashMap::new());
        assert!(b.outcome.all_completed);
        assert_eq!(fake.disk_checks, 0);
    }

    #[test]
    fn disk_checks_come_sooner_as_the_budget_runs_out_and_never_cost_more_than_a_twentieth() {
        let at = |used: u64, took_ms: u64| {
            disk_check_interval(
                1 << 30,
                None,
                DiskUse {
                    bytes: used,
                    files: 0,
                    took: Duration::from_millis(took_ms),
                },
            )
        };
        assert_eq!(at(0, 0), DISK_CHECK_MAX);
        assert_eq!(at(512 << 20, 0), Duration::from_millis(500));
        assert_eq!(at(1 << 30, 0), DISK_CHECK_MIN);
        assert_eq!(at(1 << 30, 10), Duration::from_millis(200));
    }
}
