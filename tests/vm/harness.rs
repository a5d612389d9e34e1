//! Boots a scenario in a throw-away VM: a static packrun, busybox, job files
//! and scenario scripts packed into an initramfs, booted under qemu with a
//! chosen topology and cgroup layout. Returns the guest's exit status and
//! output. The measured facts behind the choices (PVH entry, TCG, kernel
//! command line, serial ports) are in the project's VM notes.
//!
//! Written in Rust rather than a shell script so the test owns the qemu
//! process (killed by pid on every path, also on panic), builds the cpio
//! without a `cpio` package, and reports failures as test failures.

#![allow(dead_code)] // Each test binary uses a different part of it.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the harness keeps its builds and caches (`target/vm`).
pub fn cache_dir() -> PathBuf {
    repo().join("target/vm")
}

/// The virtual machine's shape. With `nodes > 1`, every node is one socket
/// and holds `cpus / nodes` CPUs and `memory_mib / nodes` of memory, so with
/// 8 CPUs and 4 nodes node1 holds CPUs 2-3.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    pub cpus: u32,
    pub nodes: u32,
    pub memory_mib: u32,
}

/// The cgroup layout /init sets up before the scenario starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup2 at /sys/fs/cgroup, every controller enabled at the root.
    V2,
    /// As the development machines: one v1 hierarchy per controller.
    V1,
    /// cgroup v1 as systemd's legacy mode mounts it: cpu and cpuacct
    /// co-mounted at `cpu,cpuacct`, with symlinks `cpu` and `cpuacct`.
    V1Comounted,
    /// cgroup2, and the scenario starts inside the delegated
    /// `system.slice/packrun.service` as a systemd Delegate=yes service
    /// does (its path is in `$PACKRUN_VM_DELEGATED`).
    V2Delegated,
    /// cgroup2 with `user.slice/user-1000.slice/user@1000.service`
    /// delegated to uid 1000 as systemd does for a user's manager with
    /// Delegate=yes (controllers enabled down to its parent; the directory,
    /// its cgroup.procs, cgroup.threads and cgroup.subtree_control chowned
    /// to 1000:1000). The scenario's shell is moved into it as root and
    /// then runs as uid 1000:1000 (user `packrun`, HOME /tmp/u, no
    /// /etc/subuid entry); its path is in `$PACKRUN_VM_DELEGATED`.
    V2DelegatedUser,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::V2 => "v2",
            Layout::V1 => "v1",
            Layout::V1Comounted => "v1-comounted",
            Layout::V2Delegated => "v2-delegated",
            Layout::V2DelegatedUser => "v2-delegated-user",
        }
    }
}

/// One boot: what to run and on what.
#[derive(Debug, Clone)]
pub struct Vm {
    pub topology: Topology,
    pub layout: Layout,
    /// Files of tests/vm/scenarios/, sourced in this order after lib.sh.
    pub scenarios: Vec<&'static str>,
    /// Whole-VM deadline, boot included.
    pub timeout: Duration,
    /// Keep the initial ramfs (rootfs) as the guest's root instead of
    /// moving it onto a tmpfs (`packrun.initramfs=1`): the hosts where
    /// pivot_root(2) is refused, as when a system runs from its initramfs.
    pub initramfs_root: bool,
    /// Kernel modules (by name, as `veth` or `sch_netem`) that /init loads
    /// before the scenario, with the modules they depend on first: taken
    /// from the unpacked kernel package, decompressed here when they are
    /// `.ko.xz` (busybox insmod may not read xz).
    pub modules: &'static [&'static str],
}

/// What the guest left behind.
#[derive(Debug)]
pub struct Output {
    /// The scenario's exit status, from the console marker.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub console: String,
    /// From starting qemu until /init announced itself (last attempt).
    pub boot_time: Duration,
    /// From starting qemu until it exited (last attempt).
    pub total_time: Duration,
    /// Boots tried (more than one when the boot watchdog fired).
    pub attempts: u32,
    pub accel: &'static str,
}

/// Everything a boot needs from the machine.
#[derive(Debug, Clone)]
pub struct Tools {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
    /// Uncompressed kernel ELF, booted through its PVH entry.
    pub vmlinux: PathBuf,
    pub packrun: PathBuf,
}

const INIT_MARKER: &str = "packrun-vm: init reached";
const EXIT_MARKER: &str = "packrun-vm: exit status ";
/// How long a boot may take to reach /init before the watchdog kills it and
/// boots again (about 2 s is usual under TCG); `PACKRUN_VM_BOOT_TIMEOUT`
/// (seconds) overrides.
fn boot_timeout() -> Duration {
    let secs = std::env::var("PACKRUN_VM_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(60))
}
const BOOT_ATTEMPTS: u32 = 3;

/// Finds (and on first use builds or extracts) everything a boot needs, once
/// per test binary. `Err` says what is missing and how to get it.
pub fn tools() -> Result<Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS.get_or_init(find_tools).clone()
}

fn find_tools() -> Result<Tools, String> {
    let hint = "run tests/vm/ci-install.sh as root to install it";
    let qemu = env_path("PACKRUN_VM_QEMU")
        .or_else(|| which("qemu-system-x86_64"))
        .ok_or_else(|| {
            format!("qemu-system-x86_64 (package qemu-system-x86) is not installed ({hint})")
        })?;
    let busybox = env_path("PACKRUN_VM_BUSYBOX")
        .or_else(|| which("busybox").filter(|p| is_static(p)))
        .ok_or_else(|| {
            format!("no static busybox (package busybox-static) is installed ({hint})")
        })?;
    let vmlinux = vmlinux(&cache_dir().join("kernel"))?;
    let packrun = match env_path("PACKRUN_VM_PACKRUN") {
        Some(p) => p,
        None => build_static_packrun()?,
    };
    Ok(Tools {
        qemu,
        busybox,
        vmlinux,
        packrun,
    })
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A static ELF has no PT_INTERP program header; look for the loader path.
fn is_static(path: &Path) -> bool {
    match fs::read(path) {
        Ok(bytes) => !bytes
            .windows(15)
            .take(4096)
            .any(|w| w == b"/lib64/ld-linux"),
        Err(_) => false,
    }
}

/// The uncompressed kernel: `$PACKRUN_VM_KERNEL` (an ELF vmlinux), or the
/// one inside a Debian kernel package that ci-install.sh unpacked under
/// `dir`, extracted from its bzImage once and cached next to it.
fn vmlinux(dir: &Path) -> Result<PathBuf, String> {
    if let Some(p) = env_path("PACKRUN_VM_KERNEL") {
        return Ok(p);
    }
    let mut images: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|pkg| {
            fs::read_dir(pkg.path().join("boot"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    images.sort();
    let Some(bzimage) = images.pop() else {
        return Err(format!(
            "no kernel: {} holds no unpacked Debian kernel package (run tests/vm/ci-install.sh as root, \
             or set PACKRUN_VM_KERNEL to an uncompressed vmlinux)",
            dir.display()
        ));
    };
    let version = bzimage
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    let cached = dir.join(format!("vmlinux-{version}"));
    if cached.is_file() {
        return Ok(cached);
    }
    let started = Instant::now();
    let elf = extract_vmlinux(&bzimage)?;
    eprintln!(
        "vm: {} extracted in {:.1} s",
        bzimage.display(),
        started.elapsed().as_secs_f64()
    );
    // Several test binaries may extract at once: write aside, then rename.
    let partial = dir.join(format!("vmlinux-{version}.{}.partial", std::process::id()));
    fs::write(&partial, &elf).map_err(|e| format!("{}: {e}", partial.display()))?;
    fs::rename(&partial, &cached).map_err(|e| format!("{}: {e}", cached.display()))?;
    Ok(cached)
}

/// The ELF inside a bzImage is an xz stream (as the kernel's
/// scripts/extract-vmlinux finds it): try each xz magic until one
/// decompresses to an ELF.
fn extract_vmlinux(bzimage: &Path) -> Result<Vec<u8>, String> {
    let image = fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    let magic = b"\xfd7zXZ\x00";
    for start in
        (0..image.len().saturating_sub(magic.len())).filter(|&i| image[i..].starts_with(magic))
    {
        let mut xz = Command::new("xz")
            .args(["-dc", "--single-stream"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run xz to extract the kernel (package xz-utils): {e}"))?;
        let mut stdin = xz.stdin.take().unwrap();
        let tail = image[start..].to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&tail); // xz stops reading after the stream
        });
        let mut elf = Vec::new();
        xz.stdout
            .take()
            .unwrap()
            .read_to_end(&mut elf)
            .map_err(|e| format!("reading xz output: {e}"))?;
        let _ = xz.wait();
        let _ = writer.join();
        if elf.starts_with(b"\x7fELF") {
            return Ok(elf);
        }
    }
    Err(format!(
        "{}: no xz-compressed ELF kernel inside",
        bzimage.display()
    ))
}

/// Builds packrun as a static musl binary in its own target dir
/// (target/vm/build), so it never waits on or invalidates other builds.
/// The dev profile: from scratch it builds in half the time of release
/// (23 s against 46 s measured on 2 CPUs), which is most of the suite's cost,
/// and it keeps overflow checks on.
fn build_static_packrun() -> Result<PathBuf, String> {
    let target = "x86_64-unknown-linux-musl";
    let target_dir = cache_dir().join("build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "--bin",
            "packrun",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(&target_dir)
        // No debug info: faster to build and a smaller initramfs to boot.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run cargo to build the static packrun: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("can't find crate for `std`")
            || stderr.contains("target may not be installed")
        {
            return Err(
                "the musl target is missing: run tests/vm/ci-install.sh, or `rustup target add x86_64-unknown-linux-musl`"
                    .into(),
            );
        }
        if stderr.contains("x86_64-linux-musl-gcc") || stderr.contains("musl-gcc") {
            return Err(
                "musl-gcc is missing (the zstd crate compiles C for the musl target): run tests/vm/ci-install.sh, or `apt-get install musl-tools`"
                    .into(),
            );
        }
        // A missing tool fails the test, naming what to install; so does code that does not build.
        panic!("building the static packrun failed:\n{stderr}");
    }
    eprintln!(
        "vm: static packrun built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let binary = target_dir.join(target).join("debug/packrun");
    match binary.is_file() {
        true => Ok(binary),
        false => Err(format!(
            "cargo built packrun, but {} is not there",
            binary.display()
        )),
    }
}

/// KVM only where it really works: the CPU shows vmx or svm and /dev/kvm is
/// not the nested "PVM" device (kvm_pvm module), under which the stock kernel
/// does not boot. `PACKRUN_VM_ACCEL=tcg|kvm` overrides.
fn accel() -> &'static str {
    match std::env::var("PACKRUN_VM_ACCEL").as_deref() {
        Ok("kvm") => return "kvm",
        Ok("tcg") => return "tcg",
        _ => {}
    }
    let flags = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let usable = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if virt && usable && !Path::new("/sys/module/kvm_pvm").exists() {
        "kvm"
    } else {
        "tcg"
    }
}

/// Boots `vm` and returns what the guest printed. `Err` when the guest never
/// reached /init in any attempt, crashed (no exit marker), or overran
/// `vm.timeout`; the message holds the console's tail.
pub fn boot(tools: &Tools, vm: &Vm) -> Result<Output, String> {
    // One VM at a time: each one's TCG threads already fill the machine, and
    // two at once make boots slow enough to trip the watchdog.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let dir = tempfile::Builder::new()
        .prefix("packrun-vm-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let initrd = dir.path().join("initrd.cpio");
    fs::write(&initrd, initramfs(tools, vm)?).map_err(|e| format!("{}: {e}", initrd.display()))?;
    let accel = accel();
    let deadline = Instant::now() + vm.timeout;
    let mut last_console = String::new();
    for attempt in 1..=BOOT_ATTEMPTS {
        match boot_once(tools, vm, accel, dir.path(), &initrd, deadline)? {
            Attempt::Done(mut out) => {
                out.attempts = attempt;
                return Ok(out);
            }
            Attempt::NoInit(console) => {
                eprintln!(
                    "vm: boot attempt {attempt} never reached /init within {:?}; retrying",
                    boot_timeout()
                );
                last_console = console;
            }
        }
    }
    Err(format!(
        "the guest never reached /init in {BOOT_ATTEMPTS} boots; console tail:\n{}",
        tail(&last_console, 40)
    ))
}

enum Attempt {
    Done(Output),
    NoInit(String),
}

/// Kills and reaps qemu on every path out, panics included.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn boot_once(
    tools: &Tools,
    vm: &Vm,
    accel: &'static str,
    dir: &Path,
    initrd: &Path,
    deadline: Instant,
) -> Result<Attempt, String> {
    let console = dir.join("console.log");
    let stdout = dir.join("stdout.log");
    let stderr = dir.join("stderr.log");
    let qemu_log = dir.join("qemu.log");
    for f in [&console, &stdout, &stderr] {
        fs::write(f, b"").map_err(|e| format!("{}: {e}", f.display()))?;
    }
    // setpriv (util-linux) makes the kernel SIGKILL qemu when the test
    // thread dies, so not even a killed test run leaves a VM behind.
    let mut cmd = match which("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&tools.qemu);
            c
        }
        None => Command::new(&tools.qemu),
    };
    cmd.args(qemu_args(vm, accel))
        .arg("-kernel")
        .arg(&tools.vmlinux)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(cmdline(vm))
        .args(["-serial", &format!("file:{}", console.display())])
        .args(["-serial", &format!("file:{}", stdout.display())])
        .args(["-serial", &format!("file:{}", stderr.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&qemu_log).map_err(|e| format!("{}: {e}", qemu_log.display()))?);
    let started = Instant::now();
    let mut qemu = Qemu(
        cmd.spawn()
            .map_err(|e| format!("cannot start {}: {e}", tools.qemu.display()))?,
    );
    let mut boot_time = None;
    let status = loop {
        if let Some(status) = qemu
            .0
            .try_wait()
            .map_err(|e| format!("waiting for qemu: {e}"))?
        {
            break status;
        }
        if boot_time.is_none() && read_lossy(&console).contains(INIT_MARKER) {
            boot_time = Some(started.elapsed());
        }
        if boot_time.is_none() && started.elapsed() > boot_timeout() {
            drop(qemu);
            return Ok(Attempt::NoInit(read_lossy(&console)));
        }
        if Instant::now() > deadline {
            drop(qemu);
            return Err(format!(
                "the VM overran its {:?} timeout and was killed; console tail:\n{}\nstdout tail:\n{}",
                vm.timeout,
                tail(&read_lossy(&console), 30),
                tail(&read_lossy(&stdout), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total_time = started.elapsed();
    let console_text = read_lossy(&console);
    let Some(boot_time) =
        boot_time.or_else(|| console_text.contains(INIT_MARKER).then_some(total_time))
    else {
        let qemu_err = read_lossy(&qemu_log);
        if !status.success() {
            return Err(format!(
                "qemu failed ({status}):\n{qemu_err}\nconsole tail:\n{}",
                tail(&console_text, 30)
            ));
        }
        return Ok(Attempt::NoInit(console_text));
    };
    let marker = console_text
        .lines()
        .find_map(|l| l.trim_end().strip_prefix(EXIT_MARKER).map(str::to_owned));
    let Some(code) = marker.and_then(|m| m.trim().parse::<i32>().ok()) else {
        return Err(format!(
            "the guest crashed: no exit marker on the console (qemu {status}); console tail:\n{}\nstdout tail:\n{}\nstderr tail:\n{}",
            tail(&console_text, 40),
            tail(&read_lossy(&stdout), 20),
            tail(&read_lossy(&stderr), 20)
        ));
    };
    Ok(Attempt::Done(Output {
        status: code,
        stdout: read_lossy(&stdout),
        stderr: read_lossy(&stderr),
        console: console_text,
        boot_time,
        total_time,
        attempts: 0,
        accel,
    }))
}

fn qemu_args(vm: &Vm, accel: &str) -> Vec<String> {
    let t = vm.topology;
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &str| a.extend(s.split(' ').map(str::to_owned));
    push("-nodefaults -no-user-config -display none -no-reboot");
    if accel == "kvm" {
        push("-accel kvm -cpu host");
    } else if t.cpus > 8 {
        // Above 8 vCPUs multi-threaded TCG hung in boot now and then.
        push("-accel tcg,thread=single");
    } else {
        push("-accel tcg");
    }
    push(&format!("-m {}M", t.memory_mib));
    let nodes = t.nodes.max(1);
    assert!(
        t.cpus % nodes == 0 && t.memory_mib % nodes == 0,
        "{t:?}: CPUs and memory must split evenly across nodes"
    );
    push(&format!(
        "-smp {},sockets={nodes},cores={},threads=1",
        t.cpus,
        t.cpus / nodes
    ));
    if nodes > 1 {
        for n in 0..nodes {
            push(&format!(
                "-object memory-backend-ram,id=mem{n},size={}M",
                t.memory_mib / nodes
            ));
            push(&format!("-numa node,nodeid={n},memdev=mem{n}"));
            push(&format!("-numa cpu,node-id={n},socket-id={n}"));
        }
    }
    a
}

fn cmdline(vm: &Vm) -> String {
    let layout = vm.layout;
    let mut c = String::from(
        "console=ttyS0 panic=-1 oops=panic loglevel=4 lpj=9200000 mitigations=off tsc=reliable \
         no_timer_check cryptomgr.notests rdinit=/init quiet",
    );
    if !matches!(layout, Layout::V1 | Layout::V1Comounted) {
        c.push_str(" cgroup_no_v1=all");
    }
    write!(c, " packrun.layout={}", layout.name()).unwrap();
    if vm.initramfs_root {
        c.push_str(" packrun.initramfs=1");
    }
    c
}

/// The guest's root: busybox, /init, packrun, the scenario files and a
/// run.sh sourcing them, and tests/vm/jobs/.
fn initramfs(tools: &Tools, vm: &Vm) -> Result<Vec<u8>, String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let vmdir = repo().join("tests/vm");
    let mut c = Cpio::default();
    for d in [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "run", "scenario", "jobs", "usr", "usr/bin",
        "usr/sbin",
    ] {
        c.dir(d);
    }
    c.char_device("dev/console", 5, 1);
    c.file("bin/busybox", 0o755, &read(&tools.busybox)?);
    c.file("bin/sh", 0o755, &read(&tools.busybox)?);
    c.file("init", 0o755, &read(&vmdir.join("init.sh"))?);
    c.file("bin/packrun", 0o755, &read(&tools.packrun)?);
    for (name, binary) in guest_helpers()? {
        c.file(&format!("usr/bin/{name}"), 0o755, &binary);
    }
    let mut run = String::from("# Generated by tests/vm/harness.rs\n. /scenario/lib.sh\n");
    let t = vm.topology;
    let (nodes, per) = (t.nodes.max(1), t.cpus / t.nodes.max(1));
    let node_cpus: Vec<String> = (0..nodes)
        .map(|n| match per {
            1 => format!("{n}"),
            _ => format!("{}-{}", n * per, n * per + per - 1),
        })
        .collect();
    writeln!(run, "export PACKRUN_VM_NODE_CPUS='{}'", node_cpus.join(" ")).unwrap();
    c.file(
        "scenario/lib.sh",
        0o644,
        &read(&vmdir.join("scenarios/lib.sh"))?,
    );
    for s in &vm.scenarios {
        c.file(
            &format!("scenario/{s}"),
            0o644,
            &read(&vmdir.join("scenarios").join(s))?,
        );
        writeln!(run, "echo '== {s}'\n. /scenario/{s}").unwrap();
    }
    run.push_str("finish\n");
    c.file("scenario/run.sh", 0o755, run.as_bytes());
    if !vm.modules.is_empty() {
        c.dir("modules");
        let mut order = String::new();
        for (name, ko) in kernel_modules(tools, vm.modules)? {
            c.file(&format!("modules/{name}.ko"), 0o644, &ko);
            writeln!(order, "{name}").unwrap();
        }
        c.file("modules/order", 0o644, order.as_bytes());
    }
    let jobs = vmdir.join("jobs");
    if jobs.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(&jobs)
            .map_err(|e| format!("{}: {e}", jobs.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            c.file(
                &format!("jobs/{}", e.file_name().to_string_lossy()),
                0o644,
                &read(&e.path())?,
            );
        }
    }
    Ok(c.finish())
}

/// `wanted` kernel modules and those they depend on, each after its
/// dependencies, as (name, uncompressed .ko), from the `lib/modules/`
/// of the kernel package that `tools.vmlinux` came from. The
/// dependencies are read from modules.dep where the package has one,
/// else from each module's own `depends=` (its .modinfo, which is what
/// depmod reads too: Debian's package ships no modules.dep, its
/// postinst runs depmod).
fn kernel_modules(tools: &Tools, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let version = tools
        .vmlinux
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinux-"))
        .ok_or_else(|| {
            format!(
                "kernel modules need the Debian kernel package: {} is not one extracted from it",
                tools.vmlinux.display()
            )
        })?;
    let dir = fs::read_dir(cache_dir().join("kernel"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|pkg| pkg.path().join("lib/modules").join(version))
        .find(|d| d.is_dir())
        .ok_or_else(|| format!("no lib/modules/{version} in the unpacked kernel package"))?;
    // Every module file by its name (`-` and `_` are one to modprobe).
    let mut files = std::collections::HashMap::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .flatten()
        {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) = name
                .strip_suffix(".ko")
                .or_else(|| name.strip_suffix(".ko.xz"))
            {
                files.insert(stem.replace('-', "_"), p);
            }
        }
    }
    let dep_file = fs::read_to_string(dir.join("modules.dep")).ok();
    let mut loaded: Vec<(String, Vec<u8>)> = Vec::new();
    // Depth first: a module goes in after everything it depends on.
    fn visit(
        name: &str,
        files: &std::collections::HashMap<String, PathBuf>,
        dep_file: &Option<String>,
        seen: &mut Vec<String>,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        seen.push(name.to_owned());
        let path = files
            .get(name)
            .ok_or_else(|| format!("the kernel package has no module `{name}`"))?;
        let ko = read_module(path)?;
        for dep in module_deps(name, &ko, dep_file) {
            visit(&dep, files, dep_file, seen, out)?;
        }
        out.push((name.to_owned(), ko));
        Ok(())
    }
    let mut seen = Vec::new();
    for name in wanted {
        visit(
            &name.replace('-', "_"),
            &files,
            &dep_file,
            &mut seen,
            &mut loaded,
        )?;
    }
    Ok(loaded)
}

/// A module file's bytes, decompressed when it is `.ko.xz`.
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    if path.extension().is_some_and(|x| x == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .map_err(|e| {
                format!(
                    "cannot run xz for {} (package xz-utils): {e}",
                    path.display()
                )
            })?;
        if !out.status.success() {
            return Err(format!("xz -dc {} failed", path.display()));
        }
        return Ok(out.stdout);
    }
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The modules `name` depends on: its modules.dep line ("kernel/.../a.ko:
/// kernel/.../b.ko ...") when there is one, else the `depends=a,b` of its
/// .modinfo section.
fn module_deps(name: &str, ko: &[u8], dep_file: &Option<String>) -> Vec<String> {
    let stem = |p: &str| {
        let file = p.rsplit('/').next().unwrap_or(p);
        let file = file.strip_suffix(".xz").unwrap_or(file);
        file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
    };
    if let Some(line) = dep_file.as_deref().and_then(|d| {
        d.lines()
            .find(|l| l.split(':').next().is_some_and(|m| stem(m) == name))
    }) {
        return line
            .split_once(':')
            .map(|(_, deps)| deps.split_whitespace().map(stem).collect())
            .unwrap_or_default();
    }
    ko.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// (name, executable) of each program for the guest's /usr/bin.
type Helpers = Vec<(String, Vec<u8>)>;

/// The C programs of tests/vm/helpers/, built static once per test binary
/// (the guest has no C library).
fn guest_helpers() -> Result<Helpers, String> {
    static BUILT: OnceLock<Result<Helpers, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src = repo().join("tests/vm/helpers");
            let out = repo().join("target/vm/helpers");
            fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let mut built = Vec::new();
            let mut sources: Vec<_> = fs::read_dir(&src)
                .map_err(|e| format!("{}: {e}", src.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "c"))
                .collect();
            sources.sort();
            for c in sources {
                let name = c.file_stem().unwrap().to_string_lossy().into_owned();
                let exe = out.join(format!("{name}.{}", std::process::id()));
                let st = std::process::Command::new("cc")
                    .args(["-static", "-O2", "-o"])
                    .arg(&exe)
                    .arg(&c)
                    .status()
                    .map_err(|e| format!("cc: {e}"))?;
                if !st.success() {
                    return Err(format!("cc -static {} failed", c.display()));
                }
                let bytes = fs::read(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
                let _ = fs::remove_file(&exe);
                built.push((name, bytes));
            }
            Ok(built)
        })
        .clone()
}

/// An uncompressed newc ("070701") cpio archive, as the kernel unpacks into
/// its initramfs.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len(),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), b"");
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), b"");
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), b"");
        self.bytes
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The tools, or a failure of `test` saying which is missing and how to
/// install it (tests/vm/ci-install.sh installs them all): a VM test never
/// passes without having booted its VM.
pub fn tools_or_fail(test: &str) -> Tools {
    tools().unwrap_or_else(|why| panic!("{test}: the VM test cannot run: {why}"))
}
