//! `packrun compare A B` (or `A --baseline SET`): is B faster than A, and
//! how sure is that? See docs/compare.md for the method.

use crate::cli::{CompareArgs, CompareFormat};
use crate::error::Error;
use crate::report::compare::{self, CompareRequest};
use crate::{fsx, html};
use std::process::ExitCode;

pub fn main(args: &CompareArgs) -> Result<ExitCode, Error> {
    let invalid = |e: &dyn std::error::Error| Error::Invalid {
        during: "compare",
        message: fsx::chain(e),
    };
    let metrics = args
        .metric
        .iter()
        .map(|m| compare::Metric::parse(m))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&e))?;
    let req = CompareRequest {
        a: args.a.clone(),
        b: args.b.clone(),
        baseline: args.baseline.clone(),
        alpha: args.alpha,
        metrics,
    };
    let c = compare::compare(&req).map_err(|e| invalid(&e))?;
    print!(
        "{}",
        match args.format {
            CompareFormat::Table => compare::render_table(&c),
            CompareFormat::Markdown => compare::render_markdown(&c),
            CompareFormat::Json => compare::render_json(&c),
        }
    );
    if args.html {
        let dir = args.b.as_ref().unwrap_or(&args.a);
        let page = html::write_compare_report(dir, &c).map_err(|e| invalid(&e))?;
        let report = html::add_comparison_to_report(dir, &c).map_err(|e| invalid(&e))?;
        eprintln!("comparison: {} and {}", page.display(), report.display());
    }
    Ok(ExitCode::SUCCESS)
}
