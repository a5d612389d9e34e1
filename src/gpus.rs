//! GPUs from a machine root: the PCI display and 3D controllers (class
//! 0x03xx) of NVIDIA, AMD and Intel, each with its NUMA node, local CPUs,
//! PCI bus id and device nodes.
//!
//! Files read (below `root`):
//! - `sys/bus/pci/devices/<bus id>/{class,vendor,device,numa_node,local_cpulist}`
//! - `sys/bus/pci/devices/<bus id>/drm/renderD*` (AMD and Intel render nodes)
//! - `proc/driver/nvidia/gpus/<bus id>/information` (`Device Minor:`, NVIDIA's
//!   node `/dev/nvidia<minor>`; absent while NVIDIA's driver is not loaded)
//!
//! Device nodes are named as paths of the machine (`/dev/nvidia0`); whoever
//! opens them joins them to the root.

use crate::cpulist::CpuList;
use crate::fsx::{self, Context, PathError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Hash)]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
}

impl Vendor {
    fn of_pci_id(id: &str) -> Option<Vendor> {
        match id {
            "0x10de" => Some(Vendor::Nvidia),
            "0x1002" => Some(Vendor::Amd),
            "0x8086" => Some(Vendor::Intel),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }

    /// The nodes every GPU of this vendor needs besides its own.
    pub fn shared_nodes(self) -> &'static [&'static str] {
        match self {
            Vendor::Nvidia => &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"],
            Vendor::Amd => &["/dev/kfd"],
            Vendor::Intel => &[],
        }
    }

    /// The variable that tells this vendor's runtime which GPUs to use.
    pub fn visible_env(self) -> &'static str {
        match self {
            Vendor::Nvidia => "CUDA_VISIBLE_DEVICES",
            Vendor::Amd => "ROCR_VISIBLE_DEVICES",
            Vendor::Intel => "ZE_AFFINITY_MASK",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gpu {
    /// PCI bus id as sysfs names it: `0000:3b:00.0`.
    pub bus_id: String,
    pub vendor: Vendor,
    /// PCI device id (`0x20b0`).
    pub device: String,
    /// The NUMA node it hangs off.
    pub node: u32,
    /// The CPUs closest to it (`local_cpulist`).
    pub local_cpus: CpuList,
    /// Its own device nodes (`/dev/nvidia0`, `/dev/dri/renderD128`); empty
    /// while its driver is not loaded.
    pub devices: Vec<PathBuf>,
}

impl Gpu {
    /// The vendor's shared nodes (`/dev/nvidiactl`, `/dev/kfd`, ...).
    pub fn shared(&self) -> Vec<PathBuf> {
        self.vendor
            .shared_nodes()
            .iter()
            .map(PathBuf::from)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> GpuError {
    GpuError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// True for a PCI class of a display or 3D controller (`0x030000`, `0x030200`).
pub fn is_display_class(class: &str) -> bool {
    let c = class.trim().trim_start_matches("0x");
    c.len() == 6 && c.starts_with("03")
}

/// The `Device Minor:` of NVIDIA's `information` file.
pub fn parse_nvidia_minor(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Device Minor:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The GPUs below `root`, sorted by bus id. `node_of_cpu` names the node of
/// a CPU: a GPU whose `numa_node` is -1 (a machine without NUMA, or firmware
/// that does not say) is on the node of its local CPUs, or on node 0 when
/// `single_node`. No PCI bus in sysfs means no GPUs.
pub fn read(
    root: &Path,
    node_of_cpu: &dyn Fn(u32) -> Option<u32>,
    single_node: bool,
) -> Result<Vec<Gpu>, GpuError> {
    let dir = root.join("sys/bus/pci/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new("list", &dir, e).into()),
    };
    let mut gpus = Vec::new();
    for entry in entries {
        let entry = entry.at("list", &dir)?;
        let dev = entry.path();
        let Ok(class) = std::fs::read_to_string(dev.join("class")) else {
            continue;
        };
        if !is_display_class(&class) {
            continue;
        }
        let Some(vendor) = Vendor::of_pci_id(fsx::read_trimmed(dev.join("vendor"))?.as_str())
        else {
            continue;
        };
        let bus_id = entry.file_name().to_string_lossy().into_owned();
        gpus.push(read_one(
            root,
            &dev,
            bus_id,
            vendor,
            node_of_cpu,
            single_node,
        )?);
    }
    gpus.sort_by(|a, b| a.bus_id.cmp(&b.bus_id));
    Ok(gpus)
}

fn read_one(
    root: &Path,
    dev: &Path,
    bus_id: String,
    vendor: Vendor,
    node_of_cpu: &dyn Fn(u32) -> Option<u32>,
    single_node: bool,
) -> Result<Gpu, GpuError> {
    let cpus_path = dev.join("local_cpulist");
    let local_cpus = match std::fs::read_to_string(&cpus_path) {
        Ok(t) => CpuList::parse(&t).map_err(|e| invalid(&cpus_path, e.to_string()))?,
        Err(_) => CpuList::new(),
    };
    let node_path = dev.join("numa_node");
    let said: i64 = match std::fs::read_to_string(&node_path) {
        Ok(t) => t
            .trim()
            .parse()
            .map_err(|_| invalid(&node_path, format!("`{}` is not a node id", t.trim())))?,
        Err(_) => -1,
    };
    let node = match u32::try_from(said) {
        Ok(n) => n,
        Err(_) => match local_cpus.iter().next().and_then(node_of_cpu) {
            Some(n) => n,
            None if single_node => 0,
            None => {
                return Err(invalid(
                    &node_path,
                    "no NUMA node and no local CPUs: cannot tell which node it is on",
                ))
            }
        },
    };
    let devices = match vendor {
        Vendor::Nvidia => {
            let info = root
                .join("proc/driver/nvidia/gpus")
                .join(&bus_id)
                .join("information");
            match std::fs::read_to_string(&info) {
                Ok(text) => match parse_nvidia_minor(&text) {
                    Some(m) => vec![PathBuf::from(format!("/dev/nvidia{m}"))],
                    None => return Err(invalid(&info, "no `Device Minor:` line")),
                },
                Err(_) => Vec::new(),
            }
        }
        Vendor::Amd | Vendor::Intel => render_nodes(&dev.join("drm"))?,
    };
    Ok(Gpu {
        device: std::fs::read_to_string(dev.join("device"))
            .map(|d| d.trim().to_string())
            .unwrap_or_default(),
        bus_id,
        vendor,
        node,
        local_cpus,
        devices,
    })
}

/// `/dev/dri/renderD*` of the names in a PCI device's `drm` directory.
fn render_nodes(drm: &Path) -> Result<Vec<PathBuf>, GpuError> {
    let entries = match std::fs::read_dir(drm) {
        Ok(e) => e,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for e in entries {
        let name = e
            .at("list", drm)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("renderD") {
            out.push(PathBuf::from("/dev/dri").join(name));
        }
    }
    out.sort();
    Ok(out)
}

/// The environment a run with these GPUs gets: per vendor its variable,
/// numbered from 0 (a run sees only its own GPUs), and
/// `CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA counts them in bus order as
/// packrun lists them.
pub fn env_for(gpus: &[&Gpu]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for vendor in [Vendor::Nvidia, Vendor::Amd, Vendor::Intel] {
        let n = gpus.iter().filter(|g| g.vendor == vendor).count();
        if n == 0 {
            continue;
        }
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        if vendor == Vendor::Nvidia {
            out.push(("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()));
        }
        out.push((vendor.visible_env().into(), ids.join(",")));
    }
    out
}

/// Keeps the GPUs a Slurm job was given: `SLURM_JOB_GPUS` lists Slurm's
/// global GPU ids, which follow gres.conf's order of device files: for
/// NVIDIA the minor of `/dev/nvidia<minor>`, for the others the GPU's place
/// among that vendor's GPUs in bus order. A list that does not parse keeps
/// them all.
pub fn keep_slurm_gpus(gpus: &mut Vec<Gpu>, list: &str) {
    let Ok(ids) = CpuList::parse(list) else {
        return;
    };
    let mut index = std::collections::HashMap::new();
    gpus.retain(|g| {
        let n = index.entry(g.vendor).or_insert(0u32);
        let id = match g.vendor {
            Vendor::Nvidia => g
                .devices
                .first()
                .and_then(|d| d.to_str()?.strip_prefix("/dev/nvidia")?.parse().ok()),
            _ => Some(*n),
        };
        *n += 1;
        id.is_some_and(|id| ids.contains(id))
    });
}

/// A bus id folded into one number for the claims file (a list of ids like
/// the CPUs'): domain (its low 16 bits), bus, device and function.
pub fn bus_key(bus_id: &str) -> Option<u32> {
    let (domain, rest) = bus_id.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let domain = u32::from_str_radix(domain, 16).ok()? & 0xffff;
    let bus = u32::from_str_radix(bus, 16).ok().filter(|&b| b < 256)?;
    let dev = u32::from_str_radix(dev, 16).ok().filter(|&d| d < 32)?;
    let func = u32::from_str_radix(func, 16).ok().filter(|&f| f < 8)?;
    Some(domain << 16 | bus << 8 | dev << 3 | func)
}

/// The bus id of a [`bus_key`].
pub fn bus_id_of_key(key: u32) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        key >> 16,
        key >> 8 & 0xff,
        key >> 3 & 0x1f,
        key & 7
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slurm_job_keeps_the_gpus_slurm_gave_it() {
        let node = |c: u32| Some(c / 16 % 2);
        let mut g = read(&fixture(), &node, false).unwrap();
        keep_slurm_gpus(&mut g, "1,3");
        let kept: Vec<&str> = g.iter().map(|g| g.bus_id.as_str()).collect();
        assert_eq!(kept, ["0000:5e:00.0", "0000:d8:00.0"]);
        let mut g = read(&fixture(), &node, false).unwrap();
        keep_slurm_gpus(&mut g, "(null)");
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn bus_ids_fold_into_claim_numbers_and_back() {
        for id in ["0000:3b:00.0", "0000:d8:1f.7", "ffff:00:01.2"] {
            assert_eq!(bus_id_of_key(bus_key(id).unwrap()), id);
        }
        assert_eq!(bus_key("0000:3b:00"), None);
        assert_eq!(bus_key("0000:3b:20.0"), None);
    }

    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/2socket-4gpu")
    }

    #[test]
    fn display_classes_are_03xx_and_nothing_else() {
        assert!(is_display_class("0x030000\n"));
        assert!(is_display_class("0x030200"));
        assert!(!is_display_class("0x020000"), "a network card");
        assert!(!is_display_class("0x0302"));
    }

    #[test]
    fn nvidia_minor_comes_from_the_information_file() {
        let text = "Model: \t\t NVIDIA A100\nIRQ:   \t\t 42\nDevice Minor: \t 3\nBus Location: \t 0000:3b:00.0\n";
        assert_eq!(parse_nvidia_minor(text), Some(3));
        assert_eq!(parse_nvidia_minor("Model: x\n"), None);
    }

    #[test]
    fn the_fixture_has_four_gpus_two_per_node_and_no_network_card() {
        let node = |c: u32| {
            Some(if c < 16 || (32..48).contains(&c) {
                0
            } else {
                1
            })
        };
        let g = read(&fixture(), &node, false).unwrap();
        let ids: Vec<(&str, Vendor, u32)> = g
            .iter()
            .map(|g| (g.bus_id.as_str(), g.vendor, g.node))
            .collect();
        assert_eq!(
            ids,
            [
                ("0000:3b:00.0", Vendor::Nvidia, 0),
                ("0000:5e:00.0", Vendor::Nvidia, 0),
                ("0000:af:00.0", Vendor::Nvidia, 1),
                ("0000:d8:00.0", Vendor::Nvidia, 1),
            ]
        );
        assert_eq!(g[1].devices, [PathBuf::from("/dev/nvidia1")]);
        assert_eq!(g[3].devices, [PathBuf::from("/dev/nvidia3")]);
        assert_eq!(g[0].local_cpus.to_string(), "0-15,32-47");
    }

    #[test]
    fn amd_and_intel_gpus_have_their_render_nodes_and_amd_needs_kfd() {
        let dir = tempfile::tempdir().unwrap();
        for (bus, vendor, drm) in [
            ("0000:c1:00.0", "0x1002", ["card1", "renderD129"]),
            ("0000:00:02.0", "0x8086", ["card0", "renderD128"]),
        ] {
            let d = dir.path().join("sys/bus/pci/devices").join(bus);
            for n in drm {
                std::fs::create_dir_all(d.join("drm").join(n)).unwrap();
            }
            std::fs::write(d.join("class"), "0x038000\n").unwrap();
            std::fs::write(d.join("vendor"), vendor).unwrap();
            std::fs::write(d.join("numa_node"), "0\n").unwrap();
        }
        let g = read(dir.path(), &|_| None, true).unwrap();
        assert_eq!((g[0].vendor, g[1].vendor), (Vendor::Intel, Vendor::Amd));
        assert_eq!(g[0].devices, [PathBuf::from("/dev/dri/renderD128")]);
        assert!(g[0].shared().is_empty());
        assert_eq!(g[1].devices, [PathBuf::from("/dev/dri/renderD129")]);
        assert_eq!(g[1].shared(), [PathBuf::from("/dev/kfd")]);
        assert_eq!(
            env_for(&[&g[0], &g[1]]),
            [
                ("ROCR_VISIBLE_DEVICES".to_string(), "0".to_string()),
                ("ZE_AFFINITY_MASK".into(), "0".into()),
            ]
        );
    }

    #[test]
    fn an_unknown_node_is_that_of_the_local_cpus() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sys/bus/pci/devices/0000:01:00.0");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("class"), "0x030000\n").unwrap();
        std::fs::write(d.join("vendor"), "0x8086\n").unwrap();
        std::fs::write(d.join("numa_node"), "-1\n").unwrap();
        std::fs::write(d.join("local_cpulist"), "4-7\n").unwrap();
        let g = read(dir.path(), &|c| Some(c / 4), false).unwrap();
        assert_eq!(g[0].node, 1);
        assert!(g[0].devices.is_empty(), "no drm directory: no driver");
        std::fs::write(d.join("local_cpulist"), "\n").unwrap();
        let e = read(dir.path(), &|_| None, false).unwrap_err().to_string();
        assert!(e.contains("numa_node") && e.contains("cannot tell"), "{e}");
        assert_eq!(read(dir.path(), &|_| None, true).unwrap()[0].node, 0);
    }

    #[test]
    fn env_numbers_each_vendors_gpus_from_zero() {
        let node = |c: u32| Some(c / 16 % 2);
        let g = read(&fixture(), &node, false).unwrap();
        assert_eq!(
            env_for(&[&g[2], &g[3]]),
            [
                ("CUDA_DEVICE_ORDER".to_string(), "PCI_BUS_ID".to_string()),
                ("CUDA_VISIBLE_DEVICES".into(), "0,1".into()),
            ]
        );
        assert!(env_for(&[]).is_empty());
    }
}
