//! `packrun topology`: this machine's CPUs, caches and NUMA nodes (or a fixture tree's).

use crate::cli::Format;
use crate::error::Error;
use crate::topology;
use std::path::Path;
use std::process::ExitCode;

pub fn main(fixture: Option<&Path>, format: Format) -> Result<ExitCode, Error> {
    let topo = topology::read_at(fixture).map_err(|error| Error::Topology {
        fixture: fixture.is_some(),
        error,
    })?;
    match format {
        Format::Table => print!("{}", topology::render(&topo)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&topo).expect("topology serializes")
        ),
    }
    Ok(ExitCode::SUCCESS)
}
