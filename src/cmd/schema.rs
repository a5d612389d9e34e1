//! `packrun schema`: the job file's JSON Schema.

use crate::error::Error;
use std::process::ExitCode;

pub fn main() -> Result<ExitCode, Error> {
    println!("{}", crate::jobfile::schema_json());
    Ok(ExitCode::SUCCESS)
}
