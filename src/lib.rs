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

/// Exit codes (see README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUN_FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const ENVIRONMENT: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// Runs one command line and returns the process exit code.
pub fn main(cli: cli::Cli) -> i32 {
    let _ = cli;
    todo!("dispatch")
}
