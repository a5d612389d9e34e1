//! `packrun exec`'s run: a batch of one, on this machine, its output on
//! the caller's terminal, its record returned instead of written.

use super::{environment, events::Recorder, reap_orphans, EXEC_PREFIX};
use crate::error::Error;
use crate::results::Record;
use crate::{container, fsx, jobfile, plan, report, run};
use std::path::Path;

/// The record of the one run, and the host it ran on.
pub struct Exec {
    pub record: Record,
    pub host: String,
}

/// Runs `run`, already checked by the job file's rules, in a container of
/// its own and returns its record. Writable dirs are kept in a folder of
/// this command's own under the temporary directory, said on stderr.
pub fn exec(run: jobfile::Run) -> Result<Exec, Error> {
    let environmental = |message| Error::Environment {
        during: "exec",
        message,
    };
    let env = environment(run.resources.gpus > 0).map_err(environmental)?;
    let writable = !run.container.writable.is_empty();
    let runs: jobfile::Runs = vec![run].into();
    plan::check_feasible(&runs, &env.topology, &[]).map_err(|problems| Error::Infeasible {
        at: "packrun exec".into(),
        problems,
    })?;
    let _held = super::check_counters(&runs, "exec")?;
    for line in reap_orphans(&env.hierarchy) {
        eprintln!("{line}");
    }
    let batch_id = format!(
        "{EXEC_PREFIX}{}",
        run::journal::batch_id(run::cpulock::Owner::current())
    );
    let scratch = std::env::temp_dir().join(&batch_id);
    if writable {
        check_disk(&std::env::temp_dir(), &runs).map_err(environmental)?;
        eprintln!(
            "packrun exec: writable dirs kept in {}",
            scratch.join("exec").display()
        );
    }
    // One run's group sits where a batch's `packrun` group would, named
    // `packrun-<batch>`: no parent group to make and remove per command.
    let opts = run::Options {
        hierarchy: env.hierarchy,
        cgroup_base: String::new(),
        batch_id,
        output: run::Output::Inherit,
        scratch,
        max_parallel: Some(1),
        cpu_lock: Some(run::cpulock::default_path()),
        single: true,
        ids: container::ids::IdSource::host(container::ids::machine_slots()),
        disk_default: None,
        gpus: env.topology.gpus.clone(),
        gpu_root: env.gpu_root.clone(),
    };
    let alloc = plan::Allocator::new(&env.topology, &[]);
    let mut recorder = Recorder::single();
    run::execute(&runs, alloc, &opts, &Default::default(), &mut |ev| {
        recorder.event(ev)
    })
    .map_err(|e| environmental(fsx::chain(&e)))?;
    let record = recorder
        .last
        .ok_or_else(|| environmental("the run ended without a record".into()))?;
    Ok(Exec {
        record,
        host: env.host,
    })
}

/// Free space where the writable dirs go: none is an error, less than
/// `--disk` a warning (the disk may fill before the budget is reached).
fn check_disk(dir: &Path, runs: &jobfile::Runs) -> Result<(), String> {
    let Some(free) = crate::results::free_space(dir).map_err(|e| fsx::chain(&e))? else {
        // A file system that reports no size (ramfs): nothing to check.
        return Ok(());
    };
    if free < 1 << 20 {
        return Err(format!(
            "{} has {} free: no room for writable dirs",
            dir.display(),
            report::human_bytes(free)
        ));
    }
    let budget = runs.iter().next().and_then(|r| r.resources().disk);
    if let Some(d) = budget.filter(|&d| d > free) {
        eprintln!(
            "packrun exec: --disk {} is more than the {} free under {}: the disk may fill first",
            report::human_bytes(d),
            report::human_bytes(free),
            dir.display()
        );
    }
    Ok(())
}
