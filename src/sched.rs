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
//! Cost: runs that place alike (the same `class`: equal CPUs, memory, NUMA
//! and group) wait in one queue. When the first of a queue does not fit,
//! nothing behind it fits until something ends, so a pass costs one try per
//! queue plus one per run started, however many runs are pending.

use crate::jobfile::{RunRef, Runs};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Places a run on what is free now (plan::Allocator in a batch and in the
/// simulation; scripted in tests).
pub trait Placer {
    type Placement;
    fn place(&mut self, run: &RunRef) -> Option<Self::Placement>;
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

/// What one pass decided, in file order each.
#[derive(Debug)]
pub struct Decisions<P> {
    /// Runs cancelled because a job they depend on did not complete, with
    /// that job's name.
    pub cancelled: Vec<(usize, String)>,
    /// Runs to start now, with their placements.
    pub start: Vec<(usize, P)>,
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
    /// Runs to cancel at the next pass.
    doomed: BTreeSet<usize>,
    max_parallel: usize,
    /// Runs neither started nor over.
    pending: usize,
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
            doomed: BTreeSet::new(),
            max_parallel: max_parallel.unwrap_or(usize::MAX).max(1),
            pending: 0,
        };
        for (i, r) in runs.iter().enumerate() {
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
                    s.doomed.insert(i);
                }
                if s.left_of_job.get(dep).copied().unwrap_or(0) > 0 {
                    s.waiting_on[i] += 1;
                    s.dependents.entry(dep).or_default().push(i);
                }
            }
            if s.waiting_on[i] == 0 && !s.doomed.contains(&i) {
                s.phase[i] = Phase::Ready;
                s.queues[s.class[i]].insert(i);
            }
        }
        s
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
        while let Some(i) = self.doomed.pop_first() {
            if !matches!(self.phase[i], Phase::Waiting | Phase::Ready) {
                continue;
            }
            let run = self.runs.get(i);
            let dep = run
                .depends_on()
                .iter()
                .find(|d| self.failed_jobs.contains(d.as_str()))
                .cloned()
                .unwrap_or_default();
            self.queues[self.class[i]].remove(&i);
            self.phase[i] = Phase::Started;
            self.pending -= 1;
            self.finished(i, false);
            cancelled.push((i, dep));
        }
        cancelled.sort_by_key(|c| c.0);

        let mut start = Vec::new();
        let mut heads: BTreeSet<(usize, usize)> = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(c, q)| q.first().map(|&i| (i, c)))
            .collect();
        while let Some((i, c)) = heads.pop_first() {
            if running + start.len() >= self.max_parallel {
                break;
            }
            let Some(p) = placer.place(&self.runs.get(i)) else {
                continue;
            };
            self.queues[c].remove(&i);
            self.phase[i] = Phase::Started;
            self.pending -= 1;
            if let Some(&next) = self.queues[c].first() {
                heads.insert((next, c));
            }
            start.push((i, p));
        }
        Decisions { cancelled, start }
    }

    /// Run `i` (started, or just cancelled) is over; `completed`: it ended
    /// COMPLETED. Readies or dooms what waited on its job.
    pub fn finished(&mut self, i: usize, completed: bool) {
        if self.phase[i] != Phase::Started {
            return;
        }
        self.phase[i] = Phase::Over;
        let job = self.runs.get(i).job();
        if !completed && self.failed_jobs.insert(job) {
            for &r in self.dependents.get(job).map_or(&[][..], Vec::as_slice) {
                if matches!(self.phase[r], Phase::Waiting | Phase::Ready) {
                    self.doomed.insert(r);
                }
            }
        }
        let left = self.left_of_job.get_mut(job).expect("counted in new");
        *left -= 1;
        if *left > 0 {
            return;
        }
        for &r in self.dependents.get(job).map_or(&[][..], Vec::as_slice) {
            self.waiting_on[r] -= 1;
            if self.waiting_on[r] == 0
                && self.phase[r] == Phase::Waiting
                && !self.doomed.contains(&r)
            {
                self.phase[r] = Phase::Ready;
                self.queues[self.class[r]].insert(r);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Run;

    fn run(job: &str, deps: &[&str]) -> Run {
        let mut r = Run::with_defaults(job, vec!["true".into()]);
        r.depends_on = deps.iter().map(|d| d.to_string()).collect();
        r
    }

    /// Places a run when one of `free` slots is left.
    struct Slots(usize);

    impl Placer for Slots {
        type Placement = ();
        fn place(&mut self, _: &RunRef) -> Option<()> {
            (self.0 > 0).then(|| self.0 -= 1)
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
        assert_eq!(d.cancelled, [(1, "a".to_string()), (2, "b".to_string())]);
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
        assert_eq!(d.cancelled, [(2, "a".to_string())]);
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
