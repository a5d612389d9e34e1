//! Running a job file across a Slurm cluster: one node-local packrun per
//! node, each running its shard of the runs, results merged afterwards.
//!
//! `submit` splits the runs into N shards, writes `DIR/packrun.sbatch` and
//! `DIR/slurm.json`, and submits one job of N exclusive nodes. Each node's
//! single task (`packrun slurm task DIR`) runs `packrun run --shard I/N`
//! into `DIR/nodes/<node>/`; the batch script then runs `packrun slurm
//! merge DIR`. The job file, the results folder and the packrun binary must
//! be on a file system every node sees (as for any Slurm job).

use crate::error::Kind;
use crate::plan::shard::{split, Shard};
use crate::{fsx, jobfile, report, results};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// This node's name inside a Slurm job (SLURMD_NODENAME, which tells apart
/// several slurmd on one host), used for the `host` column and `nodes/<name>/`.
pub fn node_name() -> Option<String> {
    ["SLURMD_NODENAME", "SLURM_NODENAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// What to submit: a job file over N exclusive nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitArgs {
    pub file: PathBuf,
    /// Number of nodes; the runs are split into this many shards of about equal work.
    pub nodes: usize,
    pub partition: Option<String>,
    /// Time limit of the whole job, in sbatch's format (1:00:00, 2-0).
    pub time: Option<String>,
    pub account: Option<String>,
    /// More sbatch options, each written as an #SBATCH line.
    pub sbatch_arg: Vec<String>,
    /// Results folder (default: results/<name>-<UTC timestamp>/).
    pub out: Option<PathBuf>,
    /// Submit again only the runs missing from this folder's runs.csv (merged first).
    pub resume: Option<PathBuf>,
    /// With `resume`: accept a job file that changed since the first submission.
    pub force: bool,
}

/// What `submit` records in `DIR/slurm.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    pub job_id: String,
    pub nodes: usize,
    /// The job file, absolute.
    pub file: PathBuf,
    pub job_file_sha256: String,
    /// runs.csv whose run_keys the shards leave out (on --resume).
    pub skip: Option<PathBuf>,
    /// Runs submitted (after leaving out `skip`).
    pub runs: usize,
    pub submitted: String,
    /// Earlier submissions into the same folder (job ids).
    #[serde(default)]
    pub previous: Vec<String>,
}

/// Why a Slurm command stopped: whose fault, and the message.
pub type Failure = (Kind, String);

fn env_err(msg: String) -> Failure {
    (Kind::Environment, msg)
}

fn io<E: std::error::Error>(e: E) -> Failure {
    env_err(fsx::chain(&e))
}

/// Single-quotes `s` for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: N exclusive nodes, one task each, with `gpus` GPUs
/// per node (`--gres=gpu:N`, the most one run asks for) when the job file
/// needs any: an exclusive node comes without its GRES unless asked. An
/// `--sbatch-arg` with `--gres` or `--gpus` says it instead.
pub fn batch_script(a: &SubmitArgs, name: &str, dir: &Path, packrun: &Path, gpus: u32) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += &format!("#SBATCH --job-name=packrun-{name}\n");
    s += &format!("#SBATCH --nodes={}\n", a.nodes);
    s += "#SBATCH --ntasks-per-node=1\n#SBATCH --exclusive\n";
    s += &format!("#SBATCH --output={}\n", dir.join("slurm-%j.out").display());
    if let Some(p) = &a.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &a.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    if let Some(acc) = &a.account {
        s += &format!("#SBATCH --account={acc}\n");
    }
    let own_gres = a
        .sbatch_arg
        .iter()
        .any(|x| x.starts_with("--gres") || x.starts_with("--gpus"));
    if gpus > 0 && !own_gres {
        s += &format!("#SBATCH --gres=gpu:{gpus}\n");
    }
    for x in &a.sbatch_arg {
        s += &format!("#SBATCH {x}\n");
    }
    let (p, d) = (
        sh_quote(&packrun.display().to_string()),
        sh_quote(&dir.display().to_string()),
    );
    s += "# Written by `packrun slurm submit`. One packrun per node runs its shard\n";
    s += "# (`packrun run --shard $SLURM_NODEID/N`) into nodes/<node>/; this node,\n";
    s += "# the last to finish, then merges the nodes' rows.\n";
    s += &format!("srun --ntasks-per-node=1 --kill-on-bad-exit=0 {p} slurm task {d}\n");
    s += "code=$?\n";
    s += &format!("{p} slurm merge {d} || exit 3\n");
    s += "exit $code\n";
    s
}

/// Parses `sbatch --parsable` output: `123` or `123;cluster`.
pub fn parse_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

pub fn submit(a: &SubmitArgs) -> Result<(), Failure> {
    if a.nodes == 0 {
        return Err((Kind::Invalid, "--nodes 0: expected at least 1 node".into()));
    }
    if let Some(bad) = a
        .sbatch_arg
        .iter()
        .find(|x| !x.starts_with('-') || x.contains('\n'))
    {
        return Err((
            Kind::Invalid,
            format!("invalid --sbatch-arg `{bad}`: expected one sbatch option like --mem=0 or --qos=long"),
        ));
    }
    let batch = jobfile::load(&a.file).map_err(|e| (Kind::Invalid, e.to_string()))?;
    let file = std::fs::canonicalize(&a.file)
        .map_err(|e| env_err(format!("{}: {e}", a.file.display())))?;
    let sha = results::sha256_hex(batch.source.as_bytes());

    let (dir, skip, previous) = match &a.resume {
        Some(dir) => resumed(a, dir, &sha)?,
        None => fresh_dir(a, &batch.name)?,
    };
    let dir =
        std::fs::canonicalize(&dir).map_err(|e| env_err(format!("{}: {e}", dir.display())))?;
    let done: HashSet<String> = match &skip {
        Some(p) => results::read_done(p).map_err(io)?.into_keys().collect(),
        None => HashSet::new(),
    };
    let todo = crate::plan::shard::skip_done(batch.runs.clone(), &done);
    if todo.is_empty() {
        println!(
            "every run of {} is in {} already: nothing to submit",
            a.file.display(),
            dir.join("runs.csv").display()
        );
        return Ok(());
    }
    let shards = split(&todo, a.nodes);
    let packrun = std::env::current_exe()
        .map_err(|e| env_err(format!("cannot find the packrun binary: {e}")))?;
    let script = dir.join("packrun.sbatch");
    let gpus = todo.jobs().map(|j| j.max_gpus()).max().unwrap_or(0);
    fsx::write(&script, batch_script(a, &batch.name, &dir, &packrun, gpus)).map_err(io)?;

    let job_id = sbatch(&script)?;
    let sub = Submission {
        job_id: job_id.clone(),
        nodes: a.nodes,
        file,
        job_file_sha256: sha,
        skip,
        runs: todo.len(),
        submitted: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        previous,
    };
    let json = serde_json::to_string_pretty(&sub).expect("submission serializes") + "\n";
    fsx::write(dir.join("slurm.json"), json).map_err(io)?;
    let sizes: Vec<String> = shards.iter().map(|s| s.len().to_string()).collect();
    println!(
        "submitted job {job_id}: {} runs on {} nodes (shards of {} runs); results in {}",
        todo.len(),
        a.nodes,
        sizes.join(", "),
        dir.display()
    );
    Ok(())
}

/// A submitted batch to continue: its folder, merged so far; the runs
/// recorded there (a copy, skip.csv), and the jobs submitted before.
type Resumed = (PathBuf, Option<PathBuf>, Vec<String>);

fn resumed(a: &SubmitArgs, dir: &Path, sha: &str) -> Result<Resumed, Failure> {
    let old = read_submission(dir)?;
    if old.job_file_sha256 != *sha && !a.force {
        return Err((
            Kind::Invalid,
            format!(
                "{} changed since the batch in {} was submitted; resume with --force to run the missing runs of the new file",
                a.file.display(),
                dir.display()
            ),
        ));
    }
    merge(dir)?;
    let skip = dir.join("skip.csv");
    let merged = dir.join("runs.csv");
    if merged.exists() {
        std::fs::copy(&merged, &skip).map_err(|e| {
            env_err(format!(
                "copy {} to {}: {e}",
                merged.display(),
                skip.display()
            ))
        })?;
    }
    let mut previous = old.previous;
    previous.push(old.job_id);
    Ok((dir.to_path_buf(), merged.exists().then_some(skip), previous))
}

/// A new results folder for a batch, refused if it holds a submitted one.
fn fresh_dir(a: &SubmitArgs, name: &str) -> Result<Resumed, Failure> {
    let dir = a.out.clone().unwrap_or_else(|| results::default_dir(name));
    if dir.join("slurm.json").exists() {
        return Err((
            Kind::Invalid,
            format!(
                "{} holds a submitted batch already; use --resume {} to continue it",
                dir.display(),
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| env_err(format!("cannot create {}: {e}", dir.display())))?;
    Ok((dir, None, Vec::new()))
}

/// Submits the batch script; the job id sbatch printed.
fn sbatch(script: &Path) -> Result<String, Failure> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| {
            env_err(format!(
                "cannot run sbatch: {e}; is Slurm's client installed and on PATH?"
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(env_err(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_job_id(&stdout).ok_or_else(|| {
        env_err(format!(
            "sbatch printed `{}`, expected a job id",
            stdout.trim()
        ))
    })
}

fn read_submission(dir: &Path) -> Result<Submission, Failure> {
    let path = dir.join("slurm.json");
    let text = fsx::read_to_string(&path).map_err(io)?;
    serde_json::from_str(&text).map_err(|e| {
        (
            Kind::Invalid,
            format!(
                "{}: {e}; expected what `packrun slurm submit` writes",
                path.display()
            ),
        )
    })
}

/// Node result folders: `DIR/nodes/<node>` holding a runs.csv, by name.
fn node_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    let nodes = dir.join("nodes");
    let entries = match std::fs::read_dir(&nodes) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(env_err(format!("cannot read {}: {e}", nodes.display()))),
    };
    let mut v: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().join("runs.csv").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// The node step of a Slurm job: which shard of which job file this node
/// runs, and into which folder.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStep {
    pub node: String,
    pub file: PathBuf,
    pub shard: Shard,
    /// runs.csv whose run_keys the shards leave out.
    pub skip: Option<PathBuf>,
    /// `DIR/nodes/<node>/`.
    pub out: PathBuf,
    /// The folder holds this node's batch already (the job was requeued):
    /// resume it.
    pub again: bool,
}

/// The step of this node (SLURM_NODEID of SLURM_NNODES) in the job
/// `packrun slurm submit` made for `dir`.
pub fn node_step(dir: &Path) -> Result<NodeStep, Failure> {
    let sub = read_submission(dir)?;
    let var = |v: &str| {
        std::env::var(v).map_err(|_| {
            env_err(format!(
                "{v} is not set: `packrun slurm task` runs inside the job `packrun slurm submit` made"
            ))
        })
    };
    let index: usize = var("SLURM_NODEID")?
        .parse()
        .map_err(|_| env_err("SLURM_NODEID is not a number".into()))?;
    if let Ok(n) = var("SLURM_NNODES") {
        if n.parse::<usize>().ok() != Some(sub.nodes) {
            return Err(env_err(format!(
                "the job has {n} nodes, but {} were asked for",
                sub.nodes
            )));
        }
    }
    let shard = Shard {
        index,
        count: sub.nodes,
    };
    let node = node_name()
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| format!("node{index}"));
    let out = dir.join("nodes").join(&node);
    Ok(NodeStep {
        node,
        file: sub.file,
        shard,
        skip: sub.skip,
        again: out.join("manifest.json").exists(),
        out,
    })
}

/// Merges `DIR/nodes/*/runs.csv` into `DIR/runs.csv` (each run_key once:
/// the first node in name order that has it), then writes summary.csv
/// and report.html.
/// Returns the number of rows.
pub fn merge(dir: &Path) -> Result<usize, Failure> {
    let nodes = node_dirs(dir)?;
    let mut first: Option<(PathBuf, Vec<String>, Vec<String>)> = None;
    let mut seen = HashSet::new();
    let mut rows: Vec<results::Row> = Vec::new();
    for (_, nd) in &nodes {
        let path = nd.join("runs.csv");
        let h = results::read_header(&path).map_err(io)?;
        match &first {
            Some((first, fh, _)) if fh != &h => {
                return Err(env_err(format!(
                    "{} has columns [{}], but {} has [{}]: were they run from the same job file?",
                    path.display(),
                    h.join(","),
                    first.display(),
                    fh.join(",")
                )))
            }
            _ => {}
        }
        // A node may be writing: the reader takes whole lines only.
        let runs = results::read_runs(&path).map_err(io)?;
        if first.is_none() {
            first = Some((path, h, runs.params));
        }
        rows.extend(runs.rows.into_iter().filter(|r| seen.insert(r.key.clone())));
    }
    let Some((_, _, params)) = first else {
        return Ok(0);
    };
    // Start time order, as a local batch appends them.
    rows.sort_by_key(|r| r.start_time);
    results::write_runs(&dir.join("runs.csv"), &params, &rows).map_err(io)?;
    report::write_summary(&dir.join("summary.csv"), &report::summarize(&rows)).map_err(io)?;
    // The nodes' manifests stay in nodes/<node>/; the page is made without one.
    crate::html::write_report(dir).map_err(io)?;
    Ok(rows.len())
}

pub fn status(dir: &Path) -> Result<(), Failure> {
    let sub = read_submission(dir)?;
    let out = Command::new("squeue")
        .args(["-h", "-j", &sub.job_id, "-o", "%T %M %N"])
        .output()
        .map_err(|e| env_err(format!("cannot run squeue: {e}")))?;
    let q = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !q.is_empty() {
        println!("job {}: {q}", sub.job_id);
    } else {
        println!("job {}: no longer in the queue", sub.job_id);
    }
    let mut total = 0;
    for (node, nd) in node_dirs(dir)? {
        let done = results::read_done(&nd.join("runs.csv")).map_err(io)?;
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for s in done.values() {
            *states.entry(s.as_str()).or_default() += 1;
        }
        let parts: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!("{node}: {} rows ({})", done.len(), parts.join(", "));
        total += done.len();
    }
    println!("{total} of {} runs recorded", sub.runs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_job_id_is_read_from_parsable_output() {
        assert_eq!(parse_job_id("123\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("45;cluster\n").as_deref(), Some("45"));
        assert_eq!(parse_job_id("Submitted batch job 3"), None);
    }

    #[test]
    fn batch_script_asks_for_exclusive_nodes_and_quotes_paths() {
        let a = SubmitArgs {
            file: "j.yaml".into(),
            nodes: 3,
            partition: Some("fat".into()),
            time: Some("1:00:00".into()),
            account: None,
            sbatch_arg: vec!["--qos=long".into()],
            out: None,
            resume: None,
            force: false,
        };
        let s = batch_script(
            &a,
            "sweep",
            Path::new("/shared/it's"),
            Path::new("/opt/packrun"),
            0,
        );
        assert!(!s.contains("--gres"), "{s}");
        for want in [
            "#SBATCH --nodes=3\n",
            "#SBATCH --exclusive\n",
            "#SBATCH --partition=fat\n",
            "#SBATCH --time=1:00:00\n",
            "#SBATCH --qos=long\n",
            "srun --ntasks-per-node=1 --kill-on-bad-exit=0 '/opt/packrun' slurm task '/shared/it'\\''s'\n",
            "'/opt/packrun' slurm merge '/shared/it'\\''s'",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn a_job_file_with_gpus_asks_each_node_for_the_most_one_run_needs() {
        let mut a = SubmitArgs {
            file: "j.yaml".into(),
            nodes: 2,
            partition: None,
            time: None,
            account: None,
            sbatch_arg: Vec::new(),
            out: None,
            resume: None,
            force: false,
        };
        let s = batch_script(&a, "t", Path::new("/r"), Path::new("/p"), 2);
        assert!(
            s.contains(
                "#SBATCH --exclusive\n#SBATCH --output=/r/slurm-%j.out\n#SBATCH --gres=gpu:2\n"
            ),
            "{s}"
        );
        a.sbatch_arg = vec!["--gres=gpu:a100:4".into()];
        let s = batch_script(&a, "t", Path::new("/r"), Path::new("/p"), 2);
        assert!(
            !s.contains("--gres=gpu:2") && s.contains("#SBATCH --gres=gpu:a100:4\n"),
            "{s}"
        );
    }

    #[test]
    fn merge_keeps_each_run_key_once_and_checks_columns() {
        let dir = tempfile::tempdir().unwrap();
        let head = crate::results::header(&["i".into()], Default::default()).join(",");
        let ncols = head.split(',').count();
        let row = |key: &str, host: &str, start: &str| {
            let h: Vec<&str> = head.split(',').collect();
            h.iter()
                .map(|c| match *c {
                    "run_key" => key.to_string(),
                    "job" => "j".into(),
                    "host" => host.into(),
                    "rep" => "1".into(),
                    "warmup" => "false".into(),
                    "start_time" | "end_time" => start.into(),
                    "state" => "COMPLETED".into(),
                    "exit_code" => "0".into(),
                    "parameter_i" => "1".into(),
                    c if c.ends_with("_s")
                        || c.ends_with("_bytes")
                        || c.ends_with("peak")
                        || c == "oom_kills" =>
                    {
                        "0".into()
                    }
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        for (n, rows) in [
            (
                "n1",
                vec![
                    row("k1", "n1", "2024-01-01T00:00:02Z"),
                    row("k2", "n1", "2024-01-01T00:00:03Z"),
                ],
            ),
            (
                "n2",
                vec![
                    row("k3", "n2", "2024-01-01T00:00:01Z"),
                    row("k2", "n2", "2024-01-01T00:00:04Z"),
                ],
            ),
        ] {
            let d = dir.path().join("nodes").join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("runs.csv"), format!("{head}\n{}\n", rows.join("\n"))).unwrap();
        }
        assert_eq!(merge(dir.path()).unwrap(), 3);
        let text = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(keys, ["k3", "k1", "k2"]);
        assert!(text.lines().all(|l| l.split(',').count() == ncols));
        assert!(text.contains(",n1,") && text.contains(",n2,"));
        assert!(dir.path().join("summary.csv").exists());
        assert!(dir.path().join("report.html").exists());

        std::fs::write(dir.path().join("nodes/n2/runs.csv"), "run_key,job\nk9,j\n").unwrap();
        let (_, e) = merge(dir.path()).unwrap_err();
        assert!(
            e.contains("nodes/n2/runs.csv") && e.contains("same job file"),
            "{e}"
        );
    }
}
