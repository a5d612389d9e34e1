//! packrun: load spec → expand → plan → run → report.
#![deny(unsafe_code)]

pub mod account;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod cpulist;
pub mod doctor;
pub mod fsx;
pub mod html;
pub mod image;
pub mod machine;
pub mod plan;
pub mod progress;
pub mod report;
pub mod results;
pub mod run;
pub mod sched;
pub mod slurm;
pub mod spec;
pub mod topology;

use cli::{Cli, Command, ExecArgs, Format, RecordFormat, RunArgs};
use std::path::Path;

/// Exit codes (see README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUN_FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const ENVIRONMENT: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// Runs one command line and returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { file } => match spec::load(&file) {
            Ok(batch) => {
                let plural =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                println!(
                    "{}: valid: {}, {}",
                    file.display(),
                    plural(batch.jobs.len(), "job"),
                    plural(batch.runs.len(), "run")
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("{e}");
                exit::INVALID
            }
        },
        Command::Schema => {
            println!("{}", spec::schema_json());
            exit::OK
        }
        Command::Topology { topology, format } => {
            let topo = match load_topology(topology.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            match format {
                Format::Table => print!("{}", topology::render(&topo)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&topo).expect("topology serializes")
                ),
            }
            exit::OK
        }
        Command::Run(args) => run_batch(args),
        Command::Report(args) => report_cmd(args),
        Command::Doctor { root } => doctor::main(root.as_deref()),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "packrun",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("packrun man: {e}");
                    exit::RUN_FAILED
                }
            }
        }
        Command::Exec(args) => exec(args),
        Command::Slurm(cmd) => slurm::main(cmd),
        Command::Plan {
            file,
            topology,
            format,
        } => {
            let batch = match spec::load(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{e}");
                    return exit::INVALID;
                }
            };
            let topo = match load_topology(topology.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let schedule = match plan::simulate(&batch.runs, &topo, &batch.groups, None) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    return exit::INVALID;
                }
            };
            match format {
                Format::Table => print!("{}", plan::render_table(&batch, &topo, &schedule)),
                Format::Json => print!("{}", plan::render_json(&batch, &schedule)),
            }
            exit::OK
        }
    }
}

/// A fixture tree when given (planning for another machine), else this machine.
fn load_topology(dir: Option<&Path>) -> Result<topology::Topology, i32> {
    let r = match dir {
        Some(d) => topology::read(d, None, None),
        None => topology::read_host(),
    };
    r.map_err(|e| {
        eprintln!("packrun: {}", fsx::chain(&e));
        if dir.is_some() {
            exit::INVALID
        } else {
            exit::ENVIRONMENT
        }
    })
}

/// The one run that `packrun exec` describes: its flags as a job, checked
/// by the job file's rules.
fn exec_run(a: &ExecArgs) -> Result<spec::Run, String> {
    let req = spec::ExecRequest {
        cpus: a.cpus,
        cpuset: a.cpuset.clone(),
        mems: a.mems.clone(),
        memory: a.memory.clone(),
        pids: a.pids,
        time_limit: a.time_limit.clone(),
        cpu_time_limit: a.cpu_time_limit.clone(),
        network_host: matches!(a.network, cli::NetworkArg::Host),
        rootfs: a.rootfs.clone(),
        binds: a.bind.clone(),
        workdir: a.workdir.clone(),
        hostname: a.hostname.clone(),
        command: a.command.clone(),
        // A one-off command keeps the caller's environment, as unshare(1)
        // does, but for who it is: HOME, USER and LOGNAME are the run's own.
        env: std::env::vars()
            .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"))
            .collect(),
    };
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    spec::exec_run(&req, &cwd)
}

/// `packrun exec`: one run; the usage record goes to stderr, the exit code is the job's.
fn exec(args: ExecArgs) -> i32 {
    let run = match exec_run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("packrun exec: {e}");
            return exit::INVALID;
        }
    };
    let env = match environment() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("packrun exec: {e}");
            return exit::ENVIRONMENT;
        }
    };
    if let Err(errors) = plan::check_feasible(std::slice::from_ref(&run), &env.topology, &[]) {
        for e in errors {
            eprintln!("packrun exec: {e}");
        }
        return exit::INVALID;
    }
    reap_orphans(&env.hierarchy);
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
    let result = run::execute(
        std::slice::from_ref(&run),
        alloc,
        &opts,
        &Default::default(),
        &mut |ev| {
            if let run::Event::Finished(r) = ev {
                record = Some(r);
            }
        },
    );
    if let Err(e) = result {
        eprintln!("packrun exec: {}", fsx::chain(&e));
        return exit::ENVIRONMENT;
    }
    let Some(rec) = record else {
        eprintln!("packrun exec: the run ended without a record");
        return exit::ENVIRONMENT;
    };
    let text = match args.format {
        RecordFormat::Table => report::formats::record_table(&rec, &env.host),
        RecordFormat::Csv => report::formats::record_csv(&rec, &env.host),
        RecordFormat::Json => report::formats::record_json(&rec, &env.host) + "\n",
    };
    eprint!("{text}");
    match (rec.state, rec.exit_code, rec.signal) {
        (results::State::Completed, _, _) => exit::OK,
        (results::State::Cancelled, _, _) => exit::INTERRUPTED,
        (results::State::Failed, Some(c), _) => c,
        (_, _, Some(s)) => 128 + s,
        _ => exit::RUN_FAILED,
    }
}

/// What a real run needs from this machine.
struct Environment {
    topology: topology::Topology,
    hierarchy: cgroup::Hierarchy,
    host: String,
}

/// Root may run anywhere; anybody else needs a cgroup v2 subtree delegated
/// to them (see `doctor::standing`), checked before anything is created.
fn environment() -> Result<Environment, String> {
    let hierarchy = cgroup::detect_host().map_err(|e| fsx::chain(&e))?;
    if !nix::unistd::Uid::effective().is_root() {
        let command = doctor::shell_join(std::env::args());
        doctor::standing(&doctor::Facts::read(&hierarchy), &command).map_err(|r| r.to_string())?;
    }
    let topology = topology::read_host().map_err(|e| fsx::chain(&e))?;
    cgroup::prepare_v2_parent(&hierarchy).map_err(|e| fsx::chain(&e))?;
    // Under Slurm the node's name: several slurmd may share one host.
    let host = slurm::node_name().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(Environment {
        topology,
        hierarchy,
        host,
    })
}

/// `packrun run`: load → check → plan → run → record → summarise.
fn run_batch(args: RunArgs) -> i32 {
    if args.topology.is_some() {
        eprintln!("packrun run: --topology is for `packrun plan` only; a real run uses this machine's topology");
        return exit::INVALID;
    }
    let file = match (&args.file, &args.resume) {
        (Some(f), _) => f.clone(),
        (None, Some(dir)) => dir.join("job.yaml"),
        (None, None) => unreachable!("clap requires FILE without --resume"),
    };
    let mut batch = match spec::load(&file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID;
        }
    };
    if let Some(shard) = args.shard {
        let skip = match args
            .skip_runs
            .as_deref()
            .map(results::read_done)
            .transpose()
        {
            Ok(done) => done.unwrap_or_default().into_keys().collect(),
            Err(e) => {
                eprintln!("packrun run: {}", fsx::chain(&e));
                return exit::INVALID;
            }
        };
        batch.runs = slurm::keep_shard(std::mem::take(&mut batch.runs), shard, &skip);
    }
    let env = match environment() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("packrun run: cannot run here: {e}");
            if let Err(v) = doctor::verdict() {
                eprintln!("packrun doctor: {v}");
            }
            return exit::ENVIRONMENT;
        }
    };
    if let Err(errors) = plan::check_feasible(&batch.runs, &env.topology, &batch.groups) {
        for e in errors {
            eprintln!("{}: {e}", file.display());
        }
        return exit::INVALID;
    }
    let planned = plan::simulate(&batch.runs, &env.topology, &batch.groups, args.max_parallel)
        .map(|s| std::time::Duration::from_secs_f64(s.makespan))
        .unwrap_or_default();
    reap_orphans(&env.hierarchy);

    let dir = match results_dir(&args, &batch) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("packrun run: {e}");
            return exit::INVALID;
        }
    };
    // Inside a Slurm step: the runs' cgroups go below the step's.
    let cgroup_base = match slurm::cgroup_base(&env.hierarchy) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("packrun run: {e}");
            return exit::ENVIRONMENT;
        }
    };
    let result = batch_in(&dir, &args, &batch, &env, planned, &cgroup_base);
    slurm::remove_step_base(&env.hierarchy, &cgroup_base);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("packrun run: {e}");
            exit::ENVIRONMENT
        }
    }
}

/// Runs the batch into `dir` and writes every output file.
fn batch_in(
    dir: &Path,
    args: &RunArgs,
    batch: &spec::Batch,
    env: &Environment,
    planned: std::time::Duration,
    cgroup_base: &str,
) -> Result<i32, String> {
    let e = |e: &dyn std::error::Error| fsx::chain(e);
    let params = param_names(batch);
    let runs_csv = dir.join("runs.csv");
    let done = results::read_done(&runs_csv).map_err(|x| e(&x))?;
    let mut csv = results::RunsCsv::open(&runs_csv, &params, &env.host).map_err(|x| e(&x))?;
    let owner = run::cpulock::Owner::current();
    let ids = container::ids::IdSource::host(container::ids::machine_slots());
    let mut manifest = results::Manifest {
        packrun_version: env!("CARGO_PKG_VERSION").into(),
        name: batch.name.clone(),
        job_file: batch.file.display().to_string(),
        job_file_sha256: results::sha256_hex(batch.source.as_bytes()),
        machine: machine::read(Path::new("/")),
        cgroup_version: match env.hierarchy {
            cgroup::Hierarchy::V1 { .. } => "1".into(),
            cgroup::Hierarchy::V2 { .. } => "2".into(),
        },
        topology: env.topology.clone(),
        start: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        end: None,
        runner_pid: owner.pid as u32,
        runs: batch.runs.len(),
        userns: results::UserNsManifest {
            ids: ids.describe(),
            host_ids_jobs: batch
                .jobs
                .iter()
                .filter(|j| {
                    batch
                        .runs
                        .iter()
                        .any(|r| r.job == j.name && r.container.userns == spec::UserNs::Host)
                })
                .map(|j| j.name.clone())
                .collect(),
        },
    };
    fsx::write(dir.join("job.yaml"), &batch.source).map_err(|x| e(&x))?;
    results::write_manifest(&dir.join("manifest.json"), &manifest).map_err(|x| e(&x))?;

    let opts = run::Options {
        hierarchy: env.hierarchy.clone(),
        // Inside a Slurm step: child cgroups of the step's own.
        cgroup_base: cgroup_base.into(),
        batch_id: run::journal::batch_id(owner),
        output: run::Output::Logs(dir.to_path_buf()),
        scratch: dir.join("scratch"),
        max_parallel: args.max_parallel,
        cpu_lock: Some(run::cpulock::default_path()),
        single: false,
        ids,
    };
    let mut progress = progress::Progress::new(batch.runs.len(), done.len(), planned, args.quiet);
    let mut lost_rows = 0;
    let alloc = plan::Allocator::new(&env.topology, &batch.groups);
    let outcome = run::execute(&batch.runs, alloc, &opts, &done, &mut |ev| match ev {
        run::Event::Started { run, placement } => progress.started(run, placement),
        run::Event::Finished(rec) => {
            if let Err(x) = csv.append(&rec) {
                lost_rows += 1;
                eprintln!(
                    "packrun run: row of run {} not recorded: {}",
                    rec.key,
                    fsx::chain(&x)
                );
            }
            progress.finished(&rec);
        }
        run::Event::Flush => {
            if let Err(x) = csv.sync() {
                eprintln!("packrun run: {}", fsx::chain(&x));
            }
        }
    });
    // Also after an error that ended the loop early.
    if let Err(x) = csv.sync() {
        eprintln!("packrun run: {}", fsx::chain(&x));
    }
    progress.finish();
    let outcome = outcome.map_err(|x| e(&x))?;

    let rows = results::read_rows(&runs_csv).map_err(|x| e(&x))?;
    let summaries = report::summarize(&rows);
    report::write_summary(&dir.join("summary.csv"), &summaries).map_err(|x| e(&x))?;
    manifest.end = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    results::write_manifest(&dir.join("manifest.json"), &manifest).map_err(|x| e(&x))?;
    if let Err(x) = html::write_report(dir) {
        eprintln!("packrun run: report.html not written: {}", fsx::chain(&x));
    }
    eprint!("{}", report::table(&summaries));
    eprintln!("results: {}", dir.display());

    let all_ok = lost_rows == 0 && rows.iter().all(|r| r.state == results::State::Completed);
    Ok(if outcome.interrupted {
        exit::INTERRUPTED
    } else if all_ok {
        exit::OK
    } else {
        exit::RUN_FAILED
    })
}

/// `packrun report DIR`: the summary in one format on stdout, and on request
/// report.html and a joblog.
fn report_cmd(args: cli::ReportArgs) -> i32 {
    use cli::ReportFormat as F;
    let runs_csv = args.dir.join("runs.csv");
    let rows = match results::read_rows(&runs_csv) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("packrun report: {}", fsx::chain(&e));
            return exit::INVALID;
        }
    };
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
        match fsx::write(path, report::formats::joblog(&rows)).map_err(|e| fsx::chain(&e)) {
            Ok(()) => eprintln!("joblog: {}", path.display()),
            Err(e) => {
                eprintln!("packrun report: {e}");
                return exit::INVALID;
            }
        }
    }
    if args.html {
        match html::write_report(&args.dir) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => {
                eprintln!("packrun report: {}", fsx::chain(&e));
                return exit::INVALID;
            }
        }
    }
    exit::OK
}

/// Matrix parameter names of every job, first seen first: the parameter columns.
fn param_names(batch: &spec::Batch) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for j in &batch.jobs {
        for p in &j.param_names {
            if !names.contains(p) {
                names.push(p.clone());
            }
        }
    }
    names
}

/// The results folder: a new one, or the one being resumed (whose job file
/// must be unchanged unless --force).
fn results_dir(args: &RunArgs, batch: &spec::Batch) -> Result<std::path::PathBuf, String> {
    if let Some(dir) = &args.resume {
        let m = results::read_manifest(&dir.join("manifest.json")).map_err(|e| fsx::chain(&e))?;
        let sha = results::sha256_hex(batch.source.as_bytes());
        if m.job_file_sha256 != sha && !args.force {
            let old = std::fs::read_to_string(dir.join("job.yaml")).unwrap_or_default();
            return Err(format!(
                "{} changed since the batch in {} began ({}); resume with --force to run the missing runs of the new file",
                batch.file.display(),
                dir.display(),
                results::describe_change(&old, &batch.source)
            ));
        }
        return Ok(dir.clone());
    }
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => Path::new("results").join(format!(
            "{}-{}",
            batch.name,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )),
    };
    if dir.join("runs.csv").exists() {
        return Err(format!(
            "{} holds a batch already; use --resume {} to continue it",
            dir.display(),
            dir.display()
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Kills and removes the cgroups of batches whose packrun died (SIGKILL, crash).
/// Name prefix of the group of a single run (`packrun exec`), beside the
/// batches' `packrun` group.
const EXEC_PREFIX: &str = "packrun-";

fn reap_orphans(h: &cgroup::Hierarchy) {
    container::remove_stale_root_dirs();
    let batches = cgroup::list_batches(h, "packrun");
    let singles: Vec<String> = cgroup::list_batches(h, "")
        .into_iter()
        .filter_map(|n| n.strip_prefix(EXEC_PREFIX).map(String::from))
        .collect();
    let found = [("packrun", "", batches), ("", EXEC_PREFIX, singles)];
    for (base, prefix, ids) in found {
        for b in run::journal::orphans(ids.iter().map(String::as_str)) {
            match cgroup::cleanup_batch(h, base, &format!("{prefix}{b}")) {
                Ok(()) => {
                    eprintln!("packrun: removed the cgroups of batch {b}, whose packrun is gone")
                }
                Err(e) => eprintln!(
                    "packrun: cannot clean up batch {b} left by a dead packrun: {}",
                    fsx::chain(&e)
                ),
            }
        }
    }
}
