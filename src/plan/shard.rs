//! Shards for clusters: the runs of one job file split into N parts of
//! about equal predicted work, one per node (`packrun slurm submit`,
//! `packrun run --shard I/N`).

use crate::jobfile;
use std::collections::{BTreeMap, HashSet};

/// `--shard I/N`: this process runs shard I (0-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("invalid shard `{s}`: expected I/N with 0 <= I < N, like 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Predicted work of a run: CPUs × estimated seconds.
fn work(r: &jobfile::RunRef) -> f64 {
    f64::from(r.resources().cpus) * r.estimate().as_secs_f64()
}

/// Splits `runs` into `n` shards of about equal predicted work; returns the
/// run indices of each shard, in submission order.
///
/// Deterministic greedy (LPT): units sorted by work, largest first (ties in
/// file order), each to the least loaded shard (ties to the lowest index).
/// A unit is one run, except that all runs of jobs linked by `depends_on`
/// (in either direction, transitively) form one unit: a dependency can only
/// be waited for on the node that runs it.
pub fn split(runs: &jobfile::Runs, n: usize) -> Vec<Vec<usize>> {
    let n = n.max(1);
    // Union-find over job names linked by depends_on.
    let mut jobs: Vec<&str> = Vec::new();
    for r in runs.iter() {
        // A service and the runs that need it go to one node, like a job
        // and its dependencies.
        let linked = r.depends_on().iter().chain(r.needs());
        for j in std::iter::once(r.job()).chain(linked.map(String::as_str)) {
            if !jobs.contains(&j) {
                jobs.push(j);
            }
        }
    }
    let id = |j: &str| {
        jobs.iter()
            .position(|x| *x == j)
            .expect("every job was listed")
    };
    let mut parent: Vec<usize> = (0..jobs.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut linked = vec![false; jobs.len()];
    for r in runs.iter() {
        for d in r.depends_on().iter().chain(r.needs()) {
            let (a, b) = (root(&mut parent, id(r.job())), root(&mut parent, id(d)));
            parent[a] = b;
            linked[id(r.job())] = true;
            linked[id(d)] = true;
        }
    }
    // Units: (work, first run index, run indices).
    let mut units: Vec<(f64, usize, Vec<usize>)> = Vec::new();
    let mut unit_of_component: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        let j = id(r.job());
        if linked[j] {
            let c = root(&mut parent, j);
            let u = *unit_of_component.entry(c).or_insert_with(|| {
                units.push((0.0, i, Vec::new()));
                units.len() - 1
            });
            units[u].0 += work(&r);
            units[u].2.push(i);
        } else {
            units.push((work(&r), i, vec![i]));
        }
    }
    units.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0.0f64; n];
    let mut shards: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (w, _, idx) in units {
        let s = (0..n)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("n >= 1");
        load[s] += w;
        shards[s].extend(idx);
    }
    for s in &mut shards {
        s.sort_unstable();
    }
    shards
}

/// The runs of `shard`: leaves out the runs in `skip`, splits the rest.
/// The runs not in `done`; a service stays while a run left needs it
/// (it runs again for them, whether it ran before or not).
pub fn skip_done(mut runs: jobfile::Runs, done: &HashSet<String>) -> jobfile::Runs {
    if done.is_empty() {
        return runs;
    }
    let mut needed: HashSet<String> = HashSet::new();
    for r in runs.iter() {
        if !r.is_service() && !done.contains(&r.key()) {
            needed.extend(r.needs().iter().cloned());
        }
    }
    // A service needed by a service that stays stays too.
    loop {
        let more: Vec<String> = runs
            .iter()
            .filter(|r| r.is_service() && needed.contains(r.job()))
            .flat_map(|r| r.needs().iter().cloned())
            .filter(|n| !needed.contains(n))
            .collect();
        if more.is_empty() {
            break;
        }
        needed.extend(more);
    }
    runs.retain(|_, r| match r.is_service() {
        true => needed.contains(r.job()),
        false => !done.contains(&r.key()),
    });
    runs
}

pub fn keep_shard(runs: jobfile::Runs, shard: Shard, skip: &HashSet<String>) -> jobfile::Runs {
    let mut runs = skip_done(runs, skip);
    let mut mine = vec![false; runs.len()];
    for i in split(&runs, shard.count).swap_remove(shard.index) {
        mine[i] = true;
    }
    runs.retain(|i, _| mine[i]);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, cpus: u32, secs: u64, deps: &[&str]) -> jobfile::Run {
        jobfile::Run {
            key: format!("{job}-{cpus}-{secs}"),
            job: job.into(),
            params: Vec::new(),
            rep: 1,
            warmup: false,
            command: vec!["/bin/true".into()],
            env: Vec::new(),
            workdir: None,
            resources: jobfile::Resources {
                cpus,
                cpuset: None,
                memory: None,
                numa: jobfile::Numa::Local,
                cpu_quota: None,
                pids: jobfile::DEFAULT_PIDS,
                io: jobfile::Io::default(),
                disk: None,
                files: None,
                gpus: 0,
                rlimits: Vec::new(),
            },
            time_limit: None,
            cpu_time_limit: None,
            estimate: std::time::Duration::from_secs(secs),
            container: jobfile::Container {
                rootfs: jobfile::Rootfs::Host,
                network: jobfile::Network::None,
                hostname: job.into(),
                mounts: Vec::new(),
                writable: Vec::new(),
                user: None,
                capabilities: Vec::new(),
                userns: jobfile::UserNs::Private,
                hidden: Vec::new(),
                visible: Vec::new(),
                aio: false,
                image: None,
            },
            log_limit: jobfile::DEFAULT_LOG_LIMIT,
            counters: Default::default(),
            group: None,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            stdin: None,
            steps: Default::default(),
            service: None,
            needs: Vec::new(),
            reaches: Vec::new(),
        }
    }

    #[test]
    fn skipping_done_runs_keeps_a_service_only_while_a_run_that_needs_it_is_left() {
        let mut s = run("s", 1, 1, &[]);
        s.service = Some(jobfile::Service {
            ready_tcp: None,
            ready_timeout: std::time::Duration::from_secs(30),
            stop_grace: std::time::Duration::from_secs(5),
        });
        let mut c = run("c", 1, 1, &[]);
        c.needs = vec!["s".into()];
        let mut c2 = c.clone();
        c2.key = "c-other".into();
        let runs: jobfile::Runs = vec![s.clone(), c.clone(), c2.clone()].into();
        let jobs = |r: &jobfile::Runs| r.iter().map(|r| r.key()).collect::<Vec<_>>();
        let done: HashSet<String> = [s.key.clone(), c.key.clone()].into();
        assert_eq!(
            jobs(&skip_done(runs.clone(), &done)),
            [s.key.clone(), c2.key.clone()]
        );
        let all: HashSet<String> = [s.key.clone(), c.key.clone(), c2.key.clone()].into();
        assert!(skip_done(runs, &all).is_empty());
    }

    #[test]
    fn shard_parses_index_and_count_and_rejects_out_of_range() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        let e = "4/4".parse::<Shard>().unwrap_err();
        assert!(e.contains("`4/4`") && e.contains("I/N"), "{e}");
        assert!("x".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
    }

    #[test]
    fn split_puts_the_largest_runs_first_on_the_least_loaded_shard() {
        let runs = vec![
            run("a", 1, 10, &[]),
            run("b", 4, 10, &[]),
            run("c", 2, 10, &[]),
            run("d", 1, 20, &[]),
        ];
        // Work 10, 40, 20, 20: b → 0; c → 1; d → 1 (20 < 40); a → 0 (40 = 40: lowest index).
        assert_eq!(split(&runs.into(), 2), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn split_keeps_jobs_linked_by_depends_on_on_one_shard() {
        let runs = vec![
            run("prep", 1, 5, &[]),
            run("x", 1, 5, &[]),
            run("main", 1, 5, &["prep"]),
            run("main", 1, 5, &["prep"]),
            run("y", 1, 5, &[]),
        ];
        let shards = split(&runs.into(), 3);
        let with_prep = shards.iter().find(|s| s.contains(&0)).unwrap();
        assert_eq!(with_prep, &vec![0, 2, 3]);
        assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), 5);
    }

    #[test]
    fn keep_shard_leaves_out_skipped_runs_and_covers_the_rest_once() {
        let runs: Vec<jobfile::Run> = (1..=7).map(|i| run(&format!("j{i}"), 1, i, &[])).collect();
        let skip: HashSet<String> = [runs[2].key.clone()].into();
        let mut all: Vec<String> = (0..3)
            .flat_map(|i| {
                keep_shard(runs.clone().into(), Shard { index: i, count: 3 }, &skip).to_vec()
            })
            .map(|r| r.key)
            .collect();
        all.sort();
        let mut want: Vec<String> = runs
            .iter()
            .map(|r| r.key.clone())
            .filter(|k| !skip.contains(k))
            .collect();
        want.sort();
        assert_eq!(all, want);
    }
}
