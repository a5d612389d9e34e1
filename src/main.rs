use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    packrun::container::restore_default_sigpipe();
    let cli = packrun::cli::Cli::parse();
    packrun::run(cli).unwrap_or_else(|e| {
        eprintln!("{e}");
        ExitCode::from(e.exit_code())
    })
}
