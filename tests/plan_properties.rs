//! Property tests of the planner on random topologies and runs.

#[path = "fixtures/run_helper.rs"]
mod helper;

use packrun::cpulist::CpuList;
use packrun::jobfile::{Group, MemPolicy, Numa, Run};
use packrun::plan::{node_reserve, simulate, Allocator};
use packrun::topology::{Cpu, Node, Topology};
use proptest::prelude::*;

/// A machine of `nodes` nodes with CPUs (plus optionally one memory-only node),
/// `cores` cores per node, `smt` threads per core, `l3` L3 groups per node;
/// CPUs numbered like Linux (siblings N and N + all cores).
fn machine(nodes: u32, cores: u32, smt: u32, l3: u32, mem_gib: u64, memory_only: bool) -> Topology {
    let total_cores = nodes * cores;
    let mut cpus = Vec::new();
    let all = if memory_only { nodes + 1 } else { nodes };
    let mut node_cpus: Vec<Vec<u32>> = vec![Vec::new(); all as usize];
    for n in 0..nodes {
        for c in 0..cores {
            let core = n * cores + c;
            let siblings = CpuList::from_ids((0..smt).map(|t| core + t * total_cores));
            let group = c * l3 / cores;
            let l3_first = n * cores + (0..cores).find(|&x| x * l3 / cores == group).unwrap();
            for id in siblings.iter() {
                cpus.push(Cpu {
                    id,
                    core,
                    package: n,
                    node: n,
                    l3: l3_first,
                    siblings: siblings.clone(),
                });
                node_cpus[n as usize].push(id);
            }
        }
    }
    cpus.sort_by_key(|c| c.id);
    let nodes = (0..all)
        .map(|n| Node {
            id: n,
            cpus: CpuList::from_ids(node_cpus[n as usize].iter().copied()),
            memory_bytes: mem_gib << 30,
            distances: (0..all)
                .map(|m| {
                    if m == n {
                        10
                    } else {
                        10 + 10 * (n.abs_diff(m))
                    }
                })
                .collect(),
        })
        .collect();
    Topology {
        cpus,
        nodes,
        gpus: Vec::new(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    topo: Topology,
    runs: Vec<Run>,
    groups: Vec<Group>,
    max_parallel: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u32..=4,
        1u32..=6,
        1u32..=2,
        1u32..=2,
        1u64..=8,
        any::<bool>(),
        any::<bool>(),
        prop::option::of(1usize..6),
    )
        .prop_flat_map(
            |(nodes, cores, smt, l3, mem, memory_only, grouped, max_parallel)| {
                let topo = machine(nodes, cores, smt, l3.min(cores), mem, memory_only);
                let ncpus = topo.cpus.len() as u32;
                let nnodes = topo.nodes.len() as u32;
                let run = (
                    1u32..=ncpus + 2,
                    prop::option::of(0u64..=(mem * 2) << 30),
                    0u8..6,
                    prop::collection::btree_set(0u32..nnodes + 1, 1..3),
                    1u64..50,
                    any::<bool>(),
                    0usize..8,
                );
                let groups = if grouped && ncpus >= 2 {
                    vec![Group {
                        name: "g".into(),
                        cpus: ncpus / 2,
                        memory: Some(mem << 29),
                        gpus: 0,
                        nodes: None,
                    }]
                } else {
                    vec![]
                };
                (
                    Just(topo),
                    Just(groups),
                    prop::collection::vec(run, 1..30),
                    Just(max_parallel),
                )
            },
        )
        .prop_map(|(topo, groups, raw, max_parallel)| {
            let mut runs = Vec::new();
            for (i, (cpus, memory, numa, nodes, secs, in_group, dep)) in raw.into_iter().enumerate()
            {
                let mut r = helper::run(&format!("j{}", i % 7), cpus, secs);
                r.resources.memory = memory;
                r.resources.numa = match numa {
                    0..=2 => Numa::Local,
                    3 => Numa::Spread,
                    _ => Numa::Nodes {
                        nodes: CpuList::from_ids(nodes),
                        policy: MemPolicy::Bind,
                    },
                };
                if in_group && !groups.is_empty() {
                    r.group = Some("g".into());
                }
                // Depend only on jobs of lower number: no cycles.
                let me = i % 7;
                if dep < me && dep % 2 == 0 {
                    r.depends_on = vec![format!("j{dep}")];
                }
                runs.push(r);
            }
            Case {
                topo,
                runs,
                groups,
                max_parallel,
            }
        })
}

fn fits_alone(c: &Case, r: &Run) -> bool {
    Allocator::new(&c.topo, &c.groups).place(r).is_some()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn schedule_never_double_books_cpus_or_memory_and_places_every_run_once(c in case()) {
        let all_fit = c.runs.iter().all(|r| fits_alone(&c, r));
        // A run whose job has a run that does not fit is an error; keep the rest,
        // and drop dependencies on dropped jobs (they would never finish).
        let bad_jobs: Vec<String> = c.runs.iter().filter(|r| !fits_alone(&c, r)).map(|r| r.job.clone()).collect();
        match simulate(&c.runs.clone().into(), &c.topo, &c.groups, c.max_parallel) {
            Ok(_) => prop_assert!(all_fit, "a run that cannot fit alone was scheduled"),
            Err(errors) => {
                prop_assert!(!all_fit, "every run fits alone, but: {errors:?}");
                for e in &errors {
                    prop_assert!(bad_jobs.contains(&e.job), "error for a job whose runs all fit: {e}");
                }
            }
        }
        let runs: Vec<Run> = c.runs.iter().filter(|r| !bad_jobs.contains(&r.job)).cloned().map(|mut r| {
            r.depends_on.retain(|d| !bad_jobs.contains(d));
            r
        }).collect();
        let s = simulate(&runs.clone().into(), &c.topo, &c.groups, c.max_parallel).expect("runs that fit alone are all placed");

        // Every run exactly once.
        let mut seen = vec![0; runs.len()];
        for e in &s.entries {
            seen[e.run] += 1;
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "placed counts {seen:?}");

        for e in &s.entries {
            let r = &runs[e.run];
            prop_assert_eq!(e.placement.cpus.len(), r.resources.cpus as usize);
            prop_assert!((e.end - e.start - r.estimate.as_secs_f64()).abs() < 1e-9);
            // Memory nodes hold the run's CPUs (local, spread) or are exactly the asked nodes.
            let cpu_nodes = CpuList::from_ids(e.placement.cpus.iter().map(|id| c.topo.cpus.iter().find(|x| x.id == id).unwrap().node));
            match &r.resources.numa {
                Numa::Nodes { nodes, .. } => {
                    prop_assert_eq!(&e.placement.mems, nodes);
                    prop_assert!(cpu_nodes.is_subset(nodes));
                }
                _ => prop_assert_eq!(&e.placement.mems, &cpu_nodes),
            }
            // A local run that fits one node is on one node.
            if r.resources.numa == Numa::Local && r.group.is_none() && c.groups.is_empty() {
                let fits_node = c.topo.nodes.iter().any(|n| n.cpus.len() >= r.resources.cpus as usize
                    && r.resources.memory.unwrap_or(0) <= n.memory_bytes - node_reserve(n.memory_bytes));
                if fits_node {
                    prop_assert_eq!(cpu_nodes.len(), 1);
                }
            }
            for d in &r.depends_on {
                for o in s.entries.iter().filter(|o| &runs[o.run].job == d) {
                    prop_assert!(e.start >= o.end, "{} started before its dependency {} ended", r.job, d);
                }
            }
        }

        // A group's runs stay on the group's CPUs, apart from everyone else's.
        let in_group = CpuList::from_ids(s.entries.iter().filter(|e| runs[e.run].group.is_some()).flat_map(|e| e.placement.cpus.ids().to_vec()));
        let outside = CpuList::from_ids(s.entries.iter().filter(|e| runs[e.run].group.is_none()).flat_map(|e| e.placement.cpus.ids().to_vec()));
        prop_assert!(in_group.is_disjoint(&outside));
        if let Some(g) = c.groups.first() {
            prop_assert!(in_group.len() <= g.cpus as usize);
        }

        // At every start instant: CPUs disjoint, node budgets kept, max_parallel kept.
        for e in &s.entries {
            let t = e.start;
            let active: Vec<_> = s.entries.iter().filter(|o| o.start <= t && t < o.end).collect();
            if let Some(cap) = c.max_parallel {
                prop_assert!(active.len() <= cap);
            }
            let mut held = std::collections::HashSet::new();
            let mut charged = vec![0u64; c.topo.nodes.len()];
            for o in &active {
                for cpu in o.placement.cpus.iter() {
                    prop_assert!(held.insert(cpu), "CPU {cpu} held twice at {t}");
                }
                for &(n, b) in &o.placement.memory_per_node {
                    charged[n as usize] += b;
                }
            }
            for (n, node) in c.topo.nodes.iter().enumerate() {
                let budget = node.memory_bytes - node_reserve(node.memory_bytes);
                prop_assert!(charged[n] <= budget, "node {n} charged {} of {budget} at {t}", charged[n]);
            }
        }
    }
}
