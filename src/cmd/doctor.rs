//! `packrun doctor`: every check of this machine, with the fix for each problem.

use crate::doctor;
use crate::error::{exit, Error};
use std::path::Path;
use std::process::ExitCode;

/// Exit 0 when runs can start (warnings allowed), 3 when they cannot: the
/// verdict is the command's outcome, printed with the checks.
pub fn main(root: Option<&Path>) -> Result<ExitCode, Error> {
    let mut probe = doctor::Probe::host();
    if let Some(r) = root {
        probe.root = r.to_path_buf();
    }
    let checks = doctor::checks(&probe);
    print!("{}", doctor::render(&checks));
    Ok(match doctor::summary(&checks) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(exit::ENVIRONMENT),
    })
}
