//! The real launcher: each run in its own container (see `container`)
//! under its own cgroup (see `cgroup`), watched through its init's pidfd
//! and, while it sets up, its error pipe; SIGINT and SIGTERM through a
//! signalfd; all in one poll(2).

use super::logs::{self, job_output, log_blocks, set_logs, LogPool, Logs};
use super::ready;
use super::teardown::{self};
use super::{
    not_started, DiskUse, Happened, LaunchError, Launcher, Options, Output, Record, RunError, State,
};
use crate::account::Counters;
use crate::cgroup::{self, Limits, RunCgroup};
use crate::container::ids::IdMaps;
use crate::container::{self, ContainerConfig, JobOutput};
use crate::counters;
use crate::fsx::Context;
use crate::jobfile::{Network, Numa, PrivateNet, Run, Runs, Step, UserNs};
use crate::net;
use crate::plan::Placement;
use crate::results::NetTraffic;
use crate::results::StepRecord;
use chrono::{DateTime, Utc};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real machine behind the run loop.
pub struct Host<'o> {
    opts: &'o Options,
    /// The started runs, rendered (until collected).
    started: HashMap<usize, Arc<Run>>,
    running: HashMap<usize, Running>,
    nets: NetPool,
    trees: TreePool,
    logs: LogPool,
    signals: SignalFd,
    /// Cgroups of finished runs, killed and read, to remove between
    /// passes (`tidy`); whatever is left when the batch ends goes then.
    to_remove: Vec<RunCgroup>,
    /// Runs with steps around them: where each stands (see `Staged`).
    staged: HashMap<usize, Staged>,
    /// Which step the container in `running` is (none: the job).
    in_step: HashMap<usize, Step>,
    /// Per parameter set: its runs left and where its setup stands.
    sets: HashMap<String, SetState>,
    /// What happened between waits (steps ended, jobs begun, runs over).
    queued: Vec<Happened>,
    /// When some run counts energy: the machine's RAPL zones and which
    /// runs used which packages (see counters::Ledger).
    energy: Option<(Vec<counters::Zone>, counters::Ledger)>,
    /// Readiness checks of services going on, by run.
    probes: HashMap<usize, ready::Probe>,
    /// NVIDIA's management library, when the batch has NVIDIA GPUs and
    /// the library loads.
    nvml: Option<crate::nvml::Nvml>,
    /// Said once by `tidy`.
    notes: Vec<String>,
}

/// Where a run with steps stands.
struct Staged {
    placement: Placement,
    /// Steps before the job still to run.
    before: VecDeque<Step>,
    /// Steps after the job still to run.
    after: VecDeque<Step>,
    /// The job's record once it ended.
    record: Option<Record>,
    /// The step that failed, and how: the run is an ERROR naming it.
    failed: Option<String>,
    /// Killed while waiting for its set's setup.
    killed: bool,
}

/// A parameter set's runs in this batch.
#[derive(Default)]
struct SetState {
    /// Runs of the set not over yet (the last one runs `cleanup`).
    left: usize,
    setup: Setup,
    /// Runs waiting for the set's setup to end.
    waiting: Vec<usize>,
}

#[derive(Default, Clone, PartialEq)]
enum Setup {
    #[default]
    NotYet,
    Running,
    Done,
    Failed(String),
}

/// The parameter set a run belongs to.
fn set_of(run: &Run) -> String {
    let params: Vec<(&str, &str)> = run
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    set_name(&run.job, &params)
}

fn set_name(job: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{job}\0{}", params.join("\0"))
}

impl<'o> Host<'o> {
    /// Watches signals and makes the batch's cgroup (removed again, with
    /// everything in it, when the host is dropped: also on an early error).
    pub fn new(
        opts: &'o Options,
        runs: &Runs,
        done: &HashMap<String, State>,
    ) -> Result<Host<'o>, RunError> {
        let signals = watch_signals()?;
        if let Output::Logs(dir) = &opts.output {
            std::fs::create_dir_all(dir.join("logs")).at("create", dir.join("logs"))?;
        }
        let logs = LogPool::new(&opts.output);
        // Before the batch's cgroup, which only a Host removes again.
        let nets = NetPool::new(opts, runs, done)?;
        if !opts.single {
            cgroup::prepare_batch(&opts.hierarchy, &opts.cgroup_base, &opts.batch_id)?;
        }
        let mut sets: HashMap<String, SetState> = HashMap::new();
        // Only runs with steps are staged and counted per set.
        for r in runs.iter().filter(|r| r.has_steps()) {
            if !done.contains_key(&r.key()) {
                sets.entry(set_name(r.job(), &r.params())).or_default().left += 1;
            }
        }
        let mut notes = Vec::new();
        let nvidia = opts
            .gpus
            .iter()
            .any(|g| g.vendor == crate::gpus::Vendor::Nvidia);
        let nvml = match nvidia {
            false => None,
            true => crate::nvml::Nvml::load()
                .map_err(|e| {
                    notes.push(format!(
                        "packrun: {e}; gpu_memory_peak_bytes and gpu_utilization stay empty"
                    ))
                })
                .ok(),
        };
        Ok(Host {
            nvml,
            notes,
            opts,
            started: HashMap::new(),
            running: HashMap::new(),
            nets,
            trees: TreePool::new(opts),
            logs,
            signals,
            to_remove: Vec::new(),
            staged: HashMap::new(),
            in_step: HashMap::new(),
            sets,
            queued: Vec::new(),
            energy: (!runs.counters().energy().is_empty()).then(|| {
                (
                    counters::zones(Path::new(counters::POWERCAP)),
                    counters::Ledger::default(),
                )
            }),
            probes: HashMap::new(),
        })
    }
}

impl Host<'_> {
    /// Starts what comes next for a staged run: a step before its job, its
    /// job (then `JobStarted`), a step after it, or nothing (then `Ended`).
    fn advance(&mut self, index: usize) {
        let Some(run) = self.started.get(&index).cloned() else {
            return;
        };
        let run = &*run;
        let Some(staged) = self.staged.get_mut(&index) else {
            return;
        };
        let next = if staged.failed.is_some() || staged.killed {
            None
        } else if let Some(step) = staged.before.pop_front() {
            Some(Some(step))
        } else if staged.record.is_none() {
            Some(None)
        } else {
            staged.after.pop_front().map(Some)
        };
        let placement = staged.placement.clone();
        let Some(what) = next else {
            self.queued.push(Happened::Ended(index));
            return;
        };
        let pools = (&mut self.nets, &mut self.trees);
        match start(run, placement, self.opts, pools, &mut self.logs, what) {
            Ok(r) => {
                self.going(index, r, what.is_none());
                match what {
                    Some(step) => {
                        self.in_step.insert(index, step);
                    }
                    None => self.queued.push(Happened::JobStarted(index)),
                }
            }
            Err(rec) => match what {
                Some(step) => self.step_over(index, step, *rec),
                None => {
                    let s = self.staged.get_mut(&index).expect("staged");
                    s.failed = Some(rec.termination_reason);
                    self.queued.push(Happened::Ended(index));
                }
            },
        }
    }

    /// A step of run `index` ended with `rec` (as a run's record): its row
    /// of steps.csv; a failed one makes the run an ERROR naming it (and a
    /// failed setup every run of its set). Then what comes next.
    fn step_over(&mut self, index: usize, step: Step, rec: Record) {
        let Some(run) = self.started.get(&index).cloned() else {
            return;
        };
        let run = &*run;
        let ok = rec.state == State::Completed;
        self.queued.push(Happened::Step(StepRecord {
            run_key: run.key.clone(),
            job: run.job.clone(),
            step: step.as_str(),
            start_time: rec.start_time,
            wall_time: rec.wall_time,
            cpu_ns: rec.usage.cpu_ns,
            memory_peak_bytes: rec.usage.memory_peak_bytes,
            exit_code: rec.exit_code,
            signal: rec.signal,
            state: rec.state,
            termination_reason: rec.termination_reason.clone(),
            counters: rec.counters.clone(),
        }));
        let why = format!("{} step failed: {}", step.as_str(), rec.termination_reason);
        if !ok {
            if let Some(s) = self.staged.get_mut(&index) {
                s.failed = Some(why.clone());
            }
        }
        if step == Step::Setup {
            let set = self.sets.entry(set_of(run)).or_default();
            set.setup = if ok {
                Setup::Done
            } else {
                Setup::Failed(format!("the {why} (its parameter set's)"))
            };
            let waiting = std::mem::take(&mut set.waiting);
            for w in waiting {
                if !ok {
                    if let Some(s) = self.staged.get_mut(&w) {
                        s.failed = Some(format!("the {why} (its parameter set's)"));
                    }
                }
                self.advance(w);
            }
        }
        self.advance(index);
    }

    /// A container of run `index` (its job, or a step) started: its
    /// packages go in the energy ledger, and a job that counts energy
    /// reads its packages' zones now.
    fn going(&mut self, index: usize, mut r: Running, job: bool) {
        if let Some((zones, ledger)) = &mut self.energy {
            let packages = counters::packages_of(Path::new("/"), r.placement.cpus.iter());
            ledger.start(index, packages.clone());
            let chosen = self.started.get(&index).map(|run| run.counters.energy());
            if let (true, Some(chosen)) = (job, chosen.filter(|c| !c.is_empty())) {
                r.energy = Some((counters::Meter::start(zones, chosen, &packages), packages));
            }
        }
        self.running.insert(index, r);
    }

    /// Run `index`'s container, out of the running ones and the ledger
    /// (with the runs it shared a package with meanwhile).
    fn gone(&mut self, index: usize) -> Option<Running> {
        let mut r = self.running.remove(&index)?;
        if let Some((_, ledger)) = &mut self.energy {
            r.met = ledger.end(index).len();
        }
        Some(r)
    }

    /// Run `index`'s job began (its init is `pid`): a service is ready
    /// now, or once its port accepts connections.
    fn serve(&mut self, index: usize, pid: i32) {
        let Some(svc) = self.started.get(&index).and_then(|r| r.service.clone()) else {
            return;
        };
        let Some(port) = svc.ready_tcp else {
            self.queued.push(Happened::Ready(index));
            return;
        };
        match ready::Probe::start(pid, port, svc.ready_timeout) {
            Ok(p) => {
                self.probes.insert(index, p);
            }
            Err(e) => self.queued.push(Happened::NotReady(
                index,
                format!("cannot check whether port {port} is ready: {e}"),
            )),
        }
    }

    /// A readiness check answered.
    fn take_answer(&mut self, index: usize) {
        let Some(answer) = self.probes.get_mut(&index).and_then(|p| p.answer()) else {
            return;
        };
        self.probes.remove(&index);
        self.queued.push(match answer {
            Ok(()) => Happened::Ready(index),
            Err(why) => Happened::NotReady(index, why),
        });
    }

    /// One run of the set is over.
    fn run_over(&mut self, set: &str) {
        if let Some(s) = self.sets.get_mut(set) {
            s.left = s.left.saturating_sub(1);
        }
    }
}

impl Drop for Host<'_> {
    fn drop(&mut self) {
        // Containers first (dropping one kills and reaps it), then their
        // cgroups, then the batch's.
        self.running.clear();
        for cg in self.to_remove.drain(..) {
            let _ = cg.remove();
        }
        if !self.opts.single {
            cgroup::remove_batch(
                &self.opts.hierarchy,
                &self.opts.cgroup_base,
                &self.opts.batch_id,
            );
        }
    }
}

impl Launcher for Host<'_> {
    fn start(
        &mut self,
        index: usize,
        run: &Run,
        placement: &Placement,
    ) -> Result<bool, Box<Record>> {
        let mut with_hosts;
        let run = match run.reaches.is_empty() {
            true => run,
            false => {
                with_hosts = run.clone();
                if let Err(why) = hosts_file(&mut with_hosts, self.opts) {
                    let mut rec = not_started(run, State::Error, why);
                    rec.cpus = placement.cpus.clone();
                    rec.mems = placement.mems.clone();
                    return Err(Box::new(rec));
                }
                &with_hosts
            }
        };
        self.started.insert(index, Arc::new(run.clone()));
        let steps = &run.steps;
        if steps == &Default::default() {
            let pools = (&mut self.nets, &mut self.trees);
            let r = start(
                run,
                placement.clone(),
                self.opts,
                pools,
                &mut self.logs,
                None,
            )?;
            self.going(index, r, true);
            return Ok(true);
        }
        let mut staged = Staged {
            placement: placement.clone(),
            before: VecDeque::new(),
            after: steps
                .conclude
                .as_ref()
                .map(|_| Step::Conclude)
                .into_iter()
                .collect(),
            record: None,
            failed: None,
            killed: false,
        };
        let set = self.sets.entry(set_of(run)).or_default();
        let mut wait_for_setup = false;
        if steps.setup.is_some() {
            match set.setup.clone() {
                Setup::NotYet => {
                    set.setup = Setup::Running;
                    staged.before.push_back(Step::Setup);
                }
                Setup::Running => {
                    set.waiting.push(index);
                    wait_for_setup = true;
                }
                Setup::Done => {}
                Setup::Failed(why) => {
                    set.left = set.left.saturating_sub(1);
                    let mut rec = not_started(run, State::Error, why);
                    rec.cpus = placement.cpus.clone();
                    rec.mems = placement.mems.clone();
                    return Err(Box::new(rec));
                }
            }
        }
        if steps.prepare.is_some() {
            staged.before.push_back(Step::Prepare);
        }
        self.staged.insert(index, staged);
        if !wait_for_setup {
            self.advance(index);
        }
        Ok(false)
    }

    fn wait(&mut self, until: Option<Instant>) -> Result<Vec<Happened>, RunError> {
        let now = Instant::now();
        let timeout = match until {
            Some(t) => PollTimeout::try_from(
                t.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1,
            )
            .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        // Per run its pidfd; then the signalfd; then the setup fds of runs
        // still starting.
        let order: Vec<usize> = self.running.keys().copied().collect();
        let n = order.len();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 * n + 1);
        fds.extend(
            order
                .iter()
                .map(|i| PollFd::new(self.running[i].container.pidfd.as_fd(), PollFlags::POLLIN)),
        );
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        let mut starting: Vec<usize> = Vec::new();
        for (k, i) in order.iter().enumerate() {
            if let Some(fd) = self.running[i].container.setup_fd() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                starting.push(k);
            }
        }
        let probing: Vec<usize> = self.probes.keys().copied().collect();
        fds.extend(
            probing
                .iter()
                .map(|i| PollFd::new(self.probes[i].fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RunError::Poll(e)),
        }
        let fired = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let exited: Vec<bool> = fds[..n].iter().map(fired).collect();
        let signalled = fired(&fds[n]);
        let mut setup_ready = vec![false; n];
        for (j, f) in fds[n + 1..n + 1 + starting.len()].iter().enumerate() {
            setup_ready[starting[j]] = fired(f);
        }
        let answered: Vec<usize> = fds[n + 1 + starting.len()..]
            .iter()
            .zip(&probing)
            .filter(|(f, _)| fired(f))
            .map(|(_, &i)| i)
            .collect();
        drop(fds);
        for index in answered {
            self.take_answer(index);
        }

        let mut happened = std::mem::take(&mut self.queued);
        if signalled {
            while let Ok(Some(_)) = self.signals.read_signal() {}
            happened.push(Happened::Interrupted);
        }
        for (k, &index) in order.iter().enumerate() {
            let r = self.running.get_mut(&index).expect("listed above");
            // A run whose init exited while starting is looked at first:
            // init writes its error before it exits.
            let mut ended = exited[k];
            if setup_ready[k] || (ended && r.container.setup_fd().is_some()) {
                match r.container.poll_setup() {
                    // The job exec'd: a service starts to serve.
                    Ok(true) => {
                        let pid = r.container.pid;
                        self.serve(index, pid);
                    }
                    // Still starting: a pidfd stays readable, seen next time.
                    Ok(false) => ended = false,
                    Err(e) => {
                        let mut r = self.gone(index).expect("listed above");
                        let (fd, link) = (r.container.take_netns(), r.link.take());
                        let rec = setup_failed(r, &self.started[&index], e);
                        // Its init is reaped: nothing of the run is left in it.
                        self.nets.release(fd, link, false);
                        if let Some(step) = self.in_step.remove(&index) {
                            self.step_over(index, step, rec);
                        } else if self.staged.contains_key(&index) {
                            // The job could not start after its steps.
                            let s = self.staged.get_mut(&index).expect("staged");
                            s.failed = Some(rec.termination_reason.clone());
                            self.queued.push(Happened::Ended(index));
                        } else {
                            happened.push(Happened::SetupFailed(index, Box::new(rec)));
                        }
                        continue;
                    }
                }
            }
            if ended {
                match self.in_step.remove(&index) {
                    Some(step) => {
                        let r = self.gone(index).expect("listed above");
                        let rec = collect(
                            r,
                            &self.started[&index],
                            None,
                            &mut self.to_remove,
                            &mut self.logs,
                        );
                        self.step_over(index, step, rec);
                    }
                    None => happened.push(Happened::Ended(index)),
                }
            }
        }
        happened.append(&mut self.queued);
        Ok(happened)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn cpu_time(&mut self, index: usize) -> Result<Duration, LaunchError> {
        if self.in_step.contains_key(&index) {
            return Ok(Duration::ZERO);
        }
        let r = self.running.get(&index).ok_or(LaunchError::NotRunning)?;
        r.cgroup
            .cpu_time()
            .map_err(|e| LaunchError::Failed(crate::fsx::chain(&e)))
    }

    fn sample(&mut self, index: usize) -> bool {
        let Some(r) = self.running.get_mut(&index) else {
            return false;
        };
        let more = r.cgroup.sample();
        match &self.nvml {
            Some(nvml) if !r.placement.gpus.is_empty() => {
                let seen: Vec<crate::nvml::Sample> = r
                    .placement
                    .gpus
                    .iter()
                    .filter_map(|b| nvml.sample(b))
                    .collect();
                r.gpu_usage.add(&seen);
                true
            }
            _ => more,
        }
    }

    fn terminate(&mut self, index: usize) -> Result<(), LaunchError> {
        let r = self.running.get(&index).ok_or(LaunchError::NotRunning)?;
        match r.container.signal(libc::SIGTERM) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(LaunchError::NotRunning),
            Err(e) => Err(LaunchError::Failed(format!("SIGTERM to its init: {e}"))),
        }
    }

    fn kill(&mut self, index: usize) -> Result<(), LaunchError> {
        let Some(r) = self.running.get(&index) else {
            // Waiting for its set's setup: it ends now.
            if let Some(s) = self.staged.get_mut(&index).filter(|s| !s.killed) {
                s.killed = true;
                s.before.clear();
                s.after.clear();
                self.sets
                    .values_mut()
                    .for_each(|set| set.waiting.retain(|&w| w != index));
                self.queued.push(Happened::Ended(index));
            }
            return Ok(());
        };
        // Killing the cgroup kills init and with it the whole pid
        // namespace; where that fails, killing init does the same.
        match r.cgroup.start_kill() {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = crate::fsx::chain(&e);
                r.container
                    .signal(libc::SIGKILL)
                    .map_err(|s| LaunchError::Failed(format!("{e}; SIGKILL to its init: {s}")))
            }
        }
    }

    fn collect(
        &mut self,
        index: usize,
        run: &Run,
        killed_for: Option<(State, String)>,
    ) -> Option<Record> {
        let full_now = match self.running.contains_key(&index) {
            true => self.results_free().filter(|&f| f < FULL_BELOW),
            false => None,
        };
        self.probes.remove(&index);
        let job = match self.gone(index) {
            Some(mut r) => {
                // init has exited, so every process of the run is gone.
                let traffic = self.nets.release(
                    r.container.take_netns(),
                    r.link.take(),
                    run.container.capabilities.is_empty(),
                );
                self.trees.give_back(r.container.take_host_tree());
                let full = match (r.disk_full, full_now) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let mut rec = collect(
                    r,
                    run,
                    killed_for.clone(),
                    &mut self.to_remove,
                    &mut self.logs,
                );
                match traffic {
                    Some(Ok(t)) => rec.net = Some(t),
                    Some(Err(e)) => rec.termination_reason.push_str(&format!("; {e}")),
                    None => {}
                }
                if let Some(free) = full {
                    // Not silently: what it wrote there may be cut short.
                    rec.termination_reason.push_str(&format!(
                        "; the disk under the results filled up while it ran ({} free): its writes there and its stdout and stderr may have failed with ENOSPC",
                        crate::report::human_bytes(free)
                    ));
                }
                Some(rec)
            }
            None => None,
        };
        let Some(mut staged) = self.staged.remove(&index) else {
            self.started.remove(&index);
            return job;
        };
        let set = set_of(run);
        if let Some(rec) = job {
            // The job ended: the steps after it, unless it was interrupted.
            let last = self.sets.get(&set).is_some_and(|s| s.left == 1);
            if last && run.steps.cleanup.is_some() {
                staged.after.push_back(Step::Cleanup);
            }
            if matches!(killed_for, Some((State::Cancelled, _))) {
                staged.after.clear();
            }
            staged.record = Some(rec);
            if !staged.after.is_empty() && staged.failed.is_none() {
                self.staged.insert(index, staged);
                self.advance(index);
                return None;
            }
        }
        self.run_over(&set);
        let mut rec = staged.record.unwrap_or_else(|| {
            let (state, why) = match (&staged.failed, killed_for) {
                (Some(f), _) => (State::Error, f.clone()),
                (None, Some(k)) => k,
                (None, None) => (State::Error, "ended before its job began".into()),
            };
            let mut rec = not_started(run, state, why);
            rec.cpus = staged.placement.cpus.clone();
            rec.mems = staged.placement.mems.clone();
            rec
        });
        if let (Some(f), true) = (&staged.failed, rec.state != State::Error) {
            rec.state = State::Error;
            rec.termination_reason = format!("{f}; the run itself: {}", rec.termination_reason);
        }
        self.started.remove(&index);
        Some(rec)
    }

    fn disk_default(&self) -> Option<u64> {
        self.opts.disk_default
    }

    fn disk_use(&mut self, index: usize) -> Option<Result<DiskUse, LaunchError>> {
        let began = Instant::now();
        let r = self.running.get(&index)?;
        let logs = r.logs.as_ref();
        if r.writable.is_empty() && logs.is_none() {
            return None;
        }
        let mut used = DiskUse::default();
        for dir in &r.writable {
            match tree_use(dir) {
                Ok((bytes, files)) => {
                    used.bytes += bytes;
                    used.files += files;
                }
                Err(e) => return Some(Err(LaunchError::Failed(format!("{}: {e}", dir.display())))),
            }
        }
        if let Some(l) = logs {
            used.bytes += log_blocks(l);
        }
        // The disk under the results filling up (a run without a budget,
        // or something besides packrun): every run there may lose writes.
        if let Some(free) = self.results_free() {
            if free < FULL_BELOW {
                for r in self.running.values_mut() {
                    r.disk_full = Some(r.disk_full.map_or(free, |f| f.min(free)));
                }
            }
        }
        used.took = began.elapsed();
        Some(Ok(used))
    }

    fn addr(&self, index: usize) -> Option<std::net::Ipv4Addr> {
        self.running.get(&index).and_then(|r| r.addr)
    }

    fn tidy(&mut self) -> Vec<String> {
        let mut keep = Vec::new();
        let mut notes = std::mem::take(&mut self.notes);
        for cg in self.to_remove.drain(..) {
            match cg.try_remove() {
                Ok(Some(cg)) => keep.push(cg),
                Ok(None) => {}
                // Told, not dropped: a cgroup left behind is the user's to see.
                Err(e) => notes.push(format!(
                    "packrun: a finished run's cgroup was not removed: {}",
                    crate::fsx::chain(&e)
                )),
            }
        }
        self.to_remove = keep;
        notes
    }
}

/// A run that is going now.
struct Running {
    placement: Placement,
    cgroup: RunCgroup,
    container: container::Container,
    start: Instant,
    start_time: DateTime<Utc>,
    /// Machine counters at its start (see account::Disturbance).
    counters: Counters,
    /// The perf events it chose, open on its init (see `counters`).
    perf: Option<counters::Open>,
    /// The energy zones of its packages, read at its start, and the packages.
    energy: Option<(counters::Meter, std::collections::BTreeSet<u32>)>,
    /// How many other runs used its packages while it ran.
    met: usize,
    logs: Logs,
    /// The run's id maps (None: the host's ids), for its row.
    ids: Option<IdMaps>,
    /// Its writable dirs on the host (what its disk budget counts, with its logs).
    writable: Vec<PathBuf>,
    /// The least free space seen under the results while it ran, when
    /// that was less than FULL_BELOW.
    disk_full: Option<u64>,
    /// Its link on its private network (None: not on one, or a step).
    link: Option<net::Link>,
    /// Its own IPv4 address on its private network: what other runs
    /// on that network reach it at (see `Host::addr`).
    addr: Option<std::net::Ipv4Addr>,
    /// Its GPUs, for its row, and the samples of them.
    gpu: crate::results::GpuUse,
    gpu_usage: crate::nvml::Usage,
}

/// Free space under the results below which a run's writes there may
/// fail: the disk is full (for the run's ids; root may have a reserve).
const FULL_BELOW: u64 = 1 << 20;

impl Host<'_> {
    /// Free space for unprivileged ids under the results folder (None:
    /// no results folder, or statvfs failed).
    fn results_free(&self) -> Option<u64> {
        let Output::Logs(dir) = &self.opts.output else {
            return None;
        };
        crate::results::free_space(dir).ok().flatten()
    }
}

/// Blocks allocated below `root` (not `root` itself) and how many files
/// and directories there are; a hard-linked file counts once, other file
/// systems mounted inside are not entered.
fn tree_use(root: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::symlink_metadata(root)?.dev();
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut linked = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed meanwhile by the run.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(m) = entry.metadata() else { continue };
            files += 1;
            if m.nlink() > 1 && !m.is_dir() && !linked.insert(m.ino()) {
                continue;
            }
            bytes += m.blocks() * 512;
            if m.is_dir() && m.dev() == dev {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, files))
}

/// Network namespaces for the runs of a batch to join, each used by one run
/// at a time: a run that ended gives its namespace back for a later run.
/// Making a network namespace, and the kernel tearing it down afterwards,
/// costs more CPU than anything else in a short run; a namespace whose
/// processes all died holds no sockets and, for a job without
/// capabilities, nothing else the job could have changed. A single run
/// (`packrun exec`), a job that keeps capabilities (CAP_NET_ADMIN could
/// change addresses, routes or sysctls) and rootless runs get a fresh one.
///
/// The runs on private networks get theirs from `plumbing` (see `net`),
/// which pools them the same way, per network.
struct NetPool {
    enabled: bool,
    free: Vec<OwnedFd>,
    /// The private networks of the runs still to run, if any.
    plumbing: Option<net::Plumbing>,
}

impl NetPool {
    fn new(
        opts: &Options,
        runs: &Runs,
        done: &HashMap<String, State>,
    ) -> Result<NetPool, RunError> {
        let mut nets: Vec<Arc<PrivateNet>> = Vec::new();
        for r in runs.iter().filter(|r| !done.contains_key(&r.key())) {
            if let Some(n) = r.container().network.private() {
                if !nets.iter().any(|m| m.name == n.name) {
                    nets.push(n.clone());
                }
            }
        }
        let plumbing = match nets.is_empty() {
            true => None,
            false => Some(net::Plumbing::new(&nets).map_err(RunError::Network)?),
        };
        Ok(NetPool {
            enabled: !opts.single && nix::unistd::geteuid().is_root(),
            free: Vec::new(),
            plumbing,
        })
    }

    /// The link of a run on a private network, ready for it: pooled
    /// unless the job keeps capabilities (as for `none`).
    fn attach(&mut self, run: &Run) -> Result<Option<net::Link>, String> {
        let Some(net) = run.container.network.private() else {
            return Ok(None);
        };
        let plumbing = self
            .plumbing
            .as_mut()
            .ok_or_else(|| format!("network `{}` was not set up", net.name))?;
        let fresh = !self.enabled || !run.container.capabilities.is_empty();
        plumbing
            .attach(net, fresh)
            .map(Some)
            .map_err(|e| format!("network `{}`: {e}", net.name))
    }

    /// After the run's init exited: its link's traffic (the link kept for
    /// a later run when `reuse`), or its `none` namespace back to the pool.
    fn release(
        &mut self,
        fd: Option<OwnedFd>,
        link: Option<net::Link>,
        reuse: bool,
    ) -> Option<Result<NetTraffic, String>> {
        let Some(link) = link else {
            self.give_back(fd);
            return None;
        };
        drop(fd);
        let plumbing = self.plumbing.as_mut()?;
        let reuse = reuse && self.enabled;
        Some(
            plumbing
                .detach(link, reuse)
                .map(|t| NetTraffic {
                    rx_bytes: t.rx_bytes,
                    tx_bytes: t.tx_bytes,
                    rx_packets: t.rx_packets,
                    tx_packets: t.tx_packets,
                })
                .map_err(|e| format!("its network counters: {e}")),
        )
    }

    /// A namespace for `run` to join, or None when it makes its own.
    fn take(&mut self, run: &Run) -> Option<OwnedFd> {
        if !self.enabled
            || run.container.network != Network::None
            || !run.container.capabilities.is_empty()
        {
            return None;
        }
        if let Some(fd) = self.free.pop() {
            return Some(fd);
        }
        match container::new_network_namespace() {
            Ok(fd) => Some(fd),
            Err(_) => {
                // Each run makes its own then; if that fails too, its
                // row says why.
                self.enabled = false;
                None
            }
        }
    }

    fn give_back(&mut self, fd: Option<OwnedFd>) {
        self.free.extend(fd);
    }
}

/// The runs' overlays of the host's tree (`container::HostTree`), each
/// used by one run at a time: a run that ended gives its own back for a
/// later run, which copies them instead of mounting new ones, for at most
/// `container::HOST_TREE_REUSE` after they were made. A single run
/// (`packrun exec`) and rootless runs mount their own.
struct TreePool {
    enabled: bool,
    free: Vec<container::HostTree>,
}

impl TreePool {
    fn new(opts: &Options) -> TreePool {
        TreePool {
            enabled: !opts.single && nix::unistd::geteuid().is_root(),
            free: Vec::new(),
        }
    }

    /// For a run's config: whether to pool, and a tree to offer it.
    fn take(&mut self, run: &Run) -> (bool, Option<container::HostTree>) {
        if !self.enabled || !matches!(run.container.rootfs, crate::jobfile::Rootfs::Host) {
            return (false, None);
        }
        let (fresh, stale) = std::mem::take(&mut self.free)
            .into_iter()
            .partition(container::HostTree::fresh);
        self.free = fresh;
        container::HostTree::retire(stale);
        (true, self.free.pop())
    }

    fn give_back(&mut self, tree: Option<container::HostTree>) {
        match tree {
            Some(t) if t.fresh() => self.free.push(t),
            t => container::HostTree::retire(t.into_iter().collect()),
        }
    }
}

/// The run's /etc/hosts: the lines of its root's own (the host's, for
/// the host tree), then `ADDR JOB` for each service it reaches, written
/// beside its scratch dirs and bound read-only over /etc/hosts.
fn hosts_file(run: &mut Run, opts: &Options) -> Result<(), String> {
    let own = match &run.container.rootfs {
        crate::jobfile::Rootfs::Host => PathBuf::from("/etc/hosts"),
        crate::jobfile::Rootfs::Dir(d) => d.join("etc/hosts"),
    };
    let mut text = match std::fs::read_to_string(&own) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_string()
        }
        Err(e) => return Err(format!("/etc/hosts: cannot read {}: {e}", own.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# services of this run (packrun)\n");
    for (job, addr) in &run.reaches {
        text.push_str(&format!("{addr}\t{job}\n"));
    }
    let path = opts.scratch.join(format!("{}.hosts", run.key));
    let chain = |e: crate::fsx::PathError| format!("/etc/hosts: {}", crate::fsx::chain(&e));
    std::fs::create_dir_all(&opts.scratch)
        .at("create", &opts.scratch)
        .map_err(chain)?;
    std::fs::write(&path, text)
        .at("write", &path)
        .map_err(chain)?;
    run.container.mounts.push(crate::jobfile::Mount {
        source: path,
        target: PathBuf::from("/etc/hosts"),
        read_only: true,
    });
    Ok(())
}

/// Blocks SIGINT and SIGTERM and returns a signalfd for them.
fn watch_signals() -> Result<SignalFd, RunError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(RunError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(RunError::Signals)
}

/// The memory nodes a run is limited to and its memory policy.
fn limits_for(run: &Run, placement: &Placement) -> Limits {
    Limits {
        cpus: placement.cpus.clone(),
        mems: placement.mems.clone(),
        memory: run.resources.memory,
        cpu_quota: run.resources.cpu_quota,
        pids: run.resources.pids,
        io: Vec::new(),
        deny_devices: Vec::new(),
    }
}

/// The run's I/O limits on the disk holding `io.device` (else the workdir,
/// else /). A path on no disk (tmpfs, overlay, NFS) is an error: a limit
/// the kernel cannot apply must not vanish without a word.
fn io_throttles(run: &Run) -> Result<Vec<cgroup::IoThrottle>, String> {
    let io = &run.resources.io;
    if io.read_bps.is_none()
        && io.write_bps.is_none()
        && io.read_iops.is_none()
        && io.write_iops.is_none()
    {
        return Ok(Vec::new());
    }
    let path = io
        .device
        .clone()
        .or_else(|| run.workdir.clone())
        .unwrap_or_else(|| PathBuf::from("/"));
    let (major, minor) =
        cgroup::device_of(&path).map_err(|e| format!("io limits: {}", crate::fsx::chain(&e)))?;
    Ok(vec![cgroup::IoThrottle {
        major,
        minor,
        read_bps: io.read_bps,
        write_bps: io.write_bps,
        read_iops: io.read_iops,
        write_iops: io.write_iops,
    }])
}

/// Creates the cgroup, starts the container, sets the deadlines.
/// Starts run's job, or with `step` that step of it: the same container
/// but for the command, in a cgroup of its own (`<key>.<step>`) with its
/// own logs (`logs/<key>.<step>.out`), stdin from /dev/null and a network
/// namespace of its own.
fn start(
    run: &Run,
    placement: Placement,
    opts: &Options,
    (nets, trees): (&mut NetPool, &mut TreePool),
    pool: &mut LogPool,
    step: Option<Step>,
) -> Result<Running, Box<Record>> {
    let start_time = Utc::now();
    let start = Instant::now();
    let fail = |reason: String, logs: Logs| {
        let mut rec = not_started(run, State::Error, reason);
        rec.cpus = placement.cpus.clone();
        rec.mems = placement.mems.clone();
        rec.gpu.gpus = placement.gpus.join(",");
        rec.start_time = start_time;
        rec.end_time = Utc::now();
        rec.wall_time = start.elapsed();
        set_logs(&mut rec, logs);
        Box::new(rec)
    };
    let ids = run_ids(run, &placement, opts).map_err(|e| fail(e, None))?;
    let name = step.map(|s| format!("{}.{}", run.key, s.as_str()));
    let name = name.as_deref().unwrap_or(&run.key);
    // Only a batch that asks for GPUs knows the machine's (and hides them).
    let rg = match opts.gpus.is_empty() {
        true => super::gpus::RunGpus::default(),
        false => super::gpus::for_run(&opts.gpus, &opts.gpu_root, &placement.gpus)
            .map_err(|e| fail(e, None))?,
    };
    let cg = run_cgroup(run, &placement, opts, name, rg.deny).map_err(|e| fail(e, None))?;
    let (logs, output) = job_output(opts, name, pool).map_err(|e| fail(e, None))?;
    let files = match run_files(run, opts, &cg, step) {
        Ok(f) => f,
        Err(e) => return Err(fail(e, logs)),
    };
    let writable: Vec<PathBuf> = files.writable.iter().map(|(h, _)| h.clone()).collect();
    // On v1 init moves itself in (join_tasks); on v2 clone3 starts it there.
    let self_placed = !files.join_tasks.is_empty();
    let link = match step {
        Some(_) => None,
        None => match nets.attach(run) {
            Ok(l) => l,
            Err(e) => {
                let _ = cg.remove();
                return Err(fail(e, logs));
            }
        },
    };
    let netns = match (step, &link) {
        (Some(_), _) => None,
        (None, Some(l)) => match l.namespace() {
            Ok(fd) => Some(fd),
            Err(e) => {
                nets.release(None, link, false);
                let _ = cg.remove();
                return Err(fail(format!("network namespace: {e}"), logs));
            }
        },
        (None, None) => nets.take(run),
    };
    let mut cfg = container_config(run, &placement, step, ids.clone(), output, files, netns);
    if !rg.binds.is_empty() {
        cfg.devices = rg.binds;
        // Ours first: the job's own value of one of them wins.
        let mut env: Vec<(String, String)> = rg
            .env
            .into_iter()
            .filter(|(k, _)| !cfg.env.iter().any(|(j, _)| j == k))
            .collect();
        env.append(&mut cfg.env);
        cfg.env = env;
    }
    let gpu = crate::results::GpuUse {
        gpus: gpus_cell(&placement, &opts.hierarchy),
        ..Default::default()
    };
    (cfg.pool_host_tree, cfg.host_tree) = trees.take(run);
    let cgroup_dir = cg.v2_dir().and_then(|d| File::open(d).ok());
    let mut perf = None;
    // Returns while init still builds the root: the loop polls the setup
    // fd, so the setups of several runs overlap.
    let spawned = container::spawn_async(cfg, cgroup_dir.as_ref().map(|f| f.as_fd()), &mut |pid| {
        // On init, before it may start the job (see counters::Open).
        if !run.counters.perf().is_empty() {
            perf = Some(counters::Open::on(pid, run.counters)?);
        }
        if self_placed || (cgroup_dir.is_some() && cg.holds(pid)) {
            return Ok(());
        }
        cg.attach(pid)
            .map_err(|e| std::io::Error::other(crate::fsx::chain(&e)))
    });
    let c = match spawned {
        Ok(c) => c,
        Err(e) => {
            // A pooled namespace went with the config: the next run
            // that needs one makes a new one.
            let _ = cg.kill();
            let _ = cg.remove();
            nets.release(None, link, false);
            return Err(fail(e.to_string(), logs));
        }
    };
    Ok(Running {
        addr: link.as_ref().map(net::Link::addr),
        link,
        counters: machine_counters(&placement),
        perf,
        energy: None,
        met: 0,
        placement,
        cgroup: cg,
        container: c,
        start,
        start_time,
        logs,
        ids,
        writable,
        disk_full: None,
        gpu,
        gpu_usage: Default::default(),
    })
}

/// The `gpus` cell of a run on `h`: its bus ids, marked where only binding
/// its nodes keeps it to them (cgroup v2 without root: no device program).
fn gpus_cell(placement: &Placement, h: &cgroup::Hierarchy) -> String {
    let ids = placement.gpus.join(",");
    if !ids.is_empty() && h.version() == 2 && !nix::unistd::geteuid().is_root() {
        return ids + " (bound only)";
    }
    ids
}

/// The run's own block of host ids, by its first CPU (see container::ids);
/// None for the host's ids (`userns: host`).
fn run_ids(run: &Run, placement: &Placement, opts: &Options) -> Result<Option<IdMaps>, String> {
    match run.container.userns {
        UserNs::Host => Ok(None),
        UserNs::Private => {
            let slot = placement.cpus.iter().next().unwrap_or(0);
            let user = run.container.user.unwrap_or((0, 0));
            opts.ids
                .maps(slot, user)
                .map(Some)
                .map_err(|e| format!("user namespace: {e}"))
        }
    }
}

/// The run's cgroup `<base>/<batch>/<name>` with its limits (a single
/// run's is `<base>/<batch>` itself).
fn run_cgroup(
    run: &Run,
    placement: &Placement,
    opts: &Options,
    name: &str,
    deny_devices: Vec<(u32, u32)>,
) -> Result<RunCgroup, String> {
    let mut limits = limits_for(run, placement);
    limits.deny_devices = deny_devices;
    limits.io = io_throttles(run)?;
    let (batch, name) = match opts.single {
        true => ("", opts.batch_id.as_str()),
        false => (opts.batch_id.as_str(), name),
    };
    RunCgroup::create(&opts.hierarchy, &opts.cgroup_base, batch, name, &limits)
        .map_err(|e| format!("cgroup: {}", crate::fsx::chain(&e)))
}

/// What the runner opens and makes on the host for a run.
struct RunFiles {
    /// (host directory, target inside) of its writable dirs.
    writable: Vec<(PathBuf, PathBuf)>,
    /// Its cgroup v1 `tasks` files, for init to join.
    join_tasks: Vec<OwnedFd>,
    /// The job's stdin: the job file's `stdin:`, else /dev/null (None).
    stdin: Option<OwnedFd>,
}

fn run_files(
    run: &Run,
    opts: &Options,
    cg: &RunCgroup,
    step: Option<Step>,
) -> Result<RunFiles, String> {
    let chain = |e: crate::fsx::PathError| crate::fsx::chain(&e);
    let mut writable = Vec::new();
    for target in &run.container.writable {
        let host = opts
            .scratch
            .join(&run.key)
            .join(target.strip_prefix("/").unwrap_or(target));
        std::fs::create_dir_all(&host)
            .at("create", &host)
            .map_err(chain)?;
        writable.push((host, target.clone()));
    }
    let mut join_tasks = Vec::new();
    for path in cg.v1_tasks_files() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .at("open", &path)
            .map_err(chain)?;
        join_tasks.push(OwnedFd::from(f));
    }
    let stdin = match (&run.stdin, step) {
        (Some(path), None) => Some(OwnedFd::from(
            File::open(path).at("open stdin", path).map_err(chain)?,
        )),
        _ => None,
    };
    Ok(RunFiles {
        writable,
        join_tasks,
        stdin,
    })
}

/// The container of the job, or of one of its steps.
fn container_config(
    run: &Run,
    placement: &Placement,
    step: Option<Step>,
    ids: Option<IdMaps>,
    output: JobOutput,
    files: RunFiles,
    netns: Option<OwnedFd>,
) -> ContainerConfig {
    // `{cpus}` is the assigned list.
    let cpus = placement.cpus.to_string();
    let argv = match step {
        Some(s) => run.steps.get(s).map_or(&[][..], Vec::as_slice),
        None => &run.command[..],
    };
    ContainerConfig {
        argv: argv.iter().map(|a| a.render(Some(&cpus))).collect(),
        env: run
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.render(Some(&cpus))))
            .collect(),
        workdir: run.workdir.clone(),
        hostname: run.container.hostname.clone(),
        rootfs: run.container.rootfs.clone(),
        // A step of a run on a private network gets loopback only.
        network: match (&run.container.network, step) {
            (Network::Private(_), Some(_)) => Network::None,
            (n, _) => n.clone(),
        },
        mounts: run.container.mounts.clone(),
        devices: Vec::new(),
        writable: files.writable,
        user: run.container.user,
        capabilities: run.container.capabilities.clone(),
        rlimits: run.resources.rlimits.clone(),
        mempolicy: match &run.resources.numa {
            Numa::Nodes { nodes, policy } => Some((*policy, nodes.clone())),
            _ => None,
        },
        stdin: files.stdin,
        output,
        join_tasks: files.join_tasks,
        netns,
        pool_host_tree: false,
        host_tree: None,
        ids,
        hidden: run.container.hidden.clone(),
        visible: run.container.visible.clone(),
        aio: run.container.aio,
    }
}

/// A run whose container setup failed: the container is killed and reaped,
/// the cgroup removed, the record says ERROR with the failed step.
fn setup_failed(r: Running, run: &Run, e: container::SetupError) -> Record {
    drop(r.container); // kills and reaps init
    let _ = r.cgroup.kill();
    let _ = r.cgroup.remove();
    let mut rec = not_started(run, State::Error, e.to_string());
    rec.cpus = r.placement.cpus;
    rec.mems = r.placement.mems;
    rec.gpu = r.gpu;
    rec.userns = describe_ids(r.ids.as_ref());
    rec.start_time = r.start_time;
    rec.end_time = Utc::now();
    rec.wall_time = r.start.elapsed();
    set_logs(&mut rec, r.logs);
    rec
}

/// The machine counters of a run's disturbance (see account::Counters),
/// from the sources this machine has, looked for once.
fn machine_counters(placement: &Placement) -> Counters {
    static SOURCES: std::sync::OnceLock<crate::account::Sources> = std::sync::OnceLock::new();
    let sources = *SOURCES.get_or_init(|| crate::account::Sources::of(Path::new("/")));
    Counters::read_from(Path::new("/"), placement.cpus.iter(), sources)
}

/// The runs.csv cell of a run's ids.
fn describe_ids(ids: Option<&IdMaps>) -> String {
    ids.map_or_else(|| "host".into(), IdMaps::describe)
}

/// After init exited: its end (see `teardown`), its logs kept, its record.
fn collect(
    r: Running,
    run: &Run,
    killed_for: Option<(State, String)>,
    to_remove: &mut Vec<RunCgroup>,
    pool: &mut LogPool,
) -> Record {
    let wall_time = r.start.elapsed();
    let end_time = Utc::now();
    let ended = teardown::end(r.container, r.cgroup, to_remove);
    // Every process of the run has exited: the counts are its totals.
    let mut reading = counters::Reading::default();
    if let Some(perf) = &r.perf {
        perf.read(&mut reading);
    }
    if let Some((meter, packages)) = &r.energy {
        meter.read(packages, r.met, &mut reading);
    }
    let (mut state, mut reason) = teardown::classify(killed_for, &ended);
    let (stdout, stderr, said, log_error) = logs::keep(r.logs, pool, ended.all_gone, run.log_limit);
    reason.push_str(&said);
    if let Some(e) = log_error {
        // The run's output is lost: its row must not pass for a clean one.
        state = State::Error;
        reason = format!("{e}; the run itself: {reason}");
    }
    let disturbance = r.counters.since(&machine_counters(&r.placement));
    Record {
        key: run.key.clone(),
        job: run.job.clone(),
        params: run.params.clone(),
        rep: run.rep,
        warmup: run.warmup,
        cpus: r.placement.cpus,
        mems: r.placement.mems,
        gpu: crate::results::GpuUse {
            memory_peak: r.gpu_usage.memory_peak(),
            utilization: r.gpu_usage.mean_utilization(),
            ..r.gpu
        },
        userns: describe_ids(r.ids.as_ref()),
        start_time: r.start_time,
        end_time,
        wall_time,
        usage: ended.usage,
        disturbance,
        memory_limit: run.resources.memory,
        exit_code: ended.status.exit_code,
        signal: ended.status.signal,
        state,
        termination_reason: reason,
        stdout,
        stderr,
        counters: reading,
        net: None,
    }
}
