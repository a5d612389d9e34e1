//! `packrun plan FILE`: where each run would go and a predicted timeline,
//! on this machine or a fixture tree, without running anything.

use crate::cli::Format;
use crate::error::Error;
use crate::{jobfile, plan, topology};
use std::path::Path;
use std::process::ExitCode;

pub fn main(
    file: &Path,
    fixture: Option<&Path>,
    format: Format,
    max_runs: u64,
    order: &crate::cli::OrderArgs,
) -> Result<ExitCode, Error> {
    let mut batch = jobfile::load_limited(file, max_runs)?;
    batch.arrange(
        order.order.map(super::order_of),
        order.seed,
        crate::rng::fresh_seed(),
    );
    let topo = topology::read_at(fixture).map_err(|error| Error::Topology {
        fixture: fixture.is_some(),
        error,
    })?;
    let schedule = plan::simulate(&batch.runs, &topo, &batch.groups, None).map_err(|problems| {
        Error::Infeasible {
            at: file.display().to_string(),
            problems,
        }
    })?;
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Table => plan::write_table(&batch, &topo, &schedule, &mut out),
        Format::Json => plan::write_json(&batch, &schedule, &mut out),
    };
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::Output {
            during: "plan",
            message: format!("writing the plan to stdout: {e}"),
        }),
    }
}
