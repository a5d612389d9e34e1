//! The validated, typed model that leaves `spec`. Everything downstream
//! (plan, run, report) sees only these types, never raw YAML.

use crate::cpulist::CpuList;
pub use crate::jobfile::expand::Template;
use std::path::PathBuf;
use std::time::Duration;

/// The order runs are started in (see `order::arrange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// File order, each parameter set's repetitions back to back.
    #[default]
    Sequential,
    /// Round robin over the parameter sets: every set's first repetition,
    /// then every set's second, ...
    Interleave,
    /// Shuffled (seeded); each set's runs keep their own order (warmups first).
    Random,
}

/// What stays of a job after expansion: its name, its place in the hierarchy,
/// and the matrix parameter names (the `parameter_<name>` columns).
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub group: Option<String>,
    pub depends_on: Vec<String>,
    /// Services its runs need (`needs`).
    pub needs: Vec<String>,
    pub param_names: Vec<String>,
    /// The job's own `order`, if it has one.
    pub order: Option<Order>,
}

/// A group carves CPUs and memory out of the machine; its jobs pack inside.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub cpus: u32,
    pub memory: Option<u64>,
    /// Whole GPUs reserved for it (0: its runs share the GPUs no group took).
    pub gpus: u32,
    /// Restrict the group to these NUMA nodes.
    pub nodes: Option<CpuList>,
}

/// One execution of a job: one matrix point, one repetition.
#[derive(Debug, Clone)]
pub struct Run {
    /// Stable hash of job name, parameters, rep and warmup (16 lowercase hex digits).
    pub key: String,
    pub job: String,
    /// Matrix parameters in the order of the job's matrix keys, values as text.
    pub params: Vec<(String, String)>,
    /// 1-based over all runs of this parameter set; the first `warmup` of them are warmups.
    pub rep: u32,
    pub warmup: bool,
    /// argv after placeholder expansion; `{cpus}` is left in place and filled
    /// in at start with the assigned list. A `shell:` job is `["/bin/sh", "-c", text]`.
    pub command: Vec<Template>,
    /// Environment given to the job (on top of a minimal PATH/HOME/TERM-less base).
    pub env: Vec<(String, Template)>,
    pub workdir: Option<PathBuf>,
    pub resources: Resources,
    /// Wall clock limit, enforced from outside.
    pub time_limit: Option<Duration>,
    /// CPU time limit over the whole process tree.
    pub cpu_time_limit: Option<Duration>,
    /// Expected duration for the planner: `estimate:` if given, else time_limit, else 60 s.
    pub estimate: Duration,
    pub container: Container,
    /// Cap on each of stdout and stderr kept in logs/ (bytes).
    pub log_limit: u64,
    /// Group this run's job belongs to.
    pub group: Option<String>,
    /// Jobs whose runs must all be COMPLETED before this run starts.
    pub depends_on: Vec<String>,
    /// A file whose content is the job's stdin (None: /dev/null).
    pub stdin: Option<PathBuf>,
    /// Commands around the run (argv, placeholders like `command`'s).
    pub steps: Steps,
    /// What is counted for everything the run starts (see `counters`).
    pub counters: crate::counters::Chosen,
    /// Set when the job is a service (`service: true`).
    pub service: Option<Service>,
    /// Services (jobs) this run talks to: it starts once they are ready.
    pub needs: Vec<String>,
    /// The services this run reaches, by job name, with their addresses:
    /// filled when it starts (its /etc/hosts entries; `{addr:JOB}` is
    /// filled from them in command, env and steps).
    pub reaches: Vec<(String, std::net::IpAddr)>,
}

/// How a service is known to be ready, and stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Ready once this TCP port accepts a connection inside the service's
    /// network (None: ready once its command started).
    pub ready_tcp: Option<u16>,
    /// How long to wait for `ready_tcp`.
    pub ready_timeout: Duration,
    /// Between SIGTERM and SIGKILL when it is stopped.
    pub stop_grace: Duration,
}

/// Defaults of a service.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Whether a run on `from` can reach a service on `to`: only on a network
/// they share (`host`, or one private network; a run on `none` is alone on
/// its own).
pub fn same_network(from: &Network, to: &Network) -> bool {
    match (from, to) {
        (Network::Host, Network::Host) => true,
        (Network::Private(a), Network::Private(b)) => a.name == b.name,
        _ => false,
    }
}

impl Network {
    /// The word of the job file: `none`, `host` or the network's name.
    pub fn as_str(&self) -> &str {
        match self {
            Network::None => "none",
            Network::Host => "host",
            Network::Private(n) => &n.name,
        }
    }
}

/// The steps of a job (see `RawStep`): argv templates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steps {
    pub setup: Option<Vec<Template>>,
    pub prepare: Option<Vec<Template>>,
    pub conclude: Option<Vec<Template>>,
    pub cleanup: Option<Vec<Template>>,
}

/// Which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Setup,
    Prepare,
    Conclude,
    Cleanup,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Setup => "setup",
            Step::Prepare => "prepare",
            Step::Conclude => "conclude",
            Step::Cleanup => "cleanup",
        }
    }
}

impl Steps {
    pub fn get(&self, step: Step) -> Option<&Vec<Template>> {
        match step {
            Step::Setup => self.setup.as_ref(),
            Step::Prepare => self.prepare.as_ref(),
            Step::Conclude => self.conclude.as_ref(),
            Step::Cleanup => self.cleanup.as_ref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// Exclusive logical CPUs.
    pub cpus: u32,
    /// Pinned CPU list, if the job asks for exact CPUs (`cpuset:`).
    pub cpuset: Option<CpuList>,
    /// Hard memory limit in bytes (swap off).
    pub memory: Option<u64>,
    /// Whole GPUs of its own (0: none).
    pub gpus: u32,
    pub numa: Numa,
    /// CFS quota in CPUs, inside the cpuset.
    pub cpu_quota: Option<f64>,
    /// pids limit; default 1024, always set.
    pub pids: u64,
    pub io: Io,
    /// Disk budget in bytes: writable dirs plus stdout and stderr logs
    /// (None: the batch's default share, see `run::Options::disk_default`).
    pub disk: Option<u64>,
    /// Most files and directories in its writable dirs (None: no limit).
    pub files: Option<u64>,
    /// rlimits by their lower-case name without RLIMIT_ (`nofile`, `nproc`, `core`, ...),
    /// soft = hard. nofile defaults to 1024.
    pub rlimits: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Numa {
    /// All CPUs on one node when they fit; mems = that node. The default.
    Local,
    /// Spread CPUs across nodes round-robin; mems = the nodes used.
    Spread,
    /// Use exactly these nodes with this memory policy.
    Nodes { nodes: CpuList, policy: MemPolicy },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemPolicy {
    Bind,
    Preferred,
    Interleave,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Io {
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
    /// Device (a path on it) to throttle; default: the one backing workdir.
    pub device: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub rootfs: Rootfs,
    pub network: Network,
    /// Hostname after placeholder expansion; default `<job>-<rep>`.
    pub hostname: String,
    pub mounts: Vec<Mount>,
    /// Per-run scratch dirs, bound read-write from the run's result folder.
    pub writable: Vec<PathBuf>,
    /// uid:gid inside; None = root inside (with no capabilities).
    pub user: Option<(u32, u32)>,
    /// Capabilities the job asks to keep (names like `CAP_NET_RAW`); default
    /// none. They hold inside the run's user namespace only.
    pub capabilities: Vec<String>,
    /// Whose ids the run has: its own user namespace (the default) or the host's.
    pub userns: UserNs,
    /// Host paths covered by a fresh tmpfs besides the default ones
    /// (`container.hidden`).
    pub hidden: Vec<PathBuf>,
    /// Default hidden paths to show after all, read-only (`container.visible`).
    pub visible: Vec<PathBuf>,
    /// `container.aio`: the job may make AIO contexts (io_setup(2)).
    pub aio: bool,
    /// `rootfs: oci:…` or `docker-archive:…`: the image whose unpacked tree
    /// becomes the root when the batch starts (`rootfs` stays `Host` until
    /// then), and whose config fills what the job leaves out.
    pub image: Option<crate::image::Source>,
}

/// The user namespace of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserNs {
    /// Its own: root inside maps to an unprivileged range (the default).
    #[default]
    Private,
    /// The host's ids (`userns: host`): root inside is the host's root,
    /// with its capabilities dropped. Needs root; recorded in runs.csv and
    /// the manifest.
    Host,
}

/// Paths of the host that a run does not see: each gets a fresh tmpfs
/// (counted in the run's memory) unless the job binds something right
/// there or lists it in `container.visible`. Sockets, pid files and
/// secrets live here; a read-only mount would not stop connect(2) on a
/// unix socket.
pub const HIDDEN_PATHS: &[&str] = &["/tmp", "/var/tmp", "/run", "/var/run", "/home", "/root"];

#[derive(Debug, Clone, PartialEq)]
pub enum Rootfs {
    /// The host tree, read-only.
    Host,
    /// A directory holding a root file system.
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// Own network namespace with loopback up.
    None,
    Host,
    /// Own network namespace with loopback and `eth0`, a link to the
    /// bridge of this private network (`networks:`).
    Private(std::sync::Arc<PrivateNet>),
}

impl Network {
    /// The private network the run is on, if any.
    pub fn private(&self) -> Option<&std::sync::Arc<PrivateNet>> {
        match self {
            Network::Private(n) => Some(n),
            _ => None,
        }
    }
}

/// A private network (`networks: {NAME: {...}}`), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateNet {
    pub name: String,
    /// `subnet:`, else one packrun chose (see `subnet::choose`).
    pub subnet: super::Subnet,
    /// `rate:` of each run's link, each way, in bits per second.
    pub rate: Option<u64>,
    /// `delay:` added each way (netem).
    pub delay: Option<Duration>,
    /// `loss:` in percent of packets, each way (netem).
    pub loss: Option<f64>,
}

impl PrivateNet {
    /// Whether the links need the netem qdisc (`delay` or `loss`).
    pub fn needs_netem(&self) -> bool {
        self.delay.is_some() || self.loss.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Defaults that apply when the job file says nothing.
pub const DEFAULT_PIDS: u64 = 1024;
pub const DEFAULT_NOFILE: u64 = 1024;
pub const DEFAULT_LOG_LIMIT: u64 = 64 << 20;
pub const DEFAULT_ESTIMATE: Duration = Duration::from_secs(60);

/// Capability names without `CAP_`, in the kernel's numbering
/// (capabilities(7), linux/capability.h): index = capability number.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

impl Run {
    /// A run of `command` with every default a job file would give it (one
    /// CPU, default pids and nofile, host root, own network, no limits):
    /// for runs made without a job file (`packrun exec`, planner tests).
    pub fn with_defaults(job: &str, command: Vec<String>) -> Run {
        Run {
            key: job.to_string(),
            job: job.to_string(),
            params: Vec::new(),
            rep: 1,
            warmup: false,
            command: command.iter().map(|a| Template::literal(a)).collect(),
            env: Vec::new(),
            workdir: None,
            resources: Resources {
                cpus: 1,
                cpuset: None,
                memory: None,
                numa: Numa::Local,
                cpu_quota: None,
                pids: DEFAULT_PIDS,
                io: Io::default(),
                disk: None,
                files: None,
                gpus: 0,
                rlimits: vec![("nofile".into(), DEFAULT_NOFILE)],
            },
            time_limit: None,
            cpu_time_limit: None,
            estimate: DEFAULT_ESTIMATE,
            container: Container {
                rootfs: Rootfs::Host,
                network: Network::None,
                hostname: job.to_string(),
                mounts: Vec::new(),
                writable: Vec::new(),
                user: None,
                capabilities: Vec::new(),
                userns: UserNs::Private,
                hidden: Vec::new(),
                visible: Vec::new(),
                aio: false,
                image: None,
            },
            log_limit: DEFAULT_LOG_LIMIT,
            group: None,
            depends_on: Vec::new(),
            stdin: None,
            steps: Steps::default(),
            counters: Default::default(),
            service: None,
            needs: Vec::new(),
            reaches: Vec::new(),
        }
    }
}
