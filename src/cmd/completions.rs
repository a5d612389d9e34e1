//! `packrun completions SHELL` and `packrun man`: generated from the CLI itself.

use crate::cli::Cli;
use crate::error::Error;
use clap::CommandFactory;
use std::process::ExitCode;

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Error> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "packrun",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn man() -> Result<ExitCode, Error> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| Error::Output {
            during: "man",
            message: e.to_string(),
        })?;
    Ok(ExitCode::SUCCESS)
}
