//! The job file: YAML model, defaults, units, matrix expansion, validation
//! into typed `Run`s. Touches no system state; only reads the job file.

mod expand;
mod networks;
mod raw;
mod runs;
mod subnet;
pub mod types;
mod units;
mod validate;
mod yaml;

mod exec;
mod order;
pub use exec::{exec_run, ExecRequest};
pub use expand::ADDR;
use order::arrange;
pub use runs::{JobRuns, RunRef, Runs};
pub use subnet::Subnet;

/// The longest prefix a private network's subnet may have.
pub fn subnet_max_prefix() -> u8 {
    subnet::MAX_PREFIX
}
pub use types::*;

use std::path::{Path, PathBuf};

/// Every problem found in a job file, each with its location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct SpecErrors {
    pub problems: Vec<Problem>,
}

/// One problem: where (file, line:column or YAML path), what was found, what was expected.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// YAML path like `jobs.xz.resources.memory`.
    pub path: String,
    pub message: String,
}

impl SpecErrors {
    pub fn render(&self) -> String {
        self.problems
            .iter()
            .map(|p| {
                let at = match (p.line, p.column) {
                    (Some(l), Some(c)) => format!("{}:{}:{}", p.file, l, c),
                    _ => p.file.clone(),
                };
                match p.path.is_empty() {
                    true => format!("{at}: {}", p.message),
                    false => format!("{at}: {}: {}", p.path, p.message),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads, validates and expands a job file. Relative paths in it (mount
/// sources, rootfs, io device) are taken relative to its directory.
pub fn load(path: &Path) -> Result<Batch, SpecErrors> {
    load_limited(path, DEFAULT_MAX_RUNS)
}

/// The most runs a job file may expand to unless told otherwise
/// (`--max-runs`): far more than a machine runs in a day, far less than
/// what would exhaust its memory before the first run starts.
pub const DEFAULT_MAX_RUNS: u64 = 10_000_000;

/// `load` with a ceiling on the runs the file may expand to: a file that
/// asks for more is an error before anything is allocated for its runs.
pub fn load_limited(path: &Path, max_runs: u64) -> Result<Batch, SpecErrors> {
    let file = path.display().to_string();
    let text = crate::fsx::read_to_string(path).map_err(|e| SpecErrors {
        problems: vec![Problem {
            file: file.clone(),
            line: None,
            column: None,
            path: String::new(),
            message: crate::fsx::chain(&e),
        }],
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut batch = parse_limited(&file, &text, &base, max_runs)?;
    batch.file = path.to_path_buf();
    Ok(batch)
}

/// Validates and expands job file text (`file` names it in messages; its
/// directory is the base of relative paths).
pub fn parse(file: &str, text: &str) -> Result<Batch, SpecErrors> {
    let dir = Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_with_base(file, text, dir)
}

fn parse_with_base(file: &str, text: &str, base: &Path) -> Result<Batch, SpecErrors> {
    parse_limited(file, text, base, DEFAULT_MAX_RUNS)
}

/// `parse_with_base` with a ceiling on the runs the file may expand to.
fn parse_limited(file: &str, text: &str, base: &Path, max_runs: u64) -> Result<Batch, SpecErrors> {
    let problem = |path: &[yaml::Seg], at: yaml::At, message: String| {
        let loc = yaml::locate(text, path, at);
        Problem {
            file: file.to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            path: yaml::render(path),
            message,
        }
    };
    let tree = yaml::parse_tree(text).map_err(|e| SpecErrors {
        problems: vec![Problem {
            file: file.to_string(),
            line: e.line,
            column: e.column,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        }],
    })?;
    if !matches!(tree, yaml::Tree::Map(_)) {
        return Err(SpecErrors {
            problems: vec![problem(
                &[],
                yaml::At::Value,
                "expected a map with version, name and jobs at the top level".into(),
            )],
        });
    }
    let mut dups = Vec::new();
    let mut root = yaml::to_value(&tree, &mut Vec::new(), &mut dups);
    let mut problems: Vec<Problem> = dups
        .iter()
        .map(|d| {
            let key = match d.path.last() {
                Some(yaml::Seg::Key(k)) => k.clone(),
                _ => String::new(),
            };
            let what = if d.path.len() == 2 && d.path[0] == yaml::Seg::Key("jobs".into()) {
                "job name"
            } else {
                "key"
            };
            problem(
                &d.path,
                yaml::At::Key(d.occurrence),
                format!("duplicate {what} `{key}`: each key may appear only once in a map"),
            )
        })
        .collect();

    // Type errors, each at the smallest subtree; then drop those subtrees so
    // that the rest can still be checked.
    let mut pruned: Vec<Vec<yaml::Seg>> = Vec::new();
    for (path, message) in yaml::type_errors(&root) {
        let at = if message.starts_with("unknown field") {
            yaml::At::Key(0)
        } else {
            yaml::At::Value
        };
        problems.push(problem(&path, at, message));
        // Prune the nearest map entry at or above the bad node.
        let cut = path
            .iter()
            .rposition(|s| matches!(s, yaml::Seg::Key(_)))
            .map(|i| path[..=i].to_vec())
            .unwrap_or_default();
        yaml::remove(&mut root, &cut);
        pruned.push(cut);
    }
    let raw = match yaml::raw_file(&root) {
        Ok(r) => r,
        Err(e) => {
            problems.push(problem(&[], yaml::At::Value, e));
            return Err(sorted(problems));
        }
    };
    let (out, issues) = validate::validate(raw, &root, &pruned, base, max_runs);
    problems.extend(
        issues
            .into_iter()
            .map(|i| problem(&i.path, i.at, i.message)),
    );
    if !problems.is_empty() {
        return Err(sorted(problems));
    }
    Ok(Batch {
        name: out.name,
        file: PathBuf::from(file),
        source: text.to_string(),
        jobs: out.jobs,
        groups: out.groups,
        networks: out.networks,
        runs: out.runs,
        order: out.order,
        seed: out.seed,
    })
}

/// A whole validated job file, expanded into runs.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `name:` of the job file; results go to `results/<name>-<timestamp>/`.
    pub name: String,
    /// Path of the job file as given.
    pub file: PathBuf,
    /// The job file's text, byte for byte (hashed into the manifest, copied next to the results).
    pub source: String,
    /// Jobs in file order.
    pub jobs: Vec<Job>,
    /// Groups in file order.
    pub groups: Vec<Group>,
    /// Private networks (`networks:`) in file order.
    pub networks: Vec<std::sync::Arc<PrivateNet>>,
    /// Every run of every job, in submission order (file order, then matrix
    /// order, then rep; then as `order` says).
    pub runs: Runs,
    /// The order runs start in, and the seed of a random one.
    pub order: Order,
    pub seed: Option<u64>,
}

impl Batch {
    /// Puts the runs (in expansion order, as `load` gives them) in their
    /// start order: the file's `order`, or `order` when given (`--order`);
    /// a random order's seed is `seed` (`--seed`), else the file's, else
    /// `fresh`. Call once; the order and seed used are recorded in `self`.
    pub fn arrange(&mut self, order: Option<Order>, seed: Option<u64>, fresh: u64) {
        if let Some(o) = order {
            self.order = o;
        }
        let random =
            self.order == Order::Random || self.jobs.iter().any(|j| j.order == Some(Order::Random));
        let seed = seed.or(self.seed).unwrap_or(fresh);
        if random {
            self.seed = Some(seed);
        }
        arrange(&mut self.runs, &self.jobs, self.order, seed);
    }
}

/// File order: by line, then column; problems without a line last.
fn sorted(mut problems: Vec<Problem>) -> SpecErrors {
    problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
    SpecErrors { problems }
}

/// The JSON Schema (draft-07) of the job file, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<raw::RawFile>();
    let mut value = schema.to_value();
    drop_null(&mut value);
    serde_json::to_string_pretty(&value).expect("a JSON Schema serializes")
}

/// The raw structs are all `Option` so that validation sees every field, but
/// a job file never needs to write `null`: drop the null alternatives that
/// `Option` adds, so that editors flag an empty `memory:`.
fn drop_null(v: &mut serde_json::Value) {
    use serde_json::Value as J;
    let J::Object(map) = v else {
        if let J::Array(items) = v {
            items.iter_mut().for_each(drop_null);
        }
        return;
    };
    if let Some(J::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            map.insert("type".into(), only);
        }
    }
    if let Some(J::Array(alts)) = map.get_mut("anyOf") {
        alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
        if alts.len() == 1 {
            let only = alts.remove(0);
            map.remove("anyOf");
            match only {
                // Draft-07 ignores keywords next to `$ref`: keep the description outside.
                J::Object(o) if o.contains_key("$ref") => {
                    map.insert("allOf".into(), J::Array(vec![J::Object(o)]));
                }
                J::Object(o) => {
                    for (k, x) in o {
                        map.entry(k).or_insert(x);
                    }
                }
                other => {
                    map.insert("allOf".into(), J::Array(vec![other]));
                }
            }
        }
    }
    map.values_mut().for_each(drop_null);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpulist::CpuList;

    fn ok(text: &str) -> Batch {
        parse("jobs/t.yaml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse("t.yaml", text) {
            Ok(_) => panic!("expected problems"),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn jobs_join_private_networks_by_name_with_their_settings_and_chosen_subnets() {
        let b = ok("version: 1\nname: t\nnetworks:\n  lab: {rate: 100mbit, delay: 5ms, loss: '1%'}\n  own: {subnet: 10.200.0.0/24}\njobs:\n  a: {command: [x], container: {network: lab}}\n  b: {command: [x], container: {network: own}}\n  c: {command: [x], container: {network: host}}\n  d: {command: [x]}\n");
        let net = |i: usize| b.runs.get(i).container().network.clone();
        let Network::Private(lab) = net(0) else {
            panic!("{:?}", net(0))
        };
        assert_eq!(lab.name, "lab");
        assert_eq!(lab.rate, Some(100_000_000));
        assert_eq!(lab.delay, Some(std::time::Duration::from_millis(5)));
        assert_eq!(lab.loss, Some(1.0));
        // The given subnet is skipped when one is chosen.
        assert_eq!(lab.subnet.to_string(), "10.201.0.0/16");
        let Network::Private(own) = net(1) else {
            panic!()
        };
        assert_eq!(own.subnet.to_string(), "10.200.0.0/24");
        assert_eq!((net(2), net(3)), (Network::Host, Network::None));
        assert_eq!(b.networks.len(), 2);
    }

    #[test]
    fn bad_networks_are_all_reported_with_their_lines() {
        let text = "version: 1\nname: t\nnetworks:\n  host: {}\n  a: {subnet: 10.1.0.0/16, rate: fast}\n  b: {subnet: 10.1.2.0/24, loss: 200}\njobs:\n  j: {command: [x], container: {network: lab}}\n";
        let got: Vec<(Option<usize>, String, String)> = problems(text)
            .into_iter()
            .map(|p| (p.line, p.path, p.message))
            .collect();
        let want = [
            (4, "networks.host", "network name `host` is reserved"),
            (
                5,
                "networks.a.rate",
                "invalid rate `fast`: expected a rate like 100mbit",
            ),
            (
                6,
                "networks.b.subnet",
                "subnet `10.1.2.0/24` overlaps the subnet of network `a`",
            ),
            (6, "networks.b.loss", "loss `200`: expected a percentage"),
            (
                8,
                "jobs.j.container.network",
                "unknown network `lab`: expected `none`, `host`, `a`, `b`",
            ),
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for ((line, path, message), (wl, wp, wm)) in got.iter().zip(want) {
            assert_eq!((*line, path.as_str()), (Some(wl), wp), "{message}");
            assert!(message.starts_with(wm), "{message}");
        }
    }

    #[test]
    fn a_workdir_or_hostname_that_fails_for_some_reps_names_each_of_them() {
        let name = "n".repeat(62);
        let text = format!("version: 1\nname: t\njobs:\n  r: {{command: [x], workdir: 'w{{rep}}', repetitions: 3}}\n  {name}: {{command: [x], repetitions: 12}}\n");
        let messages: Vec<String> = problems(&text).into_iter().map(|p| p.message).collect();
        let want: Vec<String> = (1..=3)
            .map(|r| {
                format!("relative workdir `w{r}`: expected an absolute path inside the container")
            })
            .chain((10..=12).map(|r| format!("hostname `{name}-{r}` must have 1 to 64 characters")))
            .collect();
        assert_eq!(messages, want);
    }

    const SERVED: &str = "version: 1\nname: t\ndefaults: {container: {network: host}}\njobs:\n  db:\n    command: [redis-server]\n    service: true\n";

    #[test]
    fn a_service_and_the_jobs_that_need_it_are_typed_with_addr_kept_for_the_start() {
        let b = ok(&format!("{SERVED}    ready: {{tcp: 6390}}\n  bench:\n    command: [c, '-h', '{{addr:db}}', '{{n}}']\n    matrix: {{n: [1]}}\n    needs: [db]\n"));
        let runs = b.runs.to_vec();
        let svc = runs[0].service.as_ref().expect("db is a service");
        assert_eq!(svc.ready_tcp, Some(6390));
        assert_eq!(svc.ready_timeout, DEFAULT_READY_TIMEOUT);
        assert_eq!(svc.stop_grace, DEFAULT_STOP_GRACE);
        assert_eq!(runs[1].needs, ["db"]);
        assert!(runs[1].service.is_none());
        let argv: Vec<String> = runs[1].command.iter().map(|t| t.render(None)).collect();
        assert_eq!(argv, ["c", "-h", "{addr:db}", "1"]);
        let filled = runs[1].command[2].refill(|n| (n == "addr:db").then(|| "127.0.0.1".into()));
        assert_eq!(filled.render(None), "127.0.0.1");
    }

    #[test]
    fn a_service_on_a_private_network_is_reached_from_that_network_only() {
        let head = "version: 1\nname: t\nnetworks: {lab: {}, other: {}}\njobs:\n  db: {command: [x], service: true, container: {network: lab}}\n";
        let b = ok(&format!(
            "{head}  a: {{command: [x], needs: [db], container: {{network: lab}}}}\n"
        ));
        assert_eq!(b.runs.to_vec()[1].needs, ["db"]);
        let msgs: Vec<String> = problems(&format!("{head}  b: {{command: [x], needs: [db], container: {{network: other}}}}\n  c: {{command: [x], needs: [db], container: {{network: host}}}}\n"))
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("jobs.b.needs[0]: job `b` (network `other`) cannot reach service `db` (network `lab`)"), "{msgs:?}");
        assert!(msgs[1].starts_with("jobs.c.needs[0]: job `c` (network `host`) cannot reach service `db` (network `lab`)"), "{msgs:?}");
    }

    #[test]
    fn needs_must_name_services_on_the_jobs_own_network() {
        let msgs: Vec<String> = problems(&format!("{SERVED}  plain: {{command: [x]}}\n  a: {{command: [x], needs: [nope, plain, a]}}\n  b: {{command: [x], needs: [db], container: {{network: none}}}}\n"))
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "jobs.a.needs[0]: unknown job `nope` in needs: expected one of `db`",
                "jobs.a.needs[1]: job `plain` in needs is not a service: expected one of `db`, or give `plain` `service: true`",
                "jobs.a.needs[2]: job `a` needs itself",
                "jobs.b.needs[0]: job `b` (network `none`) cannot reach service `db` (network `host`): a job that needs a service must be on its network; give both the same `container.network` (`host` or a network of `networks:`)",
            ]
        );
    }

    #[test]
    fn a_service_has_one_run_no_steps_and_is_needed_and_ready_is_only_for_services() {
        let msgs: Vec<String> = problems("version: 1\nname: t\njobs:\n  s:\n    command: [x]\n    service: true\n    repetitions: 2\n    prepare: 'true'\n    ready: {tcp: 0, timeout: soon}\n  c: {command: [x], ready: {tcp: 1}, stop_grace: 1s, depends_on: [s]}\n")
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(msgs.len(), 8, "{msgs:#?}");
        for want in [
            "jobs.s.repetitions: a service (`service: true`) has exactly one run and no steps: remove repetitions above 1",
            "jobs.s.prepare: a service (`service: true`) has exactly one run and no steps: remove steps",
            "jobs.s.ready.tcp: port `0` in ready.tcp: expected a TCP port from 1 to 65535",
            "jobs.s.ready.timeout: ",
            "jobs.s.service: service `s` is needed by no job",
            "jobs.c.ready: `ready` is only for a service",
            "jobs.c.stop_grace: `stop_grace` is only for a service",
            "jobs.c.depends_on[0]: `s` in depends_on is a service",
        ] {
            assert!(msgs.iter().any(|m| m.starts_with(want)), "{want}\nin {msgs:#?}");
        }
    }

    #[test]
    fn addr_placeholders_name_a_needed_service_and_only_where_the_start_fills_them() {
        let msgs: Vec<String> = problems(&format!("{SERVED}  c:\n    shell: 'ping {{addr:dbx}}'\n    workdir: '/{{addr:db}}'\n    needs: [db]\n"))
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(
            msgs,
            [
                "placeholder `{addr:dbx}` in `ping {addr:dbx}` names a job this one does not need: expected a service listed in `needs`, like `needs: [dbx]`",
                "placeholder `{addr:db}` in `/{addr:db}` is only known at run start: it is allowed in command, shell and env",
            ]
        );
    }

    #[test]
    fn services_and_needs_are_not_taken_from_defaults_and_a_needs_loop_is_a_cycle() {
        let msgs: Vec<String> = problems("version: 1\nname: t\ndefaults: {needs: [a], container: {network: host}}\njobs:\n  a: {command: [x], service: true, needs: [b]}\n  b: {command: [x], service: true, needs: [a]}\n")
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "defaults.needs: `needs` is not allowed in defaults: give it per job",
                "jobs.a.needs: dependency cycle `a -> b -> a`: expected depends_on and needs to form no loop",
            ]
        );
    }

    #[test]
    fn jobs_keep_file_order_and_runs_follow_matrix_then_rep() {
        let b = ok("version: 1\nname: t\njobs:\n  zeta: {command: [a]}\n  alpha:\n    command: [b, '{n}']\n    matrix: {n: [1, 2]}\n    repetitions: 2\n    warmup: 1\n  mid: {shell: 'true'}\n");
        let names: Vec<&str> = b.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        let alpha: Vec<(String, u32, bool)> = b
            .runs
            .to_vec()
            .into_iter()
            .filter(|r| r.job == "alpha")
            .map(|r| (r.params[0].1.clone(), r.rep, r.warmup))
            .collect();
        let want = [
            ("1", 1, true),
            ("1", 2, false),
            ("1", 3, false),
            ("2", 1, true),
            ("2", 2, false),
            ("2", 3, false),
        ];
        assert_eq!(alpha, want.map(|(p, r, w)| (p.to_string(), r, w)));
        assert_eq!(
            b.runs.render(b.runs.len() - 1).command,
            ["/bin/sh", "-c", "true"]
        );
    }

    #[test]
    fn defaults_merge_deeply_and_the_job_wins() {
        let b = ok("version: 1\nname: t\ndefaults:\n  resources: {cpus: 2, memory: 1G, io: {read_bps: 1M}}\n  env: {A: a, B: b}\n  time_limit: 1m\n  container: {network: host, hostname: h}\njobs:\n  j:\n    command: [x]\n    resources: {memory: 512MiB, io: {write_bps: 2M}}\n    env: {B: mine}\n    container: {hostname: own}\n");
        let r = &b.runs.render(0);
        assert_eq!(r.resources.cpus, 2);
        assert_eq!(r.resources.memory, Some(512 << 20));
        assert_eq!(r.resources.io.read_bps, Some(1 << 20));
        assert_eq!(r.resources.io.write_bps, Some(2 << 20));
        assert_eq!(
            r.env,
            [("A".into(), "a".into()), ("B".into(), "mine".into())]
        );
        assert_eq!(r.time_limit, Some(std::time::Duration::from_secs(60)));
        assert_eq!(r.estimate, std::time::Duration::from_secs(60));
        assert_eq!(r.container.network, Network::Host);
        assert_eq!(r.container.hostname, "own");
    }

    #[test]
    fn matrix_values_come_from_lists_ranges_and_the_lines_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inputs.txt"), "small.bin\n\n  large.bin \n").unwrap();
        let file = dir.path().join("job.yaml");
        std::fs::write(&file, "version: 1\nname: t\njobs:\n  j:\n    command: [x, '{n}', '{t}', '{f}']\n    matrix:\n      n: {range: [1, 3]}\n      t: {range: [1, 8], factor: 2}\n      f: {lines: inputs.txt}\n    repetitions: 1\n").unwrap();
        let b = load(&file).unwrap();
        assert_eq!(b.runs.len(), 3 * 4 * 2);
        let first: Vec<String> = b
            .runs
            .render(0)
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(first, ["n=1", "t=1", "f=small.bin"]);
        assert_eq!(b.runs.render(23).command, ["x", "3", "8", "large.bin"]);
        std::fs::write(&file, "version: 1\nname: t\njobs:\n  j:\n    command: [x]\n    matrix:\n      f: {lines: missing.txt}\n      g: {range: [5, 1]}\n").unwrap();
        let e = load(&file).unwrap_err().render();
        assert!(e.contains("missing.txt"), "{e}");
        assert!(
            e.contains("matrix key `g`: range [5, 1] runs backwards"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_expand_in_every_templated_field_but_cpus_waits_for_the_run() {
        let b = ok("version: 1\nname: t\njobs:\n  xz:\n    command: [xz, '-T{threads}', '{{x}}', 'taskset {cpus}']\n    matrix: {threads: [4]}\n    env: {OMP: '{threads}', WHERE: '{cpus}'}\n    workdir: /w/{job}\n    resources: {cpus: '{threads}', memory: '{threads}GiB', pids: '{threads}00'}\n");
        let r = &b.runs.render(0);
        assert_eq!(r.command, ["xz", "-T4", "{x}", "taskset {cpus}"]);
        assert_eq!(
            r.env,
            [
                ("OMP".into(), "4".into()),
                ("WHERE".into(), "{cpus}".into())
            ]
        );
        assert_eq!(r.workdir.as_deref(), Some(Path::new("/w/xz")));
        assert_eq!(r.container.hostname, "xz-1");
        assert_eq!(
            (r.resources.cpus, r.resources.memory, r.resources.pids),
            (4, Some(4 << 30), 400)
        );
        assert_eq!(
            r.resources.rlimits,
            [("nofile".to_string(), DEFAULT_NOFILE)]
        );
        assert_eq!(r.log_limit, DEFAULT_LOG_LIMIT);
    }

    #[test]
    fn a_numeric_placeholder_that_is_not_a_number_is_an_error_naming_the_expansion() {
        let ps = problems("version: 1\nname: t\njobs:\n  j:\n    command: [x]\n    matrix: {n: [two]}\n    resources: {cpus: '{n}'}\n");
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0].path, "jobs.j.resources.cpus");
        assert!(
            ps[0].message.contains("`{n}` expands to `two`"),
            "{}",
            ps[0].message
        );
        assert_eq!((ps[0].line, ps[0].column), (Some(7), Some(23)));
    }

    #[test]
    fn disk_and_files_budgets_are_parsed_per_run_with_placeholders_and_defaults() {
        let b = ok("version: 1\nname: t\ndefaults:\n  resources: {disk: 1GiB}\njobs:\n  a:\n    command: [x]\n    matrix: {n: [2, 3]}\n    resources: {disk: '{n}MiB', files: '{n}000'}\n  b:\n    command: [y]\n");
        let r: Vec<_> = (0..b.runs.len()).map(|i| b.runs.render(i)).collect();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.job.as_str(), r.resources.disk, r.resources.files))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Some(2 << 20), Some(2000)),
                ("a", Some(3 << 20), Some(3000)),
                ("b", Some(1 << 30), None),
            ]
        );
        let plain = ok("version: 1\nname: t\njobs:\n  a: {command: [x]}\n");
        let r = plain.runs.render(0);
        assert_eq!((r.resources.disk, r.resources.files), (None, None));
    }

    #[test]
    fn bad_disk_and_files_values_name_the_file_line_value_and_what_was_expected() {
        let ps = problems("version: 1\nname: t\njobs:\n  a:\n    command: [x]\n    resources:\n      disk: 10 parsecs\n      files: 0\n");
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert_eq!(ps[0].file, "t.yaml");
        assert_eq!(ps[0].path, "jobs.a.resources.disk");
        assert_eq!(ps[0].line, Some(7));
        assert!(
            ps[0].message.contains("invalid size `10 parsecs`")
                && ps[0]
                    .message
                    .contains("expected a number and a unit like 512MiB"),
            "{}",
            ps[0].message
        );
        assert_eq!(ps[1].path, "jobs.a.resources.files");
        assert_eq!(ps[1].line, Some(8));
        assert!(
            ps[1].message.contains("files `0` must be at least 1"),
            "{}",
            ps[1].message
        );
        let ps = problems("version: 1\nname: t\njobs:\n  a:\n    command: [x]\n    resources: {disk: -5MiB, files: 1.5}\n");
        let msgs: Vec<&str> = ps.iter().map(|p| p.message.as_str()).collect();
        assert!(msgs[0].contains("negative size `-5MiB`"), "{msgs:?}");
        assert!(
            msgs[1].contains("invalid files `1.5`: expected a whole number"),
            "{msgs:?}"
        );
    }

    #[test]
    fn duplicate_job_names_are_reported_at_the_second_one() {
        let ps = problems("version: 1\nname: t\njobs:\n  a: {command: [x]}\n  a: {command: [y]}\n");
        assert_eq!(ps.len(), 1);
        assert_eq!((ps[0].line, ps[0].column), (Some(5), Some(3)));
        assert!(ps[0].message.contains("duplicate job name `a`"));
    }

    #[test]
    fn unknown_keys_point_at_the_key() {
        let ps = problems("version: 1\nname: t\njobs:\n  a:\n    command: [x]\n    resources:\n      memroy: 1G\n");
        assert_eq!(ps[0].path, "jobs.a.resources.memroy");
        assert_eq!((ps[0].line, ps[0].column), (Some(7), Some(7)));
        assert!(ps[0].message.contains("unknown field `memroy`"));
    }

    #[test]
    fn counters_in_defaults_go_to_every_job_and_unknown_names_are_each_reported() {
        use crate::counters::{Chosen, Counter};
        let b = parse(
            "t.yaml",
            "version: 1\nname: t\ndefaults: {counters: [task-clock]}\njobs:\n  a: {command: [x]}\n  b: {command: [y], counters: [page-faults, context-switches]}\n",
        )
        .unwrap();
        assert_eq!(
            b.runs.get(0).render().counters,
            Chosen::of([Counter::TaskClock])
        );
        assert_eq!(
            b.runs.counters(),
            Chosen::of([
                Counter::TaskClock,
                Counter::PageFaults,
                Counter::ContextSwitches
            ])
        );
        let ps = problems("version: 1\nname: t\njobs:\n  a:\n    command: [x]\n    counters: [task-clock, cycle, taskclock]\n");
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert_eq!(ps[0].path, "jobs.a.counters[1]");
        assert_eq!(ps[0].line, Some(6));
        assert!(
            ps[0]
                .message
                .starts_with("unknown counter `cycle`: expected one of task-clock,"),
            "{}",
            ps[0].message
        );
    }

    #[test]
    fn problems_in_defaults_are_reported_once_at_defaults() {
        let ps = problems("version: 1\nname: t\ndefaults: {time_limit: 0s}\njobs:\n  a: {command: [x]}\n  b: {command: [y]}\n");
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0].path, "defaults.time_limit");
    }

    #[test]
    fn relative_mount_sources_and_rootfs_are_taken_from_the_job_file_directory() {
        let b = ok("version: 1\nname: t\njobs:\n  a:\n    command: [x]\n    container:\n      rootfs: ./root\n      mounts: [{source: data, target: /data, read_only: true}, {source: /abs, target: /b}]\n");
        let c = &b.runs.render(0).container;
        assert_eq!(c.rootfs, Rootfs::Dir(PathBuf::from("jobs/./root")));
        assert_eq!(c.mounts[0].source, PathBuf::from("jobs/data"));
        assert!(c.mounts[0].read_only);
        assert_eq!(c.mounts[1].source, PathBuf::from("/abs"));
    }

    #[test]
    fn gpus_of_jobs_and_groups_are_counts_and_zero_is_none() {
        let b = ok("version: 1\nname: t\ngroups:\n  g: {resources: {cpus: 4, gpus: 2}}\n  h: {resources: {cpus: 1, gpus: 0}}\njobs:\n  a:\n    command: [x]\n    group: g\n    matrix: {n: [0, 2]}\n    resources: {gpus: '{n}'}\n  b:\n    command: [y]\n");
        assert_eq!((b.groups[0].gpus, b.groups[1].gpus), (2, 0));
        let gpus: Vec<u32> = b.runs.iter().map(|r| r.resources().gpus).collect();
        assert_eq!(gpus, [0, 2, 0]);
        let ps = problems("version: 1\nname: t\ngroups:\n  g: {resources: {cpus: 4, gpus: -1}}\njobs:\n  a:\n    command: [x]\n    resources: {gpus: 1.5}\n");
        let msgs: Vec<String> = ps
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert!(
            msgs.iter()
                .any(|m| m
                    .starts_with("groups.g.resources.gpus: gpus `-1` must be 0 (none) or more")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("jobs.a.resources.gpus")
                && m.contains("invalid gpus `1.5`: expected a whole number")),
            "{msgs:?}"
        );
    }

    #[test]
    fn numa_groups_cpuset_and_user_are_typed() {
        let b = ok("version: 1\nname: t\ngroups:\n  g: {resources: {cpus: 4, memory: 8GiB, numa: {nodes: [1]}}}\njobs:\n  a:\n    command: [x]\n    group: g\n    resources: {cpuset: '2-3', numa: {nodes: '0', policy: interleave}, cpu_quota: 1.5, rlimits: {nofile: 4096, core: 0x10}}\n    container: {user: '1000:100', capabilities: [net_raw]}\n");
        assert_eq!(b.groups[0].cpus, 4);
        assert_eq!(b.groups[0].memory, Some(8 << 30));
        assert_eq!(b.groups[0].nodes, Some(CpuList::from_ids([1])));
        let r = &b.runs.render(0);
        assert_eq!(r.resources.cpus, 2);
        assert_eq!(r.resources.cpuset, Some(CpuList::from_ids([2, 3])));
        assert_eq!(
            r.resources.numa,
            Numa::Nodes {
                nodes: CpuList::from_ids([0]),
                policy: MemPolicy::Interleave
            }
        );
        assert_eq!(r.resources.cpu_quota, Some(1.5));
        assert_eq!(
            r.resources.rlimits,
            [("nofile".to_string(), 4096), ("core".to_string(), 16)]
        );
        assert_eq!(r.container.user, Some((1000, 100)));
        assert_eq!(r.container.capabilities, ["CAP_NET_RAW"]);
        assert_eq!(r.group.as_deref(), Some("g"));
    }

    #[test]
    fn estimate_falls_back_to_time_limit_then_sixty_seconds() {
        let b = ok("version: 1\nname: t\njobs:\n  a: {command: [x], estimate: 5s, time_limit: 1m}\n  b: {command: [x], time_limit: 1h30m}\n  c: {command: [x]}\n");
        let e: Vec<u64> = b.runs.iter().map(|r| r.estimate().as_secs()).collect();
        assert_eq!(e, [5, 5400, 60]);
    }

    #[test]
    fn run_keys_are_unique_within_a_batch() {
        let b = ok("version: 1\nname: t\njobs:\n  a:\n    command: ['{x}', '{y}']\n    matrix: {x: [1, 2], y: [a, b]}\n    repetitions: 3\n    warmup: 2\n");
        let keys: std::collections::HashSet<String> = b.runs.iter().map(|r| r.key()).collect();
        assert_eq!(keys.len(), b.runs.len());
        assert_eq!(b.runs.len(), 4 * 5);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let ps = problems("version: 1\nname: [t\njobs: {}\n");
        assert_eq!(ps.len(), 1);
        assert!(
            ps[0].line.is_some() && ps[0].message.starts_with("invalid YAML"),
            "{ps:?}"
        );
    }

    #[test]
    fn rendering_puts_file_line_column_path_and_message_on_one_line() {
        let e = parse(
            "f.yaml",
            "version: 1\nname: t\njobs:\n  a: {command: [x], repetitions: 0}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.yaml:4:34: jobs.a.repetitions: repetitions `0` must be at least 1"
        );
    }
}
