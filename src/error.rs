//! The one error a command ends with, printed once by `main`, and the exit
//! codes of README's table.
//!
//! A run that did not complete is not an error: it is a row, and the
//! command returns `Ok` with exit code 1 (or 130 when interrupted).

use crate::jobfile::SpecErrors;
use crate::plan::PlanError;
use crate::topology::TopologyError;

/// Exit codes (README).
pub mod exit {
    /// Some run did not complete.
    pub const RUN_FAILED: u8 = 1;
    /// An invalid job file, an infeasible plan, or a bad argument.
    pub const INVALID: u8 = 2;
    /// The environment cannot run it (not root, no cgroups, I/O).
    pub const ENVIRONMENT: u8 = 3;
    /// The runs ran, but some of their records (a row, summary.csv, the
    /// manifest) could not be written: the disk under the results filled
    /// up beyond packrun's reserve. stderr names what is missing.
    pub const RECORDS_LOST: u8 = 4;
    /// Interrupted (SIGINT, SIGTERM).
    pub const INTERRUPTED: u8 = 130;
}

/// Whose fault a failure is: what it was given, or the machine it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invalid,
    Environment,
}

/// Why a command stopped. Each variant prints the way packrun always has
/// (`packrun run: ...`, or the job file's own `file:line: ...` lines).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every problem in a job file, each naming its file and line.
    #[error("{0}")]
    Spec(#[from] SpecErrors),
    /// Runs that can never fit here, one line each, after `at`.
    #[error("{}", lines(at, problems))]
    Infeasible {
        at: String,
        problems: Vec<PlanError>,
    },
    /// A topology that cannot be read: a bad fixture tree given on the
    /// command line, or this machine's.
    #[error("packrun: {}", crate::fsx::chain(error))]
    Topology { fixture: bool, error: TopologyError },
    /// A bad argument, or a folder that cannot take what was asked.
    #[error("{}{message}", prefix(during))]
    Invalid {
        during: &'static str,
        message: String,
    },
    /// The machine cannot do it: a file, a cgroup, a missing tool.
    #[error("{}{message}", prefix(during))]
    Environment {
        during: &'static str,
        message: String,
    },
    /// This machine cannot run batches at all, with the doctor's verdict.
    #[error("packrun run: cannot run here: {reason}{}", verdict(doctor))]
    CannotRunHere {
        reason: String,
        doctor: Option<String>,
    },
    /// What was asked for could not be written to stdout.
    #[error("{}{message}", prefix(during))]
    Output {
        during: &'static str,
        message: String,
    },
}

/// `packrun CMD: ` (`packrun: ` for no command in particular).
fn prefix(during: &str) -> String {
    match during {
        "" => "packrun: ".into(),
        cmd => format!("packrun {cmd}: "),
    }
}

fn lines(at: &str, problems: &[PlanError]) -> String {
    problems
        .iter()
        .map(|p| format!("{at}: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn verdict(doctor: &Option<String>) -> String {
    match doctor {
        Some(v) => format!("\npackrun doctor: {v}"),
        None => String::new(),
    }
}

impl Error {
    /// `packrun CMD: message`, exit code 2 or 3 by `kind`.
    pub fn new(kind: Kind, during: &'static str, message: String) -> Error {
        match kind {
            Kind::Invalid => Error::Invalid { during, message },
            Kind::Environment => Error::Environment { during, message },
        }
    }

    /// README's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::Infeasible { .. } | Error::Invalid { .. } => exit::INVALID,
            Error::Topology { fixture: true, .. } => exit::INVALID,
            Error::Topology { fixture: false, .. } => exit::ENVIRONMENT,
            Error::Environment { .. } | Error::CannotRunHere { .. } => exit::ENVIRONMENT,
            // As `packrun man` always has: the command ran and its output failed.
            Error::Output { .. } => exit::RUN_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_error() -> PlanError {
        PlanError {
            job: "big".into(),
            field: "resources.cpus".into(),
            asked: "64".into(),
            available: "this machine has 8".into(),
        }
    }

    #[test]
    fn an_invalid_job_file_or_infeasible_plan_or_bad_argument_exits_2() {
        let spec =
            crate::jobfile::load(std::path::Path::new("/nonexistent/jobs.yaml")).unwrap_err();
        assert_eq!(Error::Spec(spec).exit_code(), 2);
        let infeasible = Error::Infeasible {
            at: "jobs.yaml".into(),
            problems: vec![plan_error()],
        };
        assert_eq!(infeasible.exit_code(), 2);
        assert_eq!(Error::new(Kind::Invalid, "run", "x".into()).exit_code(), 2);
    }

    #[test]
    fn an_environment_that_cannot_run_it_exits_3() {
        assert_eq!(
            Error::new(Kind::Environment, "exec", "x".into()).exit_code(),
            3
        );
        let here = Error::CannotRunHere {
            reason: "not root".into(),
            doctor: None,
        };
        assert_eq!(here.exit_code(), 3);
    }

    #[test]
    fn an_unreadable_fixture_topology_is_a_bad_argument_but_this_machines_is_the_environment() {
        let fixture = std::path::Path::new("/nonexistent/fixture");
        let bad = |fixture| Error::Topology {
            fixture,
            error: crate::topology::read_at(Some(std::path::Path::new("/nonexistent/fixture")))
                .unwrap_err(),
        };
        assert!(!fixture.exists());
        assert_eq!(bad(true).exit_code(), 2);
        assert_eq!(bad(false).exit_code(), 3);
        assert!(bad(true).to_string().starts_with("packrun: "));
    }

    #[test]
    fn output_that_cannot_be_written_exits_1_as_it_always_has() {
        let e = Error::Output {
            during: "man",
            message: "broken pipe".into(),
        };
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn errors_print_after_the_command_they_stopped() {
        assert_eq!(
            Error::new(Kind::Invalid, "report", "no runs.csv".into()).to_string(),
            "packrun report: no runs.csv"
        );
        assert_eq!(
            Error::new(Kind::Environment, "", "no /sys".into()).to_string(),
            "packrun: no /sys"
        );
    }

    #[test]
    fn infeasible_runs_print_one_line_each_after_the_job_file() {
        let e = Error::Infeasible {
            at: "jobs.yaml".into(),
            problems: vec![plan_error(), plan_error()],
        };
        let text = e.to_string();
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .lines()
            .all(|l| l.starts_with("jobs.yaml: job `big`: resources.cpus asks for 64")));
    }

    #[test]
    fn cannot_run_here_adds_the_doctors_verdict_on_its_own_line() {
        let e = Error::CannotRunHere {
            reason: "not root".into(),
            doctor: Some("runs cannot start".into()),
        };
        assert_eq!(
            e.to_string(),
            "packrun run: cannot run here: not root\npackrun doctor: runs cannot start"
        );
    }
}
