//! The job file exactly as written: serde structs that mirror the YAML, with
//! every field optional so that one bad field never hides the others. Required
//! keys, units, ranges and cross references are checked in `validate`; the
//! JSON Schema is generated from these structs (doc comments become the
//! property descriptions).

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Makes the listed properties required in the schema (serde sees them as
/// optional so that validation can report them with the rest).
fn require(schema: &mut Schema, keys: &[&str]) {
    schema.insert("required".into(), serde_json::json!(keys));
}

/// A packrun job file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "packrun job file", transform = |s: &mut Schema| require(s, &["version", "name", "jobs"]))]
pub struct RawFile {
    /// Format version of the job file; must be 1.
    pub version: Option<u32>,
    /// Name of the batch; results go to `results/<name>-<UTC timestamp>/`. Letters, digits, `.`, `_` and `-`.
    pub name: Option<String>,
    /// Keys merged under every job; a job's own keys win. `resources`, `container` and `env` are merged key by key.
    #[allow(dead_code)] // read as YAML and merged under each job before it is typed
    pub defaults: Option<RawJob>,
    /// The jobs: a map from job name to job. File order is submission order.
    pub jobs: Option<OrderedMap<RawJob>>,
    /// Optional hierarchy: a group carves CPUs and memory out of the machine and its jobs pack inside.
    pub groups: Option<OrderedMap<RawGroup>>,
    /// The order runs are started in: `sequential` (file order, each parameter set's repetitions back to back; the default), `interleave` (the repetitions of different jobs and parameter sets alternate) or `random` (shuffled with `seed`). A job's own `order` orders its runs among the places the batch's order gave them.
    pub order: Option<OrderKind>,
    /// Private networks: `container.network: NAME` puts a job's runs on one. Each run gets `eth0` with its own address on the network's bridge, besides loopback; runs on other networks, with `none`, and the host cannot reach it. A private network has no route outside: `network: host` is the way out.
    pub networks: Option<OrderedMap<RawNetwork>>,
    /// Seed of `order: random` (default: chosen at start and recorded in the manifest), so an order can be replayed.
    pub seed: Option<u64>,
}

/// The order runs are started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderKind {
    Sequential,
    Interleave,
    Random,
}

/// One job: a command with its matrix, repetitions and resource budget.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Job")]
pub struct RawJob {
    /// The argv to run, e.g. `["xz", "-T{threads}", "-c", "/data/input"]`. Exactly one of `command` and `shell`.
    pub command: Option<Vec<Text>>,
    /// A shell command line, run as `/bin/sh -c TEXT`. Exactly one of `command` and `shell`.
    pub shell: Option<String>,
    /// Parameters: the job runs once per combination (cross product of the lists), minus `exclude`, plus `include`.
    pub matrix: Option<RawMatrix>,
    /// Measured runs per parameter combination (default 1).
    pub repetitions: Option<u32>,
    /// Extra runs before the measured ones, per parameter combination, recorded with warmup=true (default 0).
    pub warmup: Option<u32>,
    /// Expected duration of one run for the planner, e.g. `90s` (default: time_limit, else 60s).
    pub estimate: Option<DurationValue>,
    /// Resource budget of each run.
    pub resources: Option<RawResources>,
    /// Wall clock limit of each run, e.g. `30s`, `10m`, `1h30m`; integers are seconds.
    pub time_limit: Option<DurationValue>,
    /// CPU time limit of each run over its whole process tree, e.g. `20s`.
    pub cpu_time_limit: Option<DurationValue>,
    /// Environment variables for the job; values may use placeholders.
    pub env: Option<OrderedMap<Text>>,
    /// Working directory inside the container; may use placeholders.
    pub workdir: Option<String>,
    /// Cap on each of stdout and stderr kept in logs/, e.g. `64MiB` (the default).
    pub log_limit: Option<SizeValue>,
    /// What to count for everything each run starts, by perf's names: `task-clock`, `context-switches`, `cpu-migrations`, `page-faults`, `major-faults`, `minor-faults` (software); `instructions`, `cycles`, `branches`, `branch-misses`, `cache-references`, `cache-misses` (hardware, where the CPU counts them); `energy-pkg`, `energy-dram` (powercap RAPL). Each becomes a runs.csv column (`-` as `_`).
    pub counters: Option<Vec<String>>,
    /// The container each run gets.
    pub container: Option<RawContainer>,
    /// Jobs whose runs must all be COMPLETED before this job's runs start.
    pub depends_on: Option<Vec<String>>,
    /// Group (from top-level `groups`) whose CPUs and memory this job packs into.
    pub group: Option<String>,
    /// The order of this job's runs among themselves (see the top-level `order`).
    pub order: Option<OrderKind>,
    /// A file whose content is each run's stdin (relative to the job file; default: /dev/null).
    pub stdin: Option<String>,
    /// Run once per parameter set before its first run (a shell line, or an argv list); like hyperfine's --setup.
    pub setup: Option<RawStep>,
    /// Run before each run, e.g. to drop caches or regenerate an input; like hyperfine's --prepare.
    pub prepare: Option<RawStep>,
    /// Run after each run; like hyperfine's --conclude.
    pub conclude: Option<RawStep>,
    /// Run once per parameter set after its last run; like hyperfine's --cleanup.
    pub cleanup: Option<RawStep>,
    /// This job is a service (a server the runs of other jobs talk to): its one run starts before the runs that list it in `needs`, they start once it is ready, and it is stopped (SIGTERM, then SIGKILL after `stop_grace`) when the last of them has ended. Its row is COMPLETED when it ended on that signal. No matrix, repetitions, warmup or steps.
    pub service: Option<bool>,
    /// When a service is ready: `{tcp: PORT}` waits until PORT accepts a TCP connection inside the service's network (default: ready as soon as its command started).
    pub ready: Option<RawReady>,
    /// Grace period of a service between SIGTERM and SIGKILL when it is stopped, e.g. `5s` (the default).
    pub stop_grace: Option<DurationValue>,
    /// Services (jobs with `service: true`) this job's runs talk to: each run starts once they are ready, on the same network, and reaches each by its job name (an /etc/hosts entry) and by `{addr:JOB}` in command, shell and env.
    pub needs: Option<Vec<String>>,
}

/// When a service is ready.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Ready", transform = |s: &mut Schema| require(s, &["tcp"]))]
pub struct RawReady {
    /// A TCP port that accepts connections (on 127.0.0.1 inside the service's network) once the service is ready.
    pub tcp: Option<u16>,
    /// How long to wait for it, e.g. `30s` (the default); a service not ready by then is killed and the runs that need it are cancelled.
    pub timeout: Option<DurationValue>,
}

/// A step around runs: a shell line (`/bin/sh -c LINE`) or an argv list.
/// It runs like the job (same root, mounts, writable dirs, env, CPUs,
/// memory nodes and limits) in a container and cgroup of its own, so its
/// time and usage stay out of the run's and are recorded in steps.csv.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Step")]
pub enum RawStep {
    Shell(String),
    Argv(Vec<Text>),
}

/// Resource budget of one run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Resources")]
pub struct RawResources {
    /// Count of exclusive logical CPUs (default 1); may be a placeholder like `"{threads}"`.
    pub cpus: Option<CountValue>,
    /// Pin to exactly these CPUs: a list like `"0-3,8"` or `[0, 1]`.
    pub cpuset: Option<IdList>,
    /// Hard memory limit, e.g. `512MiB`, `2G` (= 2 GiB); integers are bytes.
    pub memory: Option<SizeValue>,
    /// Whole GPUs (default 0), on the node of the run's CPUs and memory, only visible to this run.
    pub gpus: Option<CountValue>,
    /// NUMA placement of CPUs and memory.
    pub numa: Option<RawNuma>,
    /// CFS quota in CPUs inside the cpuset, e.g. 1.5.
    pub cpu_quota: Option<FloatValue>,
    /// Maximum number of processes and threads (default 1024).
    pub pids: Option<CountValue>,
    /// Block I/O throttling.
    pub io: Option<RawIo>,
    /// Disk budget: the most a run may have written in its writable dirs and its stdout and stderr logs, e.g. `1GiB` (default: a share of the free space under the results folder). A run over it is killed and its row says so.
    pub disk: Option<SizeValue>,
    /// The most files and directories a run may have in its writable dirs (default: no limit).
    pub files: Option<CountValue>,
    /// Resource limits by lower-case name without RLIMIT_ (`nofile`, `nproc`, `core`, ...), soft = hard. nofile defaults to 1024.
    pub rlimits: Option<OrderedMap<CountValue>>,
}

/// NUMA placement.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Numa")]
pub struct RawNuma {
    /// `local` (default: one node when the CPUs fit) or `spread` without `nodes`; `bind` (default), `preferred` or `interleave` with `nodes`.
    pub policy: Option<NumaPolicy>,
    /// Use exactly these memory nodes: a list like `"0-1"` or `[0, 1]`.
    pub nodes: Option<IdList>,
}

/// A NUMA policy name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NumaPolicy {
    Local,
    Spread,
    Bind,
    Preferred,
    Interleave,
}

/// Block I/O throttling of one run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Io")]
pub struct RawIo {
    /// Read bandwidth limit in bytes per second, e.g. `200MB` (= 200 MiB/s).
    pub read_bps: Option<SizeValue>,
    /// Write bandwidth limit in bytes per second, e.g. `100MB`.
    pub write_bps: Option<SizeValue>,
    /// Read operations per second.
    pub read_iops: Option<CountValue>,
    /// Write operations per second.
    pub write_iops: Option<CountValue>,
    /// A path on the device to throttle (default: the device backing workdir).
    pub device: Option<String>,
}

/// The container of one run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Container")]
pub struct RawContainer {
    /// `host` (the host tree, read-only; the default), a directory holding a root file system (relative to the job file), `oci:PATH[:TAG]` (an OCI image layout) or `docker-archive:PATH` (a `docker save` tarball); an image is unpacked once into the cache, and its Env, WorkingDir, Entrypoint/Cmd and User fill what the job leaves out.
    pub rootfs: Option<String>,
    /// `none` (own network namespace with loopback up; the default), `host` (the host's network), or the name of a network under `networks:`.
    pub network: Option<String>,
    /// Hostname inside the container (default `{job}-{rep}`); may use placeholders.
    pub hostname: Option<String>,
    /// Bind mounts into the container.
    pub mounts: Option<Vec<RawMount>>,
    /// Per-run scratch directories inside the container, kept under the run's results.
    pub writable: Option<Vec<String>>,
    /// `uid:gid` to run as inside the container (default: root with no capabilities).
    pub user: Option<Text>,
    /// Capabilities to keep, like `CAP_NET_RAW` or `NET_RAW` (default none); they hold inside the run's user namespace only.
    pub capabilities: Option<Vec<String>>,
    /// `private` (the default: the run's own user namespace, root inside mapped to unprivileged host ids) or `host` (the host's ids; needs root; recorded in runs.csv and the manifest).
    pub userns: Option<UserNsKind>,
    /// Absolute paths to cover with a fresh tmpfs besides /tmp, /var/tmp, /run, /var/run, /home and /root.
    pub hidden: Option<Vec<String>>,
    /// Absolute paths of those hidden by default to show after all, read-only.
    pub visible: Option<Vec<String>>,
    /// Let the job make Linux AIO contexts (io_setup(2)); default false: io_setup fails with ENOSYS, as on a kernel without AIO. Each context may hold at most the run's share of fs.aio-max-nr events.
    pub aio: Option<bool>,
}

/// The user namespace of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserNsKind {
    Private,
    Host,
}

/// A private network; every key is optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Network")]
pub struct RawNetwork {
    /// IPv4 subnet, e.g. `10.5.0.0/24` (prefix 8 to 30); each run on the network gets the next free address in it. Default: a /16 packrun picks from 10.200.0.0–10.255.0.0 (then 172.16.0.0/12), apart from the other networks'.
    pub subnet: Option<String>,
    /// Rate of each run's link, in each direction, e.g. `100mbit`, `1gbit`, `500kbit` (token bucket, tbf). Default: unshaped.
    pub rate: Option<String>,
    /// Delay added to each packet in each direction, e.g. `5ms` (netem: needs the kernel's sch_netem).
    pub delay: Option<DurationValue>,
    /// Share of packets dropped in each direction, in percent: `0.5` or `"0.5%"` (netem: needs the kernel's sch_netem).
    pub loss: Option<FloatValue>,
}

/// One bind mount.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mount", transform = |s: &mut Schema| require(s, &["source", "target"]))]
pub struct RawMount {
    /// Host path (relative paths are relative to the job file's directory).
    pub source: Option<String>,
    /// Absolute path inside the container.
    pub target: Option<String>,
    /// Mount read-only (default false).
    pub read_only: Option<bool>,
}

/// A group: a CPU and memory budget carved out of the machine.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Group", transform = |s: &mut Schema| require(s, &["resources"]))]
pub struct RawGroup {
    /// The group's budget.
    pub resources: Option<RawGroupResources>,
}

/// A group's budget.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "GroupResources", transform = |s: &mut Schema| require(s, &["cpus"]))]
pub struct RawGroupResources {
    /// Logical CPUs reserved for the group's jobs.
    pub cpus: Option<CountValue>,
    /// Memory reserved for the group's jobs, e.g. `16GiB`.
    pub memory: Option<SizeValue>,
    /// Whole GPUs reserved for the group's jobs, nearest its CPUs (default: none; its jobs then share the GPUs no group took).
    pub gpus: Option<CountValue>,
    /// NUMA restriction of the group.
    pub numa: Option<RawGroupNuma>,
}

/// NUMA restriction of a group.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "GroupNuma")]
pub struct RawGroupNuma {
    /// Restrict the group to these NUMA nodes, e.g. `[1]` or `"0-1"`.
    pub nodes: Option<IdList>,
}

/// The matrix: parameter name -> list of values, plus `include` and `exclude`.
#[derive(Debug, Clone, Default)]
pub struct RawMatrix {
    /// Parameter axes in file order.
    pub axes: Vec<(String, RawAxis)>,
    pub include: Vec<Vec<(String, Text)>>,
    pub exclude: Vec<Vec<(String, Text)>>,
}

impl<'de> Deserialize<'de> for RawMatrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMatrix;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of parameter name to a list of values, with optional include and exclude")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMatrix, A::Error> {
                let mut m = RawMatrix::default();
                while let Some(key) = map.next_key::<Text>()? {
                    match key.0.as_str() {
                        "include" => {
                            m.include = unwrap_entries(map.next_value::<Vec<OrderedMap<Text>>>()?)
                        }
                        "exclude" => {
                            m.exclude = unwrap_entries(map.next_value::<Vec<OrderedMap<Text>>>()?)
                        }
                        _ => m.axes.push((key.0, map.next_value()?)),
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// The values of one matrix parameter: a list, a range, or the lines of a file.
#[derive(Debug, Clone)]
pub enum RawAxis {
    List(Vec<Text>),
    Range(RawRange),
    Lines { lines: String },
}

/// `{range: [1, 16], step: 1}` (hyperfine's -P/-D) or `{range: [1, 64], factor: 2}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub range: Vec<Text>,
    pub step: Option<Text>,
    pub factor: Option<Text>,
}

impl<'de> Deserialize<'de> for RawAxis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Lines {
            lines: Text,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            List(Vec<Text>),
            Lines(Lines),
            Range(RawRange),
        }
        match Any::deserialize(d) {
            Ok(Any::List(v)) => Ok(RawAxis::List(v)),
            Ok(Any::Lines(l)) => Ok(RawAxis::Lines { lines: l.lines.0 }),
            Ok(Any::Range(r)) => Ok(RawAxis::Range(r)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a list of values, {range: [FROM, TO], step: N}, {range: [FROM, TO], factor: N} or {lines: FILE}",
            )),
        }
    }
}

fn unwrap_entries(v: Vec<OrderedMap<Text>>) -> Vec<Vec<(String, Text)>> {
    v.into_iter().map(|m| m.0).collect()
}

impl JsonSchema for RawMatrix {
    fn schema_name() -> Cow<'static, str> {
        "Matrix".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let value = g.subschema_for::<Text>();
        json_schema!({
            "description": "Parameters: each key is a parameter name with its list of values; the job runs once per combination. `exclude` removes the combinations matching all keys of an entry; `include` adds keys to matching combinations or adds new combinations (as in GitHub Actions).",
            "type": "object",
            "properties": {
                "include": {
                    "description": "Combinations to add, or keys to add to the combinations they match.",
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": value}
                },
                "exclude": {
                    "description": "Combinations to remove: each entry removes every combination matching all its keys.",
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": value}
                }
            },
            "additionalProperties": {
                "description": "The values of one parameter: a list; `{range: [FROM, TO], step: N}` (FROM, FROM+N, … up to TO); `{range: [FROM, TO], factor: N}` (FROM, FROM×N, … up to TO); or `{lines: FILE}` (one value per non-empty line of FILE, relative to the job file).",
                "oneOf": [
                    {"type": "array", "items": value},
                    {
                        "type": "object",
                        "properties": {
                            "range": {"description": "From and to, both included when on the way.", "type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                            "step": {"description": "Added each time (default 1).", "type": "number"},
                            "factor": {"description": "Multiplied by each time (a geometric range).", "type": "number"}
                        },
                        "required": ["range"],
                        "additionalProperties": false
                    },
                    {
                        "type": "object",
                        "properties": {"lines": {"description": "A file with one value per line (relative to the job file).", "type": "string"}},
                        "required": ["lines"],
                        "additionalProperties": false
                    }
                ]
            }
        })
    }
}

/// A map that keeps file order (`jobs`, `env`, `groups`, ...). Duplicate keys
/// are caught before deserialization, with both locations.
#[derive(Debug, Clone, Default)]
pub struct OrderedMap<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap<T>, A::Error> {
                let mut v = Vec::new();
                while let Some(key) = map.next_key::<Text>()? {
                    if v.iter().any(|(k, _)| *k == key.0) {
                        return Err(de::Error::custom(format_args!("duplicate key `{}`", key.0)));
                    }
                    v.push((key.0, map.next_value()?));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for OrderedMap<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let value = g.subschema_for::<T>();
        json_schema!({"type": "object", "additionalProperties": value})
    }
}

/// A YAML scalar taken as text: `-9`, `4` and `true` are all fine as argv words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(
            d.deserialize_any(ScalarVisitor("a string, number or boolean"))?
                .text(),
        ))
    }
}

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// A scalar as YAML typed it; units, ranges and placeholders are checked later.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

struct ScalarVisitor(&'static str);

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
}

/// Declares a scalar newtype that accepts the given JSON types (numbers are
/// checked for range and units in `validate`).
macro_rules! scalar_newtype {
    ($(#[$doc:meta])* $name:ident, $expecting:literal, $types:tt) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub Scalar);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = d.deserialize_any(ScalarVisitor($expecting))?;
                if let Scalar::Bool(b) = s {
                    return Err(de::Error::invalid_type(de::Unexpected::Bool(b), &$expecting));
                }
                Ok($name(s))
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": $types})
            }
        }
    };
}

scalar_newtype!(
    /// A size: an integer (bytes) or a number with a binary unit (`512MiB`, `2G`).
    SizeValue,
    "a size like 512MiB or 2G",
    ["string", "integer"]
);
scalar_newtype!(
    /// A duration: an integer (seconds) or text like `30s`, `1h30m`.
    DurationValue,
    "a duration like 30s or 1h30m",
    ["string", "integer"]
);
scalar_newtype!(
    /// A whole number, or a placeholder that expands to one.
    CountValue,
    "a whole number or a placeholder like \"{threads}\"",
    ["integer", "string"]
);
scalar_newtype!(
    /// A number, or a placeholder that expands to one.
    FloatValue,
    "a number or a placeholder like \"{quota}\"",
    ["number", "string"]
);

/// A list of CPU or node ids: kernel list text (`"0-3,8"`), one id, or a list of ids.
#[derive(Debug, Clone, PartialEq)]
pub enum IdList {
    Text(Scalar),
    Ids(Vec<u32>),
}

impl<'de> Deserialize<'de> for IdList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of ids like \"0-3,8\" or [0, 1]")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdList, E> {
                Ok(IdList::Text(Scalar::Int(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdList, E> {
                Ok(IdList::Text(Scalar::Int(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdList, E> {
                Ok(IdList::Text(Scalar::Str(v.to_string())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<IdList, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<u32>()? {
                    ids.push(id);
                }
                Ok(IdList::Ids(ids))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for IdList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "IdList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": {"type": "integer", "minimum": 0}}
            ]
        })
    }
}
