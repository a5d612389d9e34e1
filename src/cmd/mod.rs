//! One file per command: each turns its flags into a plain request, calls
//! the library, and prints. Only this module and `cli` know the flags.

pub mod completions;
pub mod doctor;
pub mod exec;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod slurm;
pub mod topology;
pub mod validate;

/// The command a command line parses into, for the tests of each command.
#[cfg(test)]
fn parse(line: &[&str]) -> crate::cli::Command {
    use clap::Parser;
    crate::cli::Cli::try_parse_from(line).unwrap().command
}
