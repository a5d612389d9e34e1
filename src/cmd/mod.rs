//! One file per command: each turns its flags into a plain request, calls
//! the library, and prints. Only this module and `cli` know the flags.

pub mod compare;
pub mod completions;
pub mod doctor;
pub mod exec;
pub mod images;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod slurm;
pub mod topology;
pub mod validate;

/// The job file's order word for `--order`.
pub fn order_of(o: crate::cli::OrderArg) -> crate::jobfile::Order {
    match o {
        crate::cli::OrderArg::Sequential => crate::jobfile::Order::Sequential,
        crate::cli::OrderArg::Interleave => crate::jobfile::Order::Interleave,
        crate::cli::OrderArg::Random => crate::jobfile::Order::Random,
    }
}

/// The command a command line parses into, for the tests of each command.
#[cfg(test)]
fn parse(line: &[&str]) -> crate::cli::Command {
    use clap::Parser;
    crate::cli::Cli::try_parse_from(line).unwrap().command
}
