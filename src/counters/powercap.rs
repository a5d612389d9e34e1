//! Energy from powercap's RAPL zones (`/sys/class/powercap/intel-rapl:N`,
//! named `package-N`, and their subzone named `dram`; AMD Zen's driver
//! fills the same tree): the microjoules a package (or its memory) used,
//! read before and after a run.
//!
//! A zone counts its whole package: every core, the uncore and what else
//! runs there, packrun and other runs included. A run's energy is only
//! its own when no other run used the same packages meanwhile (the
//! `Ledger` tells); BenchExec states the same limit.

use super::Counter;
use crate::fsx;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One RAPL zone: a package's, or its DRAM's.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub counter: Counter,
    pub package: u32,
    pub dir: PathBuf,
    /// Where energy_uj wraps to 0.
    pub max_uj: u64,
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = fsx::read_to_string(path).map_err(|e| fsx::chain(&e))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{}: `{}` is not a number", path.display(), text.trim()))
}

/// The package and DRAM zones below `root` (the powercap class directory).
pub fn zones(root: &Path) -> Vec<Zone> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("intel-rapl:"))
        })
        .collect();
    dirs.sort();
    // Top-level zones (`intel-rapl:N`) name their package; a subzone
    // (`intel-rapl:N:M`) belongs to the package of `intel-rapl:N`.
    let name = |d: &Path| {
        fsx::read_to_string(d.join("name"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut package_of = BTreeMap::new();
    for d in &dirs {
        let file = d.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if file.matches(':').count() == 1 {
            if let Some(p) = name(d)
                .strip_prefix("package-")
                .and_then(|n| n.parse().ok())
            {
                package_of.insert(file.to_string(), p);
            }
        }
    }
    for d in dirs {
        let file = d.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let top: String = file.split(':').take(2).collect::<Vec<_>>().join(":");
        let Some(&package) = package_of.get(&top) else {
            continue;
        };
        let counter = match (file == top, name(&d).as_str()) {
            (true, _) => Counter::EnergyPkg,
            (false, "dram") => Counter::EnergyDram,
            _ => continue,
        };
        let max_uj = read_u64(&d.join("max_energy_range_uj")).unwrap_or(u64::MAX);
        out.push(Zone {
            counter,
            package,
            dir: d,
            max_uj,
        });
    }
    out
}

/// Why the machine under `root` cannot report `c` (None: it can).
pub(super) fn refusal(c: Counter, root: &Path) -> Option<String> {
    let all = zones(root);
    let mine: Vec<&Zone> = all.iter().filter(|z| z.counter == c).collect();
    if mine.is_empty() {
        return Some(match (c, all.is_empty()) {
            (_, true) => format!(
                "this machine reports no energy: no RAPL zones (intel-rapl:*) in {}",
                root.display()
            ),
            _ => format!(
                "this machine reports no DRAM energy: no RAPL zone named dram in {}",
                root.display()
            ),
        });
    }
    for z in mine {
        let path = z.dir.join("energy_uj");
        if let Err(e) = std::fs::File::open(&path) {
            return Some(match e.kind() {
                std::io::ErrorKind::PermissionDenied => format!(
                    "{} is readable by root only (its mode since Linux 5.10); run packrun as root, or allow it until the next boot with `chmod a+r {}/intel-rapl:*/energy_uj {}/intel-rapl:*:*/energy_uj`",
                    path.display(),
                    root.display(),
                    root.display()
                ),
                _ => format!("{}: {e}", path.display()),
            });
        }
    }
    None
}

/// The microjoules between two readings of a counter that wraps to 0
/// after `max_uj`: at most one wrap between them (a package would need
/// minutes at full power to wrap twice; runs longer than that are what
/// the zone's range cannot tell).
pub fn energy_between(start: u64, end: u64, max_uj: u64) -> u64 {
    match end >= start {
        true => end - start,
        false => max_uj.saturating_sub(start) + end,
    }
}

/// The energy zones of some packages, read at a run's start.
#[derive(Debug, Clone)]
pub struct Meter {
    start: Vec<(Zone, u64)>,
}

impl Meter {
    /// Reads the zones of `chosen` for `packages` now.
    pub fn start(zones: &[Zone], chosen: super::Chosen, packages: &BTreeSet<u32>) -> Meter {
        let start = zones
            .iter()
            .filter(|z| chosen.contains(z.counter) && packages.contains(&z.package))
            .filter_map(|z| Some((z.clone(), read_u64(&z.dir.join("energy_uj")).ok()?)))
            .collect();
        Meter { start }
    }

    /// The joules per counter since `start`, summed over the packages.
    pub fn finish(&self) -> Vec<(Counter, Result<f64, String>)> {
        let mut sums: BTreeMap<Counter, Result<u64, String>> = BTreeMap::new();
        for (z, start) in &self.start {
            let end = read_u64(&z.dir.join("energy_uj"));
            let sum = sums.entry(z.counter).or_insert(Ok(0));
            *sum = match (sum.clone(), end) {
                (Ok(s), Ok(end)) => Ok(s + energy_between(*start, end, z.max_uj)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        sums.into_iter()
            .map(|(c, uj)| (c, uj.map(|uj| uj as f64 / 1e6)))
            .collect()
    }
}

impl Meter {
    /// The energy a run's `packages` used since `start`: its own only
    /// when no other run used them meanwhile (`met` is how many did);
    /// else the cell stays empty and the note says why.
    pub fn read(&self, packages: &BTreeSet<u32>, met: usize, into: &mut super::Reading) {
        let list: Vec<String> = packages.iter().map(u32::to_string).collect();
        for (c, joules) in self.finish() {
            let value = match joules {
                Ok(_) if met > 0 => {
                    into.remark(&format!(
                        "{c}: left empty: {met} other run(s) used package {} while it ran",
                        list.join(",")
                    ));
                    None
                }
                Ok(j) => Some(j),
                Err(e) => {
                    into.remark(&format!("{c}: not read: {e}"));
                    None
                }
            };
            into.values.push((c, value));
        }
    }
}

/// Which runs used which packages, and whether one shared them with
/// another while it ran: then its energy is not its own.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Runs going now: their packages and the other runs they met.
    going: BTreeMap<usize, (BTreeSet<u32>, BTreeSet<usize>)>,
}

impl Ledger {
    /// Run `id` starts on `packages`: it meets every run going on any of them.
    pub fn start(&mut self, id: usize, packages: BTreeSet<u32>) {
        let mut met = BTreeSet::new();
        for (other, (theirs, their_met)) in self.going.iter_mut() {
            if !theirs.is_disjoint(&packages) {
                met.insert(*other);
                their_met.insert(id);
            }
        }
        self.going.insert(id, (packages, met));
    }

    /// Run `id` ended: the runs it shared a package with while it ran.
    pub fn end(&mut self, id: usize) -> BTreeSet<usize> {
        self.going
            .remove(&id)
            .map(|(_, met)| met)
            .unwrap_or_default()
    }
}

/// The packages of `cpus`, from `root`'s sysfs
/// (`sys/devices/system/cpu/cpuN/topology/physical_package_id`); a CPU
/// whose package cannot be read is left out.
pub fn packages_of(root: &Path, cpus: impl Iterator<Item = u32>) -> BTreeSet<u32> {
    cpus.filter_map(|n| {
        let p = root.join(format!(
            "sys/devices/system/cpu/cpu{n}/topology/physical_package_id"
        ));
        read_u64(&p).ok().map(|v| v as u32)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Chosen;

    /// A powercap tree: per package its energy_uj and, optionally, a DRAM subzone.
    fn tree(packages: &[(u32, u64, Option<u64>)], max: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, uj, dram) in packages {
            let z = dir.path().join(format!("intel-rapl:{p}"));
            std::fs::create_dir(&z).unwrap();
            std::fs::write(z.join("name"), format!("package-{p}\n")).unwrap();
            std::fs::write(z.join("energy_uj"), format!("{uj}\n")).unwrap();
            std::fs::write(z.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
            if let Some(d) = dram {
                let s = dir.path().join(format!("intel-rapl:{p}:0"));
                std::fs::create_dir(&s).unwrap();
                std::fs::write(s.join("name"), "dram\n").unwrap();
                std::fs::write(s.join("energy_uj"), format!("{d}\n")).unwrap();
                std::fs::write(s.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
            }
        }
        dir
    }

    fn set(root: &Path, name: &str, uj: u64) {
        std::fs::write(root.join(name).join("energy_uj"), format!("{uj}\n")).unwrap();
    }

    #[test]
    fn energy_is_the_difference_of_two_readings_of_the_runs_packages() {
        let t = tree(&[(0, 1_000_000, Some(50)), (1, 7_000_000, None)], 1 << 40);
        let zones = zones(t.path());
        assert_eq!(zones.len(), 3);
        let chosen = Chosen::of([Counter::EnergyPkg, Counter::EnergyDram]);
        let m = Meter::start(&zones, chosen, &BTreeSet::from([0]));
        set(t.path(), "intel-rapl:0", 3_500_000);
        set(t.path(), "intel-rapl:0:0", 250_050);
        set(t.path(), "intel-rapl:1", 9_000_000); // not the run's package
        let got = m.finish();
        assert_eq!(
            got,
            [
                (Counter::EnergyPkg, Ok(2.5)),
                (Counter::EnergyDram, Ok(0.25))
            ]
        );
    }

    #[test]
    fn energy_across_the_wrap_at_max_energy_range_counts_both_sides() {
        assert_eq!(energy_between(900, 100, 1000), 200);
        let t = tree(&[(0, 262_143_000_000, None)], 262_143_328_850);
        let m = Meter::start(
            &zones(t.path()),
            Chosen::of([Counter::EnergyPkg]),
            &BTreeSet::from([0]),
        );
        set(t.path(), "intel-rapl:0", 1_000_000);
        let j = m.finish()[0].1.clone().unwrap();
        assert!((j - 1.328850).abs() < 1e-9, "{j}");
    }

    #[test]
    fn a_run_sharing_a_package_meets_the_other_and_one_alone_meets_none() {
        let mut l = Ledger::default();
        l.start(1, BTreeSet::from([0]));
        l.start(2, BTreeSet::from([1]));
        assert!(l.end(2).is_empty(), "package 1 was its own");
        l.start(3, BTreeSet::from([0, 1]));
        assert_eq!(l.end(1), BTreeSet::from([3]));
        // Run 1 is over, but run 3 met it while both ran.
        assert_eq!(l.end(3), BTreeSet::from([1]));
        l.start(4, BTreeSet::from([0]));
        assert!(l.end(4).is_empty());
    }

    #[test]
    fn a_run_that_shared_its_package_gets_no_energy_and_the_reason() {
        let t = tree(&[(0, 1_000_000, None)], 1 << 40);
        let zones = zones(t.path());
        let mut ledger = Ledger::default();
        let pkgs = BTreeSet::from([0]);
        // Run 1 starts alone; run 2 starts on the same package; run 1 ends.
        ledger.start(1, pkgs.clone());
        let m = Meter::start(&zones, Chosen::of([Counter::EnergyPkg]), &pkgs);
        ledger.start(2, pkgs.clone());
        set(t.path(), "intel-rapl:0", 3_000_000);
        let mut shared = crate::counters::Reading::default();
        m.read(&pkgs, ledger.end(1).len(), &mut shared);
        assert_eq!(shared.values, [(Counter::EnergyPkg, None)]);
        assert_eq!(
            shared.note,
            "energy-pkg: left empty: 1 other run(s) used package 0 while it ran"
        );
        // Alone, the same readings are its energy.
        let mut alone = crate::counters::Reading::default();
        m.read(&pkgs, 0, &mut alone);
        assert_eq!(alone.values, [(Counter::EnergyPkg, Some(2.0))]);
        assert_eq!(alone.note, "");
    }

    #[test]
    fn packages_of_cpus_come_from_their_topology() {
        let root = tempfile::tempdir().unwrap();
        for (cpu, pkg) in [(0, 0), (1, 1), (2, 0)] {
            let d = root
                .path()
                .join(format!("sys/devices/system/cpu/cpu{cpu}/topology"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("physical_package_id"), format!("{pkg}\n")).unwrap();
        }
        assert_eq!(
            packages_of(root.path(), [0, 2].into_iter()),
            BTreeSet::from([0])
        );
        assert_eq!(
            packages_of(root.path(), [0, 1].into_iter()),
            BTreeSet::from([0, 1])
        );
    }

    #[test]
    fn a_machine_without_rapl_zones_is_refused_energy_with_the_reason() {
        let empty = tempfile::tempdir().unwrap();
        let why = refusal(Counter::EnergyPkg, empty.path()).unwrap();
        assert!(why.contains("reports no energy"), "{why}");
        let t = tree(&[(0, 1, None)], 10);
        assert_eq!(refusal(Counter::EnergyPkg, t.path()), None);
        let why = refusal(Counter::EnergyDram, t.path()).unwrap();
        assert!(why.contains("no DRAM energy"), "{why}");
    }
}
