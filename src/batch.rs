//! The flow of one batch: load → expand → check feasibility → results
//! folder → run loop → report. Called by `packrun run` and by the node
//! step of a Slurm job, with the same plain request.

use crate::error::{exit, Error};
use crate::plan::shard::{keep_shard, Shard};
use crate::{cgroup, container, doctor, fsx, html, machine, plan, progress, report};
use crate::{jobfile, results, slurm, topology};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod events;
mod exec;
pub use exec::{exec, Exec};

/// What to run and where its results go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub file: PathBuf,
    /// A new results folder (default: results/<name>-<UTC timestamp>/).
    pub out: Option<PathBuf>,
    /// Continue the batch in this folder instead.
    pub resume: Option<PathBuf>,
    /// With `resume`: accept a job file that changed since the batch began.
    pub force: bool,
    pub max_parallel: Option<usize>,
    /// Refuse a job file that expands to more runs (`--max-runs`; default
    /// jobfile::DEFAULT_MAX_RUNS).
    pub max_runs: Option<u64>,
    /// `--order` and `--seed` (see jobfile::Batch::arrange).
    pub order: Option<jobfile::Order>,
    pub seed: Option<u64>,
    /// No progress bars: one line per finished run.
    pub quiet: bool,
    /// Only this shard of the runs, as `packrun slurm submit` split them.
    pub shard: Option<Shard>,
    /// With `shard`: leave out the runs in this runs.csv before splitting.
    pub skip_runs: Option<PathBuf>,
    /// The image cache (default: image::default_cache).
    pub cache: Option<PathBuf>,
}

/// The most runs whose batch writes report.html when it ends: the page
/// draws every run (20,000 runs make a page of about 7 MB).
const HTML_MAX_RUNS: usize = 20_000;

/// Runs one batch; Ok with 0 when every run completed, 1 when some did
/// not, 130 when interrupted.
pub fn run(req: &Request) -> Result<ExitCode, Error> {
    let max_runs = req.max_runs.unwrap_or(jobfile::DEFAULT_MAX_RUNS);
    let mut batch = jobfile::load_limited(&req.file, max_runs)?;
    if let Some(shard) = req.shard {
        let skip = match &req.skip_runs {
            Some(csv) => results::read_done(csv)
                .map_err(|e| invalid(&e))?
                .into_keys()
                .collect(),
            None => Default::default(),
        };
        batch.runs = keep_shard(std::mem::take(&mut batch.runs), shard, &skip);
    }
    // After the shard is taken (shards are split in file order). A resumed
    // batch keeps the order (and seed) it began with.
    let began = req
        .resume
        .as_ref()
        .and_then(|d| results::read_manifest(&d.join("manifest.json")).ok());
    let seed = req.seed.or(began.as_ref().and_then(|m| m.seed));
    batch.arrange(req.order, seed, crate::rng::fresh_seed());
    let env = environment(batch.runs.jobs().any(|j| j.max_gpus() > 0)).map_err(|reason| {
        Error::CannotRunHere {
            reason,
            doctor: doctor::verdict().err(),
        }
    })?;
    plan::check_feasible(&batch.runs, &env.topology, &batch.groups).map_err(|problems| {
        Error::Infeasible {
            at: req.file.display().to_string(),
            problems,
        }
    })?;
    let _held = check_counters(&batch.runs, "run")?;
    check_networks(&batch, env.topology.cpus.len())?;
    let cache = req
        .cache
        .clone()
        .unwrap_or_else(|| crate::image::default_cache(nix::unistd::geteuid().as_raw()));
    let images = use_images(&mut batch, &cache)?;
    let planned =
        match plan::simulate_totals(&batch.runs, &env.topology, &batch.groups, req.max_parallel) {
            Ok(s) => Duration::from_secs_f64(s.makespan),
            // Runs that can never fit beside the services they need: an
            // error before anything starts, as for a run that fits nowhere.
            Err(problems) if problems.iter().any(|p| p.field == "needs") => {
                return Err(Error::Infeasible {
                    at: req.file.display().to_string(),
                    problems,
                })
            }
            Err(_) => Duration::ZERO,
        };
    let dir = results_dir(req, &batch).map_err(|message| Error::Invalid {
        during: "run",
        message,
    })?;
    // Inside a Slurm step: the runs' cgroups go below the step's.
    let base = cgroup::RunsBase::make(&env.hierarchy).map_err(|e| environmental(&e))?;
    run_into(&dir, req, &batch, &env, planned, base.name(), images)
}

/// The private networks the batch's runs are on, each with how many runs
/// are on it, checked before anything starts (see `net::check_batch`).
fn check_networks(batch: &jobfile::Batch, cpus: usize) -> Result<(), Error> {
    let mut nets: Vec<(std::sync::Arc<jobfile::PrivateNet>, usize)> = Vec::new();
    for r in batch.runs.iter() {
        if let Some(n) = r.container().network.private() {
            match nets.iter_mut().find(|(m, _)| m.name == n.name) {
                Some((_, count)) => *count += 1,
                None => nets.push((n.clone(), 1)),
            }
        }
    }
    // Without root, packrun makes and links the networks' namespaces as
    // the owner of a user namespace of its own: entered here, while it is
    // still one thread.
    let own_userns = match nets.is_empty() || nix::unistd::geteuid().is_root() {
        true => Ok(false),
        false => crate::container::enter_user_namespace().map(|()| true),
    };
    crate::net::check_batch(&nets, cpus, own_userns).map_err(|message| Error::Invalid {
        during: "run",
        message,
    })
}

/// Unpacks (or finds in the cache) every image a job runs in, once, and
/// makes its tree each such run's root, its config filling what the job
/// leaves out: its Env under the job's `env`, WorkingDir unless `workdir`,
/// Entrypoint and Cmd when the job gives neither `command` nor `shell`,
/// User unless `container.user`. Returns what the manifest records.
fn use_images(batch: &mut jobfile::Batch, cache: &Path) -> Result<Vec<results::ImageUse>, Error> {
    let mut unpacked: Vec<(String, crate::image::Image)> = Vec::new();
    let mut uses: Vec<results::ImageUse> = Vec::new();
    for job in batch.runs.jobs_mut() {
        let Some(source) = job.base().container.image.clone() else {
            continue;
        };
        let name_of_job = job.base().job.clone();
        let name = source.to_string();
        let at = match unpacked.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                let image = crate::image::unpack(&source, cache).map_err(|e| Error::Invalid {
                    during: "run",
                    message: format!("job `{name_of_job}`: image {name}: {}", fsx::chain(&e)),
                })?;
                unpacked.push((name.clone(), image));
                unpacked.len() - 1
            }
        };
        let image = &unpacked[at].1;
        if !uses.iter().any(|u| u.job == name_of_job) {
            uses.push(results::ImageUse {
                job: name_of_job.clone(),
                source: name.clone(),
                digest: image.digest.clone(),
                platform: image.platform.clone(),
            });
        }
        apply_image(job, image).map_err(|message| Error::Invalid {
            during: "run",
            message: format!("job `{name_of_job}`: image {name}: {message}"),
        })?;
    }
    Ok(uses)
}

/// A job's runs in `image` (see `use_images`).
fn apply_image(job: &mut jobfile::JobRuns, image: &crate::image::Image) -> Result<(), String> {
    use jobfile::Template;
    let cfg = &image.config;
    if !job.has_workdir() {
        if let Some(w) = cfg.working_dir.as_ref().filter(|w| !w.is_empty()) {
            job.set_workdir(PathBuf::from(w));
        }
    }
    let run = job.base_mut();
    run.container.rootfs = jobfile::Rootfs::Dir(image.rootfs.clone());
    let mut env: Vec<(String, Template)> = cfg
        .env
        .iter()
        .filter(|(k, _)| !run.env.iter().any(|(j, _)| j == k))
        .map(|(k, v)| (k.clone(), Template::literal(v)))
        .collect();
    env.append(&mut run.env);
    run.env = env;
    if run.command.is_empty() {
        run.command = cfg
            .entrypoint
            .iter()
            .chain(&cfg.cmd)
            .map(|a| Template::literal(a))
            .collect();
        if run.command.is_empty() {
            return Err(
                "it has no Entrypoint or Cmd, and the job gives no command or shell".into(),
            );
        }
    }
    if run.container.user.is_none() {
        if let Some(user) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
            run.container.user = Some(image_user(&image.rootfs, user)?);
        }
    }
    Ok(())
}

/// An image's `User` (`uid`, `uid:gid`, `name` or `name:group`) as ids,
/// names looked up in the image's own /etc/passwd and /etc/group.
fn image_user(root: &Path, user: &str) -> Result<(u32, u32), String> {
    let lookup = |file: &str, name: &str, field: usize| -> Option<u32> {
        std::fs::read_to_string(root.join(file))
            .ok()?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| f.get(field)?.parse().ok())
                    .flatten()
            })
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u
        .parse()
        .ok()
        .or_else(|| lookup("etc/passwd", u, 2))
        .ok_or_else(|| format!("User `{user}`: no user `{u}` in the image's /etc/passwd"))?;
    let gid = match g {
        Some(g) => g
            .parse()
            .ok()
            .or_else(|| lookup("etc/group", g, 2))
            .ok_or_else(|| format!("User `{user}`: no group `{g}` in the image's /etc/group"))?,
        // Without a group: the user's own, as docker takes it.
        None => lookup("etc/passwd", u, 3)
            .or_else(|| {
                std::fs::read_to_string(root.join("etc/passwd"))
                    .ok()?
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.get(2)?.parse::<u32>().ok()? == uid)
                            .then(|| f.get(3)?.parse().ok())
                            .flatten()
                    })
            })
            // Not in the image's passwd: group 0, as runc takes it.
            .unwrap_or(0),
    };
    Ok((uid, gid))
}

fn invalid(e: &dyn std::error::Error) -> Error {
    Error::Invalid {
        during: "run",
        message: fsx::chain(e),
    }
}

fn environmental(e: &dyn std::error::Error) -> Error {
    Error::Environment {
        during: "run",
        message: fsx::chain(e),
    }
}

/// Runs the batch into `dir` and writes every output file.
fn run_into(
    dir: &Path,
    req: &Request,
    batch: &jobfile::Batch,
    env: &Environment,
    planned: Duration,
    cgroup_base: &str,
    images: Vec<results::ImageUse>,
) -> Result<ExitCode, Error> {
    let e = |e: &dyn std::error::Error| environmental(e);
    let params = param_names(batch);
    let runs_csv = dir.join("runs.csv");
    let done = results::read_done(&runs_csv).map_err(|x| e(&x))?;
    let counters = batch.runs.counters();
    let mut csv =
        results::RunsCsv::open(&runs_csv, &params, counters, &env.host).map_err(|x| e(&x))?;
    let owner = crate::run::cpulock::Owner::current();
    let ids = container::ids::IdSource::host(container::ids::machine_slots());
    let mut manifest = manifest_of(batch, env, owner.pid as u32, images, &ids);
    // Before anything is written: is there room for the records, and what
    // does each run get?
    let to_run = batch.runs.len().saturating_sub(done.len());
    let disk = disk_plan(
        dir,
        batch,
        to_run,
        env.topology.cpus.len(),
        req.max_parallel,
    )?;
    let mut reserve = results::Reserve::make(dir, disk.reserve).map_err(|x| e(&x))?;
    fsx::write(dir.join("job.yaml"), &batch.source).map_err(|x| e(&x))?;
    results::write_manifest(&dir.join("manifest.json"), &manifest).map_err(|x| e(&x))?;

    let opts = crate::run::Options {
        hierarchy: env.hierarchy.clone(),
        cgroup_base: cgroup_base.into(),
        batch_id: crate::run::journal::batch_id(owner),
        output: crate::run::Output::Logs(dir.to_path_buf()),
        scratch: dir.join("scratch"),
        max_parallel: req.max_parallel,
        cpu_lock: Some(crate::run::cpulock::default_path()),
        single: false,
        ids,
        disk_default: disk.share,
        gpus: env.topology.gpus.clone(),
        gpu_root: env.gpu_root.clone(),
    };
    let mut progress = progress::Progress::new(batch.runs.len(), done.len(), planned, req.quiet);
    for line in reap_orphans(&env.hierarchy) {
        progress.note(&line);
    }
    for line in &disk.warnings {
        progress.note(line);
    }
    let alloc = plan::Allocator::new(&env.topology, &batch.groups);
    let records = events::Records {
        dir,
        counters,
        csv: &mut csv,
        reserve: &mut reserve,
    };
    let mut recorder = events::Recorder::batch(&mut progress, records);
    let outcome = crate::run::execute(&batch.runs, alloc, &opts, &done, &mut |ev| {
        recorder.event(ev)
    });
    recorder.sync();
    let (lost_rows, mut freed) = (recorder.lost_rows, recorder.freed);
    progress.finish();
    let outcome = outcome.map_err(|x| e(&x))?;

    let concluded = conclude(
        dir,
        &runs_csv,
        &mut manifest,
        &env.topology,
        &mut progress,
        &mut reserve,
        &mut freed,
    );
    drop(reserve);
    if freed > 0 {
        progress.note(&format!(
            "packrun run: the disk under {} filled up; packrun wrote its records into the {} it had kept for them",
            dir.display(),
            report::human_bytes(freed)
        ));
    }
    let all_completed = match concluded {
        Ok(c) => c,
        // The runs ran and their rows are in runs.csv as far as the disk
        // let them: not "the environment cannot run it".
        Err(Concluded::DiskFull(x)) => {
            progress.note(&format!(
                "packrun run: {} (the disk is full); `packrun report {}` writes the summary again once there is room",
                fsx::chain(&x),
                dir.display()
            ));
            return Ok(ExitCode::from(exit::RECORDS_LOST));
        }
        Err(Concluded::Other(x)) => return Err(x),
    };
    if lost_rows > 0 {
        return Ok(ExitCode::from(exit::RECORDS_LOST));
    }
    Ok(if outcome.interrupted {
        ExitCode::from(exit::INTERRUPTED)
    } else if all_completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::RUN_FAILED)
    })
}

/// Why a batch's end could not be written.
enum Concluded {
    /// summary.csv or the manifest did not fit on the disk, reserve and all.
    DiskFull(fsx::PathError),
    Other(Error),
}

/// The manifest of a batch as it starts (its end is written at the end).
fn manifest_of(
    batch: &jobfile::Batch,
    env: &Environment,
    runner_pid: u32,
    images: Vec<results::ImageUse>,
    ids: &container::ids::IdSource,
) -> results::Manifest {
    results::Manifest {
        packrun_version: env!("CARGO_PKG_VERSION").into(),
        name: batch.name.clone(),
        job_file: batch.file.display().to_string(),
        job_file_sha256: results::sha256_hex(batch.source.as_bytes()),
        machine: machine::read(Path::new("/")),
        cgroup_version: env.hierarchy.version().to_string(),
        topology: env.topology.clone(),
        start: now(),
        end: None,
        runner_pid,
        runs: batch.runs.len(),
        order: batch.order,
        seed: batch.seed,
        images,
        smt_shared_runs: Vec::new(),
        userns: results::UserNsManifest {
            ids: ids.describe(),
            host_ids_jobs: batch
                .jobs
                .iter()
                .filter(|j| {
                    batch.runs.jobs().any(|r| {
                        r.base().job == j.name && r.base().container.userns == jobfile::UserNs::Host
                    })
                })
                .map(|j| j.name.clone())
                .collect(),
        },
    }
}

/// The end of a batch: summary.csv, the manifest's end and SMT sharing,
/// report.html (up to HTML_MAX_RUNS runs), the summary table on screen;
/// what does not fit on a full disk goes into the reserve.
/// Returns whether every run completed.
fn conclude(
    dir: &Path,
    runs_csv: &Path,
    manifest: &mut results::Manifest,
    topology: &crate::topology::Topology,
    progress: &mut progress::Progress,
    reserve: &mut results::Reserve,
    freed: &mut u64,
) -> Result<bool, Concluded> {
    let e = |e: &dyn std::error::Error| Concluded::Other(environmental(e));
    let written = |x: fsx::PathError| match results::disk_full(&x) {
        true => Concluded::DiskFull(x),
        false => Concluded::Other(environmental(&x)),
    };
    let rows = results::read_rows_brief(runs_csv).map_err(|x| e(&x))?;
    let summaries = report::summarize(&rows);
    let summary = dir.join("summary.csv");
    reserve
        .write(|| report::write_summary(&summary, &summaries), &mut |n| {
            *freed += n
        })
        .map_err(written)?;
    manifest.end = Some(now());
    manifest.smt_shared_runs = report::smt_shared(&rows, topology);
    let path = dir.join("manifest.json");
    reserve
        .write(|| results::write_manifest(&path, manifest), &mut |n| {
            *freed += n
        })
        .map_err(written)?;
    let table = report::table(&summaries);
    let (count, all_completed) = (
        rows.len(),
        rows.iter().all(|r| r.state == results::State::Completed),
    );
    // The page reads the rows itself: these go first.
    drop(summaries);
    drop(rows);
    if count > HTML_MAX_RUNS {
        progress.note(&format!(
            "report.html not written for {count} runs (a page draws every run; more than {HTML_MAX_RUNS} make it too large to open): `packrun report --html {}` writes it",
            dir.display()
        ));
    } else if let Err(x) = html::write_report(dir) {
        progress.note(&format!(
            "packrun run: report.html not written: {}",
            fsx::chain(&x)
        ));
    }
    for line in table.lines() {
        progress.note(line);
    }
    progress.note(&format!("results: {}", dir.display()));
    Ok(all_completed)
}

/// Where a batch stands on disk before it starts.
struct DiskPlan {
    /// What packrun keeps for its own records (results::reserve_for).
    reserve: u64,
    /// The default disk budget of a run (results::disk_share).
    share: Option<u64>,
    /// What the user should know before the runs start.
    warnings: Vec<String>,
}

/// Checks the free space under the results folder `dir` before a batch of
/// `to_run` runs on `cpus` CPUs starts: too little for packrun's records
/// is an error; budgets larger than what is free are warned of.
fn disk_plan(
    dir: &Path,
    batch: &jobfile::Batch,
    to_run: usize,
    cpus: usize,
    max_parallel: Option<usize>,
) -> Result<DiskPlan, Error> {
    let reserve = results::reserve_for(to_run);
    let human = report::human_bytes;
    let Some(free) = results::free_space(dir).map_err(|x| environmental(&x))? else {
        return Ok(DiskPlan {
            reserve,
            share: None,
            warnings: vec![format!(
                "packrun run: the file system under {} reports no size (ramfs?): runs get no default disk budget there",
                dir.display()
            )],
        });
    };
    // Room for the reserve and a little beside it for the runs' logs.
    if free < reserve + (1 << 20) {
        return Err(Error::Environment {
            during: "run",
            message: format!(
                "{} has {} free: packrun keeps {} there for its records (rows, summary, manifest) and needs 1 MiB more for the runs' logs; free some space or give another folder with --out",
                dir.display(),
                human(free),
                human(reserve)
            ),
        });
    }
    // At most one run a CPU goes at once.
    let slots = to_run
        .min(cpus)
        .min(max_parallel.unwrap_or(usize::MAX))
        .max(1);
    let share = results::disk_share(free, reserve, slots);
    let mut warnings = Vec::new();
    let mut told = std::collections::HashSet::new();
    for r in batch.runs.iter() {
        let Some(d) = r.resources().disk else {
            continue;
        };
        if d > free - reserve && told.insert(r.job().to_string()) {
            warnings.push(format!(
                "packrun run: job `{}` has a disk budget of {}, more than the {} free under {} (less {} kept for packrun's records): it may fill the disk, and runs beside it lose their writes there",
                r.job(),
                human(d),
                human(free),
                dir.display(),
                human(reserve)
            ));
        }
    }
    Ok(DiskPlan {
        reserve,
        share,
        warnings,
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Matrix parameter names of every job, first seen first: the parameter columns.
fn param_names(batch: &jobfile::Batch) -> Vec<String> {
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
/// must be unchanged unless `force`).
fn results_dir(req: &Request, batch: &jobfile::Batch) -> Result<PathBuf, String> {
    if let Some(dir) = &req.resume {
        let m = results::read_manifest(&dir.join("manifest.json")).map_err(|e| fsx::chain(&e))?;
        let sha = results::sha256_hex(batch.source.as_bytes());
        if m.job_file_sha256 != sha && !req.force {
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
    let dir = req
        .out
        .clone()
        .unwrap_or_else(|| results::default_dir(&batch.name));
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

/// What a real run needs from this machine.
pub struct Environment {
    /// With the GPUs when asked for (see `environment`).
    pub topology: topology::Topology,
    /// Where the GPUs' files and device nodes are: `/`, or the tree
    /// `PACKRUN_GPU_ROOT` names (a machine's sys, proc and dev, for tests).
    pub gpu_root: PathBuf,
    pub hierarchy: cgroup::Hierarchy,
    /// The `host` column: under Slurm the node's name (several slurmd may share one host).
    pub host: String,
}

/// Root may run anywhere; anybody else needs a cgroup v2 subtree delegated
/// to them (see `doctor::standing`), checked before anything is created.
///
/// The GPUs are looked for only when `gpus` (some run asks for one): the
/// other batches do not read the PCI bus.
pub fn environment(gpus: bool) -> Result<Environment, String> {
    let hierarchy = cgroup::detect_host().map_err(|e| fsx::chain(&e))?;
    if !nix::unistd::Uid::effective().is_root() {
        let command = doctor::shell_join(std::env::args());
        doctor::standing(&doctor::Facts::read(&hierarchy), &command).map_err(|r| r.to_string())?;
    }
    let mut topology = topology::read_host().map_err(|e| fsx::chain(&e))?;
    let gpu_root =
        std::env::var_os("PACKRUN_GPU_ROOT").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    if gpus {
        topology.find_gpus(&gpu_root).map_err(|e| fsx::chain(&e))?;
        // Inside a Slurm job: only the GPUs Slurm gave it.
        if let Some(list) = std::env::var("SLURM_JOB_GPUS")
            .ok()
            .filter(|_| slurm::node_name().is_some())
        {
            crate::gpus::keep_slurm_gpus(&mut topology.gpus, &list);
        }
    }
    cgroup::prepare_v2_parent(&hierarchy).map_err(|e| fsx::chain(&e))?;
    let host = slurm::node_name().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(Environment {
        topology,
        gpu_root,
        hierarchy,
        host,
    })
}

/// Refuses, before any run starts, the counters the runs chose that this
/// machine cannot count: each named, with why and the fix where there is
/// one. Else the perf events among them, held open until the batch ends
/// (see counters::Held).
pub fn check_counters(
    runs: &jobfile::Runs,
    during: &'static str,
) -> Result<crate::counters::Held, Error> {
    let powercap = Path::new(crate::counters::POWERCAP);
    let refused = match crate::counters::hold_all(runs.counters(), powercap) {
        Ok(held) => return Ok(held),
        Err(refused) => refused,
    };
    let lines: Vec<String> = refused
        .iter()
        .map(|(c, why)| format!("cannot count `{c}`: {why}"))
        .collect();
    Err(Error::Environment {
        during,
        message: lines.join("\n"),
    })
}

/// Name prefix of the group of a single run (`packrun exec`), beside the
/// batches' `packrun` group.
pub const EXEC_PREFIX: &str = "packrun-";

/// Kills and removes the cgroups of batches whose packrun died (SIGKILL,
/// crash); returns one line per batch to tell.
pub fn reap_orphans(h: &cgroup::Hierarchy) -> Vec<String> {
    container::remove_stale_root_dirs();
    let batches = cgroup::list_batches(h, "packrun");
    let singles: Vec<String> = cgroup::list_batches(h, "")
        .into_iter()
        .filter_map(|n| n.strip_prefix(EXEC_PREFIX).map(String::from))
        .collect();
    let found = [("packrun", "", batches), ("", EXEC_PREFIX, singles)];
    let mut told = Vec::new();
    for (base, prefix, ids) in found {
        for b in crate::run::journal::orphans(ids.iter().map(String::as_str)) {
            told.push(
                match cgroup::cleanup_batch(h, base, &format!("{prefix}{b}")) {
                    Ok(()) => {
                        format!("packrun: removed the cgroups of batch {b}, whose packrun is gone")
                    }
                    Err(e) => format!(
                        "packrun: cannot clean up batch {b} left by a dead packrun: {}",
                        fsx::chain(&e)
                    ),
                },
            );
        }
    }
    told
}
