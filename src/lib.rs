//! packrun: load the job file → expand → plan → run → report.
//!
//! `main.rs` parses the command line and calls [`run`], which hands each
//! command to `cmd/`; a command ends with an exit code, or with the one
//! [`Error`], which `main` prints once and exits with its code.
#![deny(unsafe_code)]

pub mod account;
pub mod batch;
pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod container;
pub mod counters;
pub mod cpulist;
pub mod doctor;
pub mod error;
pub mod fsx;
pub mod gpus;
pub mod html;
pub mod image;
pub mod jobfile;
pub mod machine;
pub mod net;
pub mod nvml;
pub mod plan;
pub mod progress;
pub mod report;
pub mod results;
mod rng;
pub mod run;
pub mod sched;
pub mod slurm;
pub mod topology;

pub use error::Error;

use cli::{Cli, Command};
use std::process::ExitCode;

/// Runs one command line.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Validate { file, limits } => {
            cmd::validate::main(&file, limits.max_runs.unwrap_or(jobfile::DEFAULT_MAX_RUNS))
        }
        Command::Schema => cmd::schema::main(),
        Command::Topology { topology, format } => cmd::topology::main(topology.as_deref(), format),
        Command::Plan {
            file,
            topology,
            format,
            limits,
            order,
        } => cmd::plan::main(
            &file,
            topology.as_deref(),
            format,
            limits.max_runs.unwrap_or(jobfile::DEFAULT_MAX_RUNS),
            &order,
        ),
        Command::Run(args) => cmd::run::main(args),
        Command::Exec(args) => cmd::exec::main(args),
        Command::Report(args) => cmd::report::main(&args),
        Command::Compare(args) => cmd::compare::main(&args),
        Command::Images { action, cache } => cmd::images::main(&action, cache),
        Command::Doctor { root } => cmd::doctor::main(root.as_deref()),
        Command::Slurm(command) => cmd::slurm::main(command),
        Command::Completions { shell } => cmd::completions::completions(shell),
        Command::Man => cmd::completions::man(),
    }
}
