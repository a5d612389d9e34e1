//! Command line: clap derive, subcommands, exit codes. No logic here.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "packrun",
    version,
    about = "Pack resource-limited runs onto disjoint CPUs and NUMA nodes, run each in its own container, record what it used."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a job file and report every problem in it.
    Validate { file: PathBuf },
    /// Print the job file's JSON Schema (draft-07).
    Schema,
    /// Print the machine's topology.
    Topology {
        /// Read a fixture tree with the layout of /sys/devices/system instead of the machine.
        #[arg(long, value_name = "DIR")]
        topology: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print where each run would go and a predicted timeline, without running anything.
    Plan {
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        topology: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}
