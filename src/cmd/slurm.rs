//! `packrun slurm submit|status|merge|task`: a job file across a Slurm
//! cluster; the hidden `task` is the node step, one batch per node.

use crate::batch;
use crate::cli::{SlurmCommand, SubmitArgs};
use crate::error::Error;
use crate::slurm;
use std::process::ExitCode;

pub fn main(cmd: SlurmCommand) -> Result<ExitCode, Error> {
    let slurm_error = |(kind, message)| Error::new(kind, "slurm", message);
    match cmd {
        SlurmCommand::Submit(a) => slurm::submit(&submission(a)).map_err(slurm_error)?,
        SlurmCommand::Status { dir } => slurm::status(&dir).map_err(slurm_error)?,
        SlurmCommand::Merge { dir } => {
            let n = slurm::merge(&dir).map_err(slurm_error)?;
            println!("merged {n} runs into {}", dir.join("runs.csv").display());
        }
        SlurmCommand::Task { dir } => {
            let step = slurm::node_step(&dir).map_err(slurm_error)?;
            eprintln!(
                "packrun on {}: shard {}/{} into {}",
                step.node,
                step.shard.index,
                step.shard.count,
                step.out.display()
            );
            return batch::run(&node_batch(step));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn submission(a: SubmitArgs) -> slurm::SubmitArgs {
    slurm::SubmitArgs {
        file: a.file,
        nodes: a.nodes,
        partition: a.partition,
        time: a.time,
        account: a.account,
        sbatch_arg: a.sbatch_arg,
        out: a.out,
        resume: a.resume,
        force: a.force,
    }
}

/// This node's shard as a batch: a new folder, or on a requeued job the
/// one it began (resumed even if the job file changed meanwhile).
fn node_batch(step: slurm::NodeStep) -> batch::Request {
    let again = step.again;
    batch::Request {
        file: step.file,
        out: (!again).then(|| step.out.clone()),
        resume: again.then_some(step.out),
        force: again,
        max_parallel: None,
        quiet: true,
        shard: Some(step.shard),
        skip_runs: step.skip,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::shard::Shard;

    fn step(again: bool) -> slurm::NodeStep {
        slurm::NodeStep {
            node: "n1".into(),
            file: "/shared/j.yaml".into(),
            shard: Shard { index: 1, count: 2 },
            skip: Some("/shared/r/skip.csv".into()),
            out: "/shared/r/nodes/n1".into(),
            again,
        }
    }

    #[test]
    fn a_node_runs_its_shard_quietly_into_a_new_folder_of_its_own() {
        let req = node_batch(step(false));
        assert_eq!(
            req.out.as_deref(),
            Some(std::path::Path::new("/shared/r/nodes/n1"))
        );
        assert_eq!((req.resume, req.force, req.quiet), (None, false, true));
        assert_eq!(req.shard, Some(Shard { index: 1, count: 2 }));
        assert_eq!(
            req.skip_runs.as_deref(),
            Some(std::path::Path::new("/shared/r/skip.csv"))
        );
    }

    #[test]
    fn a_requeued_node_resumes_its_folder_even_if_the_job_file_changed() {
        let req = node_batch(step(true));
        assert_eq!(req.out, None);
        assert_eq!(
            req.resume.as_deref(),
            Some(std::path::Path::new("/shared/r/nodes/n1"))
        );
        assert!(req.force);
    }
}
