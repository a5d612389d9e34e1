//! The machine's shape from a sysfs root: online CPUs, cores and SMT
//! siblings, L3 groups, NUMA nodes with their CPUs, memory and distances.
//! Unknown means an error, never a guess.
//!
//! Files read (below `root`):
//! - `sys/devices/system/cpu/online`
//! - `sys/devices/system/cpu/cpuN/topology/{core_id,physical_package_id,thread_siblings_list}`
//! - `sys/devices/system/cpu/cpuN/cache/index*/{level,shared_cpu_list}` (the L3 is
//!   the index whose `level` is 3, wherever it sits)
//! - `sys/devices/system/node/online`, `nodeN/{cpulist,meminfo,distance}`
//! - `proc/meminfo`, only when there is no `node` directory (a kernel without
//!   NUMA: one node 0 holding every CPU and all memory)
//! - the GPUs' files, see [`crate::gpus`]

use crate::cpulist::CpuList;
use crate::fsx::{self, Context};
use crate::gpus::{Gpu, GpuError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    /// Usable CPUs, ascending by id.
    pub cpus: Vec<Cpu>,
    /// NUMA nodes, ascending by id (a node may have memory and no CPUs).
    pub nodes: Vec<Node>,
    /// GPUs on the kept nodes, by bus id (empty when not looked for: see
    /// [`read_host`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

fn invalid(path: &Path, message: impl Into<String>) -> TopologyError {
    TopologyError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Parses a list file (`online`, `cpulist`, `thread_siblings_list`), naming the path on error.
fn read_list(path: &Path) -> Result<CpuList, TopologyError> {
    let text = fsx::read_to_string(path)?;
    CpuList::parse(&text).map_err(|e| invalid(path, e.to_string()))
}

fn read_u32(path: &Path) -> Result<u32, TopologyError> {
    let text = fsx::read_trimmed(path)?;
    // physical_package_id is -1 on some virtual machines; that is unknown, not zero.
    text.parse()
        .map_err(|_| invalid(path, format!("`{text}` is not a non-negative integer")))
}

/// The `MemTotal` line of `/proc/meminfo` ("MemTotal: 123 kB") or of a node's
/// meminfo ("Node 0 MemTotal: 123 kB"), in bytes.
pub fn parse_mem_total(text: &str) -> Result<u64, String> {
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.split_whitespace().last() != Some("MemTotal") {
            continue;
        }
        let mut parts = value.split_whitespace();
        let (Some(n), unit, None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("MemTotal line `{line}`: expected a number and kB"));
        };
        let n: u64 = n
            .parse()
            .map_err(|_| format!("MemTotal `{n}` is not a number"))?;
        return match unit {
            Some("kB") => Ok(n * 1024),
            None => Ok(n),
            Some(u) => Err(format!("MemTotal unit `{u}`: expected kB")),
        };
    }
    Err("no MemTotal line".into())
}

/// A node's `distance` file: one SLIT distance per online node ("10 21").
pub fn parse_distances(text: &str) -> Result<Vec<u32>, String> {
    text.split_whitespace()
        .map(|w| {
            w.parse()
                .map_err(|_| format!("distance `{w}` is not a number"))
        })
        .collect()
}

/// Reads the topology below `root` (`/` on the real machine, or a fixture
/// tree holding `sys/devices/system/{cpu,node}`), keeping only `cpus` and
/// `mems` when given (packrun's own affinity and cpuset).
///
/// A node outside `mems` is left out together with its CPUs: a run's memory
/// goes to the node of its CPUs, so those CPUs cannot be used as packrun places runs.
pub fn read(
    root: &Path,
    allowed_cpus: Option<&CpuList>,
    allowed_mems: Option<&CpuList>,
) -> Result<Topology, TopologyError> {
    let mut topo = read_without_gpus(root, allowed_cpus, allowed_mems)?;
    topo.find_gpus(root)?;
    Ok(topo)
}

/// `read` without looking for GPUs.
fn read_without_gpus(
    root: &Path,
    allowed_cpus: Option<&CpuList>,
    allowed_mems: Option<&CpuList>,
) -> Result<Topology, TopologyError> {
    let sys = root.join("sys/devices/system");
    let cpu_dir = sys.join("cpu");
    let online_path = cpu_dir.join("online");
    let online = read_list(&online_path)?;

    // Nodes first: they decide which CPUs packrun may use.
    let node_dir = sys.join("node");
    let mut nodes = read_nodes_at(root, &node_dir, &online, allowed_mems)?;
    let usable = usable_cpus(
        &nodes,
        &online,
        &online_path,
        &node_dir,
        (allowed_cpus, allowed_mems),
    )?;
    for n in &mut nodes {
        n.cpus = n.cpus.intersection(&usable);
    }
    let cpus = read_cpus(&cpu_dir, &nodes, &usable)?;
    Ok(Topology {
        cpus,
        nodes,
        gpus: Vec::new(),
    })
}

/// The NUMA nodes below `node_dir` (one node of every online CPU and
/// MemTotal where the kernel has no NUMA), only those in `mems` when given,
/// with their distances to each other.
fn read_nodes_at(
    root: &Path,
    node_dir: &Path,
    online: &CpuList,
    allowed_mems: Option<&CpuList>,
) -> Result<Vec<Node>, TopologyError> {
    let mut nodes = if node_dir.is_dir() {
        read_nodes(node_dir)?
    } else {
        let meminfo = root.join("proc/meminfo");
        let memory_bytes =
            parse_mem_total(&fsx::read_to_string(&meminfo)?).map_err(|m| invalid(&meminfo, m))?;
        vec![Node {
            id: 0,
            cpus: online.clone(),
            memory_bytes,
            distances: vec![10],
        }]
    };
    if let Some(mems) = allowed_mems {
        let keep: Vec<usize> = (0..nodes.len())
            .filter(|&i| mems.contains(nodes[i].id))
            .collect();
        nodes = keep
            .iter()
            .map(|&i| {
                let mut n = nodes[i].clone();
                n.distances = keep.iter().map(|&j| nodes[i].distances[j]).collect();
                n
            })
            .collect();
    }
    Ok(nodes)
}

/// The CPUs packrun may use: online, in a kept node, and allowed.
fn usable_cpus(
    nodes: &[Node],
    online: &CpuList,
    online_path: &Path,
    node_dir: &Path,
    (allowed_cpus, allowed_mems): (Option<&CpuList>, Option<&CpuList>),
) -> Result<CpuList, TopologyError> {
    let mut usable =
        CpuList::from_ids(nodes.iter().flat_map(|n| n.cpus.iter())).intersection(online);
    if let Some(allowed) = allowed_cpus {
        usable = usable.intersection(allowed);
    }
    // A CPU the kernel lists online but in no node would be a broken tree.
    for c in online.iter() {
        if !nodes.iter().any(|n| n.cpus.contains(c))
            && allowed_cpus.is_none_or(|a| a.contains(c))
            && allowed_mems.is_none()
        {
            return Err(invalid(
                node_dir,
                format!("online CPU {c} belongs to no node's cpulist"),
            ));
        }
    }
    if usable.is_empty() {
        return Err(invalid(
            online_path,
            format!(
                "no usable CPUs (online {online}, allowed CPUs {}, allowed memory nodes {})",
                allowed_cpus.map_or("all".into(), |c| c.to_string()),
                allowed_mems.map_or("all".into(), |c| c.to_string())
            ),
        ));
    }
    Ok(usable)
}

/// Each usable CPU's core, package, node, L3 domain and SMT siblings.
fn read_cpus(cpu_dir: &Path, nodes: &[Node], usable: &CpuList) -> Result<Vec<Cpu>, TopologyError> {
    let mut cpus: Vec<Cpu> = Vec::with_capacity(usable.len());
    let mut core_ids: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    // L3 domains already read, and the cache index that held the L3: on a
    // large machine most CPUs are then found without reading their files.
    let mut l3_lists: Vec<CpuList> = Vec::new();
    let mut l3_index: Option<std::ffi::OsString> = None;
    for id in usable.iter() {
        let node = nodes
            .iter()
            .find(|n| n.cpus.contains(id))
            .map(|n| n.id)
            .expect("usable CPUs are drawn from node cpulists");
        let dir = cpu_dir.join(format!("cpu{id}"));
        let known_l3 = l3_lists
            .iter()
            .find(|l| l.contains(id))
            .map(|l| l.iter().next().unwrap_or(id).min(id));
        // An SMT sibling of a CPU already read shares its core and package.
        if let Some(sib) = cpus.iter().find(|c| c.siblings.contains(id)) {
            if let Some(l3) = known_l3 {
                let c = Cpu {
                    id,
                    core: sib.core,
                    package: sib.package,
                    node,
                    l3,
                    siblings: sib.siblings.clone(),
                };
                cpus.push(c);
                continue;
            }
        }
        let topo = dir.join("topology");
        let core_id = read_u32(&topo.join("core_id"))?;
        let package = read_u32(&topo.join("physical_package_id"))?;
        let siblings_path = topo.join("thread_siblings_list");
        let siblings = read_list(&siblings_path)?;
        if !siblings.contains(id) {
            return Err(invalid(
                &siblings_path,
                format!("`{siblings}` does not contain cpu{id} itself"),
            ));
        }
        let next = core_ids.len() as u32;
        let core = *core_ids.entry((package, core_id)).or_insert(next);
        let l3 = match known_l3 {
            Some(l3) => l3,
            None => match read_l3(&dir.join("cache"), &mut l3_index)? {
                Some(shared) => {
                    let first = shared.iter().next().unwrap_or(id).min(id);
                    l3_lists.push(shared);
                    first
                }
                // No level-3 cache listed (some VMs and small SoCs): the package is
                // the shared cache domain we know of (filled in below).
                None => NO_L3,
            },
        };
        cpus.push(Cpu {
            id,
            core,
            package,
            node,
            l3,
            siblings: siblings.intersection(usable),
        });
    }
    for i in 0..cpus.len() {
        if cpus[i].l3 == NO_L3 {
            let package = cpus[i].package;
            cpus[i].l3 = cpus
                .iter()
                .find(|c| c.package == package)
                .map_or(cpus[i].id, |c| c.id);
        }
    }
    Ok(cpus)
}

const NO_L3: u32 = u32::MAX;

/// The `shared_cpu_list` of the level-3 cache below a CPU's `cache` dir, if it
/// has one. `hint` is the index dir that held the L3 of the CPU before; it is
/// tried first.
fn read_l3(
    cache: &Path,
    hint: &mut Option<std::ffi::OsString>,
) -> Result<Option<CpuList>, TopologyError> {
    if let Some(name) = hint.as_ref() {
        let d = cache.join(name);
        if d.join("level").exists() && read_u32(&d.join("level"))? == 3 {
            return Ok(Some(read_list(&d.join("shared_cpu_list"))?));
        }
    }
    let entries = match std::fs::read_dir(cache) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fsx::PathError::new("list", cache, e).into()),
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.at("list", cache)?;
        if entry.file_name().to_string_lossy().starts_with("index") {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    for d in dirs {
        if read_u32(&d.join("level"))? == 3 {
            *hint = d.file_name().map(|n| n.to_os_string());
            return Ok(Some(read_list(&d.join("shared_cpu_list"))?));
        }
    }
    Ok(None)
}

fn read_nodes(node_dir: &Path) -> Result<Vec<Node>, TopologyError> {
    let online = read_list(&node_dir.join("online"))?;
    let mut nodes = Vec::with_capacity(online.len());
    for id in online.iter() {
        let dir = node_dir.join(format!("node{id}"));
        let cpus = read_list(&dir.join("cpulist"))?;
        let meminfo = dir.join("meminfo");
        let memory_bytes =
            parse_mem_total(&fsx::read_to_string(&meminfo)?).map_err(|m| invalid(&meminfo, m))?;
        let dist_path = dir.join("distance");
        let distances = parse_distances(&fsx::read_to_string(&dist_path)?)
            .map_err(|m| invalid(&dist_path, m))?;
        if distances.len() != online.len() {
            return Err(invalid(
                &dist_path,
                format!(
                    "{} distances for {} online nodes ({online})",
                    distances.len(),
                    online.len()
                ),
            ));
        }
        nodes.push(Node {
            id,
            cpus,
            memory_bytes,
            distances,
        });
    }
    Ok(nodes)
}

/// A fixture tree when given (planning for another machine), else this
/// machine with its GPUs.
pub fn read_at(fixture: Option<&Path>) -> Result<Topology, TopologyError> {
    match fixture {
        Some(d) => read(d, None, None),
        None => {
            let mut t = read_host()?;
            t.find_gpus(Path::new("/"))?;
            Ok(t)
        }
    }
}

/// The running machine's topology, limited to what this process may use
/// (its CPU affinity and the memory nodes of its cpuset), without its GPUs:
/// a batch that asks for none does not look for them (see `find_gpus`).
pub fn read_host() -> Result<Topology, TopologyError> {
    let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(|e| {
        TopologyError::Invalid {
            path: "sched_getaffinity".into(),
            message: e.to_string(),
        }
    })?;
    let allowed = CpuList::from_ids(
        (0..nix::sched::CpuSet::count())
            .filter(|&c| affinity.is_set(c).unwrap_or(false))
            .map(|c| c as u32),
    );
    let status = Path::new("/proc/self/status");
    let mems = parse_mems_allowed(&fsx::read_to_string(status)?).map_err(|m| invalid(status, m))?;
    read_without_gpus(Path::new("/"), Some(&allowed), Some(&mems))
}

/// `Mems_allowed_list:` of /proc/self/status.
pub fn parse_mems_allowed(status: &str) -> Result<CpuList, String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
        .ok_or("no Mems_allowed_list line")?;
    CpuList::parse(line).map_err(|e| e.to_string())
}

impl Topology {
    /// Finds the GPUs below `root` (the machine's `/`, or a tree like it),
    /// keeping those on the topology's nodes.
    pub fn find_gpus(&mut self, root: &Path) -> Result<(), TopologyError> {
        let cpus = &self.cpus;
        let node_of = |c: u32| cpus.iter().find(|x| x.id == c).map(|x| x.node);
        let mut gpus = crate::gpus::read(root, &node_of, self.nodes.len() == 1)?;
        gpus.retain(|g| self.node(g.node).is_some());
        self.gpus = gpus;
        Ok(())
    }

    /// The node with this id.
    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// A readable summary for `packrun topology`.
pub fn render(topo: &Topology) -> String {
    use std::collections::BTreeSet;
    use std::fmt::Write;
    let cores: BTreeSet<u32> = topo.cpus.iter().map(|c| c.core).collect();
    let l3s: BTreeSet<u32> = topo.cpus.iter().map(|c| c.l3).collect();
    let packages: BTreeSet<u32> = topo.cpus.iter().map(|c| c.package).collect();
    let smt = topo
        .cpus
        .iter()
        .map(|c| c.siblings.len())
        .max()
        .unwrap_or(1);
    let memory: u64 = topo.nodes.iter().map(|n| n.memory_bytes).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} CPUs, {} cores ({} thread{} per core), {} package{}, {} L3 group{}, {} NUMA node{}, {} memory",
        topo.cpus.len(),
        cores.len(),
        smt,
        if smt == 1 { "" } else { "s" },
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        l3s.len(),
        if l3s.len() == 1 { "" } else { "s" },
        topo.nodes.len(),
        if topo.nodes.len() == 1 { "" } else { "s" },
        gib(memory)
    );
    for n in &topo.nodes {
        let ncpus: Vec<&Cpu> = topo.cpus.iter().filter(|c| c.node == n.id).collect();
        let ncores: BTreeSet<u32> = ncpus.iter().map(|c| c.core).collect();
        let _ = writeln!(
            s,
            "node {}: {} memory, {} CPUs ({} cores): {}",
            n.id,
            gib(n.memory_bytes),
            n.cpus.len(),
            ncores.len(),
            if n.cpus.is_empty() {
                "none".to_string()
            } else {
                n.cpus.to_string()
            }
        );
        let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for c in &ncpus {
            groups.entry(c.l3).or_default().push(c.id);
        }
        for ids in groups.values() {
            let _ = writeln!(s, "  L3 group: {}", CpuList::from_ids(ids.iter().copied()));
        }
        if ncpus.iter().any(|c| c.siblings.len() > 1) {
            let mut seen = BTreeSet::new();
            let pairs: Vec<String> = ncpus
                .iter()
                .filter(|c| seen.insert(c.siblings.clone()))
                .take(4)
                .map(|c| format!("({})", c.siblings))
                .collect();
            let _ = writeln!(
                s,
                "  SMT siblings: {}{}",
                pairs.join(" "),
                if ncores.len() > 4 { " ..." } else { "" }
            );
        }
    }
    for g in &topo.gpus {
        let devices: Vec<String> = g.devices.iter().map(|d| d.display().to_string()).collect();
        let _ = writeln!(
            s,
            "gpu {} ({} {}): node {}, local CPUs {}, devices {}",
            g.bus_id,
            g.vendor.name(),
            g.device,
            g.node,
            g.local_cpus,
            if devices.is_empty() {
                "none (driver not loaded)".to_string()
            } else {
                devices.join(" ")
            }
        );
    }
    if topo.nodes.len() > 1 {
        let _ = writeln!(s, "distances:");
        let header: Vec<String> = topo.nodes.iter().map(|n| format!("{:>4}", n.id)).collect();
        let _ = writeln!(s, "  node{}", header.join(""));
        for n in &topo.nodes {
            let row: Vec<String> = n.distances.iter().map(|d| format!("{d:>4}")).collect();
            let _ = writeln!(s, "  {:>4}{}", n.id, row.join(""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn mem_total_is_read_from_node_and_proc_meminfo_in_bytes() {
        assert_eq!(
            parse_mem_total("Node 0 MemTotal:        6121692 kB\nNode 0 MemFree: 1 kB\n"),
            Ok(6121692 * 1024)
        );
        assert_eq!(
            parse_mem_total("MemTotal:       24000000 kB\nMemFree: 3 kB"),
            Ok(24000000 * 1024)
        );
        assert!(parse_mem_total("MemFree: 3 kB")
            .unwrap_err()
            .contains("no MemTotal"));
        assert!(parse_mem_total("MemTotal: x kB")
            .unwrap_err()
            .contains("`x`"));
        assert!(parse_mem_total("MemTotal: 5 MB")
            .unwrap_err()
            .contains("`MB`"));
    }

    #[test]
    fn distances_and_mems_allowed_parse_from_strings() {
        assert_eq!(parse_distances("10 21\n"), Ok(vec![10, 21]));
        assert!(parse_distances("10 x").is_err());
        assert_eq!(
            parse_mems_allowed("Name:\tx\nMems_allowed_list:\t0-1\n")
                .unwrap()
                .to_string(),
            "0-1"
        );
        assert!(parse_mems_allowed("Name: x").is_err());
    }

    #[test]
    fn this_machine_fixture_has_two_cpus_on_one_node() {
        let t = read(&fixture("this-machine"), None, None).unwrap();
        assert_eq!(t.cpus.len(), 2);
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].memory_bytes, 6121692 * 1024);
        assert_eq!(t.cpus[1].l3, 0, "both CPUs share the L3 listed at index3");
        assert_ne!(t.cpus[0].core, t.cpus[1].core);
    }

    #[test]
    fn two_socket_fixture_pairs_cpu_n_with_n_plus_32() {
        let t = read(&fixture("2socket-smt"), None, None).unwrap();
        assert_eq!(t.cpus.len(), 64);
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.cpus[5].siblings.to_string(), "5,37");
        assert_eq!(t.cpus[5].core, t.cpus[37].core);
        assert_eq!(t.cpus[37].node, 0);
        assert_eq!(t.cpus[16].node, 1);
        assert_eq!(t.cpus[48].l3, 16);
        assert_eq!(t.nodes[1].distances, vec![21, 10]);
        assert_eq!(t.nodes[0].memory_bytes, 64 << 30);
        let cores: std::collections::BTreeSet<u32> = t.cpus.iter().map(|c| c.core).collect();
        assert_eq!(cores.len(), 32, "core ids are unique across packages");
    }

    #[test]
    fn four_node_fixture_has_two_l3_groups_per_node() {
        let t = read(&fixture("4node-2l3"), None, None).unwrap();
        for n in &t.nodes {
            let l3: std::collections::BTreeSet<u32> = t
                .cpus
                .iter()
                .filter(|c| c.node == n.id)
                .map(|c| c.l3)
                .collect();
            assert_eq!(l3.len(), 2, "node {}", n.id);
        }
        assert_eq!(t.nodes[0].distances, vec![10, 12, 32, 32]);
    }

    #[test]
    fn memory_only_node_is_kept_with_no_cpus() {
        let t = read(&fixture("memory-only-node"), None, None).unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert!(t.nodes[1].cpus.is_empty());
        assert_eq!(t.nodes[1].memory_bytes, 16 << 30);
        assert!(render(&t).contains("node 1: 16.0 GiB memory, 0 CPUs"));
    }

    #[test]
    fn allowed_cpus_and_mems_narrow_the_machine() {
        let cpus = CpuList::parse("0-3,32-33").unwrap();
        let t = read(&fixture("2socket-smt"), Some(&cpus), None).unwrap();
        assert_eq!(t.cpus.len(), 6);
        assert_eq!(t.cpus[0].siblings.to_string(), "0,32");
        assert_eq!(
            t.cpus[2].siblings.to_string(),
            "2",
            "sibling 34 is not usable"
        );
        assert_eq!(t.nodes[1].cpus.len(), 0);

        let mems = CpuList::parse("1").unwrap();
        let t = read(&fixture("2socket-smt"), None, Some(&mems)).unwrap();
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].distances, vec![10]);
        assert!(t.cpus.iter().all(|c| c.node == 1));
        assert_eq!(t.cpus.len(), 32);
    }

    #[test]
    fn no_node_directory_means_one_node_with_proc_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "sys/devices/system/cpu/online", "0-1\n");
        for c in 0..2 {
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/topology/core_id"),
                "0\n",
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/topology/physical_package_id"),
                "0\n",
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"),
                "0-1\n",
            );
            // The L3 sits at index5 here: it is found by its level.
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/cache/index0/level"),
                "1\n",
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/cache/index0/shared_cpu_list"),
                &format!("{c}\n"),
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/cache/index5/level"),
                "3\n",
            );
            put(
                r,
                &format!("sys/devices/system/cpu/cpu{c}/cache/index5/shared_cpu_list"),
                "0-1\n",
            );
        }
        put(r, "proc/meminfo", "MemTotal:       1000 kB\n");
        let t = read(r, None, None).unwrap();
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].memory_bytes, 1000 * 1024);
        assert_eq!(t.nodes[0].cpus.to_string(), "0-1");
        assert_eq!(t.cpus[1].siblings.to_string(), "0-1");
        assert_eq!(t.cpus[1].l3, 0);
    }

    #[test]
    fn missing_or_bad_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let e = read(r, None, None).unwrap_err();
        assert!(
            fsx::chain(&e).contains("sys/devices/system/cpu/online"),
            "{}",
            fsx::chain(&e)
        );

        put(r, "sys/devices/system/cpu/online", "0\n");
        put(r, "sys/devices/system/cpu/cpu0/topology/core_id", "0\n");
        put(
            r,
            "sys/devices/system/cpu/cpu0/topology/physical_package_id",
            "-1\n",
        );
        put(
            r,
            "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
            "0\n",
        );
        put(r, "sys/devices/system/node/online", "0\n");
        put(r, "sys/devices/system/node/node0/cpulist", "0\n");
        put(
            r,
            "sys/devices/system/node/node0/meminfo",
            "Node 0 MemTotal: 10 kB\n",
        );
        put(r, "sys/devices/system/node/node0/distance", "10 20\n");
        let e = read(r, None, None).unwrap_err().to_string();
        assert!(
            e.contains("node0/distance") && e.contains("2 distances for 1 online nodes"),
            "{e}"
        );

        put(r, "sys/devices/system/node/node0/distance", "10\n");
        let e = read(r, None, None).unwrap_err().to_string();
        assert!(
            e.contains("physical_package_id") && e.contains("`-1`"),
            "{e}"
        );
    }

    #[test]
    fn gpus_are_listed_by_bus_id_with_their_node_and_nodes() {
        let t = read(&fixture("2socket-4gpu"), None, None).unwrap();
        assert_eq!(
            t.gpus.len(),
            4,
            "the network card and the BMC's VGA are not GPUs"
        );
        let s = render(&t);
        assert!(
            s.contains("gpu 0000:af:00.0 (nvidia 0x20b0): node 1, local CPUs 16-31,48-63, devices /dev/nvidia2\n"),
            "{s}"
        );
        assert!(s.contains("gpu 0000:d8:00.0 (nvidia 0x20b0): node 1, local CPUs 16-31,48-63, devices /dev/nvidia3\n"), "{s}");
        let mems = CpuList::parse("0").unwrap();
        let t = read(&fixture("2socket-4gpu"), None, Some(&mems)).unwrap();
        assert_eq!(
            t.gpus.len(),
            2,
            "GPUs of a node packrun may not use are left out"
        );
        let t = read(&fixture("2socket-smt"), None, None).unwrap();
        assert!(t.gpus.is_empty() && !render(&t).contains("gpu"));
    }

    #[test]
    fn render_names_nodes_l3_groups_and_distances() {
        let t = read(&fixture("4node-2l3"), None, None).unwrap();
        let s = render(&t);
        assert!(s.starts_with("64 CPUs, 32 cores (2 threads per core), 4 packages, 8 L3 groups, 4 NUMA nodes, 128.0 GiB memory"), "{s}");
        assert!(
            s.contains("node 0: 32.0 GiB memory, 16 CPUs (8 cores): 0-7,32-39"),
            "{s}"
        );
        assert!(s.contains("  L3 group: 0-3,32-35"), "{s}");
        assert!(s.contains("     0  10  12  32  32"), "{s}");
    }
}
