//! The event loop: start what fits, wait for exits and deadlines, account,
//! record, free, repeat. One thread; runs are watched through pidfds and
//! Ctrl-C through a signalfd, all in one poll(2).

pub mod cpulock;
pub mod journal;

use crate::account::Usage;
use crate::cgroup::{self, Hierarchy, Limits, RunCgroup};
use crate::container::ids::{IdMaps, IdSource};
use crate::container::{self, ContainerConfig, JobOutput, JobStatus};
use crate::cpulist::CpuList;
use crate::fsx::{Context, PathError};
use crate::plan::{Allocator, Placement};
use crate::results::{Record, State};
use crate::spec::{Network, Numa, Run, UserNs};
use chrono::{DateTime, Utc};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
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

/// A run that is going now.
struct Running {
    index: usize,
    placement: Placement,
    cgroup: RunCgroup,
    container: container::Container,
    start: Instant,
    start_time: DateTime<Utc>,
    deadline: Option<Instant>,
    next_cpu_check: Option<Instant>,
    killed_for: Option<(State, String)>,
    logs: Option<(PathBuf, PathBuf)>,
    /// The run's id maps (None: the host's ids), for its row.
    ids: Option<IdMaps>,
}

/// Network namespaces for the runs of a batch to join, each used by one run
/// at a time: a run that ended gives its namespace back for a later run.
/// Making a network namespace, and the kernel tearing it down afterwards,
/// costs more CPU than anything else in a short run; a namespace whose
/// processes all died holds no sockets and, for a job without
/// capabilities, nothing else the job could have changed. A single run
/// (`packrun exec`), a job that keeps capabilities (CAP_NET_ADMIN could
/// change addresses, routes or sysctls) and rootless runs get a fresh one.
struct NetPool {
    enabled: bool,
    free: Vec<OwnedFd>,
}

impl NetPool {
    fn new(opts: &Options) -> NetPool {
        NetPool {
            enabled: !opts.single && nix::unistd::geteuid().is_root(),
            free: Vec::new(),
        }
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

/// Runs `runs`, skipping those whose key is in `done` (with their recorded
/// state, for depends_on). Emits an event per start and per finish.
pub fn execute(
    runs: &[Run],
    mut alloc: Allocator,
    opts: &Options,
    done: &HashMap<String, State>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, RunError> {
    let signals = watch_signals()?;
    if opts.single && runs.len() > 1 {
        return Err(RunError::Single(runs.len()));
    }
    if !opts.single {
        cgroup::prepare_batch(&opts.hierarchy, &opts.cgroup_base, &opts.batch_id)?;
    }
    let mut outcome = Outcome {
        all_completed: true,
        ..Outcome::default()
    };
    if let Output::Logs(dir) = &opts.output {
        std::fs::create_dir_all(dir.join("logs")).at("create", dir.join("logs"))?;
    }

    // Per job: runs still to finish, and whether any ended other than COMPLETED.
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    let mut failed_jobs: HashSet<String> = HashSet::new();
    for r in runs {
        match done.get(&r.key) {
            Some(State::Completed) => {}
            Some(_) => {
                failed_jobs.insert(r.job.clone());
            }
            None => *remaining.entry(r.job.as_str()).or_default() += 1,
        }
    }
    let mut pending: Vec<usize> = (0..runs.len())
        .filter(|&i| !done.contains_key(&runs[i].key))
        .collect();
    let mut running: Vec<Running> = Vec::new();
    let mut nets = NetPool::new(opts);
    let mut lock = match &opts.cpu_lock {
        Some(path) => Some(cpulock::CpuLock::new(path)?),
        None => None,
    };
    // CPUs other packrun processes hold, as last seen (reserved in `alloc`).
    let mut foreign = CpuList::new();
    // Cgroups of finished runs, killed and read, to remove once the next
    // runs have started (dropped, they are removed too).
    let mut to_remove: Vec<RunCgroup> = Vec::new();

    loop {
        // Start, in file order, every pending run that fits now (backfill).
        let mut blocked_by_others = false;
        let mut placed_any = false;
        if !outcome.interrupted && !pending.is_empty() {
            let mut ctx = Choose {
                runs,
                pending: &mut pending,
                running: running.len(),
                max_parallel: opts.max_parallel,
                remaining: &mut remaining,
                failed_jobs: &mut failed_jobs,
                outcome: &mut outcome,
                on_event,
            };
            let starts = match lock.as_mut() {
                // Other packrun processes' CPUs are off limits while we choose.
                Some(lock) => {
                    let starts = lock.update(|others| {
                        alloc.unreserve(&foreign);
                        foreign = others.clone();
                        alloc.reserve(&foreign);
                        let starts = ctx.choose(&mut alloc);
                        let mine = running
                            .iter()
                            .map(|r| &r.placement.cpus)
                            .chain(starts.iter().map(|(_, p)| &p.cpus))
                            .fold(CpuList::new(), |acc, c| acc.union(c));
                        (mine, starts)
                    })?;
                    blocked_by_others = !foreign.is_empty();
                    starts
                }
                None => ctx.choose(&mut alloc),
            };
            placed_any = !starts.is_empty();
            for (index, placement) in starts {
                let run = &runs[index];
                on_event(Event::Started {
                    run,
                    placement: &placement,
                });
                match start(index, run, placement.clone(), opts, &mut nets) {
                    Ok(r) => running.push(r),
                    Err(rec) => {
                        alloc.release(&placement);
                        finish(
                            &mut remaining,
                            &mut failed_jobs,
                            &mut outcome,
                            run,
                            *rec,
                            on_event,
                        );
                    }
                }
            }
        }
        on_event(Event::Flush);
        for cg in to_remove.drain(..) {
            let _ = cg.remove();
        }
        if running.is_empty() && (pending.is_empty() || outcome.interrupted) {
            break;
        }
        if running.is_empty() && placed_any {
            // Every run just placed failed to start (its row is written)
            // and gave its CPUs back: place again before concluding anything.
            continue;
        }
        if running.is_empty() && !blocked_by_others {
            // Nothing runs and nothing pending fits: only possible when the
            // allocator's view is wrong (feasibility is checked before).
            let never = "no placement fits this run on the CPUs packrun may use";
            for index in pending.drain(..) {
                let rec = not_started(&runs[index], State::Error, never.into());
                finish(
                    &mut remaining,
                    &mut failed_jobs,
                    &mut outcome,
                    &runs[index],
                    rec,
                    on_event,
                );
            }
            break;
        }

        // Wait for an exit, a deadline, a CPU-time check or a signal.
        let now = Instant::now();
        let wake = running
            .iter()
            .flat_map(|r| [r.deadline, r.next_cpu_check])
            .flatten()
            .min();
        let wake = match blocked_by_others && !pending.is_empty() {
            true => Some(wake.map_or(now + FOREIGN_RECHECK, |w| w.min(now + FOREIGN_RECHECK))),
            false => wake,
        };
        let timeout = match wake {
            Some(t) => PollTimeout::try_from(
                t.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1,
            )
            .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        // Per run its pidfd; then the signalfd; then the setup fds of runs
        // still starting (`starting[j]` is the run of the j-th).
        let n = running.len();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 * n + 1);
        fds.extend(
            running
                .iter()
                .map(|r| PollFd::new(r.container.pidfd.as_fd(), PollFlags::POLLIN)),
        );
        fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
        let mut starting: Vec<usize> = Vec::new();
        for (k, r) in running.iter().enumerate() {
            if let Some(fd) = r.container.setup_fd() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                starting.push(k);
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RunError::Poll(e)),
        }
        let fired = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let mut exited: Vec<bool> = fds[..n].iter().map(fired).collect();
        let signalled = fired(&fds[n]);
        let mut setup_ready = vec![false; n];
        for (j, f) in fds[n + 1..].iter().enumerate() {
            setup_ready[starting[j]] = fired(f);
        }
        drop(fds);

        // Setups that ended: the job exec'd (nothing to do) or a step failed
        // (the run ends as ERROR). A run whose init exited while starting is
        // looked at first: init writes its error before it exits.
        let mut k = n;
        while k > 0 {
            k -= 1;
            let r = &mut running[k];
            if !(setup_ready[k] || (exited[k] && r.container.setup_fd().is_some())) {
                continue;
            }
            match r.container.poll_setup() {
                Ok(true) => {}
                // Still starting: a pidfd stays readable, seen next round.
                Ok(false) => exited[k] = false,
                Err(e) => {
                    let mut r = running.swap_remove(k);
                    exited.swap_remove(k);
                    nets.give_back(r.container.take_netns());
                    let run = &runs[r.index];
                    alloc.release(&r.placement);
                    let rec = setup_failed(r, run, e);
                    finish(
                        &mut remaining,
                        &mut failed_jobs,
                        &mut outcome,
                        run,
                        rec,
                        on_event,
                    );
                }
            }
        }

        if signalled {
            while let Ok(Some(_)) = signals.read_signal() {}
            outcome.interrupted = true;
            for r in running.iter_mut() {
                kill_run(r, State::Cancelled, "packrun was interrupted".into());
            }
        }

        // Deadlines and CPU-time budgets.
        let now = Instant::now();
        for r in running.iter_mut().filter(|r| r.killed_for.is_none()) {
            let run = &runs[r.index];
            if r.deadline.is_some_and(|d| now >= d) {
                let limit = run.time_limit.unwrap_or_default();
                kill_run(
                    r,
                    State::Timeout,
                    format!("wall time limit {}", humantime::format_duration(limit)),
                );
                continue;
            }
            if r.next_cpu_check.is_some_and(|t| now >= t) {
                let limit = run.cpu_time_limit.unwrap_or_default();
                let used = r.cgroup.usage().map(|u| u.cpu_ns).unwrap_or(0);
                let left = limit.as_nanos().saturating_sub(used as u128) as u64;
                if left == 0 {
                    kill_run(
                        r,
                        State::Timeout,
                        format!("cpu time limit {}", humantime::format_duration(limit)),
                    );
                } else {
                    r.next_cpu_check = Some(now + cpu_check_interval(left, r.placement.cpus.len()));
                }
            }
        }

        // Reap what ended.
        let mut k = running.len();
        while k > 0 {
            k -= 1;
            if !exited[k] {
                continue;
            }
            let mut r = running.swap_remove(k);
            let run = &runs[r.index];
            alloc.release(&r.placement);
            // init has exited, so every process of the run is gone.
            nets.give_back(r.container.take_netns());
            let rec = collect(r, run, &mut to_remove);
            finish(
                &mut remaining,
                &mut failed_jobs,
                &mut outcome,
                run,
                rec,
                on_event,
            );
        }
    }

    if outcome.interrupted {
        let why = "packrun was interrupted before it started";
        for index in pending {
            let rec = not_started(&runs[index], State::Cancelled, why.into());
            finish(
                &mut remaining,
                &mut failed_jobs,
                &mut outcome,
                &runs[index],
                rec,
                on_event,
            );
        }
    }
    on_event(Event::Flush);
    cgroup::remove_batch(&opts.hierarchy, &opts.cgroup_base, &opts.batch_id);
    Ok(outcome)
}

/// What choosing the next runs to start needs of the loop's state.
struct Choose<'a, 'r> {
    runs: &'r [Run],
    pending: &'a mut Vec<usize>,
    running: usize,
    max_parallel: Option<usize>,
    remaining: &'a mut HashMap<&'r str, usize>,
    failed_jobs: &'a mut HashSet<String>,
    outcome: &'a mut Outcome,
    on_event: &'a mut dyn FnMut(Event<'_>),
}

impl Choose<'_, '_> {
    /// Walks pending runs in file order and places every one that may start
    /// and fits now (backfill); cancels those whose dependency failed.
    fn choose(&mut self, alloc: &mut Allocator) -> Vec<(usize, Placement)> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self
                .max_parallel
                .is_some_and(|m| self.running + starts.len() >= m)
            {
                break;
            }
            let run = &self.runs[self.pending[i]];
            if let Some(dep) = run
                .depends_on
                .iter()
                .find(|d| self.failed_jobs.contains(*d))
            {
                let rec = not_started(
                    run,
                    State::Cancelled,
                    format!("dependency `{dep}` did not complete"),
                );
                finish(
                    self.remaining,
                    self.failed_jobs,
                    self.outcome,
                    run,
                    rec,
                    self.on_event,
                );
                self.pending.remove(i);
                continue;
            }
            let waits = |d: &String| self.remaining.get(d.as_str()).copied().unwrap_or(0) > 0;
            if run.depends_on.iter().any(waits) {
                i += 1;
                continue;
            }
            match alloc.place(run) {
                Some(p) => starts.push((self.pending.remove(i), p)),
                None => i += 1,
            }
        }
        starts
    }
}

fn finish(
    remaining: &mut HashMap<&str, usize>,
    failed_jobs: &mut HashSet<String>,
    outcome: &mut Outcome,
    run: &Run,
    rec: Record,
    on_event: &mut dyn FnMut(Event<'_>),
) {
    if let Some(n) = remaining.get_mut(run.job.as_str()) {
        *n = n.saturating_sub(1);
    }
    if rec.state != State::Completed {
        failed_jobs.insert(run.job.clone());
        outcome.all_completed = false;
    }
    on_event(Event::Finished(rec));
}

/// When to look at a run's CPU time again: not before it could have used up
/// what is left with every CPU busy, and at least every 10 ms near the end.
fn cpu_check_interval(left_ns: u64, cpus: usize) -> Duration {
    let ns = left_ns / cpus.max(1) as u64;
    Duration::from_nanos(ns.clamp(5_000_000, 1_000_000_000))
}

fn kill_run(r: &mut Running, state: State, reason: String) {
    if r.killed_for.is_none() {
        r.killed_for = Some((state, reason));
    }
    // Killing the cgroup kills init and with it the whole pid namespace.
    let _ = r.cgroup.kill();
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

/// Expands `{cpus}` with the assigned list.
fn fill_cpus(s: &str, cpus: &CpuList) -> String {
    s.replace("{cpus}", &cpus.to_string())
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

/// The log files of a run that failed before or while starting: those
/// its init got to create.
fn set_logs(rec: &mut Record, logs: Option<(PathBuf, PathBuf)>) {
    if let Some((o, e)) = logs {
        rec.stdout = o.is_file().then_some(o);
        rec.stderr = e.is_file().then_some(e);
    }
}

fn log_paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let logs = dir.join("logs");
    (
        logs.join(format!("{key}.out")),
        logs.join(format!("{key}.err")),
    )
}

/// Creates the cgroup, starts the container, sets the deadlines.
fn start(
    index: usize,
    run: &Run,
    placement: Placement,
    opts: &Options,
    nets: &mut NetPool,
) -> Result<Running, Box<Record>> {
    let start_time = Utc::now();
    let start = Instant::now();
    let fail = |state: State, reason: String, logs: Option<(PathBuf, PathBuf)>| {
        let mut rec = not_started(run, state, reason);
        rec.cpus = placement.cpus.clone();
        rec.mems = placement.mems.clone();
        rec.start_time = start_time;
        rec.end_time = Utc::now();
        rec.wall_time = start.elapsed();
        set_logs(&mut rec, logs);
        Box::new(rec)
    };

    let mut limits = limits_for(run, &placement);
    limits.io = io_throttles(run).map_err(|e| fail(State::Error, e, None))?;
    // Its own block of host ids, by its first CPU (see container::ids).
    let ids = match run.container.userns {
        UserNs::Host => None,
        UserNs::Private => {
            let slot = placement.cpus.iter().next().unwrap_or(0);
            let user = run.container.user.unwrap_or((0, 0));
            match opts.ids.maps(slot, user) {
                Ok(m) => Some(m),
                Err(e) => return Err(fail(State::Error, format!("user namespace: {e}"), None)),
            }
        }
    };
    // A single run's group is `<base>/<batch>`, else `<base>/<batch>/<key>`.
    let (batch, name) = match opts.single {
        true => ("", opts.batch_id.as_str()),
        false => (opts.batch_id.as_str(), run.key.as_str()),
    };
    let cg = match RunCgroup::create(&opts.hierarchy, &opts.cgroup_base, batch, name, &limits) {
        Ok(cg) => cg,
        Err(e) => {
            return Err(fail(
                State::Error,
                format!("cgroup: {}", crate::fsx::chain(&e)),
                None,
            ))
        }
    };

    let (logs, output) = match &opts.output {
        // Made by the container's init (see JobOutput::Files).
        Output::Logs(dir) => {
            let (o, e) = log_paths(dir, &run.key);
            let output = JobOutput::Files {
                stdout: o.clone(),
                stderr: e.clone(),
            };
            (Some((o, e)), output)
        }
        Output::Inherit => match (
            std::io::stdout().as_fd().try_clone_to_owned(),
            std::io::stderr().as_fd().try_clone_to_owned(),
        ) {
            (Ok(stdout), Ok(stderr)) => (None, JobOutput::Fds { stdout, stderr }),
            (Err(e), _) | (_, Err(e)) => {
                return Err(fail(
                    State::Error,
                    format!("cannot duplicate stdout/stderr: {e}"),
                    None,
                ))
            }
        },
    };

    let mut writable = Vec::new();
    for target in &run.container.writable {
        let host = opts
            .scratch
            .join(&run.key)
            .join(target.strip_prefix("/").unwrap_or(target));
        if let Err(e) = std::fs::create_dir_all(&host).at("create", &host) {
            return Err(fail(State::Error, crate::fsx::chain(&e), logs));
        }
        writable.push((host, target.clone()));
    }

    let mempolicy = match &run.resources.numa {
        Numa::Nodes { nodes, policy } => Some((*policy, nodes.clone())),
        _ => None,
    };
    let mut join_tasks = Vec::new();
    for path in cg.v1_tasks_files() {
        match std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .at("open", &path)
        {
            Ok(f) => join_tasks.push(OwnedFd::from(f)),
            Err(e) => return Err(fail(State::Error, crate::fsx::chain(&e), logs)),
        }
    }
    // On v1 init moves itself in (join_tasks); on v2 clone3 starts it there.
    let self_placed = !join_tasks.is_empty();
    let cfg = ContainerConfig {
        argv: run
            .command
            .iter()
            .map(|a| fill_cpus(a, &placement.cpus))
            .collect(),
        env: run
            .env
            .iter()
            .map(|(k, v)| (k.clone(), fill_cpus(v, &placement.cpus)))
            .collect(),
        workdir: run.workdir.clone(),
        hostname: run.container.hostname.clone(),
        rootfs: run.container.rootfs.clone(),
        network: run.container.network,
        mounts: run.container.mounts.clone(),
        writable,
        user: run.container.user,
        capabilities: run.container.capabilities.clone(),
        rlimits: run.resources.rlimits.clone(),
        mempolicy,
        stdin: None,
        output,
        join_tasks,
        netns: nets.take(run),
        ids: ids.clone(),
        hidden: run.container.hidden.clone(),
        visible: run.container.visible.clone(),
    };
    let cgroup_dir = cg.v2_dir().and_then(|d| File::open(d).ok());
    // Returns while init still builds the root: the loop polls the setup
    // fd, so the setups of several runs overlap.
    let spawned = container::spawn_async(cfg, cgroup_dir.as_ref().map(|f| f.as_fd()), &mut |pid| {
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
            return Err(fail(State::Error, e.to_string(), logs));
        }
    };
    let deadline = run.time_limit.map(|d| start + d);
    let next_cpu_check = run
        .cpu_time_limit
        .map(|d| start + cpu_check_interval(d.as_nanos() as u64, placement.cpus.len()));
    Ok(Running {
        index,
        placement,
        cgroup: cg,
        container: c,
        start,
        start_time,
        deadline,
        next_cpu_check,
        killed_for: None,
        logs,
        ids,
    })
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
    rec.userns = describe_ids(r.ids.as_ref());
    rec.start_time = r.start_time;
    rec.end_time = Utc::now();
    rec.wall_time = r.start.elapsed();
    set_logs(&mut rec, r.logs);
    rec
}

/// The runs.csv cell of a run's ids.
fn describe_ids(ids: Option<&IdMaps>) -> String {
    ids.map_or_else(|| "host".into(), IdMaps::describe)
}

/// After init exited: status, usage, cleanup, the record.
/// The emptied cgroup goes to `to_remove`: the loop removes it after it
/// started what the freed CPUs allow (rmdir is slow and nothing waits on it).
fn collect(mut r: Running, run: &Run, to_remove: &mut Vec<RunCgroup>) -> Record {
    let wall_time = r.start.elapsed();
    let end_time = Utc::now();
    let not_given_back = r.container.give_back();
    let (status, wait_error): (JobStatus, _) = match r.container.wait() {
        Ok(s) => (s, None),
        Err(e) => (
            JobStatus::default(),
            Some(format!("cannot reap the container's init: {e}")),
        ),
    };
    // Anything the job left behind (a daemon that escaped into the
    // background) dies with the cgroup; usage is read after, so it counts.
    let _ = r.cgroup.kill();
    let usage = r.cgroup.usage();
    let version = r.cgroup.version();
    to_remove.push(r.cgroup);
    let mut usage_error = None;
    let mut usage = usage.unwrap_or_else(|e| {
        usage_error = Some(crate::fsx::chain(&e));
        Usage::default()
    });
    // cgroup v1's blkio counters miss direct I/O and late writeback; the
    // block I/O that init's reaped processes report is the better figure
    // there. v2's io.stat counts both.
    if version == 1 {
        if let (Some(r), Some(w)) = (status.io_read_bytes, status.io_write_bytes) {
            usage.io_read_bytes = usage.io_read_bytes.max(r);
            usage.io_write_bytes = usage.io_write_bytes.max(w);
        }
    }

    let (state, mut reason) = if let Some((state, reason)) = r.killed_for {
        (state, reason)
    } else if usage.oom_kills > 0 {
        (
            State::OutOfMemory,
            format!("the kernel's OOM killer killed {} task(s)", usage.oom_kills),
        )
    } else {
        match (status.exit_code, status.signal) {
            (Some(0), _) => (State::Completed, "exited".to_string()),
            (Some(c), _) => (State::Failed, format!("exit code {c}")),
            (None, Some(s)) => (
                State::Failed,
                format!("killed by signal {s} ({})", signal_name(s)),
            ),
            (None, None) => (State::Failed, "ended without a status".to_string()),
        }
    };
    if let Some(e) = usage_error {
        reason.push_str(&format!("; usage unreadable: {e}"));
    }
    if let Some(e) = wait_error {
        reason.push_str(&format!("; {e}"));
    }
    if !not_given_back.is_empty() {
        reason.push_str(&format!(
            "; not given back to the runner's user: {}",
            not_given_back.join(", ")
        ));
    }
    let (stdout, stderr) = match r.logs {
        Some((o, e)) => {
            for (path, what) in [(&o, "stdout"), (&e, "stderr")] {
                if cap_log(path, run.log_limit) {
                    reason.push_str(&format!("; {what} cut at {} bytes", run.log_limit));
                }
            }
            (Some(o), Some(e))
        }
        None => (None, None),
    };
    Record {
        key: run.key.clone(),
        job: run.job.clone(),
        params: run.params.clone(),
        rep: run.rep,
        warmup: run.warmup,
        cpus: r.placement.cpus,
        mems: r.placement.mems,
        userns: describe_ids(r.ids.as_ref()),
        start_time: r.start_time,
        end_time,
        wall_time,
        usage,
        memory_limit: run.resources.memory,
        exit_code: status.exit_code,
        signal: status.signal,
        state,
        termination_reason: reason,
        stdout,
        stderr,
    }
}

/// Cuts a log file to `limit` bytes; true when it was longer.
fn cap_log(path: &Path, limit: u64) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > limit => std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(limit))
            .is_ok(),
        _ => false,
    }
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
