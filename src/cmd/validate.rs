//! `packrun validate FILE`: every problem in a job file, or a one-line count.

use crate::error::Error;
use crate::jobfile;
use std::path::Path;
use std::process::ExitCode;

pub fn main(file: &Path, max_runs: u64) -> Result<ExitCode, Error> {
    let batch = jobfile::load_limited(file, max_runs)?;
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    println!(
        "{}: valid: {}, {}",
        file.display(),
        plural(batch.jobs.len(), "job"),
        plural(batch.runs.len(), "run")
    );
    Ok(ExitCode::SUCCESS)
}
