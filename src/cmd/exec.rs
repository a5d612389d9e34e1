//! `packrun exec -- CMD`: one run, isolated and limited; its usage record
//! goes to stderr and the exit code is the job's.

use crate::batch::{self, EXEC_PREFIX};
use crate::cli::{ExecArgs, NetworkArg, RecordFormat};
use crate::error::{exit, Error};
use crate::results::{Record, State};
use crate::{container, fsx, plan, report, run, spec};
use std::process::ExitCode;

pub fn main(args: ExecArgs) -> Result<ExitCode, Error> {
    let invalid = |message| Error::Invalid {
        during: "exec",
        message,
    };
    let environment = |message| Error::Environment {
        during: "exec",
        message,
    };
    let cwd =
        std::env::current_dir().map_err(|e| invalid(format!("the current directory: {e}")))?;
    let run = spec::exec_run(&request(&args, std::env::vars()), &cwd).map_err(invalid)?;
    let env = batch::environment().map_err(environment)?;
    let runs: spec::Runs = vec![run].into();
    plan::check_feasible(&runs, &env.topology, &[]).map_err(|problems| Error::Infeasible {
        at: "packrun exec".into(),
        problems,
    })?;
    for line in batch::reap_orphans(&env.hierarchy) {
        eprintln!("{line}");
    }
    // One run's group sits where a batch's `packrun` group would, named
    // `packrun-<batch>`: no parent group to make and remove per command.
    let opts = run::Options {
        hierarchy: env.hierarchy,
        cgroup_base: String::new(),
        batch_id: format!(
            "{EXEC_PREFIX}{}",
            run::journal::batch_id(run::cpulock::Owner::current())
        ),
        output: run::Output::Inherit,
        scratch: std::env::temp_dir(),
        max_parallel: Some(1),
        cpu_lock: Some(run::cpulock::default_path()),
        single: true,
        ids: container::ids::IdSource::host(container::ids::machine_slots()),
    };
    let alloc = plan::Allocator::new(&env.topology, &[]);
    let mut record = None;
    run::execute(&runs, alloc, &opts, &Default::default(), &mut |ev| {
        if let run::Event::Note(text) = &ev {
            eprintln!("{text}");
        }
        if let run::Event::Finished(r) = ev {
            record = Some(r);
        }
    })
    .map_err(|e| environment(fsx::chain(&e)))?;
    let rec = record.ok_or_else(|| environment("the run ended without a record".into()))?;
    let text = match args.format {
        RecordFormat::Table => report::formats::record_table(&rec, &env.host),
        RecordFormat::Csv => report::formats::record_csv(&rec, &env.host),
        RecordFormat::Json => report::formats::record_json(&rec, &env.host) + "\n",
    };
    eprint!("{text}");
    Ok(ExitCode::from(exit_code(&rec)))
}

/// The flags as the one job they describe, checked by the job file's rules.
/// A one-off command keeps the caller's environment `vars`, as unshare(1)
/// does, but for who it is: HOME, USER and LOGNAME are the run's own.
fn request(a: &ExecArgs, vars: impl Iterator<Item = (String, String)>) -> spec::ExecRequest {
    spec::ExecRequest {
        cpus: a.cpus,
        cpuset: a.cpuset.clone(),
        mems: a.mems.clone(),
        memory: a.memory.clone(),
        pids: a.pids,
        time_limit: a.time_limit.clone(),
        cpu_time_limit: a.cpu_time_limit.clone(),
        network_host: matches!(a.network, NetworkArg::Host),
        aio: a.aio,
        rootfs: a.rootfs.clone(),
        binds: a.bind.clone(),
        workdir: a.workdir.clone(),
        hostname: a.hostname.clone(),
        command: a.command.clone(),
        env: vars
            .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"))
            .collect(),
    }
}

/// The job's own exit code; 128 + the signal that killed it, as a shell says.
fn exit_code(rec: &Record) -> u8 {
    match (rec.state, rec.exit_code, rec.signal) {
        (State::Completed, _, _) => 0,
        (State::Cancelled, _, _) => exit::INTERRUPTED,
        (State::Failed, Some(c), _) => c as u8,
        (_, _, Some(s)) => 128 + s as u8,
        _ => exit::RUN_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> ExecArgs {
        match super::super::parse(line) {
            crate::cli::Command::Exec(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_keeps_the_callers_environment_but_not_who_the_caller_is() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("LANG", "C"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let req = request(&args(&["packrun", "exec", "--", "true"]), vars.into_iter());
        let names: Vec<&str> = req.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "LANG"]);
    }

    #[test]
    fn network_host_and_binds_become_the_jobs_own() {
        let req = request(
            &args(&[
                "packrun",
                "exec",
                "--network",
                "host",
                "--bind",
                "/a:/b:ro",
                "--cpus",
                "2",
                "--",
                "ls",
                "-l",
            ]),
            std::iter::empty(),
        );
        assert!(req.network_host);
        assert_eq!(req.binds, ["/a:/b:ro"]);
        assert_eq!(req.cpus, Some(2));
        assert_eq!(req.command, ["ls", "-l"]);
        let req = request(
            &args(&["packrun", "exec", "--", "true"]),
            std::iter::empty(),
        );
        assert!(!req.network_host);
    }
}
