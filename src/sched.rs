//! The one scheduling policy: which pending runs start now and which are
//! cancelled. The run loop drives it with the real clock and poll(2);
//! `plan::simulate` drives it with a virtual clock and the runs' estimates,
//! so `packrun plan` predicts the order a batch really takes.
//!
//! The policy: list scheduling with backfill in file order. Whenever
//! something may have changed (a run ended, CPUs came free), every ready
//! run is tried in file order and each that fits starts, up to
//! `max_parallel` running at once. A run is ready once every run of the
//! jobs it depends on has ended; if one of them did not complete, it is
//! cancelled instead (and with it, whatever depends on its job).
//!
//! Services (`service: true`) are runs too, with a life tied to the runs
//! that `needs` them: a service is wanted (queued) once a run that needs
//! it has its own dependencies met, and starts only when that run would
//! fit beside it (`room_beside`); those runs are queued once every
//! service they need is ready (`ready`); a service is stopped (`stop` in
//! the decisions) when the last run that needs it is over, and cancelled
//! unstarted when none is left to run. A service that ends on its own
//! cancels the runs that need it and have not started, and the loop kills
//! (`kill`) the ones going. Services do not count against `max_parallel`:
//! they serve the runs that do.
//!
//! Cost: runs that place alike (the same `class`: equal CPUs, memory, NUMA
//! and group) wait in one queue. When the first of a queue does not fit,
//! nothing behind it fits until something ends, so a pass costs one try per
//! queue plus one per run started, however many runs are pending.

use crate::jobfile::{RunRef, Runs};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Places a run on what is free now (plan::Allocator in a batch and in the
/// simulation; scripted in tests).
pub trait Placer {
    type Placement;
    fn place(&mut self, run: &RunRef) -> Option<Self::Placement>;
    /// Gives back what `place` handed out (a trial placement).
    fn release(&mut self, placement: Self::Placement);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waits for `waiting_on` dependency jobs to end.
    Waiting,
    /// In its class's queue.
    Ready,
    Started,
    /// Ended, or cancelled, or never to run (done before a resume).
    Over,
}

/// Why a run is cancelled before it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// A job it depends on did not complete.
    Dependency(String),
    /// A service it needs ended (or never was ready) before it could start.
    Service(String),
    /// A service that no run left to run needs.
    Unneeded,
}

/// What one pass decided, in file order each.
#[derive(Debug)]
pub struct Decisions<P> {
    /// Runs cancelled before they started, and why.
    pub cancelled: Vec<(usize, Cancel)>,
    /// Runs to start now, with their placements.
    pub start: Vec<(usize, P)>,
}

/// What to do to runs that go (see `Scheduler::orders`).
#[derive(Debug, Default, PartialEq)]
pub struct Orders {
    /// Services to stop now: the last run that needs them is over.
    pub stop: Vec<usize>,
    /// Runs going whose service ended under them, with its job name.
    pub kill: Vec<(usize, String)>,
}

impl std::fmt::Display for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cancel::Dependency(job) => write!(f, "dependency `{job}` did not complete"),
            Cancel::Service(job) => write!(f, "service `{job}` ended before this run could start"),
            Cancel::Unneeded => f.write_str("no run that needs this service is left to run"),
        }
    }
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    NotStarted,
    /// Started, not ready yet.
    Starting,
    Ready,
    /// Told to stop.
    Stopping,
    Over,
}

/// A service job (one run) and the runs that need it.
#[derive(Debug)]
struct Svc {
    run: usize,
    state: Serving,
    /// A run that needs it has its own dependencies met (it holds a
    /// count in its `waiting_on` until then).
    wanted: bool,
    /// Runs that need it, not over.
    left: usize,
    needers: Vec<usize>,
}

pub struct Scheduler<'r> {
    runs: &'r Runs,
    class: Vec<usize>,
    /// Ready runs per class, in file order.
    queues: Vec<BTreeSet<usize>>,
    phase: Vec<Phase>,
    waiting_on: Vec<u32>,
    /// Runs of each job not yet over.
    left_of_job: HashMap<&'r str, usize>,
    /// Runs waiting on each job, by index.
    dependents: HashMap<&'r str, Vec<usize>>,
    /// Jobs with a run that did not complete.
    failed_jobs: HashSet<&'r str>,
    /// Runs to cancel at the next pass, and why.
    doomed: BTreeMap<usize, Cancel>,
    max_parallel: usize,
    /// Runs neither started nor over.
    pending: usize,
    /// Services by job name.
    svc: HashMap<&'r str, Svc>,
    /// Per run, the services it needs that are not ready yet.
    needs_waiting: Vec<u32>,
    /// Services started and not over.
    services_live: usize,
    /// Services to stop, and runs to kill, at the next pass.
    to_stop: BTreeSet<usize>,
    to_kill: BTreeMap<usize, String>,
}

impl<'r> Scheduler<'r> {
    /// `class[i]`: runs with equal classes place alike. `done`: runs that
    /// are over already (a resumed batch), with whether they completed.
    pub fn new(
        runs: &'r Runs,
        class: Vec<usize>,
        done: &dyn Fn(usize) -> Option<bool>,
        max_parallel: Option<usize>,
    ) -> Scheduler<'r> {
        let nclass = class.iter().max().map_or(0, |m| m + 1);
        let mut s = Scheduler {
            runs,
            class,
            queues: vec![BTreeSet::new(); nclass],
            phase: vec![Phase::Waiting; runs.len()],
            waiting_on: vec![0; runs.len()],
            left_of_job: HashMap::new(),
            dependents: HashMap::new(),
            failed_jobs: HashSet::new(),
            doomed: BTreeMap::new(),
            max_parallel: max_parallel.unwrap_or(usize::MAX).max(1),
            pending: 0,
            svc: HashMap::new(),
            needs_waiting: vec![0; runs.len()],
            services_live: 0,
            to_stop: BTreeSet::new(),
            to_kill: BTreeMap::new(),
        };
        let to_serve = services_to_run(runs, done);
        for (i, r) in runs.iter().enumerate() {
            if r.is_service() {
                s.svc.insert(
                    r.job(),
                    Svc {
                        run: i,
                        state: Serving::NotStarted,
                        wanted: false,
                        left: 0,
                        needers: Vec::new(),
                    },
                );
                if !to_serve.contains(&i) {
                    // No run that needs it is left (a resumed batch): it
                    // does not run again, whether it ran before or not.
                    s.phase[i] = Phase::Over;
                    s.svc.get_mut(r.job()).expect("just put").state = Serving::Over;
                } else {
                    *s.left_of_job.entry(r.job()).or_default() += 1;
                }
                continue;
            }
            match done(i) {
                Some(completed) => {
                    s.phase[i] = Phase::Over;
                    if !completed {
                        s.failed_jobs.insert(r.job());
                    }
                }
                None => *s.left_of_job.entry(r.job()).or_default() += 1,
            }
        }
        for (i, r) in runs.iter().enumerate() {
            if s.phase[i] == Phase::Over {
                continue;
            }
            s.pending += 1;
            let deps: BTreeSet<&str> = r.depends_on().iter().map(String::as_str).collect();
            for dep in deps {
                if s.failed_jobs.contains(dep) {
                    s.doomed
                        .entry(i)
                        .or_insert_with(|| Cancel::Dependency(dep.to_string()));
                }
                if s.left_of_job.get(dep).copied().unwrap_or(0) > 0 {
                    s.waiting_on[i] += 1;
                    s.dependents.entry(dep).or_default().push(i);
                }
            }
            if r.is_service() {
                s.waiting_on[i] += 1; // until a run wants it
            }
            let needs: BTreeSet<&str> = r.needs().iter().map(String::as_str).collect();
            for n in needs {
                if let Some(svc) = s.svc.get_mut(n) {
                    svc.left += 1;
                    svc.needers.push(i);
                    s.needs_waiting[i] += 1;
                }
            }
        }
        for i in 0..runs.len() {
            if s.phase[i] == Phase::Waiting && s.waiting_on[i] == 0 && !s.doomed.contains_key(&i) {
                s.deps_met(i);
            }
        }
        s
    }

    /// Run `i`'s dependencies are met: it wants the services it needs,
    /// and is queued once they are ready.
    fn deps_met(&mut self, i: usize) {
        for n in self.runs.get(i).needs() {
            let Some(svc) = self.svc.get_mut(n.as_str()) else {
                continue;
            };
            if svc.wanted {
                continue;
            }
            svc.wanted = true;
            let s = svc.run;
            self.waiting_on[s] -= 1;
            if self.waiting_on[s] == 0
                && self.phase[s] == Phase::Waiting
                && !self.doomed.contains_key(&s)
            {
                self.deps_met(s);
            }
        }
        if self.needs_waiting[i] == 0 {
            self.phase[i] = Phase::Ready;
            self.queues[self.class[i]].insert(i);
        }
    }

    /// Service run `i` is ready: the runs waiting for it may start.
    pub fn ready(&mut self, i: usize) {
        let job = self.runs.get(i).job();
        let Some(svc) = self.svc.get_mut(job) else {
            return;
        };
        if svc.state != Serving::Starting {
            return;
        }
        svc.state = Serving::Ready;
        for r in svc.needers.clone() {
            self.needs_waiting[r] -= 1;
            if self.needs_waiting[r] == 0
                && self.waiting_on[r] == 0
                && self.phase[r] == Phase::Waiting
                && !self.doomed.contains_key(&r)
            {
                self.phase[r] = Phase::Ready;
                self.queues[self.class[r]].insert(r);
            }
        }
    }

    /// Whether run `i` is a service that is ready and not told to stop:
    /// it ends only when told, or when it fails.
    pub fn serving(&self, i: usize) -> bool {
        let job = self.runs.get(i).job();
        self.svc
            .get(job)
            .is_some_and(|s| s.run == i && s.state == Serving::Ready)
    }

    /// Runs that are neither started nor over.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// One pass: cancels what a failed dependency dooms, then starts, in
    /// file order, every ready run that fits (`place`), while fewer than
    /// `max_parallel` run (`running` now).
    pub fn next<P: Placer>(&mut self, placer: &mut P, running: usize) -> Decisions<P::Placement> {
        let mut cancelled = Vec::new();
        while let Some((i, why)) = self.doomed.pop_first() {
            if !matches!(self.phase[i], Phase::Waiting | Phase::Ready) {
                continue;
            }
            self.queues[self.class[i]].remove(&i);
            self.phase[i] = Phase::Started;
            self.pending -= 1;
            self.finished(i, false);
            cancelled.push((i, why));
        }
        cancelled.sort_by_key(|c| c.0);
        // Services serve the runs that count.
        let running = running.saturating_sub(self.services_live);
        let mut started = 0;

        let mut start = Vec::new();
        let mut heads: BTreeSet<(usize, usize)> = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(c, q)| q.first().map(|&i| (i, c)))
            .collect();
        while let Some((i, c)) = heads.pop_first() {
            let run = self.runs.get(i);
            if running + started >= self.max_parallel && !run.is_service() {
                continue;
            }
            let Some(p) = placer.place(&run) else {
                continue;
            };
            if run.is_service() && !self.room_beside(i, placer) {
                placer.release(p);
                continue;
            }
            self.queues[c].remove(&i);
            self.phase[i] = Phase::Started;
            self.pending -= 1;
            if let Some(&next) = self.queues[c].first() {
                heads.insert((next, c));
            }
            match self.svc.get_mut(run.job()).filter(|_| run.is_service()) {
                Some(svc) if svc.run == i => {
                    svc.state = Serving::Starting;
                    self.services_live += 1;
                }
                _ => started += 1,
            }
            start.push((i, p));
        }
        Decisions { cancelled, start }
    }

    /// What runs that go must be told since the last call: services to
    /// stop, runs whose service ended. (Asked after each pass, and also
    /// when nothing is pending.)
    pub fn orders(&mut self) -> Orders {
        Orders {
            stop: std::mem::take(&mut self.to_stop).into_iter().collect(),
            kill: std::mem::take(&mut self.to_kill).into_iter().collect(),
        }
    }

    /// Whether a run that waits for service run `i` (just placed) fits
    /// beside it now. A service starts only then: one that holds CPUs
    /// while what needs it waits for CPUs that another batch's service
    /// holds (which waits the same way) would wait forever.
    fn room_beside<P: Placer>(&self, i: usize, placer: &mut P) -> bool {
        let job = self.runs.get(i).job();
        let Some(svc) = self.svc.get(job) else {
            return true;
        };
        let waiting = svc.needers.iter().find(|&&r| {
            self.phase[r] == Phase::Waiting
                && self.waiting_on[r] == 0
                && !self.doomed.contains_key(&r)
        });
        let Some(&r) = waiting else {
            return true;
        };
        match placer.place(&self.runs.get(r)) {
            Some(q) => {
                placer.release(q);
                true
            }
            None => false,
        }
    }

    /// Service run `i` is over (`finished` is told too): if it was not
    /// told to stop, what needs it cannot be served.
    fn service_over(&mut self, i: usize) {
        if self.svc.is_empty() {
            return;
        }
        let job = self.runs.get(i).job();
        let Some(svc) = self.svc.get_mut(job).filter(|s| s.run == i) else {
            return;
        };
        let was = std::mem::replace(&mut svc.state, Serving::Over);
        if matches!(was, Serving::Starting | Serving::Ready | Serving::Stopping) {
            self.services_live -= 1;
        }
        if was == Serving::Stopping {
            return;
        }
        for &r in &svc.needers {
            match self.phase[r] {
                Phase::Waiting | Phase::Ready => {
                    self.doomed
                        .entry(r)
                        .or_insert_with(|| Cancel::Service(job.to_string()));
                }
                Phase::Started => {
                    self.to_kill.insert(r, job.to_string());
                }
                Phase::Over => {}
            }
        }
    }

    /// Run `i` is over: the services it needed have one run less to
    /// serve; the last one stops them (or cancels them unstarted).
    fn needer_over(&mut self, i: usize) {
        for n in self.runs.get(i).needs() {
            let Some(svc) = self.svc.get_mut(n.as_str()) else {
                continue;
            };
            svc.left -= 1;
            if svc.left > 0 {
                continue;
            }
            match svc.state {
                Serving::Starting | Serving::Ready => {
                    svc.state = Serving::Stopping;
                    self.to_stop.insert(svc.run);
                }
                Serving::NotStarted => {
                    self.doomed.entry(svc.run).or_insert(Cancel::Unneeded);
                }
                Serving::Stopping | Serving::Over => {}
            }
        }
    }

    /// Run `i` (started, or just cancelled) is over; `completed`: it ended
    /// COMPLETED. Readies or dooms what waited on its job.
    pub fn finished(&mut self, i: usize, completed: bool) {
        if self.phase[i] != Phase::Started {
            return;
        }
        self.phase[i] = Phase::Over;
        self.service_over(i);
        self.needer_over(i);
        let job = self.runs.get(i).job();
        if !completed && self.failed_jobs.insert(job) {
            for &r in self.dependents.get(job).map_or(&[][..], Vec::as_slice) {
                if matches!(self.phase[r], Phase::Waiting | Phase::Ready) {
                    self.doomed
                        .entry(r)
                        .or_insert_with(|| Cancel::Dependency(job.to_string()));
                }
            }
        }
        let left = self.left_of_job.get_mut(job).expect("counted in new");
        *left -= 1;
        if *left > 0 {
            return;
        }
        let dependents = self.dependents.get(job).cloned().unwrap_or_default();
        for r in dependents {
            self.waiting_on[r] -= 1;
            if self.waiting_on[r] == 0
                && self.phase[r] == Phase::Waiting
                && !self.doomed.contains_key(&r)
            {
                self.deps_met(r);
            }
        }
    }

    /// Every run neither started nor over, in file order; they are over
    /// from now on (an interrupted batch records them as cancelled).
    pub fn drain(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, p) in self.phase.iter_mut().enumerate() {
            if matches!(p, Phase::Waiting | Phase::Ready) {
                *p = Phase::Over;
                out.push(i);
            }
        }
        for q in &mut self.queues {
            q.clear();
        }
        self.doomed.clear();
        self.pending = 0;
        out
    }
}

/// The services a batch runs: those some run still to run needs (a run
/// that is no service and not done, or a service run for that reason).
/// A resumed batch runs a service again when a run that needs it is left.
fn services_to_run(runs: &Runs, done: &dyn Fn(usize) -> Option<bool>) -> HashSet<usize> {
    let service_run: HashMap<&str, usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_service())
        .map(|(i, r)| (r.job(), i))
        .collect();
    if service_run.is_empty() {
        return HashSet::new();
    }
    let mut out = HashSet::new();
    let mut todo: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(i, r)| !r.is_service() && done(*i).is_none())
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = todo.pop() {
        for n in runs.get(i).needs() {
            if let Some(&s) = service_run.get(n.as_str()) {
                if out.insert(s) {
                    todo.push(s);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Run;

    fn run(job: &str, deps: &[&str]) -> Run {
        let mut r = Run::with_defaults(job, vec!["true".into()]);
        r.depends_on = deps.iter().map(|d| d.to_string()).collect();
        r
    }

    fn svc(job: &str) -> Run {
        let mut r = run(job, &[]);
        r.service = Some(crate::jobfile::Service {
            ready_tcp: None,
            ready_timeout: std::time::Duration::from_secs(30),
            stop_grace: std::time::Duration::from_secs(5),
        });
        r
    }

    fn needing(job: &str, deps: &[&str], needs: &[&str]) -> Run {
        let mut r = run(job, deps);
        r.needs = needs.iter().map(|d| d.to_string()).collect();
        r
    }

    fn started<P>(d: &Decisions<P>) -> Vec<usize> {
        d.start.iter().map(|x| x.0).collect()
    }

    #[test]
    fn a_service_starts_first_its_needers_once_it_is_ready_and_it_stops_after_the_last() {
        let runs: Runs = vec![
            needing("c", &[], &["s"]),
            needing("c", &[], &["s"]),
            svc("s"),
        ]
        .into();
        let mut s = sched(&runs, None);
        let d = s.next(&mut Slots(9), 0);
        assert_eq!(
            started(&d),
            [2],
            "the service first, though later in the file"
        );
        assert!(
            started(&s.next(&mut Slots(9), 1)).is_empty(),
            "not ready yet"
        );
        s.ready(2);
        assert!(s.serving(2));
        assert_eq!(started(&s.next(&mut Slots(9), 1)), [0, 1]);
        s.finished(0, true);
        s.next(&mut Slots(9), 2);
        assert_eq!(s.orders(), Orders::default());
        s.finished(1, true);
        s.next(&mut Slots(9), 1);
        assert_eq!(s.orders().stop, [2]);
        assert!(!s.serving(2));
        s.finished(2, true);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_service_waits_until_a_run_that_needs_it_has_its_dependencies_met() {
        let runs: Runs = vec![run("a", &[]), svc("s"), needing("c", &["a"], &["s"])].into();
        let mut s = sched(&runs, None);
        assert_eq!(started(&s.next(&mut Slots(9), 0)), [0]);
        s.finished(0, true);
        assert_eq!(started(&s.next(&mut Slots(9), 0)), [1]);
    }

    #[test]
    fn a_service_that_ends_by_itself_cancels_waiting_needers_and_kills_running_ones() {
        let runs: Runs = vec![
            svc("s"),
            needing("c", &[], &["s"]),
            needing("c", &[], &["s"]),
        ]
        .into();
        let mut s = sched(&runs, None);
        s.next(&mut Slots(9), 0);
        s.ready(0);
        assert_eq!(
            started(&s.next(&mut Slots(1), 1)),
            [1],
            "one fits beside it"
        );
        s.finished(0, false);
        let d = s.next(&mut Slots(9), 1);
        assert_eq!(d.cancelled, [(2, Cancel::Service("s".into()))]);
        let o = s.orders();
        assert_eq!(o.kill, [(1, "s".to_string())]);
        assert!(o.stop.is_empty());
    }

    #[test]
    fn a_service_never_ready_cancels_its_needers_and_one_no_run_needs_any_more_is_not_started() {
        let runs: Runs = vec![
            svc("s"),
            needing("c", &[], &["s"]),
            run("a", &[]),
            svc("t"),
            needing("d", &["a"], &["t"]),
        ]
        .into();
        let mut s = sched(&runs, Some(1));
        assert_eq!(started(&s.next(&mut Slots(9), 0)), [0, 2]);
        s.finished(0, false); // killed: not ready in time
        s.finished(2, false);
        let d = s.next(&mut Slots(9), 0);
        assert_eq!(
            d.cancelled,
            [
                (1, Cancel::Service("s".into())),
                (3, Cancel::Unneeded),
                (4, Cancel::Dependency("a".into()))
            ]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_service_starts_only_when_a_run_that_needs_it_fits_beside_it() {
        let runs: Runs = vec![svc("s"), needing("c", &[], &["s"])].into();
        let mut s = sched(&runs, None);
        assert!(started(&s.next(&mut Slots(1), 0)).is_empty());
        assert_eq!(started(&s.next(&mut Slots(2), 0)), [0]);
    }

    #[test]
    fn services_do_not_count_against_max_parallel() {
        let runs: Runs = vec![
            svc("s"),
            needing("c", &[], &["s"]),
            needing("c", &[], &["s"]),
        ]
        .into();
        let mut s = sched(&runs, Some(1));
        assert_eq!(started(&s.next(&mut Slots(9), 0)), [0]);
        s.ready(0);
        assert_eq!(started(&s.next(&mut Slots(9), 1)), [1]);
        assert!(started(&s.next(&mut Slots(9), 2)).is_empty());
    }

    #[test]
    fn a_resumed_batch_runs_a_service_again_only_while_a_run_that_needs_it_is_left() {
        let runs: Runs = vec![
            svc("s"),
            needing("c", &[], &["s"]),
            needing("c", &[], &["s"]),
            svc("t"),
            needing("d", &[], &["t"]),
        ]
        .into();
        // Everything ran but the second `c`.
        let done = |i: usize| (i != 2).then_some(true);
        let mut s = Scheduler::new(&runs, vec![0; 5], &done, None);
        assert_eq!(s.pending(), 2, "s again, and the c left");
        assert_eq!(started(&s.next(&mut Slots(9), 0)), [0]);
        s.ready(0);
        assert_eq!(started(&s.next(&mut Slots(9), 1)), [2]);
    }

    /// Places a run when one of `free` slots is left.
    struct Slots(usize);

    impl Placer for Slots {
        type Placement = ();
        fn place(&mut self, _: &RunRef) -> Option<()> {
            (self.0 > 0).then(|| self.0 -= 1)
        }
        fn release(&mut self, _: ()) {
            self.0 += 1;
        }
    }

    fn sched(runs: &Runs, max: Option<usize>) -> Scheduler<'_> {
        Scheduler::new(runs, vec![0; runs.len()], &|_| None, max)
    }

    #[test]
    fn ready_runs_start_in_file_order_while_they_fit() {
        let runs: Runs = vec![run("a", &[]), run("a", &[]), run("b", &[])].into();
        let mut s = sched(&runs, None);
        let d = s.next(&mut Slots(2), 0);
        assert_eq!(d.start.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1]);
        s.finished(0, true);
        let d = s.next(&mut Slots(1), 1);
        assert_eq!(d.start.iter().map(|x| x.0).collect::<Vec<_>>(), [2]);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_dependent_waits_for_every_run_of_its_dependency_then_starts() {
        let runs: Runs = vec![run("a", &[]), run("a", &[]), run("b", &["a"])].into();
        let mut s = sched(&runs, None);
        assert_eq!(s.next(&mut Slots(9), 0).start.len(), 2);
        s.finished(0, true);
        assert!(s.next(&mut Slots(9), 1).start.is_empty());
        s.finished(1, true);
        assert_eq!(s.next(&mut Slots(9), 0).start[0].0, 2);
    }

    #[test]
    fn a_failed_dependency_cancels_its_dependents_and_theirs() {
        let runs: Runs = vec![
            run("a", &[]),
            run("b", &["a"]),
            run("c", &["b"]),
            run("d", &[]),
        ]
        .into();
        let mut s = sched(&runs, Some(1));
        assert_eq!(s.next(&mut Slots(9), 0).start[0].0, 0);
        s.finished(0, false);
        let d = s.next(&mut Slots(9), 0);
        let dep = |j: &str| Cancel::Dependency(j.into());
        assert_eq!(d.cancelled, [(1, dep("a")), (2, dep("b"))]);
        assert_eq!(d.start[0].0, 3);
    }

    #[test]
    fn max_parallel_caps_the_runs_at_once() {
        let runs: Runs = vec![run("a", &[]), run("a", &[]), run("a", &[])].into();
        let mut s = sched(&runs, Some(2));
        assert_eq!(s.next(&mut Slots(9), 0).start.len(), 2);
        assert!(s.next(&mut Slots(9), 2).start.is_empty());
    }

    #[test]
    fn runs_done_before_a_resume_are_skipped_and_a_failed_one_dooms_dependents() {
        let runs: Runs = vec![run("a", &[]), run("a", &[]), run("b", &["a"])].into();
        let done = |i: usize| (i == 0).then_some(false);
        let mut s = Scheduler::new(&runs, vec![0; 3], &done, None);
        let d = s.next(&mut Slots(9), 0);
        assert_eq!(d.cancelled, [(2, Cancel::Dependency("a".into()))]);
        assert_eq!(d.start.iter().map(|x| x.0).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_class_whose_first_run_does_not_fit_is_not_tried_further() {
        struct Count(usize);
        impl Placer for Count {
            type Placement = ();
            fn place(&mut self, _: &RunRef) -> Option<()> {
                self.0 += 1;
                None
            }
            fn release(&mut self, _: ()) {}
        }
        let runs: Runs = (0..1000).map(|_| run("a", &[])).collect::<Vec<_>>().into();
        let mut s = sched(&runs, None);
        let mut c = Count(0);
        assert!(s.next(&mut c, 0).start.is_empty());
        assert_eq!(c.0, 1, "one try for the one class, not one per run");
    }

    #[test]
    fn drain_returns_what_never_started() {
        let runs: Runs = vec![run("a", &[]), run("a", &[]), run("b", &["a"])].into();
        let mut s = sched(&runs, None);
        s.next(&mut Slots(1), 0);
        assert_eq!(s.drain(), [1, 2]);
        assert_eq!(s.pending(), 0);
    }
}
