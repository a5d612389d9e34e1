//! Command line: clap derive, subcommands, exit codes. No logic here.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "packrun",
    version,
    about = "Pack resource-limited runs onto disjoint CPUs and NUMA nodes, run each in its own container, record what it used.",
    after_help = "Examples:\n  packrun doctor                     check this machine\n  packrun validate jobs.yaml\n  packrun plan jobs.yaml             where each run would go\n  sudo packrun run jobs.yaml\n  packrun report results/bench-20260302T100000Z --html"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a job file and report every problem in it.
    #[command(after_help = "Examples:\n  packrun validate jobs.yaml")]
    Validate {
        file: PathBuf,
        #[command(flatten)]
        limits: Limits,
    },
    /// Print the job file's JSON Schema (draft-07).
    #[command(after_help = "Examples:\n  packrun schema > packrun.schema.json")]
    Schema,
    /// Print the machine's topology.
    #[command(
        after_help = "Examples:\n  packrun topology\n  packrun topology --format json\n  packrun topology --topology tests/fixtures/two-nodes"
    )]
    Topology {
        /// Read a fixture tree with the layout of /sys/devices/system instead of the machine.
        #[arg(long, value_name = "DIR")]
        topology: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run every run of a job file, packed onto disjoint CPUs, and record what each used.
    #[command(
        after_help = "Examples:\n  sudo packrun run jobs.yaml\n  sudo packrun run jobs.yaml --out results/today --max-parallel 4\n  sudo packrun run jobs.yaml --resume results/today"
    )]
    Run(RunArgs),
    /// Run one command isolated and limited, and print what it used (like BenchExec's runexec).
    #[command(
        after_help = "Examples:\n  sudo packrun exec --cpus 2 --memory 1GiB --time-limit 60s -- xz -T2 -k big.tar\n  sudo packrun exec --cpuset 4-5 --format json -- ./bench"
    )]
    Exec(ExecArgs),
    /// Print where each run would go and a predicted timeline, without running anything.
    #[command(
        after_help = "Examples:\n  packrun plan jobs.yaml\n  packrun plan jobs.yaml --topology tests/fixtures/two-nodes --format json"
    )]
    Plan {
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        topology: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        order: OrderArgs,
    },
    /// Summarise a results folder: statistics per job and parameter set, exports, report.html.
    #[command(
        after_help = "Examples:\n  packrun report results/bench\n  packrun report results/bench --format markdown >> NOTES.md\n  packrun report results/bench --format hyperfine-json > bench.json\n  packrun report results/bench --html --joblog bench.joblog"
    )]
    Report(ReportArgs),
    /// Compare two results folders (or two sets of one): ratios of medians with 95% intervals and a verdict.
    #[command(
        after_help = "Examples:\n  packrun compare results/gzip1 results/gzip9\n  packrun compare results/sweep --baseline xz:threads=1\n  packrun compare results/a results/b --format markdown --html\n\nExit status: 0 when the comparison was made (whatever it found), 2 for bad input."
    )]
    Compare(CompareArgs),
    /// The image cache: list its entries, check them against what was unpacked, remove some.
    #[command(
        after_help = "Examples:\n  packrun images list\n  packrun images check\n  packrun images remove 3f2a"
    )]
    Images {
        #[command(subcommand)]
        action: ImagesAction,
        /// The cache (default: /var/cache/packrun/images as root, else ~/.cache/packrun/images).
        #[arg(long, value_name = "DIR", global = true)]
        cache: Option<PathBuf>,
    },
    /// Check that this machine can run batches; print the fix for every problem.
    #[command(
        after_help = "Examples:\n  packrun doctor\n  sudo packrun doctor\n\nExit status: 0 when runs can start (warnings allowed), 3 when they cannot."
    )]
    Doctor {
        /// Read /proc, /sys and /run below this directory instead (a fake tree).
        #[arg(long, value_name = "DIR", hide = true)]
        root: Option<PathBuf>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  packrun completions bash > /etc/bash_completion.d/packrun\n  packrun completions zsh > ~/.zfunc/_packrun\n  packrun completions fish > ~/.config/fish/completions/packrun.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Examples:\n  packrun man > packrun.1 && man ./packrun.1")]
    Man,
    /// Run a job file across a Slurm cluster: one packrun per node, results merged.
    #[command(subcommand)]
    Slurm(SlurmCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Markdown,
    Csv,
    Json,
    /// hyperfine's --export-json schema.
    HyperfineJson,
}

/// `packrun report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A results folder (holding runs.csv and manifest.json).
    pub dir: PathBuf,
    /// Format of the summary on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Also (re)write DIR/report.html.
    #[arg(long)]
    pub html: bool,
    /// Also write GNU parallel's joblog of every run to FILE.
    #[arg(long, value_name = "FILE")]
    pub joblog: Option<PathBuf>,
}

/// `packrun slurm ...`.
#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Split the runs into one shard per node and submit one sbatch job of N exclusive nodes.
    Submit(SubmitArgs),
    /// Show the job's state in squeue and the rows each node has written so far.
    Status { dir: PathBuf },
    /// Merge the nodes' runs.csv into DIR/runs.csv and write DIR/summary.csv.
    Merge { dir: PathBuf },
    /// Run this node's shard (what the batch script's one task per node runs).
    #[command(hide = true)]
    Task { dir: PathBuf },
}

/// `packrun slurm submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    pub file: PathBuf,
    /// Number of nodes; the runs are split into this many shards of about equal work.
    #[arg(long, value_name = "N")]
    pub nodes: usize,
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Time limit of the whole job, in sbatch's format (1:00:00, 2-0).
    #[arg(long, value_name = "D")]
    pub time: Option<String>,
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// One more sbatch option, written as an #SBATCH line. Repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// Results folder, on a file system every node sees (default: results/<name>-<UTC timestamp>/).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Submit again only the runs missing from DIR/runs.csv (merged first).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: accept a job file that changed since the first submission.
    #[arg(long, requires = "resume")]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkArg {
    None,
    Host,
}

/// `packrun exec`: one isolated, limited, accounted run.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Number of exclusive logical CPUs (placed like a job's run).
    #[arg(long, conflicts_with = "cpuset")]
    pub cpus: Option<u32>,
    /// Exact CPUs, in the kernel's list format (0-3,8).
    #[arg(long, value_name = "LIST")]
    pub cpuset: Option<String>,
    /// Memory nodes (default: the nodes of the CPUs).
    #[arg(long, value_name = "LIST")]
    pub mems: Option<String>,
    /// Hard memory limit, swap off (512MiB, 2G = 2 GiB).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Process limit (default 1024).
    #[arg(long)]
    pub pids: Option<u64>,
    /// Disk budget of the run's writable dirs (1GiB); over it the run is killed.
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// Most files and directories in the run's writable dirs.
    #[arg(long, value_name = "N")]
    pub files: Option<u64>,
    /// Whole GPUs of its own, next to its CPUs; only their device nodes are visible.
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// A writable dir inside the container, kept on the host below
    /// $TMPDIR/packrun-<batch>/ (printed). Repeatable.
    #[arg(long, value_name = "DIR")]
    pub writable: Vec<PathBuf>,
    /// Wall clock limit (30s, 1m30s).
    #[arg(long, value_name = "DURATION")]
    pub time_limit: Option<String>,
    /// CPU time limit over the whole process tree.
    #[arg(long, value_name = "DURATION")]
    pub cpu_time_limit: Option<String>,
    #[arg(long, value_enum, default_value_t = NetworkArg::None)]
    pub network: NetworkArg,
    /// `host` (the host tree, read-only) or a directory holding a root file system.
    #[arg(long, default_value = "host")]
    pub rootfs: String,
    /// Bind a host path into the container: SRC:DST or SRC:DST:ro. Repeatable.
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Hostname inside the container.
    #[arg(long, default_value = "packrun")]
    pub hostname: String,
    /// Let the command make Linux AIO contexts (io_setup), each of at most
    /// the run's share of fs.aio-max-nr events (job files: `container.aio`).
    #[arg(long)]
    pub aio: bool,
    /// Count these for everything the command starts, by perf's names,
    /// comma-separated: task-clock, context-switches, page-faults, ...
    /// (job files: `counters`).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub counters: Vec<String>,
    /// How to print the usage record on stderr.
    #[arg(long, value_enum, default_value_t = RecordFormat::Table)]
    pub format: RecordFormat,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `packrun images` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImagesAction {
    /// Each entry: digest, size, platform, source, last use.
    List,
    /// Hash each unpacked tree again and compare with what was recorded.
    Check,
    /// Remove the entries whose digest starts with PREFIX.
    Remove { prefix: String },
}

/// `packrun compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Results folder A (the baseline side).
    pub a: PathBuf,
    /// Results folder B; without it, give --baseline.
    pub b: Option<PathBuf>,
    /// Compare every other job and parameter set of A with this one: JOB or JOB:K=V,...
    #[arg(long, value_name = "JOB[:PARAMS]")]
    pub baseline: Option<String>,
    /// Significance level of the verdicts (the intervals are 1 - ALPHA).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Compare on this runs.csv column instead of wall time, CPU time and
    /// peak memory: wall, cpu, memory, a counter (task_clock or
    /// task-clock, ...) or another numeric column. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub metric: Vec<String>,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,
    /// Also write compare.html, and add the comparison to report.html, in B (or A with --baseline).
    #[arg(long)]
    pub html: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompareFormat {
    Table,
    Markdown,
    Json,
}

/// How many runs a job file may expand to.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Refuse a job file that expands to more runs than this (a typo in
    /// `repetitions` or a matrix that explodes is an error, not an
    /// allocation that eats the machine). Default 10000000.
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u64>,
}

/// The order runs start in.
#[derive(Debug, Clone, clap::Args)]
pub struct OrderArgs {
    /// Overrides the job file's `order:`.
    #[arg(long, value_enum)]
    pub order: Option<OrderArg>,
    /// Seed of `--order random` (default: the job file's `seed:`, else a
    /// fresh one, recorded in the manifest).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OrderArg {
    Sequential,
    Interleave,
    Random,
}

/// `packrun run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (with --resume: default the copy kept in DIR/job.yaml).
    #[arg(required_unless_present = "resume")]
    pub file: Option<PathBuf>,
    /// Results folder (default: results/<name>-<UTC timestamp>/).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue a batch: run every run whose run_key is not yet in DIR/runs.csv.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: accept a job file that changed since the batch began.
    #[arg(long, requires = "resume")]
    pub force: bool,
    /// Run at most N runs at once.
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub order: OrderArgs,
    /// Where images are unpacked (default: /var/cache/packrun/images as root, else ~/.cache/packrun/images).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Refused: a fixture topology is for `packrun plan` only.
    #[arg(long, value_name = "DIR", hide = true)]
    pub topology: Option<PathBuf>,
    /// No progress bars: one line per finished run.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run only shard I of N (0-based), as split by `packrun slurm submit`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::plan::shard::Shard>,
    /// With --shard: leave out the runs in this runs.csv before splitting.
    #[arg(long, value_name = "CSV", requires = "shard", hide = true)]
    pub skip_runs: Option<PathBuf>,
}
