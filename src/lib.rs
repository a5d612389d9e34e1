//! packrun: load spec → expand → plan → run → report.
#![deny(unsafe_code)]

pub mod account;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod cpulist;
pub mod fsx;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;
pub mod spec;
pub mod topology;

use cli::{Cli, Command, Format};
use std::path::Path;

/// Exit codes (see README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUN_FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const ENVIRONMENT: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// Runs one command line and returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { file } => match spec::load(&file) {
            Ok(batch) => {
                println!(
                    "{}: valid: {} jobs, {} runs",
                    file.display(),
                    batch.jobs.len(),
                    batch.runs.len()
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("{e}");
                exit::INVALID
            }
        },
        Command::Schema => {
            println!("{}", spec::schema_json());
            exit::OK
        }
        Command::Topology { topology, format } => {
            let topo = match load_topology(topology.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            match format {
                Format::Table => print!("{}", topology::render(&topo)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&topo).expect("topology serializes")
                ),
            }
            exit::OK
        }
        Command::Plan {
            file,
            topology,
            format,
        } => {
            let batch = match spec::load(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{e}");
                    return exit::INVALID;
                }
            };
            let topo = match load_topology(topology.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let schedule = match plan::simulate(&batch.runs, &topo, &batch.groups, None) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    return exit::INVALID;
                }
            };
            match format {
                Format::Table => print!("{}", plan::render_table(&batch, &topo, &schedule)),
                Format::Json => print!("{}", plan::render_json(&batch, &schedule)),
            }
            exit::OK
        }
    }
}

/// A fixture tree when given (planning for another machine), else this machine.
fn load_topology(dir: Option<&Path>) -> Result<topology::Topology, i32> {
    let r = match dir {
        Some(d) => topology::read(d, None, None),
        None => topology::read_host(),
    };
    r.map_err(|e| {
        eprintln!("packrun: {}", fsx::chain(&e));
        if dir.is_some() {
            exit::INVALID
        } else {
            exit::ENVIRONMENT
        }
    })
}
