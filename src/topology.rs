//! The machine's shape from a sysfs root: online CPUs, cores and SMT
//! siblings, L3 groups, NUMA nodes with their CPUs, memory and distances.
//! Unknown means an error, never a guess.

use crate::cpulist::CpuList;
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Topology {
    /// Usable CPUs, ascending by id.
    pub cpus: Vec<Cpu>,
    /// NUMA nodes, ascending by id (a node may have memory and no CPUs).
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cpu {
    pub id: u32,
    /// Machine-wide unique core id (package and core_id folded together).
    pub core: u32,
    pub package: u32,
    pub node: u32,
    /// Machine-wide unique L3 group id (the lowest CPU id sharing that L3).
    pub l3: u32,
    /// This CPU and its SMT siblings (thread_siblings_list), limited to usable CPUs.
    pub siblings: CpuList,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub id: u32,
    /// Usable CPUs of this node.
    pub cpus: CpuList,
    /// MemTotal of node*/meminfo in bytes.
    pub memory_bytes: u64,
    /// SLIT distances to every node, indexed like `nodes`.
    pub distances: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Io(#[from] crate::fsx::PathError),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Reads the topology below `root` (`/` on the real machine, or a fixture
/// tree holding `sys/devices/system/{cpu,node}`), keeping only `cpus` and
/// `mems` when given (packrun's own affinity and cpuset).
pub fn read(
    root: &Path,
    allowed_cpus: Option<&CpuList>,
    allowed_mems: Option<&CpuList>,
) -> Result<Topology, TopologyError> {
    let _ = (root, allowed_cpus, allowed_mems);
    todo!("topology::read")
}

/// The running machine's topology, limited to what this process may use.
pub fn read_host() -> Result<Topology, TopologyError> {
    todo!("topology::read_host")
}

/// A readable summary for `packrun topology`.
pub fn render(topo: &Topology) -> String {
    let _ = topo;
    todo!("topology::render")
}
