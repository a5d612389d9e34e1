//! Pure packing: which CPUs and memory nodes a run gets, and a simulated
//! list schedule. No I/O.
//!
//! Rules (this list is where they are kept; docs/jobfile.md, `resources`,
//! tells users the short of them):
//! - CPUs of concurrent runs are disjoint.
//! - `numa: local` puts every CPU of a run on one node when CPUs and memory fit
//!   there, choosing the node whose free CPUs the run fills best (best fit:
//!   fewest free CPUs left over). Otherwise it spans the fewest nodes, closest
//!   by SLIT distance. mems = the nodes of its CPUs. A run that would fit
//!   one node when that node is idle waits for it rather than span nodes now.
//! - Inside a node: an L3 group that holds the whole run (again best fit),
//!   else the L3 groups with most free CPUs first. Inside an L3 group: whole
//!   free cores first (a 2-CPU run on SMT2 gets both threads of one core),
//!   then the free threads of half-used cores, and only then a whole free
//!   core is broken (so a 1-CPU run fills a half-used core first).
//! - `numa: spread` deals CPUs round-robin over the nodes (starting with the
//!   one with most free CPUs); mems = the nodes used.
//! - `numa: {nodes: [..]}` takes CPUs from those nodes (as `local` does) and
//!   mems = exactly those nodes. `cpuset:` pins exact CPUs.
//! - Memory: every node has a budget of MemTotal minus a reserve for the
//!   kernel and packrun itself, min(5 % of MemTotal, 256 MiB). A run's memory
//!   is charged in equal shares to each of its memory nodes (the first node
//!   takes the remainder of the division): bind and local let the kernel
//!   allocate on any of them, interleave spreads pages evenly, and an even
//!   charge is the one that never over-commits a node for interleave. The
//!   sum charged to a node never exceeds its budget. A run without `memory`
//!   is charged nothing.
//! - Groups carve their CPUs out of the machine when the allocator is made,
//!   in file order, with the same rules as a `local` run (restricted to the
//!   group's `nodes`). A group with `memory` carves it from the budgets of its
//!   nodes (equal shares) and its runs are charged to that carve-out; a group
//!   without `memory` shares the machine's remaining budgets. Runs of a group
//!   use only its CPUs; ungrouped runs use what no group took.
//! - GPUs are whole and never given to two runs at once. A `local` run that
//!   asks for N GPUs goes to a node that has N free GPUs and its CPUs (and
//!   waits for one) when some node has N GPUs and room for its CPUs at all;
//!   otherwise its CPUs are placed as without GPUs. Its GPUs are then taken
//!   nearest its memory nodes first (by SLIT distance); among equally near
//!   nodes, one that holds all it still needs with the fewest free (best
//!   fit, so pairs stay whole for runs of two), else the one with most free.
//!   A run's GPUs are of one vendor (a CUDA job never gets half AMD): the
//!   vendor with most GPUs on the machine is tried first.
//!   A group with `gpus` carves that many out of the machine's (one vendor,
//!   nearest its CPUs) when the allocator is made; its runs use only those,
//!   and every other run only the GPUs no group took.

pub mod shard;

use crate::cpulist::CpuList;
use crate::jobfile::{Group, Numa, RunRef, Runs};
use crate::sched::{Placer, Scheduler};
use crate::topology::Topology;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Where a run goes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Placement {
    pub cpus: CpuList,
    pub mems: CpuList,
    /// Memory charged to each node in `mems` (bytes), released with the placement.
    pub memory_per_node: Vec<(u32, u64)>,
    /// Its GPUs by PCI bus id, in bus order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// A run that can never fit, named by job and field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("job `{job}`: {field} asks for {asked}, but {available}")]
pub struct PlanError {
    pub job: String,
    pub field: String,
    pub asked: String,
    pub available: String,
}

/// Memory kept back on every node: min(5 % of MemTotal, 256 MiB).
pub fn node_reserve(mem_total: u64) -> u64 {
    (mem_total / 20).min(256 << 20)
}

/// A fixed-size set of CPU indices.
#[derive(Debug, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn set(&mut self, i: usize, v: bool) {
        if v {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

const NONE: usize = usize::MAX;

/// What never changes: the topology folded into indices.
#[derive(Debug)]
struct Shape {
    /// CPU index -> id, ascending.
    cpu_ids: Vec<u32>,
    /// CPU id -> index (NONE when not usable).
    cpu_index: Vec<usize>,
    cpu_node: Vec<usize>,
    /// Core index -> its CPU indices, ascending.
    cores: Vec<Vec<usize>>,
    /// Node index -> id.
    node_ids: Vec<u32>,
    /// Node id -> index (NONE when absent).
    node_index: Vec<usize>,
    /// Node index -> L3 groups -> core indices.
    node_l3: Vec<Vec<Vec<usize>>>,
    distances: Vec<Vec<u32>>,
    /// Memory budget per node (MemTotal minus the reserve).
    budget: Vec<u64>,
    /// GPU index -> bus id (ascending) and node index.
    gpu_ids: Vec<String>,
    gpu_node: Vec<usize>,
    gpu_vendor: Vec<crate::gpus::Vendor>,
}

impl Shape {
    fn new(topo: &Topology) -> Shape {
        let cpu_ids: Vec<u32> = topo.cpus.iter().map(|c| c.id).collect();
        let max_id = cpu_ids.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut cpu_index = vec![NONE; max_id];
        for (i, &id) in cpu_ids.iter().enumerate() {
            cpu_index[id as usize] = i;
        }
        let node_ids: Vec<u32> = topo.nodes.iter().map(|n| n.id).collect();
        let max_node = node_ids.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut node_index = vec![NONE; max_node];
        for (i, &id) in node_ids.iter().enumerate() {
            node_index[id as usize] = i;
        }
        let cpu_node: Vec<usize> = topo
            .cpus
            .iter()
            .map(|c| node_index[c.node as usize])
            .collect();
        // Cores and L3 groups in order of their lowest CPU.
        let mut core_of: HashMap<u32, usize> = HashMap::new();
        let mut cores: Vec<Vec<usize>> = Vec::new();
        let mut l3_of: HashMap<(usize, u32), usize> = HashMap::new();
        let mut node_l3: Vec<Vec<Vec<usize>>> = vec![Vec::new(); node_ids.len()];
        for (i, c) in topo.cpus.iter().enumerate() {
            let n = cpu_node[i];
            let core = *core_of.entry(c.core).or_insert_with(|| {
                cores.push(Vec::new());
                let core = cores.len() - 1;
                let l3 = *l3_of.entry((n, c.l3)).or_insert_with(|| {
                    node_l3[n].push(Vec::new());
                    node_l3[n].len() - 1
                });
                node_l3[n][l3].push(core);
                core
            });
            cores[core].push(i);
        }
        let gpu_node = topo
            .gpus
            .iter()
            .map(|g| node_index[g.node as usize])
            .collect();
        Shape {
            cpu_ids,
            cpu_index,
            cpu_node,
            cores,
            node_ids,
            node_index,
            node_l3,
            distances: topo.nodes.iter().map(|n| n.distances.clone()).collect(),
            budget: topo
                .nodes
                .iter()
                .map(|n| n.memory_bytes - node_reserve(n.memory_bytes))
                .collect(),
            gpu_ids: topo.gpus.iter().map(|g| g.bus_id.clone()).collect(),
            gpu_node,
            gpu_vendor: topo.gpus.iter().map(|g| g.vendor).collect(),
        }
    }
    /// The GPU vendors, most GPUs first.
    fn vendors(&self) -> Vec<crate::gpus::Vendor> {
        let mut v: Vec<(usize, crate::gpus::Vendor)> = Vec::new();
        for &x in &self.gpu_vendor {
            match v.iter_mut().find(|(_, y)| *y == x) {
                Some(e) => e.0 += 1,
                None => v.push((1, x)),
            }
        }
        v.sort_by_key(|&(c, _)| Reverse(c));
        v.into_iter().map(|(_, x)| x).collect()
    }

    fn node_of_id(&self, id: u32) -> Option<usize> {
        self.node_index
            .get(id as usize)
            .copied()
            .filter(|&i| i != NONE)
    }
    fn cpu_of_id(&self, id: u32) -> Option<usize> {
        self.cpu_index
            .get(id as usize)
            .copied()
            .filter(|&i| i != NONE)
    }
}

/// The machine outside groups (index 0) or one group.
#[derive(Debug, Clone)]
struct Domain {
    /// Free CPUs of this domain per node.
    free: Vec<u32>,
    /// All CPUs of this domain per node.
    total: Vec<u32>,
    /// Memory pool the domain's runs are charged to.
    pool: usize,
    /// Whether it took GPUs of its own (else its runs use domain 0's).
    own_gpus: bool,
}

/// Something about a group that cannot be satisfied (reported per run by `check_feasible`).
#[derive(Debug, Clone)]
struct GroupProblem {
    group: String,
    field: &'static str,
    asked: String,
    available: String,
}

/// Tracks what is free now; the run loop and the simulator share it.
#[derive(Debug, Clone)]
pub struct Allocator {
    shape: Arc<Shape>,
    free: Bits,
    used: Bits,
    reserved: Bits,
    cpu_domain: Vec<usize>,
    domains: Vec<Domain>,
    group_index: HashMap<String, usize>,
    /// Memory left per pool and node.
    pools: Vec<Vec<u64>>,
    /// What each pool holds when nothing runs.
    pool_cap: Vec<Vec<u64>>,
    problems: Vec<GroupProblem>,
    /// Per GPU: taken by one of our runs, held by another packrun.
    gpu_used: Vec<bool>,
    gpu_reserved: Vec<bool>,
    /// Per GPU: the domain it belongs to (0: no group took it).
    gpu_domain: Vec<usize>,
}

/// CPUs chosen for a run, before they are taken.
struct Choice {
    cpus: Vec<usize>,
    mems: Vec<usize>,
}

impl Allocator {
    pub fn new(topo: &Topology, groups: &[Group]) -> Self {
        let shape = Arc::new(Shape::new(topo));
        let n = shape.cpu_ids.len();
        let nn = shape.node_ids.len();
        let mut free = Bits::new(n);
        let mut total = vec![0u32; nn];
        for i in 0..n {
            free.set(i, true);
            total[shape.cpu_node[i]] += 1;
        }
        let ngpus = shape.gpu_ids.len();
        let mut a = Allocator {
            pools: vec![shape.budget.clone()],
            pool_cap: vec![shape.budget.clone()],
            shape,
            free,
            used: Bits::new(n),
            reserved: Bits::new(n),
            cpu_domain: vec![0; n],
            domains: vec![Domain {
                free: total.clone(),
                total,
                pool: 0,
                own_gpus: false,
            }],
            group_index: HashMap::new(),
            problems: Vec::new(),
            gpu_used: vec![false; ngpus],
            gpu_reserved: vec![false; ngpus],
            gpu_domain: vec![0; ngpus],
        };
        for g in groups {
            a.carve(g);
        }
        a
    }

    /// Moves a group's CPUs (and memory) out of the machine's rest into a new domain.
    fn carve(&mut self, g: &Group) {
        let d = self.domains.len();
        let nn = self.shape.node_ids.len();
        self.group_index.insert(g.name.clone(), d);
        let mut dom = Domain {
            free: vec![0; nn],
            total: vec![0; nn],
            pool: 0,
            own_gpus: false,
        };
        let problem = |field, asked: String, available: String| GroupProblem {
            group: g.name.clone(),
            field,
            asked,
            available,
        };
        let mut nodes: Vec<usize> = (0..nn).collect();
        if let Some(list) = &g.nodes {
            let missing: Vec<u32> = list
                .iter()
                .filter(|&id| self.shape.node_of_id(id).is_none())
                .collect();
            if !missing.is_empty() {
                let p = problem(
                    "nodes",
                    list.to_string(),
                    format!("the machine has nodes {}", self.node_list()),
                );
                self.problems.push(p);
                self.domains.push(dom);
                return;
            }
            nodes = list
                .iter()
                .filter_map(|id| self.shape.node_of_id(id))
                .collect();
        }
        let choice = if g.cpus == 0 {
            None
        } else {
            self.choose_local(0, &nodes, g.cpus as usize, 0, None)
        };
        let Some(choice) = choice else {
            let left: u32 = nodes.iter().map(|&n| self.domains[0].free[n]).sum();
            let p = problem(
                "cpus",
                g.cpus.to_string(),
                format!("{left} CPUs are left for it{}", self.nodes_note(&g.nodes)),
            );
            self.problems.push(p);
            self.domains.push(dom);
            return;
        };
        for &c in &choice.cpus {
            let n = self.shape.cpu_node[c];
            self.cpu_domain[c] = d;
            self.domains[0].free[n] -= 1;
            self.domains[0].total[n] -= 1;
            dom.free[n] += 1;
            dom.total[n] += 1;
        }
        if g.gpus > 0 {
            match self.pick_gpus(0, g.gpus as usize, &choice.mems) {
                Some(gpus) => {
                    for i in gpus {
                        self.gpu_domain[i] = d;
                    }
                    dom.own_gpus = true;
                }
                None => {
                    let left = (0..self.shape.gpu_ids.len())
                        .filter(|&i| self.gpu_domain[i] == 0)
                        .count();
                    let p = problem(
                        "gpus",
                        g.gpus.to_string(),
                        format!("{left} GPUs are left for it (a group's GPUs are of one vendor)"),
                    );
                    self.problems.push(p);
                    // Its GPU runs then fit nowhere and are reported.
                    dom.own_gpus = true;
                }
            }
        }
        if let Some(mem) = g.memory {
            let mem_nodes = if g.nodes.is_some() {
                nodes
            } else {
                choice.mems
            };
            let shares = split(mem, &mem_nodes);
            if shares.iter().any(|&(n, b)| self.pools[0][n] < b) {
                let avail: Vec<String> = mem_nodes
                    .iter()
                    .map(|&n| {
                        format!(
                            "node {}: {}",
                            self.shape.node_ids[n],
                            fmt_bytes(self.pools[0][n])
                        )
                    })
                    .collect();
                let p = problem(
                    "memory",
                    fmt_bytes(mem),
                    format!(
                        "it is split evenly over its nodes and they have {}",
                        avail.join(", ")
                    ),
                );
                self.problems.push(p);
            } else {
                let mut pool = vec![0; nn];
                for (n, b) in shares {
                    self.pools[0][n] -= b;
                    self.pool_cap[0][n] -= b;
                    pool[n] = b;
                }
                self.pools.push(pool.clone());
                self.pool_cap.push(pool);
                dom.pool = self.pools.len() - 1;
            }
        }
        self.domains.push(dom);
    }

    fn node_list(&self) -> CpuList {
        CpuList::from_ids(self.shape.node_ids.iter().copied())
    }

    fn nodes_note(&self, nodes: &Option<CpuList>) -> String {
        nodes
            .as_ref()
            .map_or(String::new(), |l| format!(" on nodes {l}"))
    }

    /// Takes CPUs away (held by another packrun process) until `unreserve`.
    pub fn reserve(&mut self, cpus: &CpuList) {
        for id in cpus.iter() {
            let Some(c) = self.shape.cpu_of_id(id) else {
                continue;
            };
            if self.reserved.get(c) {
                continue;
            }
            self.reserved.set(c, true);
            if self.free.get(c) {
                self.free.set(c, false);
                self.domains[self.cpu_domain[c]].free[self.shape.cpu_node[c]] -= 1;
            }
        }
    }

    pub fn unreserve(&mut self, cpus: &CpuList) {
        for id in cpus.iter() {
            let Some(c) = self.shape.cpu_of_id(id) else {
                continue;
            };
            if !self.reserved.get(c) {
                continue;
            }
            self.reserved.set(c, false);
            if !self.used.get(c) {
                self.free.set(c, true);
                self.domains[self.cpu_domain[c]].free[self.shape.cpu_node[c]] += 1;
            }
        }
    }

    /// Places `run` in what is free now, or None if it must wait.
    pub fn place(&mut self, run: &impl Request) -> Option<Placement> {
        let d = match run.group() {
            Some(g) => *self.group_index.get(g)?,
            None => 0,
        };
        let mem = run.resources().memory.unwrap_or(0);
        let k = run.resources().cpus as usize;
        let g = run.resources().gpus as usize;
        let nn = self.shape.node_ids.len();
        // The GPUs its group took, else those no group took.
        let gd = if self.domains[d].own_gpus { d } else { 0 };
        if g > 0 && self.gpus_free_on(gd, None) < g {
            return None;
        }
        // Fixed memory nodes of `numa: {nodes: ..}`; None = the nodes of the CPUs.
        let fixed: Option<Vec<usize>> = match &run.resources().numa {
            Numa::Nodes { nodes, .. } => Some(
                nodes
                    .iter()
                    .map(|id| self.shape.node_of_id(id))
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => None,
        };
        let choice = if let Some(set) = &run.resources().cpuset {
            let mut cpus = Vec::with_capacity(set.len());
            for id in set.iter() {
                let c = self.shape.cpu_of_id(id)?;
                if self.cpu_domain[c] != d || !self.free.get(c) {
                    return None;
                }
                cpus.push(c);
            }
            let mut mems: Vec<usize> = cpus.iter().map(|&c| self.shape.cpu_node[c]).collect();
            mems.sort_unstable();
            mems.dedup();
            Choice { cpus, mems }
        } else {
            if k == 0 {
                return None;
            }
            // Quick refusal: not enough free CPUs in the domain at all.
            let free: u32 = self.domains[d].free.iter().sum();
            if (free as usize) < k {
                return None;
            }
            match &run.resources().numa {
                Numa::Local if g > 0 => {
                    let nodes = self.gpu_local_nodes((d, gd), k, g);
                    if nodes.is_empty() {
                        return None;
                    }
                    self.choose_local(d, &nodes, k, mem, None)?
                }
                Numa::Local => self.choose_local(d, &(0..nn).collect::<Vec<_>>(), k, mem, None)?,
                Numa::Spread => self.choose_spread(d, k, mem)?,
                Numa::Nodes { .. } => {
                    let fixed = fixed.as_ref().expect("set above");
                    self.choose_local(d, fixed, k, mem, Some(fixed))?
                }
            }
        };
        let mems = fixed.unwrap_or(choice.mems);
        let shares = split(mem, &mems);
        let pool = self.domains[d].pool;
        if shares.iter().any(|&(n, b)| self.pools[pool][n] < b) {
            return None;
        }
        let gpus = if g > 0 {
            self.pick_gpus(gd, g, &mems)?
        } else {
            Vec::new()
        };
        for &i in &gpus {
            self.gpu_used[i] = true;
        }
        for &c in &choice.cpus {
            self.free.set(c, false);
            self.used.set(c, true);
            self.domains[d].free[self.shape.cpu_node[c]] -= 1;
        }
        for &(n, b) in &shares {
            self.pools[pool][n] -= b;
        }
        Some(Placement {
            cpus: CpuList::from_ids(choice.cpus.iter().map(|&c| self.shape.cpu_ids[c])),
            mems: CpuList::from_ids(mems.iter().map(|&n| self.shape.node_ids[n])),
            memory_per_node: shares
                .iter()
                .map(|&(n, b)| (self.shape.node_ids[n], b))
                .collect(),
            gpus: gpus
                .iter()
                .map(|&i| self.shape.gpu_ids[i].clone())
                .collect(),
        })
    }

    /// Free GPUs of domain `gd` (not ours, not another packrun's), on
    /// node index `n` or anywhere.
    fn gpus_free_on(&self, gd: usize, n: Option<usize>) -> usize {
        (0..self.shape.gpu_ids.len())
            .filter(|&i| !self.gpu_used[i] && !self.gpu_reserved[i] && self.gpu_domain[i] == gd)
            .filter(|&i| n.is_none_or(|n| self.shape.gpu_node[i] == n))
            .count()
    }

    /// The nodes a `local` run with `g` GPUs may take its CPUs from: those
    /// with `g` free GPUs when some node could hold its GPUs and CPUs at
    /// once (it waits for one), else every node.
    fn gpu_local_nodes(&self, (d, gd): (usize, usize), k: usize, g: usize) -> Vec<usize> {
        let sh = &self.shape;
        let nn = sh.node_ids.len();
        let holds = |n: usize| {
            sh.vendors().iter().any(|&v| {
                (0..sh.gpu_ids.len())
                    .filter(|&i| {
                        sh.gpu_node[i] == n && sh.gpu_vendor[i] == v && self.gpu_domain[i] == gd
                    })
                    .count()
                    >= g
            }) && self.domains[d].total[n] as usize >= k
        };
        if (0..nn).any(holds) {
            (0..nn)
                .filter(|&n| holds(n) && self.gpus_free_on(gd, Some(n)) >= g)
                .collect()
        } else {
            (0..nn).collect()
        }
    }

    /// `g` free GPUs of one vendor nearest the memory nodes `mems` (see
    /// the rules above).
    fn pick_gpus(&self, gd: usize, g: usize, mems: &[usize]) -> Option<Vec<usize>> {
        self.shape
            .vendors()
            .into_iter()
            .find_map(|v| self.pick_gpus_of((gd, v), g, mems))
    }

    /// `pick_gpus` of domain `gd` and one vendor.
    fn pick_gpus_of(
        &self,
        (gd, vendor): (usize, crate::gpus::Vendor),
        g: usize,
        mems: &[usize],
    ) -> Option<Vec<usize>> {
        let sh = &self.shape;
        let nn = sh.node_ids.len();
        let dist = |n: usize| mems.iter().map(|&m| sh.distances[m][n]).min().unwrap_or(0);
        let usable = |i: usize| {
            !self.gpu_used[i]
                && !self.gpu_reserved[i]
                && sh.gpu_vendor[i] == vendor
                && self.gpu_domain[i] == gd
        };
        let mut out = Vec::with_capacity(g);
        let mut left: Vec<usize> = (0..nn).collect();
        while out.len() < g {
            let need = g - out.len();
            let free = |n: usize| {
                (0..sh.gpu_ids.len())
                    .filter(|&i| sh.gpu_node[i] == n && usable(i))
                    .count()
            };
            let best = left
                .iter()
                .copied()
                .filter(|&n| free(n) > 0)
                .min_by_key(|&n| {
                    let f = free(n);
                    (
                        dist(n),
                        f < need,
                        if f >= need { f } else { usize::MAX - f },
                        n,
                    )
                })?;
            left.retain(|&n| n != best);
            out.extend(
                (0..sh.gpu_ids.len())
                    .filter(|&i| sh.gpu_node[i] == best && usable(i))
                    .take(need),
            );
        }
        out.sort_unstable();
        Some(out)
    }

    /// Takes GPUs away (bus ids another packrun holds) until `unreserve_gpus`.
    pub fn reserve_gpus(&mut self, bus_ids: &[String]) {
        for (i, id) in self.shape.gpu_ids.iter().enumerate() {
            if bus_ids.contains(id) {
                self.gpu_reserved[i] = true;
            }
        }
    }

    pub fn unreserve_gpus(&mut self) {
        self.gpu_reserved.iter_mut().for_each(|r| *r = false);
    }

    /// The machine's GPUs by bus id (the allocator's view).
    pub fn gpu_ids(&self) -> &[String] {
        &self.shape.gpu_ids
    }

    /// Gives a placement's CPUs and memory back.
    pub fn release(&mut self, p: &Placement) {
        let Some(first) = p.cpus.iter().next().and_then(|id| self.shape.cpu_of_id(id)) else {
            return;
        };
        let d = self.cpu_domain[first];
        for id in p.cpus.iter() {
            let Some(c) = self.shape.cpu_of_id(id) else {
                continue;
            };
            if !self.used.get(c) {
                continue;
            }
            self.used.set(c, false);
            if !self.reserved.get(c) {
                self.free.set(c, true);
                self.domains[self.cpu_domain[c]].free[self.shape.cpu_node[c]] += 1;
            }
        }
        for id in &p.gpus {
            if let Some(i) = self.shape.gpu_ids.iter().position(|x| x == id) {
                self.gpu_used[i] = false;
            }
        }
        let pool = self.domains[d].pool;
        for &(id, b) in &p.memory_per_node {
            if let Some(n) = self.shape.node_of_id(id) {
                self.pools[pool][n] += b;
            }
        }
    }

    /// CPUs on the fewest nodes among `allowed` (one when it fits), closest by
    /// distance, best fit. Memory is checked here when mems follow the CPUs
    /// (`fixed` is None); fixed mems are checked by the caller.
    fn choose_local(
        &self,
        d: usize,
        allowed: &[usize],
        k: usize,
        mem: u64,
        fixed: Option<&Vec<usize>>,
    ) -> Option<Choice> {
        let dom = &self.domains[d];
        let pool = &self.pools[dom.pool];
        let cand: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|&n| dom.free[n] > 0)
            .collect();
        let sh = &self.shape;
        // A run that fits one node of its domain (when that node is empty)
        // waits for one rather than spanning nodes now.
        let cap = &self.pool_cap[dom.pool];
        let fits_one = allowed
            .iter()
            .any(|&n| dom.total[n] as usize >= k && (fixed.is_some() || cap[n] >= mem));
        // Likewise a wider run waits for as few nodes as could hold it, unless
        // the whole domain is free (so a run never waits for what cannot come).
        let all_free = allowed.iter().all(|&n| dom.free[n] == dom.total[n]);
        let max_m = if fits_one {
            1
        } else if all_free {
            cand.len().min(k)
        } else {
            let mut totals: Vec<(u32, u64)> =
                allowed.iter().map(|&n| (dom.total[n], cap[n])).collect();
            totals.sort_unstable_by_key(|&t| Reverse(t));
            let (mut cpus, mut bytes) = (0u64, 0u64);
            let fewest = totals
                .iter()
                .position(|&(c, b)| {
                    cpus += c as u64;
                    bytes += b;
                    cpus >= k as u64 && (fixed.is_some() || bytes >= mem)
                })
                .map_or(totals.len(), |i| i + 1);
            cand.len().min(k).min(fewest)
        };
        for m in 1..=max_m {
            // (score, chosen nodes in fill order)
            let mut best: Option<((u64, u64), Vec<usize>)> = None;
            for &s in &cand {
                // Each seed tries its closest nodes (the most free first among
                // equally close ones), then its freest nodes, so a set of `m`
                // nodes that holds the run is found even when the closest
                // nodes are nearly full. The closest feasible set wins.
                for by_free in [false, true] {
                    let mut set = vec![s];
                    if m > 1 {
                        let mut others: Vec<usize> =
                            cand.iter().copied().filter(|&n| n != s).collect();
                        if by_free {
                            others.sort_by_key(|&n| (Reverse(dom.free[n]), sh.distances[s][n], n));
                        } else {
                            others.sort_by_key(|&n| (sh.distances[s][n], Reverse(dom.free[n]), n));
                        }
                        set.extend(others.into_iter().take(m - 1));
                    } else if by_free {
                        continue;
                    }
                    if set.len() < m {
                        continue;
                    }
                    let free: u64 = set.iter().map(|&n| dom.free[n] as u64).sum();
                    if free < k as u64 {
                        continue;
                    }
                    if fixed.is_none() && split(mem, &set).iter().any(|&(n, b)| pool[n] < b) {
                        continue;
                    }
                    let dist: u64 = set.iter().map(|&n| sh.distances[s][n] as u64).sum();
                    let score = (dist, free - k as u64);
                    if best.as_ref().is_none_or(|(b, _)| score < *b) {
                        best = Some((score, set));
                    }
                }
            }
            if let Some((_, set)) = best {
                // Fill in order, keeping at least one CPU for each later node.
                let mut cpus = Vec::with_capacity(k);
                let mut left = k;
                for (i, &n) in set.iter().enumerate() {
                    let later = set.len() - i - 1;
                    let take = (dom.free[n] as usize).min(left - later);
                    self.pick_in_node(d, n, take, &mut cpus);
                    left -= take;
                }
                debug_assert_eq!(cpus.len(), k);
                let mut mems = set;
                mems.sort_unstable();
                return Some(Choice { cpus, mems });
            }
        }
        None
    }

    /// Round-robin over the domain's nodes, starting with the one with most free CPUs.
    fn choose_spread(&self, d: usize, k: usize, mem: u64) -> Option<Choice> {
        let dom = &self.domains[d];
        let mut order: Vec<usize> = (0..dom.free.len()).filter(|&n| dom.free[n] > 0).collect();
        order.sort_by_key(|&n| (Reverse(dom.free[n]), n));
        let mut quota = vec![0usize; dom.free.len()];
        let mut left = k;
        while left > 0 {
            let before = left;
            for &n in &order {
                if left > 0 && quota[n] < dom.free[n] as usize {
                    quota[n] += 1;
                    left -= 1;
                }
            }
            if left == before {
                return None;
            }
        }
        let mut mems: Vec<usize> = order.iter().copied().filter(|&n| quota[n] > 0).collect();
        mems.sort_unstable();
        let pool = &self.pools[dom.pool];
        if split(mem, &mems).iter().any(|&(n, b)| pool[n] < b) {
            return None;
        }
        let mut cpus = Vec::with_capacity(k);
        for &n in &mems {
            self.pick_in_node(d, n, quota[n], &mut cpus);
        }
        Some(Choice { cpus, mems })
    }

    fn is_free_in(&self, d: usize, c: usize) -> bool {
        self.free.get(c) && self.cpu_domain[c] == d
    }

    /// Chooses `k` free CPUs of domain `d` on node `n` (there are at least `k`):
    /// one L3 group when one holds them (best fit), whole cores first.
    fn pick_in_node(&self, d: usize, n: usize, k: usize, out: &mut Vec<usize>) {
        if k == 0 {
            return;
        }
        let sh = &self.shape;
        let l3s = &sh.node_l3[n];
        let free_in = |l3: &Vec<usize>| -> usize {
            l3.iter()
                .map(|&core| {
                    sh.cores[core]
                        .iter()
                        .filter(|&&c| self.is_free_in(d, c))
                        .count()
                })
                .sum()
        };
        let counts: Vec<usize> = l3s.iter().map(free_in).collect();
        let fit = (0..l3s.len())
            .filter(|&g| counts[g] >= k)
            .min_by_key(|&g| (counts[g], g));
        let order: Vec<usize> = match fit {
            Some(g) => vec![g],
            None => {
                let mut o: Vec<usize> = (0..l3s.len()).filter(|&g| counts[g] > 0).collect();
                o.sort_by_key(|&g| (Reverse(counts[g]), g));
                o
            }
        };
        let mut left = k;
        for g in order {
            let take = left.min(counts[g]);
            self.pick_in_l3(d, &l3s[g], take, out);
            left -= take;
            if left == 0 {
                break;
            }
        }
        debug_assert_eq!(left, 0, "node had fewer free CPUs than counted");
    }

    /// Whole free cores that fit in what is left, then threads of half-used
    /// cores, then threads of whole free cores.
    fn pick_in_l3(&self, d: usize, cores: &[usize], k: usize, out: &mut Vec<usize>) {
        let sh = &self.shape;
        let mut left = k;
        let mut whole_left = Vec::new();
        for &core in cores {
            if left == 0 {
                return;
            }
            let threads = &sh.cores[core];
            let nfree = threads.iter().filter(|&&c| self.is_free_in(d, c)).count();
            if nfree == threads.len() {
                if nfree <= left {
                    out.extend_from_slice(threads);
                    left -= nfree;
                } else {
                    whole_left.push(core);
                }
            }
        }
        for &core in cores {
            if left == 0 {
                return;
            }
            let threads = &sh.cores[core];
            let nfree = threads.iter().filter(|&&c| self.is_free_in(d, c)).count();
            if nfree > 0 && nfree < threads.len() {
                for &c in threads
                    .iter()
                    .filter(|&&c| self.is_free_in(d, c))
                    .take(left)
                {
                    out.push(c);
                    left -= 1;
                }
            }
        }
        for core in whole_left {
            for &c in sh.cores[core].iter().take(left) {
                out.push(c);
                left -= 1;
            }
            if left == 0 {
                return;
            }
        }
    }
}

/// `mem` in equal shares over `nodes`, the first taking the remainder.
fn split(mem: u64, nodes: &[usize]) -> Vec<(usize, u64)> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let m = nodes.len() as u64;
    nodes
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, mem / m + if i == 0 { mem % m } else { 0 }))
        .collect()
}

/// Bytes as people write them: `2GiB`, `1.5GiB`, `512MiB`, `100B`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if b >= size {
            return if b % size == 0 {
                format!("{}{unit}", b / size)
            } else {
                format!("{:.1}{unit}", b as f64 / size as f64)
            };
        }
    }
    format!("{b}B")
}

/// What placing a run needs to know of it.
pub trait Request {
    fn job(&self) -> &str;
    fn resources(&self) -> &crate::jobfile::Resources;
    fn group(&self) -> Option<&str>;
}

impl Request for RunRef<'_> {
    fn job(&self) -> &str {
        RunRef::job(self)
    }
    fn resources(&self) -> &crate::jobfile::Resources {
        RunRef::resources(self)
    }
    fn group(&self) -> Option<&str> {
        RunRef::group(self)
    }
}

impl Request for crate::jobfile::Run {
    fn job(&self) -> &str {
        &self.job
    }
    fn resources(&self) -> &crate::jobfile::Resources {
        &self.resources
    }
    fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

/// Runs that place alike get the same class (see sched): equal CPUs,
/// cpuset, memory, NUMA and group.
pub fn place_classes(runs: &Runs) -> Vec<usize> {
    let mut class_of: HashMap<PlaceKey, usize> = HashMap::new();
    runs.iter()
        .map(|r| {
            let next = class_of.len();
            *class_of.entry(PlaceKey::of(&r)).or_insert(next)
        })
        .collect()
}

impl Placer for Allocator {
    type Placement = Placement;
    fn place(&mut self, run: &RunRef) -> Option<Placement> {
        Allocator::place(self, run)
    }
    fn release(&mut self, placement: Placement) {
        Allocator::release(self, &placement)
    }
}

/// What decides a run's placement; runs with equal keys place identically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlaceKey {
    cpus: u32,
    cpuset: Option<CpuList>,
    memory: Option<u64>,
    numa: (u8, Option<CpuList>),
    group: Option<String>,
    gpus: u32,
}

impl PlaceKey {
    fn of(run: &RunRef) -> PlaceKey {
        let r = run.resources();
        PlaceKey {
            cpus: r.cpus,
            cpuset: r.cpuset.clone(),
            memory: r.memory,
            numa: match &r.numa {
                Numa::Local => (0, None),
                Numa::Spread => (1, None),
                Numa::Nodes { nodes, .. } => (2, Some(nodes.clone())),
            },
            group: run.group().map(str::to_string),
            gpus: r.gpus,
        }
    }
}

/// Every run that can never fit on this topology (respecting groups), all at once.
///
/// A run can never fit when it does not fit the empty machine (or its empty
/// group). Problems are reported once per job, field and request, not once
/// per repetition.
pub fn check_feasible(
    runs: &Runs,
    topo: &Topology,
    groups: &[Group],
) -> Result<(), Vec<PlanError>> {
    let empty = Allocator::new(topo, groups);
    let mut verdicts: HashMap<PlaceKey, bool> = HashMap::new();
    let mut errors: Vec<PlanError> = Vec::new();
    for run in runs.iter() {
        let fits = *verdicts
            .entry(PlaceKey::of(&run))
            .or_insert_with(|| empty.clone().place(&run).is_some());
        if !fits {
            for e in diagnose(&run, &empty) {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Why `run` does not fit the empty allocator `a`, field by field.
fn diagnose(run: &impl Request, a: &Allocator) -> Vec<PlanError> {
    let r = run.resources();
    let sh = &a.shape;
    let mut out = Vec::new();
    let err = |out: &mut Vec<PlanError>, field: String, asked: String, available: String| {
        out.push(PlanError {
            job: run.job().to_string(),
            field,
            asked,
            available,
        })
    };
    let d = match run.group() {
        None => 0,
        Some(g) => match a.group_index.get(g) {
            Some(&d) => d,
            None => {
                let names: Vec<&str> = a.group_index.keys().map(String::as_str).collect();
                err(
                    &mut out,
                    "group".into(),
                    format!("`{g}`"),
                    format!("the job file defines groups [{}]", names.join(", ")),
                );
                return out;
            }
        },
    };
    if let Some(g) = run.group() {
        for p in a.problems.iter().filter(|p| p.group == g) {
            err(
                &mut out,
                format!("groups.{g}.{}", p.field),
                p.asked.clone(),
                p.available.clone(),
            );
        }
    }
    let dom = &a.domains[d];
    let whose = match run.group() {
        Some(g) => format!("group `{g}`"),
        None if a.domains.len() > 1 => "the machine outside groups".to_string(),
        None => "the machine".to_string(),
    };
    let mut nodes: Vec<usize> = (0..sh.node_ids.len()).collect();
    if let Numa::Nodes { nodes: list, .. } = &r.numa {
        let missing = CpuList::from_ids(list.iter().filter(|&id| sh.node_of_id(id).is_none()));
        if !missing.is_empty() {
            err(
                &mut out,
                "resources.numa.nodes".into(),
                list.to_string(),
                format!("the machine has nodes {} (no {missing})", a.node_list()),
            );
            return out;
        }
        nodes = list.iter().filter_map(|id| sh.node_of_id(id)).collect();
        let with_cpus: u32 = nodes.iter().map(|&n| dom.total[n]).sum();
        if with_cpus == 0 && r.cpuset.is_none() {
            err(
                &mut out,
                "resources.numa.nodes".into(),
                list.to_string(),
                format!("{whose} has no CPUs on those nodes; list a node with CPUs too"),
            );
            return out;
        }
    }
    let gd = if dom.own_gpus { d } else { 0 };
    let mine: Vec<usize> = (0..sh.gpu_ids.len())
        .filter(|&i| a.gpu_domain[i] == gd)
        .collect();
    let most_of_one = sh
        .vendors()
        .iter()
        .map(|&v| mine.iter().filter(|&&i| sh.gpu_vendor[i] == v).count())
        .max()
        .unwrap_or(0);
    if r.gpus as usize > most_of_one {
        let holder = match (dom.own_gpus, a.gpu_domain.iter().any(|&x| x != 0)) {
            (true, _) => whose.clone(),
            (false, true) => "the machine outside groups' GPUs".to_string(),
            (false, false) => "the machine".to_string(),
        };
        err(
            &mut out,
            "resources.gpus".into(),
            format!("{} GPU{}", r.gpus, if r.gpus == 1 { "" } else { "s" }),
            gpus_on(sh, &mine, &holder),
        );
    }
    diagnose_cpus(r, a, (d, &nodes, &whose), &mut out, &err);
    diagnose_memory(r, a, (d, &nodes, &whose), &mut out, &err);
    if out.is_empty() {
        err(
            &mut out,
            "resources".into(),
            format!("{} CPUs", r.cpus),
            format!("no placement on {whose} satisfies it"),
        );
    }
    out
}

/// What GPUs `holder` has (the GPUs `mine`), per node and vendor.
fn gpus_on(sh: &Shape, mine: &[usize], holder: &str) -> String {
    if mine.is_empty() {
        return format!("{holder} has no GPUs (see `packrun topology`)");
    }
    let per_node: Vec<String> = (0..sh.node_ids.len())
        .map(|n| (n, mine.iter().filter(|&&i| sh.gpu_node[i] == n).count()))
        .filter(|&(_, c)| c > 0)
        .map(|(n, c)| format!("node {}: {c}", sh.node_ids[n]))
        .collect();
    let vendors: Vec<String> = sh
        .vendors()
        .iter()
        .map(|&v| (v, mine.iter().filter(|&&i| sh.gpu_vendor[i] == v).count()))
        .filter(|&(_, c)| c > 0)
        .map(|(v, c)| format!("{c} {}", v.name()))
        .collect();
    let pure = if vendors.len() > 1 {
        "; a run's GPUs are of one vendor"
    } else {
        ""
    };
    format!(
        "{holder} has {} ({}; {}){pure}",
        mine.len(),
        per_node.join(", "),
        vendors.join(", ")
    )
}

/// Adds a problem to the list: field, what was asked, what is available.
type Say<'a> = dyn Fn(&mut Vec<PlanError>, String, String, String) + 'a;

/// A place in the allocator's domains: the domain, its nodes the run may
/// use, and how messages name it.
type Where<'a> = (usize, &'a [usize], &'a str);

/// Why a run's CPUs (a count or a cpuset) do not fit its domain.
fn diagnose_cpus(
    r: &crate::jobfile::Resources,
    a: &Allocator,
    (d, nodes, whose): Where,
    out: &mut Vec<PlanError>,
    err: &Say<'_>,
) {
    let sh = &a.shape;
    let dom = &a.domains[d];
    let total: u32 = dom.total.iter().sum();
    if let Some(set) = &r.cpuset {
        let bad: Vec<u32> = set
            .iter()
            .filter(|&id| sh.cpu_of_id(id).is_none_or(|c| a.cpu_domain[c] != d))
            .collect();
        if !bad.is_empty() {
            let mine = CpuList::from_ids(
                (0..sh.cpu_ids.len())
                    .filter(|&c| a.cpu_domain[c] == d)
                    .map(|c| sh.cpu_ids[c]),
            );
            err(
                out,
                "resources.cpuset".into(),
                set.to_string(),
                format!("{whose} has CPUs {mine} (not {})", CpuList::from_ids(bad)),
            );
        }
    } else {
        let on_nodes: u32 = nodes.iter().map(|&n| dom.total[n]).sum();
        if r.cpus == 0 {
            err(
                out,
                "resources.cpus".into(),
                "0 CPUs".into(),
                "a run needs at least 1".into(),
            );
        } else if r.cpus > on_nodes {
            let where_ = if matches!(r.numa, Numa::Nodes { .. }) {
                " on those nodes"
            } else {
                ""
            };
            err(
                out,
                "resources.cpus".into(),
                format!("{} CPUs", r.cpus),
                format!("{whose} has {on_nodes}{where_} (of {total})"),
            );
        }
    }
}

/// Why a run's memory does not fit the nodes it may use; said only when
/// nothing else was (`out` empty) unless the memory exceeds them outright.
fn diagnose_memory(
    r: &crate::jobfile::Resources,
    a: &Allocator,
    (d, nodes, whose): Where,
    out: &mut Vec<PlanError>,
    err: &Say<'_>,
) {
    let dom = &a.domains[d];
    if let Some(mem) = r.memory {
        let pool = &a.pools[dom.pool];
        let cap: u64 = nodes.iter().map(|&n| pool[n]).sum();
        let largest = nodes.iter().map(|&n| pool[n]).max().unwrap_or(0);
        if mem > cap {
            err(out, "resources.memory".into(), fmt_bytes(mem), format!("{whose} has {} to give on {} (node budgets are MemTotal minus min(5%, 256MiB))", fmt_bytes(cap), if nodes.len() == 1 { "its node" } else { "all its nodes together" }));
        } else if out.is_empty() {
            err(
                out,
                "resources.memory".into(),
                format!("{} with {} CPUs", fmt_bytes(mem), r.cpus),
                format!("memory is charged in equal shares to the run's nodes and no set of nodes with free CPUs for it has enough (largest node budget in {whose}: {})", fmt_bytes(largest)),
            );
        }
    }
}

/// One run in the simulated schedule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Planned {
    /// Index into the runs slice.
    pub run: usize,
    pub placement: Placement,
    /// Seconds from batch start.
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Schedule {
    /// In start order.
    pub entries: Vec<Planned>,
    pub makespan: f64,
    /// sum(cpus × duration) / (usable CPUs × makespan).
    pub utilisation: f64,
    /// max(sum(cpus × duration) / usable CPUs, longest run): no schedule is shorter.
    pub lower_bound: f64,
}

/// Simulates the list schedule with backfill in file order (depends_on respected),
/// each run lasting its `estimate`.
///
/// At every event time the pending runs whose dependencies have all ended are
/// walked in file order and each that fits now starts. Runs with equal
/// placement keys wait in one queue: when the first of a queue does not fit,
/// none of the queue fits until something ends, so each event costs one
/// attempt per queue plus one per run started.
pub fn simulate(
    runs: &Runs,
    topo: &Topology,
    groups: &[Group],
    max_parallel: Option<usize>,
) -> Result<Schedule, Vec<PlanError>> {
    let mut entries: Vec<Planned> = Vec::with_capacity(runs.len());
    let mut s = simulate_each(runs, topo, groups, max_parallel, &mut |p| {
        entries.push(p.clone())
    })?;
    // A service's entry comes when it ends: in start order with the rest.
    entries.sort_by(|a, b| a.start.total_cmp(&b.start));
    s.entries = entries;
    Ok(s)
}

/// The plan errors of runs that never started in the simulation.
fn never_started(runs: &Runs, started: &[bool]) -> Vec<PlanError> {
    let mut errors: Vec<PlanError> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        // A service that never started: the runs that need it say why.
        if started[i] || r.is_service() {
            continue;
        }
        let e = match r.needs().is_empty() {
            true => PlanError {
                job: r.job().to_string(),
                field: "depends_on".into(),
                asked: format!("[{}]", r.depends_on().join(", ")),
                available: "those jobs never finish (they wait on each other)".into(),
            },
            false => PlanError {
                job: r.job().to_string(),
                field: "needs".into(),
                asked: format!("[{}]", r.needs().join(", ")),
                available: "its runs never fit on what those services leave free".into(),
            },
        };
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    errors
}

/// `simulate` without keeping the entries (`entries` is empty): its
/// makespan for a batch's progress bar costs memory for the runs going at
/// once, not for every run.
pub fn simulate_totals(
    runs: &Runs,
    topo: &Topology,
    groups: &[Group],
    max_parallel: Option<usize>,
) -> Result<Schedule, Vec<PlanError>> {
    simulate_each(runs, topo, groups, max_parallel, &mut |_| {})
}

/// The simulation, handing each run's entry to `planned` as it starts.
fn simulate_each(
    runs: &Runs,
    topo: &Topology,
    groups: &[Group],
    max_parallel: Option<usize>,
    planned: &mut dyn FnMut(&Planned),
) -> Result<Schedule, Vec<PlanError>> {
    check_feasible(runs, topo, groups)?;
    let mut alloc = Allocator::new(topo, groups);
    let mut sched = Scheduler::new(runs, place_classes(runs), &|_| None, max_parallel);
    let mut started = vec![false; runs.len()];
    let mut going: HashMap<usize, Placement> = HashMap::new();
    let mut ends: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    // Services: ready at once, over when the scheduler stops them.
    let mut serving: HashMap<usize, Duration> = HashMap::new();
    let mut service_work = 0.0;
    let mut now = Duration::ZERO;
    let mut makespan: f64 = 0.0;
    loop {
        // Nothing fails in a simulation: nothing is cancelled. A service
        // that starts is ready: what needs it may start at once too.
        let mut more = true;
        while more {
            more = false;
            for (i, p) in sched.next(&mut alloc, going.len()).start {
                started[i] = true;
                if runs.get(i).is_service() {
                    sched.ready(i);
                    serving.insert(i, now);
                    going.insert(i, p);
                    more = true;
                    continue;
                }
                let end = now + runs.get(i).estimate();
                ends.push(Reverse((end, i)));
                let entry = Planned {
                    run: i,
                    placement: p,
                    start: now.as_secs_f64(),
                    end: end.as_secs_f64(),
                };
                makespan = makespan.max(entry.end);
                planned(&entry);
                going.insert(i, entry.placement);
            }
        }
        for i in sched.orders().stop {
            ends.push(Reverse((now, i)));
        }
        let Some(Reverse((t, _))) = ends.peek().copied() else {
            break;
        };
        now = t;
        while let Some(&Reverse((t, i))) = ends.peek() {
            if t != now {
                break;
            }
            ends.pop();
            if let Some(p) = going.remove(&i) {
                alloc.release(&p);
                if let Some(from) = serving.remove(&i) {
                    service_work += p.cpus.len() as f64 * (now - from).as_secs_f64();
                    planned(&Planned {
                        run: i,
                        placement: p,
                        start: from.as_secs_f64(),
                        end: now.as_secs_f64(),
                    });
                }
            }
            sched.finished(i, true);
        }
    }

    // Whatever never started waits on a dependency that never ends (a
    // cycle), or never fits beside the services it needs.
    let errors = never_started(runs, &started);
    if !errors.is_empty() {
        return Err(errors);
    }

    // A service's work is its span, not its estimate.
    let work: f64 = service_work
        + runs
            .iter()
            .filter(|r| !r.is_service())
            .map(|r| {
                r.resources()
                    .cpuset
                    .as_ref()
                    .map_or(r.resources().cpus as usize, |s| s.len()) as f64
                    * r.estimate().as_secs_f64()
            })
            .sum::<f64>();
    let longest = runs
        .iter()
        .filter(|r| !r.is_service())
        .map(|r| r.estimate().as_secs_f64())
        .fold(0.0, f64::max);
    let ncpus = topo.cpus.len().max(1) as f64;
    Ok(Schedule {
        entries: Vec::new(),
        makespan,
        utilisation: if makespan > 0.0 {
            work / (ncpus * makespan)
        } else {
            0.0
        },
        lower_bound: (work / ncpus).max(longest),
    })
}

/// Seconds as `h:mm:ss` (with tenths when not whole).
pub fn fmt_secs(s: f64) -> String {
    let tenths = (s * 10.0).round() as u64;
    let (whole, frac) = (tenths / 10, tenths % 10);
    let hms = format!("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60);
    if frac == 0 {
        hms
    } else {
        format!("{hms}.{frac}")
    }
}

/// `packrun plan` table: per run job, parameters, rep, CPUs, mems, memory,
/// predicted start and end; then one total line (makespan, utilisation).
pub fn render_table(batch: &crate::jobfile::Batch, topo: &Topology, schedule: &Schedule) -> String {
    let mut out = Vec::new();
    write_table(batch, topo, schedule, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// `render_table` written as it is made, in two passes over the runs (the
/// widths, then the lines): a plan of a million runs is never held whole.
pub fn write_table(
    batch: &crate::jobfile::Batch,
    topo: &Topology,
    schedule: &Schedule,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use std::io::Write;
    // A `gpus` column only when some run has GPUs: plans without them
    // look as they always did.
    let with_gpus = schedule
        .entries
        .iter()
        .any(|e| !e.placement.gpus.is_empty());
    let mut header = vec!["job", "parameters", "rep", "cpus", "mems", "memory"];
    if with_gpus {
        header.push("gpus");
    }
    header.extend(["start", "end"]);
    let row = |e: &Planned| -> Vec<String> {
        let r = batch.runs.get(e.run);
        let params: Vec<String> = r.params().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cells = vec![
            match r.is_service() {
                true => format!("{} (service)", r.job()),
                false => r.job().to_string(),
            },
            if params.is_empty() {
                "-".into()
            } else {
                params.join(",")
            },
            format!("{}{}", r.rep(), if r.warmup() { "w" } else { "" }),
            e.placement.cpus.to_string(),
            e.placement.mems.to_string(),
            r.resources().memory.map_or("-".into(), fmt_bytes),
        ];
        if with_gpus {
            cells.push(match e.placement.gpus.is_empty() {
                true => "-".into(),
                false => e.placement.gpus.join(","),
            });
        }
        cells.extend([fmt_secs(e.start), fmt_secs(e.end)]);
        cells
    };
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    let times = header.len() - 2;
    let mut warmups = false;
    for e in &schedule.entries {
        warmups |= batch.runs.get(e.run).warmup();
        for (w, cell) in width.iter_mut().zip(row(e)) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(width.iter().copied())
            .enumerate()
            .map(|(i, (c, w))| {
                if i >= times {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    w.write_all(line(&header).as_bytes())?;
    for e in &schedule.entries {
        w.write_all(line(&row(e)).as_bytes())?;
    }
    if warmups {
        w.write_all(b"(w = warmup run, left out of statistics)\n")?;
    }
    writeln!(
        w,
        "{} runs on {} CPUs, {} nodes: makespan {}, utilisation {:.1}%, lower bound {} (makespan {:.1}% above it)",
        schedule.entries.len(),
        topo.cpus.len(),
        topo.nodes.len(),
        fmt_secs(schedule.makespan),
        schedule.utilisation * 100.0,
        fmt_secs(schedule.lower_bound),
        if schedule.lower_bound > 0.0 { (schedule.makespan / schedule.lower_bound - 1.0) * 100.0 } else { 0.0 }
    )?;
    w.flush()
}

/// `packrun plan --format json`, written as it is made: a plan of a
/// million runs never exists as one JSON tree in memory.
pub fn write_json(
    batch: &crate::jobfile::Batch,
    schedule: &Schedule,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use serde::ser::Serializer;
    use serde::Serialize;
    use std::io::Write;
    // Fields in the order serde_json's maps keep (by name).
    #[derive(Serialize)]
    struct Node {
        bytes: u64,
        node: u32,
    }
    #[derive(Serialize)]
    struct PlanRun<'a> {
        cpus: &'a CpuList,
        end_s: f64,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        gpus: &'a [String],
        job: &'a str,
        key: String,
        memory_bytes: Option<u64>,
        memory_per_node: Vec<Node>,
        mems: &'a CpuList,
        parameters: std::collections::BTreeMap<&'a str, &'a str>,
        rep: u32,
        start_s: f64,
        warmup: bool,
    }
    struct AllRuns<'a>(&'a crate::jobfile::Batch, &'a Schedule);
    impl Serialize for AllRuns<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.1.entries.iter().map(|e| {
                let r = self.0.runs.get(e.run);
                PlanRun {
                    cpus: &e.placement.cpus,
                    end_s: e.end,
                    gpus: &e.placement.gpus,
                    job: r.job(),
                    key: r.key(),
                    memory_bytes: r.resources().memory,
                    memory_per_node: e
                        .placement
                        .memory_per_node
                        .iter()
                        .map(|&(node, bytes)| Node { bytes, node })
                        .collect(),
                    mems: &e.placement.mems,
                    parameters: r.params().into_iter().collect(),
                    rep: r.rep(),
                    start_s: e.start,
                    warmup: r.warmup(),
                }
            }))
        }
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        lower_bound_s: f64,
        makespan_s: f64,
        name: &'a str,
        runs: AllRuns<'a>,
        utilisation: f64,
    }
    let doc = Doc {
        lower_bound_s: schedule.lower_bound,
        makespan_s: schedule.makespan,
        name: &batch.name,
        runs: AllRuns(batch, schedule),
        utilisation: schedule.utilisation,
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer_pretty(&mut w, &doc)?;
    w.write_all(b"\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::MemPolicy;
    use crate::jobfile::Run;
    use std::path::Path;

    fn fixture(name: &str) -> Topology {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        crate::topology::read(&root, None, None).unwrap()
    }

    fn run(job: &str, cpus: u32, secs: u64) -> Run {
        let mut r = Run::with_defaults(job, vec!["true".into()]);
        r.key = format!("{job}-{cpus}-{secs}");
        r.resources.cpus = cpus;
        r.resources.rlimits.clear();
        r.estimate = Duration::from_secs(secs);
        r.log_limit = 1 << 20;
        r
    }

    fn list(s: &str) -> CpuList {
        CpuList::parse(s).unwrap()
    }

    fn gpu_run(job: &str, cpus: u32, gpus: u32) -> Run {
        let mut r = run(job, cpus, 10);
        r.resources.gpus = gpus;
        r
    }

    fn node_of(topo: &Topology, bus: &str) -> u32 {
        topo.gpus.iter().find(|g| g.bus_id == bus).unwrap().node
    }

    #[test]
    fn gpu_runs_get_gpus_on_the_node_of_their_cpus_and_memory() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        for _ in 0..4 {
            let p = a.place(&gpu_run("g", 2, 1)).unwrap();
            assert_eq!(p.gpus.len(), 1);
            let n = node_of(&t, &p.gpus[0]);
            assert_eq!(p.mems.ids(), [n], "{p:?}");
            assert!(p.cpus.is_subset(&t.node(n).unwrap().cpus), "{p:?}");
            assert_eq!(p.cpus.len(), 2);
            assert_eq!(
                t.cpus[p.cpus.ids()[0] as usize].core,
                t.cpus[p.cpus.ids()[1] as usize].core,
                "SMT rule kept: both threads of one core"
            );
        }
        assert_eq!(a.place(&gpu_run("g", 2, 1)), None, "four GPUs, four runs");
        assert!(a.place(&run("cpu-only", 2, 10)).unwrap().gpus.is_empty());
    }

    #[test]
    fn no_gpu_goes_to_two_runs_and_a_released_one_is_given_again() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        let p1 = a.place(&gpu_run("a", 1, 2)).unwrap();
        let p2 = a.place(&gpu_run("b", 1, 2)).unwrap();
        let mut all: Vec<&String> = p1.gpus.iter().chain(&p2.gpus).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
        assert_eq!(a.place(&gpu_run("c", 1, 1)), None);
        a.release(&p1);
        let p3 = a.place(&gpu_run("c", 1, 1)).unwrap();
        assert!(p1.gpus.contains(&p3.gpus[0]));
    }

    #[test]
    fn two_gpus_come_from_one_node_and_one_gpu_fills_a_half_used_node_first() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        let one = a.place(&gpu_run("one", 2, 1)).unwrap();
        let two = a.place(&gpu_run("two", 2, 2)).unwrap();
        assert_eq!(
            node_of(&t, &two.gpus[0]),
            node_of(&t, &two.gpus[1]),
            "{two:?}"
        );
        assert_ne!(node_of(&t, &one.gpus[0]), node_of(&t, &two.gpus[0]));
        // The next single GPU goes beside the first, not onto a free pair.
        a.release(&two);
        let again = a.place(&gpu_run("one", 2, 1)).unwrap();
        assert_eq!(node_of(&t, &again.gpus[0]), node_of(&t, &one.gpus[0]));
        assert!(
            a.place(&gpu_run("two", 2, 2)).is_some(),
            "the pair stayed whole"
        );
    }

    #[test]
    fn a_run_waits_for_a_node_with_its_gpus_rather_than_taking_far_ones() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        let p0 = a.place(&gpu_run("a", 1, 1)).unwrap();
        let p1 = a.place(&gpu_run("b", 1, 1)).unwrap();
        let p2 = a.place(&gpu_run("c", 1, 1)).unwrap();
        assert_eq!(
            node_of(&t, &p0.gpus[0]),
            node_of(&t, &p1.gpus[0]),
            "best fit"
        );
        // One GPU is left; a 2-GPU run waits for a whole node's pair.
        assert_eq!(a.place(&gpu_run("d", 1, 2)), None);
        a.release(&p0);
        assert_eq!(
            a.place(&gpu_run("d", 1, 2)),
            None,
            "one free GPU on each node is not a pair"
        );
        a.release(&p2);
        let d = a.place(&gpu_run("d", 1, 2)).unwrap();
        assert_eq!(node_of(&t, &d.gpus[0]), node_of(&t, &d.gpus[1]));
    }

    #[test]
    fn three_gpus_span_both_nodes_nearest_the_memory_first() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        let p = a.place(&gpu_run("three", 4, 3)).unwrap();
        assert_eq!(p.gpus.len(), 3);
        let home = p.mems.ids()[0];
        let near = p.gpus.iter().filter(|b| node_of(&t, b) == home).count();
        assert_eq!(near, 2, "{p:?}");
    }

    #[test]
    fn gpus_another_packrun_holds_are_not_handed_out() {
        let t = fixture("2socket-4gpu");
        let mut a = Allocator::new(&t, &[]);
        let held: Vec<String> = t.gpus[..3].iter().map(|g| g.bus_id.clone()).collect();
        a.reserve_gpus(&held);
        assert_eq!(
            a.place(&gpu_run("x", 1, 1)).unwrap().gpus,
            [t.gpus[3].bus_id.clone()]
        );
        assert_eq!(a.place(&gpu_run("y", 1, 1)), None);
        a.unreserve_gpus();
        assert!(a.place(&gpu_run("y", 1, 1)).is_some());
    }

    #[test]
    fn more_gpus_than_the_machine_has_is_an_error_naming_what_exists() {
        let t = fixture("2socket-4gpu");
        let runs: Runs = vec![gpu_run("big", 4, 5)].into();
        let e = check_feasible(&runs, &t, &[]).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "job `big`: resources.gpus asks for 5 GPUs, but the machine has 4 (node 0: 2, node 1: 2; 4 nvidia)"
        );
        let runs: Runs = vec![gpu_run("any", 1, 1)].into();
        let e = check_feasible(&runs, &fixture("2socket-smt"), &[]).unwrap_err();
        assert!(
            e[0].to_string()
                .ends_with("but the machine has no GPUs (see `packrun topology`)"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn the_table_gains_a_gpus_column_only_when_a_run_has_gpus() {
        let t = fixture("2socket-4gpu");
        let batch = |runs: Vec<Run>| crate::jobfile::Batch {
            name: "t".into(),
            file: "t.yaml".into(),
            source: String::new(),
            jobs: vec![],
            groups: vec![],
            runs: runs.into(),
            order: Default::default(),
            seed: None,
            networks: vec![],
        };
        let b = batch(vec![run("cpu", 2, 10)]);
        let s = simulate(&b.runs, &t, &[], None).unwrap();
        let table = render_table(&b, &t, &s);
        assert!(
            table.starts_with("job  parameters  rep  cpus  mems  memory    start      end\n"),
            "{table}"
        );
        let b = batch(vec![gpu_run("gpu", 2, 1), run("cpu", 2, 10)]);
        let s = simulate(&b.runs, &t, &[], None).unwrap();
        let table = render_table(&b, &t, &s);
        assert!(table.contains("gpus"), "{table}");
        assert!(table.contains("0000:3b:00.0"), "{table}");
        let mut json = Vec::new();
        write_json(&b, &s, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["runs"][0]["gpus"], serde_json::json!(["0000:3b:00.0"]));
        assert!(
            v["runs"][1].get("gpus").is_none(),
            "no key for a run without GPUs"
        );
    }

    #[test]
    fn two_cpu_run_takes_both_threads_of_one_core() {
        let mut a = Allocator::new(&fixture("2socket-smt"), &[]);
        let p = a.place(&run("a", 2, 1)).unwrap();
        assert_eq!(p.cpus.to_string(), "0,32");
        assert_eq!(p.mems.to_string(), "0");
    }

    #[test]
    fn one_cpu_run_fills_a_half_used_core_before_breaking_a_whole_one() {
        let mut a = Allocator::new(&fixture("2socket-smt"), &[]);
        let first = a.place(&run("a", 1, 1)).unwrap();
        let second = a.place(&run("b", 1, 1)).unwrap();
        assert_eq!(first.cpus.to_string(), "0");
        assert_eq!(second.cpus.to_string(), "32", "the sibling of cpu 0");
        let third = a.place(&run("c", 3, 1)).unwrap();
        assert_eq!(
            third.cpus.to_string(),
            "1-2,33",
            "one whole core, then a thread of the next"
        );
        let fourth = a.place(&run("d", 1, 1)).unwrap();
        assert_eq!(fourth.cpus.to_string(), "34");
    }

    #[test]
    fn local_run_uses_the_best_fitting_node() {
        let mut a = Allocator::new(&fixture("2socket-smt"), &[]);
        a.place(&run("big", 24, 1)).unwrap();
        // Node 0 has 8 free CPUs, node 1 has 32: an 8-CPU run fills node 0 exactly.
        let p = a.place(&run("eight", 8, 1)).unwrap();
        assert_eq!(p.mems.to_string(), "0");
        let p = a.place(&run("four", 4, 1)).unwrap();
        assert_eq!(p.mems.to_string(), "1");
    }

    #[test]
    fn run_larger_than_a_node_spans_the_closest_nodes() {
        let t = fixture("4node-2l3");
        let mut a = Allocator::new(&t, &[]);
        let p = a.place(&run("wide", 20, 1)).unwrap();
        assert_eq!(
            p.mems.to_string(),
            "0-1",
            "node 1 is at distance 12 from node 0, the others at 32"
        );
        assert_eq!(p.cpus.len(), 20);
        let p = a.place(&run("wide2", 20, 1)).unwrap();
        assert_eq!(p.mems.to_string(), "2-3");
    }

    #[test]
    fn run_larger_than_a_node_spans_two_nodes_when_two_hold_it() {
        let t = fixture("4node-2l3");
        let mut a = Allocator::new(&t, &[]);
        // Node 0 keeps one free CPU, node 3 none; nodes 1 and 2 are free and
        // equally far from each other as from node 0.
        a.reserve(&list("0-6,24-39,56-63"));
        let p = a.place(&run("wide", 20, 1)).unwrap();
        assert_eq!(p.cpus.len(), 20);
        assert_eq!(
            p.mems.to_string(),
            "1-2",
            "two whole nodes hold 20 CPUs; cpus {}",
            p.cpus
        );
    }

    #[test]
    fn run_larger_than_a_node_uses_far_nodes_rather_than_more_nodes() {
        let t = fixture("4node-2l3");
        let mut a = Allocator::new(&t, &[]);
        // Each node's close partner keeps one free CPU: 0 and 2 are free,
        // 1 and 3 nearly full. Two far nodes beat three or four.
        a.reserve(&list("8-14,24-30,40-47,56-63"));
        let p = a.place(&run("wide", 20, 1)).unwrap();
        assert_eq!(p.mems.to_string(), "0,2", "cpus {}", p.cpus);
    }

    #[test]
    fn run_larger_than_a_node_waits_for_two_nodes_rather_than_taking_four() {
        let t = fixture("4node-2l3");
        let mut a = Allocator::new(&t, &[]);
        // Six free CPUs on every node: 24 in all, but no two nodes hold 20.
        let held = list("0-4,32-36,8-12,40-44,16-20,48-52,24-28,56-60");
        a.reserve(&held);
        assert!(a.place(&run("wide", 20, 1)).is_none());
        a.unreserve(&held);
        let p = a.place(&run("wide", 20, 1)).unwrap();
        assert_eq!(p.mems.len(), 2, "cpus {}", p.cpus);
    }

    #[test]
    fn run_stays_inside_one_l3_group_when_it_fits() {
        let t = fixture("4node-2l3");
        let mut a = Allocator::new(&t, &[]);
        a.place(&run("a", 2, 1)).unwrap();
        // L3 group 0 of node 0 has 6 free CPUs left, group 1 has 8: 8 CPUs go to group 1.
        let p = a.place(&run("b", 8, 1)).unwrap();
        assert_eq!(p.cpus.to_string(), "4-7,36-39");
        // 6 CPUs fill group 0 exactly.
        let p = a.place(&run("c", 6, 1)).unwrap();
        assert_eq!(p.cpus.to_string(), "1-3,33-35");
    }

    #[test]
    fn spread_deals_cpus_over_every_node() {
        let mut a = Allocator::new(&fixture("4node-2l3"), &[]);
        let mut r = run("s", 8, 1);
        r.resources.numa = Numa::Spread;
        r.resources.memory = Some(8 << 30);
        let p = a.place(&r).unwrap();
        assert_eq!(p.mems.to_string(), "0-3");
        assert_eq!(p.cpus.to_string(), "0,8,16,24,32,40,48,56");
        assert_eq!(
            p.memory_per_node,
            vec![(0, 2 << 30), (1, 2 << 30), (2, 2 << 30), (3, 2 << 30)]
        );
    }

    #[test]
    fn nodes_policy_binds_memory_to_exactly_the_listed_nodes() {
        let mut a = Allocator::new(&fixture("memory-only-node"), &[]);
        let mut r = run("n", 2, 1);
        r.resources.numa = Numa::Nodes {
            nodes: list("0-1"),
            policy: MemPolicy::Interleave,
        };
        r.resources.memory = Some(3);
        let p = a.place(&r).unwrap();
        assert_eq!(p.cpus.to_string(), "0-1");
        assert_eq!(p.mems.to_string(), "0-1");
        assert_eq!(p.memory_per_node, vec![(0, 2), (1, 1)]);
    }

    #[test]
    fn pinned_cpuset_gets_exactly_those_cpus_or_waits() {
        let mut a = Allocator::new(&fixture("2socket-smt"), &[]);
        let mut r = run("pin", 2, 1);
        r.resources.cpuset = Some(list("16,48"));
        let p = a.place(&r).unwrap();
        assert_eq!(
            (p.cpus.to_string(), p.mems.to_string()),
            ("16,48".into(), "1".into())
        );
        assert!(a.place(&r).is_none());
        a.release(&p);
        assert!(a.place(&r).is_some());
    }

    #[test]
    fn memory_budget_per_node_is_never_exceeded() {
        let mut a = Allocator::new(&fixture("2socket-smt"), &[]);
        let budget = (64u64 << 30) - (256 << 20);
        let mut r = run("m", 1, 1);
        r.resources.memory = Some(budget);
        let p0 = a.place(&r).unwrap();
        let p1 = a.place(&r).unwrap();
        assert_ne!(p0.mems, p1.mems);
        assert!(a.place(&r).is_none(), "both nodes' budgets are spent");
        let mut small = run("s", 1, 1);
        small.resources.memory = Some(1);
        assert!(a.place(&small).is_none());
        small.resources.memory = None;
        assert!(a.place(&small).is_some(), "CPUs are still free");
        a.release(&p1);
        assert_eq!(a.place(&r).unwrap().mems, p1.mems);
    }

    #[test]
    fn reserved_cpus_are_not_handed_out_until_unreserved() {
        let mut a = Allocator::new(&fixture("this-machine"), &[]);
        a.reserve(&list("0"));
        assert_eq!(a.place(&run("a", 1, 1)).unwrap().cpus.to_string(), "1");
        assert!(a.place(&run("b", 1, 1)).is_none());
        a.unreserve(&list("0"));
        assert_eq!(a.place(&run("b", 1, 1)).unwrap().cpus.to_string(), "0");
    }

    #[test]
    fn a_group_with_gpus_takes_them_beside_its_cpus_and_only_its_runs_use_them() {
        let t = fixture("2socket-4gpu");
        let groups = vec![Group {
            name: "train".into(),
            cpus: 8,
            memory: None,
            gpus: 2,
            nodes: Some(list("1")),
        }];
        let mut a = Allocator::new(&t, &groups);
        let mut g = gpu_run("g", 2, 2);
        g.group = Some("train".into());
        let p = a.place(&g).unwrap();
        assert!(p.gpus.iter().all(|b| node_of(&t, b) == 1), "{p:?}");
        assert!(a.place(&g).is_none(), "the group's two GPUs are taken");
        // Outside the group: the two GPUs of node 0, never the group's.
        let o1 = a.place(&gpu_run("o", 2, 1)).unwrap();
        let o2 = a.place(&gpu_run("o", 2, 1)).unwrap();
        assert!(a.place(&gpu_run("o", 2, 1)).is_none());
        for o in [&o1, &o2] {
            assert_eq!(node_of(&t, &o.gpus[0]), 0, "{o:?}");
        }
        a.release(&p);
        assert!(
            a.place(&gpu_run("o", 2, 1)).is_none(),
            "the group's GPUs stay its own"
        );
    }

    #[test]
    fn gpus_beyond_a_group_or_what_groups_left_are_errors_naming_what_it_has() {
        let t = fixture("2socket-4gpu");
        let group = |name: &str, gpus| Group {
            name: name.into(),
            cpus: 4,
            memory: None,
            gpus,
            nodes: None,
        };
        let groups = vec![group("a", 3), group("b", 2)];
        let mut big = gpu_run("big", 1, 3);
        big.group = Some("a".into());
        let mut small = gpu_run("small", 1, 1);
        small.group = Some("b".into());
        let runs: Runs = vec![big, small, gpu_run("out", 1, 2)].into();
        let e: Vec<String> = check_feasible(&runs, &t, &groups)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            e,
            [
                "job `small`: groups.b.gpus asks for 2, but 1 GPUs are left for it (a group's GPUs are of one vendor)",
                "job `small`: resources.gpus asks for 1 GPU, but group `b` has no GPUs (see `packrun topology`)",
                "job `out`: resources.gpus asks for 2 GPUs, but the machine outside groups' GPUs has 1 (node 1: 1; 1 nvidia)",
            ]
        );
        let mut over = gpu_run("over", 1, 4);
        over.group = Some("a".into());
        let e = check_feasible(&vec![over].into(), &t, &groups).unwrap_err();
        assert!(
            e[0].to_string()
                .ends_with("but group `a` has 3 (node 0: 2, node 1: 1; 3 nvidia)"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn group_runs_pack_inside_the_group_and_others_outside() {
        let t = fixture("2socket-smt");
        let groups = vec![Group {
            name: "analytics".into(),
            cpus: 8,
            memory: Some(16 << 30),
            gpus: 0,
            nodes: Some(list("1")),
        }];
        let mut a = Allocator::new(&t, &groups);
        let mut g = run("g", 8, 1);
        g.group = Some("analytics".into());
        g.resources.memory = Some(16 << 30);
        let p = a.place(&g).unwrap();
        assert_eq!(p.cpus.to_string(), "16-19,48-51");
        assert!(
            a.place(&run("g2", 1, 1).tap_group("analytics")).is_none(),
            "the group is full"
        );
        // Outside the group: 56 CPUs, none of the group's.
        let rest = a.place(&run("r", 56, 1)).unwrap();
        assert!(rest.cpus.is_disjoint(&p.cpus));
        assert!(a.place(&run("r2", 1, 1)).is_none());
    }

    trait TapGroup {
        fn tap_group(self, g: &str) -> Self;
    }
    impl TapGroup for Run {
        fn tap_group(mut self, g: &str) -> Self {
            self.group = Some(g.into());
            self
        }
    }

    #[test]
    fn infeasible_runs_are_all_reported_with_job_field_and_sizes() {
        let t = fixture("2socket-smt");
        let groups = vec![Group {
            name: "small".into(),
            cpus: 4,
            memory: None,
            gpus: 0,
            nodes: None,
        }];
        let mut too_wide = run("too-wide", 65, 1);
        too_wide.resources.memory = Some(1 << 40);
        let in_group = run("grouped", 5, 1).tap_group("small");
        let mut bad_nodes = run("bad-nodes", 1, 1);
        bad_nodes.resources.numa = Numa::Nodes {
            nodes: list("1-3"),
            policy: MemPolicy::Bind,
        };
        let unknown = run("lost", 1, 1).tap_group("nope");
        let ok = run("fine", 4, 1);
        let errs = check_feasible(
            &vec![too_wide.clone(), too_wide, ok, in_group, bad_nodes, unknown].into(),
            &t,
            &groups,
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 5, "{text:#?}");
        assert_eq!(text[0], "job `too-wide`: resources.cpus asks for 65 CPUs, but the machine outside groups has 60 (of 60)");
        assert!(text[1].starts_with("job `too-wide`: resources.memory asks for 1TiB, but the machine outside groups has 127.5GiB"), "{}", text[1]);
        assert_eq!(
            text[2],
            "job `grouped`: resources.cpus asks for 5 CPUs, but group `small` has 4 (of 4)"
        );
        assert_eq!(text[3], "job `bad-nodes`: resources.numa.nodes asks for 1-3, but the machine has nodes 0-1 (no 2-3)");
        assert!(
            text[4].starts_with("job `lost`: group asks for `nope`"),
            "{}",
            text[4]
        );
    }

    fn service(job: &str, cpus: u32) -> Run {
        let mut r = run(job, cpus, 1);
        r.service = Some(crate::jobfile::Service {
            ready_tcp: None,
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
        });
        r
    }

    fn needing(job: &str, cpus: u32, secs: u64, needs: &str) -> Run {
        let mut r = run(job, cpus, secs);
        r.needs = vec![needs.into()];
        r
    }

    #[test]
    fn a_service_spans_from_before_its_first_needer_to_the_end_of_its_last() {
        let t = fixture("this-machine");
        let runs: Runs = vec![
            needing("c", 1, 10, "s"),
            needing("c", 1, 10, "s"),
            service("s", 1),
        ]
        .into();
        let s = simulate(&runs, &t, &[], None).unwrap();
        let span = |i: usize| {
            let e = s.entries.iter().find(|e| e.run == i).unwrap();
            (e.start, e.end)
        };
        assert_eq!(span(2), (0.0, 20.0));
        assert_eq!((span(0), span(1)), ((0.0, 10.0), (10.0, 20.0)));
        assert_eq!(s.makespan, 20.0);
        assert_eq!(s.entries[0].run, 0);
    }

    #[test]
    fn a_needer_that_never_fits_beside_its_service_is_a_plan_error() {
        let t = fixture("this-machine");
        let runs: Runs = vec![service("s", 1), needing("c", 2, 10, "s")].into();
        let errs = simulate_totals(&runs, &t, &[], None).unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["job `c`: needs asks for [s], but its runs never fit on what those services leave free"]
        );
    }

    #[test]
    fn group_larger_than_the_machine_is_reported_for_its_jobs() {
        let t = fixture("this-machine");
        let groups = vec![Group {
            name: "huge".into(),
            cpus: 4,
            memory: None,
            gpus: 0,
            nodes: None,
        }];
        let errs = check_feasible(&vec![run("j", 1, 1).tap_group("huge")].into(), &t, &groups)
            .unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "job `j`: groups.huge.cpus asks for 4, but 2 CPUs are left for it"
        );
    }

    #[test]
    fn backfill_starts_a_later_small_run_while_a_big_one_waits() {
        let t = fixture("2socket-smt");
        let runs = vec![run("a", 40, 10), run("b", 40, 10), run("c", 8, 5)];
        let s = simulate(&runs.clone().into(), &t, &[], None).unwrap();
        let start = |i: usize| s.entries.iter().find(|e| e.run == i).unwrap().start;
        assert_eq!((start(0), start(1), start(2)), (0.0, 10.0, 0.0));
        assert_eq!(s.makespan, 20.0);
        assert_eq!(s.lower_bound, (40.0 * 10.0 * 2.0 + 8.0 * 5.0) / 64.0);
    }

    #[test]
    fn dependent_runs_wait_for_every_run_of_their_dependencies() {
        let t = fixture("2socket-smt");
        let mut after = run("after", 1, 1);
        after.depends_on = vec!["first".into()];
        let runs = vec![after, run("first", 1, 3), run("first", 1, 7)];
        let s = simulate(&runs.clone().into(), &t, &[], None).unwrap();
        let e = s.entries.iter().find(|e| e.run == 0).unwrap();
        assert_eq!((e.start, e.end), (7.0, 8.0));
    }

    #[test]
    fn dependency_cycle_is_an_error_not_a_hang() {
        let t = fixture("this-machine");
        let mut a = run("a", 1, 1);
        a.depends_on = vec!["b".into()];
        let mut b = run("b", 1, 1);
        b.depends_on = vec!["a".into()];
        let errs = simulate(&vec![a, b].into(), &t, &[], None).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "depends_on");
    }

    #[test]
    fn max_parallel_caps_concurrent_runs() {
        let t = fixture("2socket-smt");
        let runs: Vec<Run> = (0..4).map(|i| run(&format!("j{i}"), 1, 10)).collect();
        let s = simulate(&runs.clone().into(), &t, &[], Some(2)).unwrap();
        assert_eq!(s.makespan, 20.0);
    }

    #[test]
    fn times_and_sizes_format_for_people() {
        assert_eq!(fmt_secs(0.0), "0:00:00");
        assert_eq!(fmt_secs(3723.25), "1:02:03.3");
        assert_eq!(fmt_bytes(2 << 30), "2GiB");
        assert_eq!(fmt_bytes(512 << 20), "512MiB");
        assert_eq!(fmt_bytes(1536 << 20), "1.5GiB");
        assert_eq!(fmt_bytes(100), "100B");
    }

    #[test]
    fn node_reserve_is_five_percent_or_256_mib_whichever_is_smaller() {
        assert_eq!(node_reserve(1 << 30), (1 << 30) / 20);
        assert_eq!(node_reserve(64 << 30), 256 << 20);
    }

    #[test]
    fn table_lists_every_run_and_a_total_line() {
        let t = fixture("2socket-smt");
        let mut r = run("xz", 2, 90);
        r.params = vec![("threads".into(), "2".into())];
        r.resources.memory = Some(512 << 20);
        let mut w = r.clone();
        w.warmup = true;
        let batch = crate::jobfile::Batch {
            name: "t".into(),
            file: "t.yaml".into(),
            source: String::new(),
            jobs: vec![],
            groups: vec![],
            networks: Vec::new(),
            runs: vec![w, r].into(),
            order: Default::default(),
            seed: None,
        };
        let s = simulate(&batch.runs, &t, &[], None).unwrap();
        let table = render_table(&batch, &t, &s);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "job  parameters  rep  cpus  mems  memory    start      end"
        );
        assert_eq!(
            lines[1],
            "xz   threads=2   1w   0,32  0     512MiB  0:00:00  0:01:30"
        );
        assert_eq!(
            lines[2],
            "xz   threads=2   1    1,33  0     512MiB  0:00:00  0:01:30"
        );
        assert!(
            lines[4].starts_with("2 runs on 64 CPUs, 2 nodes: makespan 0:01:30, utilisation 6.2%"),
            "{}",
            lines[4]
        );
        let json: serde_json::Value = {
            let mut out = Vec::new();
            write_json(&batch, &s, &mut out).unwrap();
            serde_json::from_slice(&out).unwrap()
        };
        assert_eq!(json["runs"][1]["cpus"], "1,33");
        assert_eq!(json["runs"][1]["memory_per_node"][0]["bytes"], 512u64 << 20);
    }
}
