//! What the kernel and the CPU count for a run (perf events, opened from
//! outside the run on its init with `inherit`, see `perf.rs`) and the
//! energy its CPUs' packages used (powercap, see `powercap.rs`): the names
//! a job file chooses, whether this machine can count them, and a run's
//! values.
//!
//! The job never opens a counter itself: the seccomp filter refuses it
//! perf_event_open (see container::seccomp).

mod perf;
mod powercap;

pub use perf::{hold, probe, Open};
pub use powercap::{packages_of, zones, Ledger, Meter, Zone};

use std::fmt;

/// A counter a job file can choose, by perf's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    TaskClock,
    ContextSwitches,
    CpuMigrations,
    PageFaults,
    MajorFaults,
    MinorFaults,
    Instructions,
    Cycles,
    Branches,
    BranchMisses,
    CacheReferences,
    CacheMisses,
    EnergyPkg,
    EnergyDram,
}

/// Where a counter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A software perf event: the kernel counts it, on any machine.
    Software,
    /// A hardware perf event: the CPU's performance monitoring unit.
    Hardware,
    /// A powercap zone's energy counter (joules).
    Energy,
}

// perf_event_open(2): the event types and the configs of each.
const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_SOFTWARE: u32 = 1;

impl Counter {
    /// Every counter, in the order of their columns.
    pub const ALL: [Counter; 14] = [
        Counter::TaskClock,
        Counter::ContextSwitches,
        Counter::CpuMigrations,
        Counter::PageFaults,
        Counter::MajorFaults,
        Counter::MinorFaults,
        Counter::Instructions,
        Counter::Cycles,
        Counter::Branches,
        Counter::BranchMisses,
        Counter::CacheReferences,
        Counter::CacheMisses,
        Counter::EnergyPkg,
        Counter::EnergyDram,
    ];

    /// perf's name (`perf list`), as a job file gives it.
    pub fn name(self) -> &'static str {
        match self {
            Counter::TaskClock => "task-clock",
            Counter::ContextSwitches => "context-switches",
            Counter::CpuMigrations => "cpu-migrations",
            Counter::PageFaults => "page-faults",
            Counter::MajorFaults => "major-faults",
            Counter::MinorFaults => "minor-faults",
            Counter::Instructions => "instructions",
            Counter::Cycles => "cycles",
            Counter::Branches => "branches",
            Counter::BranchMisses => "branch-misses",
            Counter::CacheReferences => "cache-references",
            Counter::CacheMisses => "cache-misses",
            Counter::EnergyPkg => "energy-pkg",
            Counter::EnergyDram => "energy-dram",
        }
    }

    /// Its runs.csv column: the name with `_` for `-`. `task_clock` is in
    /// nanoseconds, the energies in joules, the rest are counts.
    pub fn column(self) -> &'static str {
        match self {
            Counter::TaskClock => "task_clock",
            Counter::ContextSwitches => "context_switches",
            Counter::CpuMigrations => "cpu_migrations",
            Counter::PageFaults => "page_faults",
            Counter::MajorFaults => "major_faults_perf",
            Counter::MinorFaults => "minor_faults",
            Counter::Instructions => "instructions",
            Counter::Cycles => "cycles",
            Counter::Branches => "branches",
            Counter::BranchMisses => "branch_misses",
            Counter::CacheReferences => "cache_references",
            Counter::CacheMisses => "cache_misses",
            Counter::EnergyPkg => "energy_pkg",
            Counter::EnergyDram => "energy_dram",
        }
    }

    pub fn source(self) -> Source {
        match self {
            Counter::TaskClock
            | Counter::ContextSwitches
            | Counter::CpuMigrations
            | Counter::PageFaults
            | Counter::MajorFaults
            | Counter::MinorFaults => Source::Software,
            Counter::EnergyPkg | Counter::EnergyDram => Source::Energy,
            _ => Source::Hardware,
        }
    }

    /// perf_event_attr's `type` and `config` (none for energy).
    fn perf_event(self) -> Option<(u32, u64)> {
        let sw = |c| Some((PERF_TYPE_SOFTWARE, c));
        let hw = |c| Some((PERF_TYPE_HARDWARE, c));
        match self {
            Counter::TaskClock => sw(1),
            Counter::PageFaults => sw(2),
            Counter::ContextSwitches => sw(3),
            Counter::CpuMigrations => sw(4),
            Counter::MinorFaults => sw(5),
            Counter::MajorFaults => sw(6),
            Counter::Cycles => hw(0),
            Counter::Instructions => hw(1),
            Counter::CacheReferences => hw(2),
            Counter::CacheMisses => hw(3),
            Counter::Branches => hw(4),
            Counter::BranchMisses => hw(5),
            Counter::EnergyPkg | Counter::EnergyDram => None,
        }
    }

    /// The counter of perf's `name`.
    pub fn from_name(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The counter whose runs.csv column is `column`.
    pub fn from_column(column: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.column() == column)
    }

    /// Every name, for an error that lists them.
    pub fn names() -> String {
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.join(", ")
    }

    /// The cell of a value: whole counts, joules to the microjoule.
    pub fn cell(self, value: f64) -> String {
        match self.source() {
            Source::Energy => format!("{value:.6}"),
            _ => format!("{:.0}", value.round()),
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The counters a run (or a batch) counts: a set, iterated in column order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chosen(u16);

impl Chosen {
    pub fn of(counters: impl IntoIterator<Item = Counter>) -> Chosen {
        let mut s = Chosen::default();
        for c in counters {
            s.0 |= 1 << c as u16;
        }
        s
    }

    pub fn contains(self, c: Counter) -> bool {
        self.0 & (1 << c as u16) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Chosen) -> Chosen {
        Chosen(self.0 | other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Counter> {
        Counter::ALL.into_iter().filter(move |c| self.contains(*c))
    }

    /// The perf events among them.
    pub fn perf(self) -> Chosen {
        Chosen::of(self.iter().filter(|c| c.source() != Source::Energy))
    }

    /// The energy counters among them.
    pub fn energy(self) -> Chosen {
        Chosen::of(self.iter().filter(|c| c.source() == Source::Energy))
    }
}

/// What a run's counters read: a value per chosen counter (none where it
/// could not be counted, with the reason in `note`), and what the reader
/// should know (scaled because multiplexed, energy shared with another run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub values: Vec<(Counter, Option<f64>)>,
    /// `; `-separated remarks, empty when there is nothing to say.
    pub note: String,
}

impl Reading {
    /// The value of `c`, when counted.
    pub fn get(&self, c: Counter) -> Option<f64> {
        self.values
            .iter()
            .find(|(k, _)| *k == c)
            .and_then(|(_, v)| *v)
    }

    /// Adds a remark to `note`.
    pub fn remark(&mut self, text: &str) {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(text);
    }
}

/// Why this machine cannot count `c`, with the fix where there is one;
/// None when it can. `powercap` is the powercap class directory
/// (`/sys/class/powercap` on the machine).
pub fn refusal(c: Counter, powercap: &std::path::Path) -> Option<String> {
    match c.perf_event() {
        Some(_) => perf::refusal(c),
        None => powercap::refusal(c, powercap),
    }
}

/// The chosen perf events held open on packrun itself while its runs
/// count them (see `perf::hold`): dropped when the batch ends.
#[derive(Debug, Default)]
pub struct Held(#[allow(dead_code)] Vec<std::fs::File>);

/// Checks that this machine can count every chosen counter and holds the
/// perf events among them open (see `perf::hold`); else every counter it
/// cannot count, each with why.
pub fn hold_all(
    chosen: Chosen,
    powercap: &std::path::Path,
) -> Result<Held, Vec<(Counter, String)>> {
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for c in chosen.iter() {
        match c.perf_event() {
            Some(_) => match perf::hold(c) {
                Ok(f) => held.push(f),
                Err(e) => refused.push((c, perf::refusal_of(c, &e))),
            },
            None => refused.extend(powercap::refusal(c, powercap).map(|why| (c, why))),
        }
    }
    match refused.is_empty() {
        true => Ok(Held(held)),
        false => Err(refused),
    }
}

/// The powercap class directory of this machine.
pub const POWERCAP: &str = "/sys/class/powercap";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_perf_names_with_underscores_and_unique() {
        for c in Counter::ALL {
            assert_eq!(Counter::from_name(c.name()), Some(c));
            assert_eq!(Counter::from_column(c.column()), Some(c));
        }
        assert_eq!(Counter::TaskClock.column(), "task_clock");
        assert_eq!(Counter::EnergyPkg.column(), "energy_pkg");
    }

    #[test]
    fn chosen_iterates_in_column_order_whatever_the_order_given() {
        let s = Chosen::of([Counter::PageFaults, Counter::TaskClock, Counter::EnergyPkg]);
        let names: Vec<_> = s.iter().map(Counter::name).collect();
        assert_eq!(names, ["task-clock", "page-faults", "energy-pkg"]);
        assert_eq!(s.perf().iter().count(), 2);
        assert_eq!(s.energy().iter().collect::<Vec<_>>(), [Counter::EnergyPkg]);
    }

    #[test]
    fn cells_are_whole_counts_and_joules_to_the_microjoule() {
        assert_eq!(Counter::TaskClock.cell(1234.6), "1235");
        assert_eq!(Counter::EnergyPkg.cell(1.5), "1.500000");
    }
}
