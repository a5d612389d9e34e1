//! Pure packing: which CPUs and memory nodes a run gets, and a simulated
//! list schedule. No I/O.

use crate::cpulist::CpuList;
use crate::spec::{Group, Run};
use crate::topology::Topology;

/// Where a run goes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Placement {
    pub cpus: CpuList,
    pub mems: CpuList,
    /// Memory charged to each node in `mems` (bytes), released with the placement.
    pub memory_per_node: Vec<(u32, u64)>,
}

/// A run that can never fit, named by job and field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("job `{job}`: {field} asks for {asked}, but {available}")]
pub struct PlanError {
    pub job: String,
    pub field: String,
    pub asked: String,
    pub available: String,
}

/// Tracks what is free now; the run loop and the simulator share it.
#[derive(Debug, Clone)]
pub struct Allocator {
    _private: (),
}

impl Allocator {
    pub fn new(topo: &Topology, groups: &[Group]) -> Self {
        let _ = (topo, groups);
        todo!("plan::Allocator::new")
    }

    /// Takes CPUs away (held by another packrun process) until `unreserve`.
    pub fn reserve(&mut self, cpus: &CpuList) {
        let _ = cpus;
        todo!()
    }
    pub fn unreserve(&mut self, cpus: &CpuList) {
        let _ = cpus;
        todo!()
    }

    /// Places `run` in what is free now, or None if it must wait.
    pub fn place(&mut self, run: &Run) -> Option<Placement> {
        let _ = run;
        todo!("plan::Allocator::place")
    }

    /// Gives a placement's CPUs and memory back.
    pub fn release(&mut self, p: &Placement) {
        let _ = p;
        todo!("plan::Allocator::release")
    }
}

/// Every run that can never fit on this topology (respecting groups), all at once.
pub fn check_feasible(runs: &[Run], topo: &Topology, groups: &[Group]) -> Result<(), Vec<PlanError>> {
    let _ = (runs, topo, groups);
    todo!("plan::check_feasible")
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
}

/// Simulates the list schedule with backfill in file order (depends_on respected),
/// each run lasting its `estimate`.
pub fn simulate(
    runs: &[Run],
    topo: &Topology,
    groups: &[Group],
    max_parallel: Option<usize>,
) -> Result<Schedule, Vec<PlanError>> {
    let _ = (runs, topo, groups, max_parallel);
    todo!("plan::simulate")
}

/// `packrun plan` table: per run job, parameters, rep, CPUs, mems, memory,
/// predicted start and end; then one total line (makespan, utilisation).
pub fn render_table(batch: &crate::spec::Batch, topo: &Topology, schedule: &Schedule) -> String {
    let _ = (batch, topo, schedule);
    todo!("plan::render_table")
}

/// `packrun plan --format json`.
pub fn render_json(batch: &crate::spec::Batch, schedule: &Schedule) -> String {
    let _ = (batch, schedule);
    todo!("plan::render_json")
}
