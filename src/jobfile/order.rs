//! The order runs start in (`order:` and `seed:` of a job file): a
//! permutation of the expanded runs. The scheduler then starts runs in
//! this order wherever they fit, as it does in file order.

use super::{Job, Order, Runs};
use crate::rng::SplitMix64;

/// Puts `runs` (in expansion order: job, then parameter set, then rep) in
/// the batch's `order`; then each job with an order of its own orders its
/// runs among the places the batch's order gave them. `seed` drives
/// `random`.
pub(super) fn arrange(runs: &mut Runs, jobs: &[Job], order: Order, seed: u64) {
    if order == Order::Sequential
        && jobs
            .iter()
            .all(|j| j.order.is_none_or(|o| o == Order::Sequential))
    {
        return;
    }
    let all: Vec<usize> = (0..runs.len()).collect();
    let mut perm = permute(runs, &all, order, seed);
    for job in jobs {
        let Some(own) = job.order else { continue };
        let places: Vec<usize> = (0..perm.len())
            .filter(|&p| runs.get(perm[p]).job() == job.name)
            .collect();
        let mine: Vec<usize> = places.iter().map(|&p| perm[p]).collect();
        let mut sorted = mine.clone();
        sorted.sort_unstable();
        let ordered = permute(runs, &sorted, own, seed ^ fnv(&job.name));
        for (p, r) in places.into_iter().zip(ordered) {
            perm[p] = r;
        }
    }
    runs.permute(&perm);
}

/// `idx` (in expansion order) in `order`.
fn permute(runs: &Runs, idx: &[usize], order: Order, seed: u64) -> Vec<usize> {
    // Parameter sets: consecutive runs of one job with equal parameters.
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for &i in idx {
        match sets.last_mut() {
            Some(s) if runs.get(s[0]).same_set(&runs.get(i)) => s.push(i),
            _ => sets.push(vec![i]),
        }
    }
    match order {
        Order::Sequential => idx.to_vec(),
        Order::Interleave => {
            let longest = sets.iter().map(Vec::len).max().unwrap_or(0);
            (0..longest)
                .flat_map(|k| sets.iter().filter_map(move |s| s.get(k).copied()))
                .collect()
        }
        Order::Random => {
            // Shuffle which set each place goes to; each set's runs keep
            // their order (its warmups first).
            let mut owner: Vec<usize> = sets
                .iter()
                .enumerate()
                .flat_map(|(s, runs)| std::iter::repeat_n(s, runs.len()))
                .collect();
            let mut rng = SplitMix64(seed);
            for i in (1..owner.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                owner.swap(i, j);
            }
            let mut next = vec![0usize; sets.len()];
            owner
                .into_iter()
                .map(|s| {
                    next[s] += 1;
                    sets[s][next[s] - 1]
                })
                .collect()
        }
    }
}

/// FNV-1a of a name: a job's own random order differs from its neighbours'.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Run;

    /// Two jobs: a with sets x=1, x=2 (a warmup and two reps each), b (two reps).
    fn runs() -> (Runs, Vec<Job>) {
        let mut out = Vec::new();
        for (job, x, reps) in [("a", "1", 3), ("a", "2", 3), ("b", "", 2)] {
            for rep in 1..=reps {
                let mut r = Run::with_defaults(job, vec!["true".into()]);
                if !x.is_empty() {
                    r.params = vec![("x".into(), x.into())];
                }
                r.rep = rep;
                r.warmup = job == "a" && rep == 1;
                r.key = format!("{job}{x}.{rep}");
                out.push(r);
            }
        }
        let jobs = ["a", "b"]
            .map(|n| Job {
                name: n.into(),
                group: None,
                depends_on: Vec::new(),
                needs: Vec::new(),
                param_names: Vec::new(),
                order: None,
            })
            .into();
        (out.into(), jobs)
    }

    fn keys(runs: &Runs) -> Vec<String> {
        runs.iter().map(|r| r.key()).collect()
    }

    #[test]
    fn sequential_keeps_file_order_and_interleave_alternates_the_sets() {
        let (mut r, jobs) = runs();
        arrange(&mut r, &jobs, Order::Sequential, 0);
        assert_eq!(
            keys(&r),
            ["a1.1", "a1.2", "a1.3", "a2.1", "a2.2", "a2.3", "b.1", "b.2"]
        );
        arrange(&mut r, &jobs, Order::Interleave, 0);
        assert_eq!(
            keys(&r),
            ["a1.1", "a2.1", "b.1", "a1.2", "a2.2", "b.2", "a1.3", "a2.3"]
        );
    }

    #[test]
    fn random_is_the_same_for_the_same_seed_and_keeps_each_sets_order() {
        let (mut r1, jobs) = runs();
        let (mut r2, _) = runs();
        let (mut r3, _) = runs();
        arrange(&mut r1, &jobs, Order::Random, 42);
        arrange(&mut r2, &jobs, Order::Random, 42);
        arrange(&mut r3, &jobs, Order::Random, 7);
        assert_eq!(keys(&r1), keys(&r2));
        assert_ne!(keys(&r1), keys(&r3), "another seed, another order");
        for set in ["a1.", "a2.", "b."] {
            let reps: Vec<String> = keys(&r1)
                .into_iter()
                .filter(|k| k.starts_with(set))
                .collect();
            let mut sorted = reps.clone();
            sorted.sort();
            assert_eq!(reps, sorted, "{set} keeps its order (warmup first)");
        }
    }

    #[test]
    fn a_jobs_own_order_arranges_its_runs_in_the_places_the_batch_gave_them() {
        let (mut r, mut jobs) = runs();
        jobs[0].order = Some(Order::Interleave);
        arrange(&mut r, &jobs, Order::Sequential, 0);
        assert_eq!(
            keys(&r),
            ["a1.1", "a2.1", "a1.2", "a2.2", "a1.3", "a2.3", "b.1", "b.2"]
        );
    }
}
