//! `packrun exec -- CMD`: one run, isolated and limited; its usage record
//! goes to stderr and the exit code is the job's.

use crate::batch;
use crate::cli::{ExecArgs, NetworkArg, RecordFormat};
use crate::error::{exit, Error};
use crate::results::{Record, State};
use crate::{jobfile, report};
use std::process::ExitCode;

pub fn main(args: ExecArgs) -> Result<ExitCode, Error> {
    let invalid = |message| Error::Invalid {
        during: "exec",
        message,
    };
    let cwd =
        std::env::current_dir().map_err(|e| invalid(format!("the current directory: {e}")))?;
    if (args.disk.is_some() || args.files.is_some()) && args.writable.is_empty() {
        return Err(invalid(
            "--disk and --files limit the run's writable dirs, and it has none: expected --writable DIR with them".into(),
        ));
    }
    let run = jobfile::exec_run(&request(&args, std::env::vars()), &cwd).map_err(invalid)?;
    let batch::Exec { record, host } = batch::exec(run)?;
    let text = match args.format {
        RecordFormat::Table => report::formats::record_table(&record, &host),
        RecordFormat::Csv => report::formats::record_csv(&record, &host),
        RecordFormat::Json => report::formats::record_json(&record, &host) + "\n",
    };
    eprint!("{text}");
    Ok(ExitCode::from(exit_code(&record)))
}

/// The flags as the one job they describe, checked by the job file's rules.
/// A one-off command keeps the caller's environment `vars`, as unshare(1)
/// does, but for who it is: HOME, USER and LOGNAME are the run's own.
fn request(a: &ExecArgs, vars: impl Iterator<Item = (String, String)>) -> jobfile::ExecRequest {
    jobfile::ExecRequest {
        cpus: a.cpus,
        cpuset: a.cpuset.clone(),
        mems: a.mems.clone(),
        memory: a.memory.clone(),
        pids: a.pids,
        disk: a.disk.clone(),
        files: a.files,
        gpus: a.gpus,
        writable: a.writable.clone(),
        time_limit: a.time_limit.clone(),
        cpu_time_limit: a.cpu_time_limit.clone(),
        network_host: matches!(a.network, NetworkArg::Host),
        aio: a.aio,
        counters: a.counters.clone(),
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
