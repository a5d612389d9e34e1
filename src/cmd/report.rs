//! `packrun report DIR`: the summary in one format on stdout, and on
//! request report.html and a joblog.

use crate::cli::{ReportArgs, ReportFormat as F};
use crate::error::Error;
use crate::{fsx, html, report, results};
use std::process::ExitCode;

pub fn main(args: &ReportArgs) -> Result<ExitCode, Error> {
    let invalid = |e: &dyn std::error::Error| Error::Invalid {
        during: "report",
        message: fsx::chain(e),
    };
    let rows = results::read_rows(&args.dir.join("runs.csv")).map_err(|e| invalid(&e))?;
    let summaries = report::summarize(&rows);
    let text = match args.format {
        F::Table => report::table(&summaries),
        F::Markdown => report::formats::markdown(&summaries),
        F::Csv => report::formats::csv(&summaries),
        F::Json => report::formats::json(&summaries),
        F::HyperfineJson => {
            let (text, left_out) = report::formats::hyperfine_json(&summaries);
            if left_out > 0 {
                eprintln!(
                    "packrun report: {left_out} run(s) that did not complete are left out of hyperfine's times (see runs.csv)"
                );
            }
            text
        }
    };
    print!("{text}");
    if let Some(path) = &args.joblog {
        fsx::write(path, report::formats::joblog(&rows)).map_err(|e| invalid(&e))?;
        eprintln!("joblog: {}", path.display());
    }
    if args.html {
        let page = html::write_report(&args.dir).map_err(|e| invalid(&e))?;
        eprintln!("report: {}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}
