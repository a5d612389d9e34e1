//! A run's GPUs on this machine: the device nodes bound into its /dev, the
//! character devices its cgroup denies (every other GPU's, and the shared
//! nodes of vendors it has no GPU of), and the variables that name its GPUs.

use crate::gpus::{Gpu, Vendor};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq)]
pub struct RunGpus {
    /// (host path, path inside) of each node bound into the run.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Character devices (major, minor) the run may not open.
    pub deny: Vec<(u32, u32)>,
    pub env: Vec<(String, String)>,
}

/// The device number of the character device at `path`, if it is one.
fn char_dev(path: &Path) -> Option<(u32, u32)> {
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_char_device() {
        return None;
    }
    let rdev = m.rdev();
    Some((
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    ))
}

/// What a run with the GPUs `mine` (bus ids) gets on a machine with `all`,
/// whose device nodes are below `root` (`/`, or a tree like it in tests).
/// A GPU of the run without its device node is an error naming it.
pub fn for_run(all: &[Gpu], root: &Path, mine: &[String]) -> Result<RunGpus, String> {
    let host = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut out = RunGpus::default();
    let mut vendors: Vec<Vendor> = Vec::new();
    let mut own: Vec<&Gpu> = Vec::new();
    for g in all {
        let is_mine = mine.contains(&g.bus_id);
        if is_mine {
            own.push(g);
            if !vendors.contains(&g.vendor) {
                vendors.push(g.vendor);
            }
            if g.devices.is_empty() {
                return Err(format!(
                    "GPU {} has no device node: is its {} driver loaded? (packrun doctor)",
                    g.bus_id,
                    g.vendor.name()
                ));
            }
        }
        for d in &g.devices {
            let at = host(d);
            match (is_mine, char_dev(&at)) {
                (true, Some(_)) => out.binds.push((at, d.clone())),
                (true, None) => {
                    return Err(format!(
                        "GPU {}: {} is not a character device (packrun doctor)",
                        g.bus_id,
                        at.display()
                    ))
                }
                (false, Some(dev)) => out.deny.push(dev),
                // Not there: nothing to open, nothing to deny.
                (false, None) => {}
            }
        }
    }
    for v in [Vendor::Nvidia, Vendor::Amd, Vendor::Intel] {
        if !all.iter().any(|g| g.vendor == v) {
            continue;
        }
        for d in v.shared_nodes() {
            let d = Path::new(d);
            let Some(dev) = char_dev(&host(d)) else {
                continue;
            };
            if vendors.contains(&v) {
                out.binds.push((host(d), d.to_path_buf()));
            } else {
                out.deny.push(dev);
            }
        }
    }
    out.deny.sort_unstable();
    out.deny.dedup();
    out.env = crate::gpus::env_for(&own);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(bus: &str, node: &str) -> Gpu {
        Gpu {
            bus_id: bus.into(),
            vendor: Vendor::Nvidia,
            device: String::new(),
            node: 0,
            local_cpus: Default::default(),
            devices: vec![PathBuf::from(node)],
        }
    }

    #[test]
    fn a_gpu_without_its_node_is_an_error_and_other_gpus_without_nodes_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let all = [
            gpu("0000:3b:00.0", "/dev/nvidia0"),
            gpu("0000:5e:00.0", "/dev/nvidia1"),
        ];
        let e = for_run(&all, dir.path(), &["0000:3b:00.0".into()]).unwrap_err();
        assert!(
            e.contains("0000:3b:00.0") && e.contains("not a character device"),
            "{e}"
        );
        let r = for_run(&all, dir.path(), &[]).unwrap();
        assert_eq!(r, RunGpus::default(), "nothing on this machine to deny");
        let mut none = all[0].clone();
        none.devices.clear();
        let e = for_run(&[none], dir.path(), &["0000:3b:00.0".into()]).unwrap_err();
        assert!(e.contains("driver loaded"), "{e}");
    }

    #[test]
    fn the_host_nodes_are_character_devices_and_the_run_gets_its_own_and_the_shared_ones() {
        // /dev/null (1:3) and /dev/zero (1:5) stand in for GPU nodes.
        let all = [
            gpu("0000:3b:00.0", "/dev/null"),
            gpu("0000:5e:00.0", "/dev/zero"),
        ];
        let r = for_run(&all, Path::new("/"), &["0000:5e:00.0".into()]).unwrap();
        assert_eq!(
            r.binds[0],
            (PathBuf::from("/dev/zero"), PathBuf::from("/dev/zero"))
        );
        assert!(r.deny.contains(&(1, 3)), "{r:?}");
        assert!(!r.deny.contains(&(1, 5)), "{r:?}");
        assert_eq!(r.env[1], ("CUDA_VISIBLE_DEVICES".into(), "0".into()));
    }
}
