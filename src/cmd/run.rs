//! `packrun run FILE`: one batch on this machine.

use crate::batch;
use crate::cli::RunArgs;
use crate::error::Error;
use std::process::ExitCode;

pub fn main(args: RunArgs) -> Result<ExitCode, Error> {
    batch::run(&request(args)?)
}

/// The batch the flags ask for. Without FILE, `--resume DIR` runs the copy
/// of the job file kept in DIR.
fn request(args: RunArgs) -> Result<batch::Request, Error> {
    if args.topology.is_some() {
        return Err(Error::Invalid {
            during: "run",
            message:
                "--topology is for `packrun plan` only; a real run uses this machine's topology"
                    .into(),
        });
    }
    let file = match (args.file, &args.resume) {
        (Some(f), _) => f,
        (None, Some(dir)) => dir.join("job.yaml"),
        (None, None) => unreachable!("clap requires FILE without --resume"),
    };
    Ok(batch::Request {
        file,
        out: args.out,
        resume: args.resume,
        force: args.force,
        max_parallel: args.max_parallel,
        max_runs: args.limits.max_runs,
        order: args.order.order.map(super::order_of),
        seed: args.order.seed,
        quiet: args.quiet,
        shard: args.shard,
        skip_runs: args.skip_runs,
        cache: args.cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> RunArgs {
        match super::super::parse(line) {
            crate::cli::Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_resume_without_a_job_file_runs_the_copy_kept_in_the_folder() {
        let req = request(args(&["packrun", "run", "--resume", "results/x"])).unwrap();
        assert_eq!(req.file, std::path::Path::new("results/x/job.yaml"));
        assert_eq!(
            req.resume.as_deref(),
            Some(std::path::Path::new("results/x"))
        );
    }

    #[test]
    fn a_job_file_given_with_resume_is_the_one_run() {
        let req = request(args(&[
            "packrun", "run", "new.yaml", "--resume", "r", "--force",
        ]))
        .unwrap();
        assert_eq!(req.file, std::path::Path::new("new.yaml"));
        assert!(req.force);
    }

    #[test]
    fn a_fixture_topology_is_refused_as_a_bad_argument() {
        let e = request(args(&["packrun", "run", "j.yaml", "--topology", "fx"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e
            .to_string()
            .starts_with("packrun run: --topology is for `packrun plan` only"));
    }

    #[test]
    fn flags_pass_to_the_batch_as_they_are() {
        let req = request(args(&[
            "packrun",
            "run",
            "j.yaml",
            "--out",
            "o",
            "--max-parallel",
            "3",
            "-q",
            "--shard",
            "1/4",
        ]))
        .unwrap();
        assert_eq!(
            req,
            batch::Request {
                file: "j.yaml".into(),
                out: Some("o".into()),
                max_parallel: Some(3),
                quiet: true,
                shard: Some(crate::plan::shard::Shard { index: 1, count: 4 }),
                ..Default::default()
            }
        );
    }
}
