//! `packrun exec`'s flags as a job: built as the raw job a job file would
//! hold and validated by the same rules, so sizes, durations and limits
//! mean the same on the command line as in a file (`--time-limit 30` is 30
//! seconds; `--memory 0` is refused).

use super::{parse_with_base, Run, Template};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The flags of `packrun exec`, as typed.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub cpus: Option<u32>,
    pub cpuset: Option<String>,
    pub mems: Option<String>,
    pub memory: Option<String>,
    pub pids: Option<u64>,
    /// The disk budget (`resources.disk`) and file budget (`resources.files`).
    pub disk: Option<String>,
    pub files: Option<u64>,
    /// Whole GPUs of its own (`resources.gpus`).
    pub gpus: Option<u32>,
    /// Writable dirs (`container.writable`), kept below the scratch folder.
    pub writable: Vec<PathBuf>,
    pub time_limit: Option<String>,
    pub cpu_time_limit: Option<String>,
    pub network_host: bool,
    /// `--aio`: `container.aio`.
    pub aio: bool,
    /// `--counters`: `counters`.
    pub counters: Vec<String>,
    pub rootfs: String,
    /// `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`.
    pub binds: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub hostname: String,
    /// The command and its arguments, taken as they are (no placeholders).
    pub command: Vec<String>,
    /// The environment, as it is.
    pub env: Vec<(String, String)>,
}

/// Which flag a job file path stands for.
const FLAGS: [(&str, &str); 17] = [
    ("counters", "--counters"),
    ("resources.cpuset", "--cpuset"),
    ("resources.cpus", "--cpus"),
    ("resources.numa", "--mems"),
    ("resources.memory", "--memory"),
    ("resources.pids", "--pids"),
    ("resources.disk", "--disk"),
    ("resources.files", "--files"),
    ("resources.gpus", "--gpus"),
    ("container.writable", "--writable"),
    ("cpu_time_limit", "--cpu-time-limit"),
    ("time_limit", "--time-limit"),
    ("container.rootfs", "--rootfs"),
    ("container.mounts", "--bind"),
    ("container.hostname", "--hostname"),
    ("container.network", "--network"),
    ("workdir", "--workdir"),
];

/// The one run `packrun exec` describes; relative paths are from `base`
/// (the current directory). An error names the flag, the value and what
/// was expected.
pub fn exec_run(req: &ExecRequest, base: &Path) -> Result<Run, String> {
    let mut resources = Map::new();
    if let Some(c) = &req.cpuset {
        resources.insert("cpuset".into(), json!(c));
    } else {
        resources.insert("cpus".into(), json!(req.cpus.unwrap_or(1)));
    }
    if let Some(m) = &req.mems {
        resources.insert("numa".into(), json!({"nodes": m, "policy": "bind"}));
    }
    if let Some(m) = &req.memory {
        resources.insert("memory".into(), json!(m));
    }
    if let Some(p) = req.pids {
        resources.insert("pids".into(), json!(p));
    }
    if let Some(d) = &req.disk {
        resources.insert("disk".into(), json!(d));
    }
    if let Some(f) = req.files {
        resources.insert("files".into(), json!(f));
    }
    if let Some(g) = req.gpus {
        resources.insert("gpus".into(), json!(g));
    }
    let mut mounts = Vec::new();
    for b in &req.binds {
        let parts: Vec<&str> = b.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [s, d] | [s, d, "rw"] => (s, d, false),
            [s, d, "ro"] => (s, d, true),
            _ => {
                return Err(format!(
                    "invalid --bind `{b}`: expected SRC:DST or SRC:DST:ro"
                ))
            }
        };
        mounts.push(json!({"source": source, "target": target, "read_only": read_only}));
    }
    let mut job = Map::new();
    // The command is set as given below: arguments are no templates.
    job.insert("command".into(), json!(["exec"]));
    job.insert("resources".into(), Value::Object(resources));
    for (key, value) in [
        ("time_limit", &req.time_limit),
        ("cpu_time_limit", &req.cpu_time_limit),
    ] {
        if let Some(v) = value {
            job.insert(key.into(), json!(v));
        }
    }
    if let Some(w) = &req.workdir {
        job.insert("workdir".into(), json!(w));
    }
    if !req.counters.is_empty() {
        job.insert("counters".into(), json!(req.counters));
    }
    job.insert(
        "container".into(),
        json!({
            "rootfs": req.rootfs,
            "network": if req.network_host { "host" } else { "none" },
            // A hostname is a template in a job file: a literal one here.
            "hostname": req.hostname.replace('{', "{{").replace('}', "}}"),
            "mounts": mounts,
            "writable": req.writable,
            "aio": req.aio,
        }),
    );
    let file = json!({"version": 1, "name": "exec", "jobs": {"exec": Value::Object(job)}});
    let text = serde_json::to_string(&file).expect("JSON of plain values");
    let batch = parse_with_base("packrun exec", &text, base).map_err(|e| {
        e.problems
            .iter()
            .map(|p| {
                let at = p.path.strip_prefix("jobs.exec.").unwrap_or(&p.path);
                match FLAGS.iter().find(|(path, _)| at.starts_with(path)) {
                    Some((_, flag)) => format!("{flag}: {}", p.message),
                    None => p.message.clone(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if batch.runs.is_empty() {
        return Err("packrun exec: no run".into());
    }
    let mut run = batch.runs.render(batch.runs.len() - 1);
    run.command = req.command.iter().map(|a| Template::literal(a)).collect();
    run.env = req
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Template::literal(v)))
        .collect();
    run.key = format!("exec-{}", std::process::id());
    run.container.hostname = req.hostname.clone();
    // One command is estimated at its time limit (or the default).
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ExecRequest {
        ExecRequest {
            rootfs: "host".into(),
            hostname: "packrun".into(),
            command: vec!["echo".into(), "{not a placeholder}".into()],
            ..ExecRequest::default()
        }
    }

    #[test]
    fn counters_flag_chooses_counters_and_an_unknown_one_lists_the_names() {
        use crate::counters::{Chosen, Counter};
        let mut r = req();
        r.counters = vec!["page-faults".into(), "task-clock".into()];
        let run = exec_run(&r, Path::new("/")).unwrap();
        assert_eq!(
            run.counters,
            Chosen::of([Counter::TaskClock, Counter::PageFaults])
        );
        r.counters = vec!["task_clock".into()];
        let e = exec_run(&r, Path::new("/")).unwrap_err();
        assert!(
            e.starts_with("--counters: unknown counter `task_clock`: expected one of task-clock, context-switches,"),
            "{e}"
        );
    }

    #[test]
    fn flags_mean_what_the_same_keys_mean_in_a_job_file() {
        let mut r = req();
        r.time_limit = Some("30".into());
        r.memory = Some("512MiB".into());
        r.binds = vec!["data:/data:ro".into()];
        let run = exec_run(&r, Path::new("/work")).unwrap();
        assert_eq!(run.time_limit, Some(std::time::Duration::from_secs(30)));
        assert_eq!(run.resources.memory, Some(512 << 20));
        assert_eq!(run.container.mounts[0].source, Path::new("/work/data"));
        assert!(run.container.mounts[0].read_only);
        assert_eq!(run.command, ["echo", "{not a placeholder}"]);
    }

    #[test]
    fn gpus_flag_becomes_resources_gpus() {
        let mut r = req();
        r.gpus = Some(2);
        assert_eq!(exec_run(&r, Path::new("/")).unwrap().resources.gpus, 2);
        assert_eq!(exec_run(&req(), Path::new("/")).unwrap().resources.gpus, 0);
    }

    #[test]
    fn disk_files_and_writable_flags_become_the_runs_budgets_and_bad_ones_name_the_flag() {
        let mut r = req();
        r.disk = Some("64MiB".into());
        r.files = Some(100);
        r.writable = vec![PathBuf::from("/out")];
        let run = exec_run(&r, Path::new("/")).unwrap();
        assert_eq!(run.resources.disk, Some(64 << 20));
        assert_eq!(run.resources.files, Some(100));
        assert_eq!(run.container.writable, [PathBuf::from("/out")]);
        let mut r = req();
        r.disk = Some("lots".into());
        r.files = Some(0);
        r.writable = vec![PathBuf::from("out")];
        let e = exec_run(&r, Path::new("/")).unwrap_err();
        assert!(e.contains("--disk: invalid size `lots`"), "{e}");
        assert!(e.contains("--files: files `0` must be at least 1"), "{e}");
        assert!(
            e.contains("--writable: relative writable path `out`"),
            "{e}"
        );
    }

    #[test]
    fn zero_sizes_and_durations_are_refused_naming_the_flag() {
        let mut r = req();
        r.memory = Some("0".into());
        r.time_limit = Some("0s".into());
        let e = exec_run(&r, Path::new("/")).unwrap_err();
        assert!(e.contains("--memory: ") && e.contains("zero"), "{e}");
        assert!(e.contains("--time-limit: ") && e.contains("zero"), "{e}");
        let mut r = req();
        r.binds = vec!["a".into()];
        assert!(exec_run(&r, Path::new("/"))
            .unwrap_err()
            .contains("invalid --bind `a`"));
        let mut r = req();
        r.cpus = Some(0);
        assert!(exec_run(&r, Path::new("/"))
            .unwrap_err()
            .starts_with("--cpus: "));
    }
}
