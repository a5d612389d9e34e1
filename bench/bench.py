#!/usr/bin/env python3
"""packrun side by side with crun, runc, bwrap, BenchExec, GNU parallel, xargs,
hyperfine, HyperQueue and GNU time, on this machine, in one run; and
packrun's own cost and how validate and plan scale to a million runs.

Run it through bench/run.sh, which installs the peers and builds packrun first.
It prints one markdown table and writes it, with every raw sample as CSV, to
results/bench/<UTC timestamp>/. It measures; it asserts nothing about time.

Timing: every start-to-exit figure is taken by this driver around
posix_spawn() and wait4() with a monotonic clock, the same way for every tool,
so the driver's own spawn cost (~0.1 ms) is in every figure alike.

--baseline PATH: another packrun binary (say, one built from an earlier
commit) measured beside this one. The per-run section gains
`packrun exec (baseline)` and the batch section `packrun run (baseline)`:
the same arguments, timed the same way, interleaved round robin with every
other tool in the same rounds, so both binaries see the same machine state.
Their rows say new/baseline (this packrun's median ÷ the baseline's) and the
difference of the medians. Without the option nothing changes.
"""

import argparse
import csv
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "bench", "bin")
VENV = os.path.join(ROOT, "target", "bench", "venv")
PACKRUN = os.path.join(ROOT, "target", "release", "packrun")
PLAN_BENCH = os.path.join(ROOT, "target", "release", "examples", "plan_bench")
RUNEXEC = os.path.join(VENV, "bin", "runexec")
UNIFIED = "/sys/fs/cgroup/unified"
NPROC = os.cpu_count() or 1
MIB = 1 << 20

DEVNULL = os.open(os.devnull, os.O_RDWR)


def which(name):
    p = shutil.which(name)
    if p is None:
        sys.exit(f"bench: `{name}` is not installed; run bench/run.sh, which installs the peers")
    return p


def spawn_timed(argv):
    """Start-to-exit of argv in nanoseconds; its output is discarded."""
    fa = [(os.POSIX_SPAWN_DUP2, DEVNULL, fd) for fd in (0, 1, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    return t1 - t0, os.waitstatus_to_exitcode(status)


def run_captured(argv, timeout=600):
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter_ns() - t0, p.returncode, p.stdout, p.stderr


# --- the crun worker: a process in a private mount namespace -----------------


def worker_main():
    """Serves timed runs from inside a private mount namespace in which
    /sys/fs/cgroup/unified is unmounted (crun refuses hybrid cgroup hosts).
    Reads one JSON request per line, answers one JSON line."""
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("capture"):
            ns, rc, out, err = run_captured(req["argv"])
            ans = {"ns": ns, "rc": rc, "out": out, "err": err}
        else:
            ns, rc = spawn_timed(req["argv"])
            ans = {"ns": ns, "rc": rc}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


class Worker:
    def __init__(self):
        self.unmounted = os.path.ismount(UNIFIED)
        script = f"umount {UNIFIED} 2>/dev/null; exec \"$0\" \"$@\"" if self.unmounted else 'exec "$0" "$@"'
        self.p = subprocess.Popen(
            [which("unshare"), "-m", "--propagation", "private", "sh", "-c", script,
             sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, argv, capture=False):
        self.p.stdin.write(json.dumps({"argv": argv, "capture": capture}) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the crun worker died")
        return json.loads(line)

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


# --- workspace: OCI bundles, rootfs, I/O dir ---------------------------------


def oci_config(rootfs, args, cpus):
    """The OCI runtime config both crun and runc run: the same limits and
    namespaces as `packrun exec --cpuset 1 --memory 256MiB --pids 64`."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "cpu": {"cpus": cpus},
                "memory": {"limit": 256 * MIB, "swap": 256 * MIB},
                "pids": {"limit": 64},
            },
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Workspace:
    """A temp dir on disk holding the bundles, the host root bound read-only
    for the OCI runtimes, and the I/O target dir. The driver runs in its own
    mount namespace, so the bind mount dies with it even on SIGKILL."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="packrun-bench-", dir="/var/tmp")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.io = os.path.join(self.dir, "io")
        os.mkdir(self.rootfs)
        os.mkdir(self.io)
        # Non-recursive bind: the host tree without /proc, /sys, /dev, which
        # the runtimes mount fresh, as bwrap and packrun do.
        subprocess.run(["mount", "--bind", "/", self.rootfs], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", self.rootfs], check=True)
        self.bundle = self.make_bundle("one", ["/bin/true"], "1")
        self.bundle_all = self.make_bundle("all", ["/bin/true"], f"0-{NPROC - 1}")

    def make_bundle(self, name, args, cpus):
        d = os.path.join(self.dir, "bundle-" + name)
        os.mkdir(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(oci_config(self.rootfs, args, cpus), f, indent=1)
        return d

    def close(self):
        subprocess.run(["umount", self.rootfs], stderr=subprocess.DEVNULL)
        if not os.path.ismount(self.rootfs):
            shutil.rmtree(self.dir, ignore_errors=True)


# --- statistics and output ----------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def ms(ns):
    return f"{ns / 1e6:.2f} ms"


def ratio(x, ref):
    if ref is None or x is None or not ref or math.isnan(ref) or math.isnan(x):
        return "—"
    return f"{x / ref:.2f}×"


def pct(measured, truth):
    return f"{(measured - truth) / truth * 100:+.2f}%"


class Results:
    def __init__(self):
        self.rows = []  # (benchmark, tool, result, vs packrun, notes)
        self.samples = []  # raw CSV rows

    def row(self, bench, tool, result, vs="—", notes=""):
        self.rows.append((bench, tool, result, vs, notes))

    def sample(self, section, tool, rep, metric, value, truth="", exit_code="", note=""):
        self.samples.append([section, tool, rep, metric, value, truth, exit_code, note])

    def table(self):
        head = ["Benchmark", "Tool", "Result", "vs packrun", "Notes"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
        return "\n".join(lines) + "\n"


# --- the tools ------------------------------------------------------------------


class PerRunTool:
    def __init__(self, name, argv, notes="", worker=None):
        self.name, self.argv_of, self.notes, self.worker = name, argv, notes, worker
        self.times, self.failures, self.error = [], 0, None

    def once(self, i, capture=False):
        argv = self.argv_of(i)
        if self.worker:
            a = self.worker.call(argv, capture)
            return a["ns"], a["rc"], a.get("out", ""), a.get("err", "")
        if capture:
            return run_captured(argv)
        return spawn_timed(argv) + ("", "")


BASELINE_SUFFIX = " (baseline)"

# bubblewrap with the namespaces packrun exec makes: all of them, the user
# namespace included; the host root read-only; fresh /proc, /dev and /tmp.
BWRAP_ARGS = ["--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def packrun_exec_argv(binary):
    return lambda i: [binary, "exec", "--cpuset", "1", "--memory", "256MiB", "--pids", "64", "--", "/bin/true"]


def per_run_tools(ws, worker, tag, baseline=None):
    unshare, bwrap, crun, runc = which("unshare"), which("bwrap"), which("crun"), which("runc")
    crun_note = ("crun refuses hybrid cgroup hosts: run in a private mount namespace with "
                 f"{UNIFIED} unmounted; crun's own start-to-exit timed inside it"
                 if worker.unmounted else "")
    exec_notes = "host root read-only; cpuset, memory, pids limits; user/pid/mount/uts/ipc/net/cgroup ns"
    base = [PerRunTool("packrun exec" + BASELINE_SUFFIX, packrun_exec_argv(baseline),
                       f"{baseline}, the same arguments")] if baseline else []
    return [
        PerRunTool("packrun exec", packrun_exec_argv(PACKRUN), exec_notes),
        *base,
        PerRunTool("crun run", lambda i: [crun, "run", "--bundle", ws.bundle, f"{tag}-c{i}"],
                   "OCI bundle: host root bound read-only; cpuset 1, memory 256MiB, pids 64; "
                   "pid/mount/uts/ipc/net ns. " + crun_note, worker=worker),
        PerRunTool("runc run", lambda i: [runc, "run", "--bundle", ws.bundle, f"{tag}-r{i}"],
                   "the same OCI bundle as crun"),
        PerRunTool("bwrap", lambda i: [bwrap, *BWRAP_ARGS, "/bin/true"],
                   "`bwrap " + " ".join(BWRAP_ARGS) + " /bin/true`: every namespace bwrap makes (user, pid, "
                   "net, ipc, uts, cgroup, mount), read-only root, fresh /proc, /dev, /tmp; "
                   "no cgroup, no limits"),
        PerRunTool("BenchExec runexec", lambda i: [RUNEXEC, "--cores", "1", "--memlimit", str(256 * MIB),
                                                   "--read-only-dir", "/", "--full-access-dir", ws.dir,
                                                   "--output", os.path.join(ws.dir, "runexec.log"),
                                                   "--", "/bin/true"],
                   "container mode, --read-only-dir / (its default overlay of / fails here); "
                   "no pids limit option; a Python process per run"),
        PerRunTool("unshare (floor)", lambda i: [unshare, "--pid", "--fork", "--mount", "--uts", "--ipc",
                                                 "--net", "/bin/true"],
                   "the same namespaces, nothing else: the floor"),
    ]


def bench_per_run(res, tools, reps, warmup):
    live = []
    for t in tools:
        ns, rc, out, err = t.once("check", capture=True)
        if rc != 0:
            t.error = f"unavailable (exit {rc}): {gist(err or out)}"
            print(f"  {t.name}: {t.error}", file=sys.stderr)
        else:
            live.append(t)
    print(f"  {len(live)} tools, {warmup} warm-up + {reps} measured rounds, interleaved", file=sys.stderr)
    for r in range(warmup + reps):
        # Round robin, starting one tool later each round, so neither drift nor
        # the position after another tool favours anyone.
        k = r % len(live) if live else 0
        for t in live[k:] + live[:k]:
            ns, rc = t.once(r)[:2]
            if r < warmup:
                continue
            res.sample("per_run", t.name, r - warmup, "start_to_exit_ns", ns, exit_code=rc)
            if rc == 0:
                t.times.append(ns)
            else:
                t.failures += 1
        if r % 50 == 49:
            print(f"  round {r + 1}/{warmup + reps}", file=sys.stderr)
    ref = tools[0]
    ref_med = median(ref.times) if ref.times else None
    floor = tools[-1]
    for t in tools:
        if t.error:
            res.row("/bin/true start-to-exit, per run", t.name, t.error, "—", t.notes)
            continue
        m = median(t.times)
        notes = t.notes
        if (t is ref or t.name == ref.name + BASELINE_SUFFIX) and floor.times:
            notes = f"{m / median(floor.times):.2f}× the unshare floor; " + notes
        if t.failures:
            notes = f"{t.failures} failed runs left out; " + notes
        if t.name == "bwrap" and ref_med:
            # The target: packrun exec no slower than bwrap with the same namespaces.
            notes = f"packrun exec ÷ bwrap = {ref_med / m:.2f}× (target ≤ 1.00×); " + notes
        notes = vs_baseline(t.name, m, {u.name: median(u.times) for u in tools if not u.error and u.times},
                            lambda x: ms(x)) + notes
        res.row("/bin/true start-to-exit, per run",
                t.name, f"median {ms(m)}, p90 {ms(p90(t.times))} (n={len(t.times)})",
                ratio(m, ref_med), notes)


def vs_baseline(name, m, medians, fmt):
    """For a tool measured beside its baseline: "new/baseline 1.04× (+0.12 ms); "."""
    if name.endswith(BASELINE_SUFFIX):
        new = medians.get(name[:-len(BASELINE_SUFFIX)])
        base = m
    else:
        new = m
        base = medians.get(name + BASELINE_SUFFIX)
    if new is None or base is None or not base or math.isnan(new) or math.isnan(base):
        return ""
    d = new - base
    sign = "+" if d >= 0 else "−"
    return f"new/baseline {new / base:.3f}× ({sign}{fmt(abs(d))}, {sign}{abs(d) / base * 100:.1f}%); "


# --- batch throughput -----------------------------------------------------------


def batch_jobfile(ws, n):
    path = os.path.join(ws.dir, "batch.yaml")
    with open(path, "w") as f:
        f.write(f"""version: 1
name: bench-true
jobs:
  t:
    command: ["/bin/true"]
    repetitions: {n}
    resources: {{cpus: 1}}
""")
    return path


def count_completed(runs_csv):
    try:
        with open(runs_csv) as f:
            return sum(1 for row in csv.DictReader(f) if row.get("state") == "COMPLETED")
    except OSError:
        return 0


# HyperQueue's Python API, run by the venv's Python: a LocalCluster (its
# server and one worker, threads of that Python process) with a worker of
# `cores` CPUs; one job of n × /bin/true; the time from submit() to
# wait_for_jobs() returning, cluster start excluded. Prints one JSON line.
HQ_SCRIPT = r"""
import json, os, sys, time
from hyperqueue import Job, LocalCluster
from hyperqueue.cluster import WorkerConfig
n, cores = int(sys.argv[1]), int(sys.argv[2])
with LocalCluster(server_dir=os.path.abspath("server")) as cluster:
    cluster.start_worker(WorkerConfig(cores=cores))
    client = cluster.client()
    job = Job()
    for _ in range(n):
        job.program(["/bin/true"])
    wall0, t0 = time.time_ns(), time.perf_counter_ns()
    ok = client.wait_for_jobs([client.submit(job)], raise_on_error=False)
    ns = time.perf_counter_ns() - t0
# Each task's stdout file (HQ's default, in the working directory) is made as
# the task starts: the newest one dates the last task's start.
outs = [e.stat().st_mtime_ns for e in os.scandir(".") if e.name.endswith(".stdout")]
print(json.dumps({"ns": ns, "ok": ok, "outputs": len(outs),
                  "last_start_ns": max(outs) - wall0 if outs else None}))
"""
HQ_PYTHON = os.path.join(VENV, "bin", "python")


def hyperqueue_once(ws, n, k):
    """One HyperQueue batch in a fresh dir (its TMPDIR and working directory
    too, so every file it makes is removed after). (ns, exit code, note,
    error or None, the last task's start after submit in ns or None)."""
    work = tempfile.mkdtemp(prefix=f"hq-{k}-", dir=ws.dir)
    env = dict(os.environ, TMPDIR=work)
    try:
        p = subprocess.Popen([HQ_PYTHON, "-c", HQ_SCRIPT, str(n), str(NPROC)], cwd=work, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.communicate()
            return None, -9, "", "timed out after 600 s", None
        finally:
            # The cluster lives in that Python process; anything left in its
            # session (a task it did not reap) goes with it.
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
        try:
            a = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None, p.returncode, "", f"exit {p.returncode}: {gist(err or out)}", None
        last = a["last_start_ns"]
        note = f"{a['outputs']} task outputs" + (f"; the last task started {last / 1e9:.3f} s after submit"
                                                 if last is not None else "")
        if not a["ok"] or a["outputs"] != n:
            return a["ns"], p.returncode, note, f"{a['outputs']} of {n} tasks started, some failed", None
        return a["ns"], p.returncode, note, None, a["last_start_ns"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_batch(res, ws, worker, n, reps, tag, baseline=None):
    jobfile = batch_jobfile(ws, n)
    sh = which("sh")
    crun = which("crun")
    outs = []

    def packrun_argv(binary, prefix):
        def argv(k):
            out = os.path.join(ws.dir, f"{prefix}-{k}")
            outs.append(out)
            return [binary, "run", jobfile, "--out", out, "--quiet"]
        return argv

    base = [("packrun run" + BASELINE_SUFFIX, packrun_argv(baseline, "batch-baseline"), False,
             f"{baseline}, the same job file")] if baseline else []
    tools = [
        ("packrun run", packrun_argv(PACKRUN, "batch"), False,
         f"a job file: one job, /bin/true, repetitions {n}, cpus 1; each run in its own container and cgroups (a network namespace is reused by runs that do not overlap)"),
        *base,
        (f"GNU parallel -j {NPROC}", lambda k: [sh, "-c", f"seq {n} | {which('parallel')} --will-cite -j {NPROC} true"],
         False, "isolates nothing"),
        (f"xargs -P {NPROC}", lambda k: [sh, "-c", f"seq {n} | xargs -n1 -P {NPROC} true"], False, "isolates nothing"),
        (f"crun run via xargs -P {NPROC}",
         lambda k: [sh, "-c", f"seq {n} | xargs -P {NPROC} -I{{}} {crun} run --bundle {ws.bundle_all} {tag}-b{k}-{{}}"],
         True, f"the OCI bundle above with cpuset 0-{NPROC - 1}; in the crun worker's mount namespace"),
        ("hyperfine -N", lambda k: [which("hyperfine"), "-N", "--runs", str(n), "--style", "none", "/bin/true"],
         False, "sequential (one at a time), no isolation; records each run's time"),
        (f"HyperQueue ({NPROC} CPUs)", None, "hq",
         f"isolates nothing (no namespaces, no cgroup, no CPU pinning); Python API: a LocalCluster (server and "
         f"one worker, threads of one Python process) with a worker of {NPROC} CPUs, so {NPROC} tasks at a time; "
         f"one job of {n} `/bin/true` tasks, each task's stdout and stderr to a file (HQ's default); "
         f"submit() to wait_for_jobs() returning, the cluster's start left out; wait_for_jobs() polls every 1 s"),
    ]
    times = {name: [] for name, *_ in tools}
    errors = {}
    hq_last_start = []
    for k in range(reps):
        j = k % len(tools)
        for name, argv_of, in_worker, _ in tools[j:] + tools[:j]:
            if name in errors:
                continue
            note = ""
            if in_worker == "hq":
                ns, rc, note, error, last_start = hyperqueue_once(ws, n, k)
                if error:
                    errors[name] = error
                    print(f"  {name}: {error}", file=sys.stderr)
                    res.sample("batch", name, k, "wall_ns", ns if ns is not None else "", exit_code=rc, note=error)
                    continue
                hq_last_start.append(last_start)
            elif in_worker:
                a = worker.call(argv_of(k))
                ns, rc = a["ns"], a["rc"]
            else:
                ns, rc = spawn_timed(argv_of(k))
            if name.startswith("packrun run"):
                done = count_completed(os.path.join(outs[-1], "runs.csv"))
                note = f"{done} COMPLETED rows"
                if done != n:
                    errors[name] = f"exit {rc}, {done} of {n} runs COMPLETED"
            res.sample("batch", name, k, "wall_ns", ns, exit_code=rc, note=note)
            if rc != 0 and name not in errors:
                errors[name] = f"exit {rc}"
            if name not in errors:
                times[name].append(ns)
            print(f"  {name}: {ms(ns)} rc={rc}", file=sys.stderr)
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    ref = median(times["packrun run"]) if times["packrun run"] and "packrun run" not in errors else None
    medians = {name: median(xs) for name, xs in times.items() if xs and name not in errors}
    for name, _, _, notes in tools:
        if name in errors:
            res.row(f"{n} × /bin/true, batch", name, "failed: " + errors[name], "—", notes)
            continue
        m = median(times[name])
        notes = vs_baseline(name, m, medians, lambda x: f"{x / 1e9:.3f} s") + notes
        if name.startswith("packrun run"):
            xs = sorted(times[name])
            spread = f", min {xs[0] / 1e9:.2f} s, max {xs[-1] / 1e9:.2f} s" if len(xs) > 1 else ""
        else:
            spread = ""
        if hq_last_start and name.startswith("HyperQueue"):
            notes += (f"; the last task started {median(hq_last_start) / 1e9:.2f} s after submit "
                      f"(its stdout file's mtime, median)")
        res.row(f"{n} × /bin/true, batch", name,
                f"{m / 1e9:.2f} s ({n / (m / 1e9):.0f} runs/s, n={len(times[name])}{spread})", ratio(m, ref), notes)


# --- counters: what four software counters cost a run ----------------------------

COUNTERS4 = "task-clock,context-switches,cpu-migrations,page-faults"


def bench_counters(res, ws, reps, batch_n, batch_reps, baseline=None, warmup=5):
    """What four software counters cost a run: in one batch, a job with
    them and one without, their runs interleaved one at a time (each run's
    wall_time_s from runs.csv: its cgroup, container, perf events, /bin/true
    and its end); then packrun exec with and without them, interleaved
    round robin in the same rounds (with --baseline, the baseline's exec
    too); then, with --baseline, a batch of batch_n runs without counters,
    this packrun against the baseline, interleaved."""
    jobfile = os.path.join(ws.dir, "counters.yaml")
    with open(jobfile, "w") as f:
        f.write(f"""version: 1
name: bench-counters
order: interleave
jobs:
  none:
    command: ["/bin/true"]
    repetitions: {reps}
  four:
    command: ["/bin/true"]
    repetitions: {reps}
    counters: [{COUNTERS4.replace(",", ", ")}]
""")
    out = os.path.join(ws.dir, "counters-interleaved")
    ns, rc = spawn_timed([PACKRUN, "run", jobfile, "--out", out, "--quiet", "--max-parallel", "1"])
    walls = {"none": [], "four": []}
    try:
        with open(os.path.join(out, "runs.csv")) as f:
            for row in csv.DictReader(f):
                if row.get("state") == "COMPLETED" and row.get("job") in walls:
                    walls[row["job"]].append(float(row["wall_time_s"]) * 1e9)
    except OSError:
        pass
    shutil.rmtree(out, ignore_errors=True)
    if walls["none"] and walls["four"]:
        none, four = median(walls["none"]), median(walls["four"])
        for job, m in (("none", none), ("four", four)):
            notes = (f"{ms(four - none)} more per run than none (target ≤ 0.2 ms); --counters {COUNTERS4}"
                     if job == "four" else "no counters")
            res.row("/bin/true per-run wall_time_s, counters, one batch", f"packrun run, job {job}",
                    f"median {ms(m)}, p90 {ms(p90(walls[job]))} (n={len(walls[job])})", ratio(m, none),
                    notes + f"; one batch, order: interleave, --max-parallel 1, whole batch {ns / 1e9:.2f} s")
    else:
        res.row("/bin/true per-run wall_time_s, counters, one batch", "packrun run", f"failed (exit {rc})", "—", "")
    plain = packrun_exec_argv(PACKRUN)
    tools = [
        PerRunTool("packrun exec", plain, "no counters"),
        PerRunTool("packrun exec --counters", lambda i: plain(i)[:2] + ["--counters", COUNTERS4] + plain(i)[2:],
                   f"--counters {COUNTERS4}: four perf events opened on the run's init, read at its end"),
    ]
    if baseline:
        tools.append(PerRunTool("packrun exec" + BASELINE_SUFFIX, packrun_exec_argv(baseline),
                                f"{baseline}, no counters"))
    for r in range(warmup + reps):
        k = r % len(tools)
        for t in tools[k:] + tools[:k]:
            ns, rc = t.once(r)[:2]
            if r < warmup:
                continue
            res.sample("counters", t.name, r - warmup, "start_to_exit_ns", ns, exit_code=rc)
            (t.times.append(ns) if rc == 0 else None)
            t.failures += rc != 0
    medians = {t.name: median(t.times) for t in tools if t.times}
    none = medians.get("packrun exec")
    for t in tools:
        if not t.times:
            res.row("/bin/true start-to-exit, counters", t.name, f"failed ({t.failures} runs)", "—", t.notes)
            continue
        m = median(t.times)
        notes = t.notes
        if t.name == "packrun exec --counters" and none:
            notes = f"{ms(m - none)} more per run than none (target ≤ 0.2 ms); " + notes
        notes = vs_baseline(t.name, m, medians, lambda x: ms(x)) + notes
        res.row("/bin/true start-to-exit, counters", t.name,
                f"median {ms(m)}, p90 {ms(p90(t.times))} (n={len(t.times)})", ratio(m, none), notes)
    if not baseline:
        return
    jobfile = batch_jobfile(ws, batch_n)
    runs = [("packrun run", PACKRUN), ("packrun run" + BASELINE_SUFFIX, baseline)]
    times = {name: [] for name, _ in runs}
    for k in range(batch_reps):
        for name, binary in runs[k % 2:] + runs[:k % 2]:
            out = os.path.join(ws.dir, f"counters-batch-{k}-{len(times[name])}-{name[-2:]}")
            ns, rc = spawn_timed([binary, "run", jobfile, "--out", out, "--quiet"])
            done = count_completed(os.path.join(out, "runs.csv"))
            shutil.rmtree(out, ignore_errors=True)
            res.sample("counters", name, k, "batch_wall_ns", ns, exit_code=rc, note=f"{done} COMPLETED rows")
            if rc == 0 and done == batch_n:
                times[name].append(ns)
            print(f"  {name}: {ms(ns)} rc={rc}", file=sys.stderr)
    medians = {name: median(xs) for name, xs in times.items() if xs}
    for name, _ in runs:
        if not times[name]:
            res.row(f"{batch_n} × /bin/true, batch, no counters", name, "failed", "—", "")
            continue
        m = median(times[name])
        res.row(f"{batch_n} × /bin/true, batch, no counters", name,
                f"{m / 1e9:.2f} s (n={len(times[name])})", ratio(m, medians.get("packrun run")),
                vs_baseline(name, m, medians, lambda x: f"{x / 1e9:.3f} s"))


# --- accounting accuracy and limits -------------------------------------------


def packrun_exec(args, cmd):
    """A packrun exec run: (its record, the command's stdout, error text)."""
    _, rc, out, err = run_captured([PACKRUN, "exec", "--format", "json", "--cpuset", "1", *args, "--", *cmd])
    i, j = err.find("{"), err.rfind("}")
    if i < 0 or j < 0:
        return None, out, f"exit {rc}: {gist(err)}"
    try:
        rec = json.loads(err[i:j + 1])
    except json.JSONDecodeError as e:
        return None, out, f"exit {rc}: unreadable record: {e}"
    return {"cpu_s": rec.get("cpu_time_s"), "wall_s": rec.get("wall_time_s"),
            "mem_bytes": rec.get("memory_peak_bytes"), "write_bytes": rec.get("io_write_bytes"),
            "state": rec.get("state")}, out, None


def runexec(ws, args, cmd):
    log = os.path.join(ws.dir, "runexec.log")
    _, rc, out, err = run_captured([RUNEXEC, "--cores", "1", "--read-only-dir", "/", "--full-access-dir", ws.dir,
                                    "--output", log, *args, "--", *cmd])
    kv = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "cputime" not in kv:
        return None, "", f"exit {rc}: {gist(err)}"
    try:
        text = open(log).read()
        body = text.split("-" * 80, 1)[1]
    except (OSError, IndexError):
        body = ""
    num = lambda k, unit: float(kv[k].rstrip(unit)) if k in kv else None
    return {"cpu_s": num("cputime", "s"), "wall_s": num("walltime", "s"), "mem_bytes": num("memory", "B"),
            "write_bytes": num("blkio-write", "B"), "state": kv.get("terminationreason", "")}, body, None


def gnu_time(ws, args, cmd):
    out_file = os.path.join(ws.dir, "time.out")
    _, rc, out, err = run_captured(["/usr/bin/time", "-f", "%e %U %S %M %O", "-o", out_file, *cmd])
    try:
        e, u, s, m, o = open(out_file).read().split()[-5:]
    except (OSError, ValueError):
        return None, out, f"exit {rc}: {gist(err)}"
    return {"cpu_s": float(u) + float(s), "wall_s": float(e), "mem_bytes": int(m) * 1024,
            "write_bytes": int(o) * 512, "state": ""}, out, None


def gist(text):
    """The telling part of an error output: a panic's message, else its last line."""
    lines = [l for l in text.strip().splitlines() if l.strip() and not l.startswith("note:")]
    for i, l in enumerate(lines):
        if "panicked at" in l:
            return " ".join(lines[i:i + 2])[:200]
    return (lines[-1] if lines else "no output")[:200]


def last_float(text):
    for tok in reversed(text.split()):
        try:
            return float(tok)
        except ValueError:
            pass
    return None


def bench_accuracy(res, ws, reps):
    burn, alloc = os.path.join(BIN, "burn"), os.path.join(BIN, "alloc")
    gc_out = os.path.join(ws.io, "gc.out")
    io_file = os.path.join(ws.io, "dd.out")
    bind = ["--bind", f"{ws.io}:{ws.io}"]
    cases = [
        # (name, metric, truth from (stdout, file) or a constant, unit, cmd, per-tool args)
        ("CPU time of a 2 s burn", "cpu_s", "stdout", "s", [burn, "2"]),
        ("peak memory of a touched 200 MiB", "mem_bytes", 200 * MIB, "B", [alloc, "200"]),
        ("bytes of a 64 MiB O_DIRECT write", "write_bytes", 64 * MIB, "B",
         ["dd", "if=/dev/zero", f"of={io_file}", "bs=1M", "count=64", "oflag=direct", "status=none"]),
        ("CPU time of a detached grandchild (burn 1)", "cpu_s", "gc", "s",
         ["sh", "-c", f"({burn} 1 > {gc_out} &); sleep 1.2; while [ ! -s {gc_out} ]; do sleep 0.1; done"]),
    ]
    tools = [
        ("packrun exec", lambda cmd: packrun_exec(["--memory", "1GiB", *bind], cmd),
         "the run's cgroup; the I/O dir bound in read-write"),
        ("BenchExec runexec", lambda cmd: runexec(ws, ["--memlimit", str(1024 * MIB)], cmd),
         "its cgroup (v1: cpuacct, memory.max_usage_in_bytes, blkio.throttle)"),
        ("GNU time", lambda cmd: gnu_time(ws, [], cmd),
         "wait4() rusage: 10 ms CPU resolution, max RSS of one process, ru_oublock × 512; "
         "only waited-for descendants"),
    ]
    for name, metric, truth_src, unit, cmd in cases:
        for tool, fn, notes in tools:
            errs, vals, truths, error = [], [], [], None
            for k in range(reps):
                for p in (gc_out, io_file):
                    if os.path.exists(p):
                        os.unlink(p)
                rec, out, error = fn(cmd)
                if error:
                    break
                if truth_src == "stdout":
                    truth = last_float(out)
                elif truth_src == "gc":
                    truth = last_float(open(gc_out).read()) if os.path.exists(gc_out) else None
                else:
                    truth = truth_src
                v = rec.get(metric)
                res.sample("accuracy", tool, k, f"{name}: {metric}", v, truth)
                if v is None or truth is None:
                    error = "no figure" if v is None else "no truth (the burn did not finish)"
                    break
                vals.append(v)
                truths.append(truth)
                errs.append((v - truth) / truth)
            if error:
                res.row(f"accuracy: {name}", tool, "unavailable: " + error, "—", notes)
                continue
            i = sorted(range(len(errs)), key=lambda i: errs[i])[len(errs) // 2]
            fmt = (lambda x: f"{x:.4f} s") if unit == "s" else (lambda x: f"{x / MIB:.2f} MiB")
            res.row(f"accuracy: {name}", tool,
                    f"{fmt(vals[i])} vs truth {fmt(truths[i])}: {errs[i] * 100:+.2f}% (median of {len(errs)})",
                    "—", notes)


def bench_limits(res, ws, reps):
    burn = os.path.join(BIN, "burn")
    cases = [
        ("1 s wall-time limit, kill lateness", "wall_s", ["sleep", "10"],
         [("packrun exec", lambda c: packrun_exec(["--time-limit", "1s"], c)),
          ("BenchExec runexec", lambda c: runexec(ws, ["--walltimelimit", "1"], c))]),
        ("1 s CPU-time limit, kill lateness", "cpu_s", [burn, "10"],
         [("packrun exec", lambda c: packrun_exec(["--cpu-time-limit", "1s"], c)),
          ("BenchExec runexec", lambda c: runexec(ws, ["--timelimit", "1"], c))]),
    ]
    for name, metric, cmd, tools in cases:
        late = {}
        for tool, fn in tools:
            xs, error = [], None
            for k in range(reps):
                rec, _, error = fn(cmd)
                if error:
                    break
                v = rec.get(metric)
                res.sample("limits", tool, k, f"{name}: {metric}", v, 1.0, note=rec.get("state", ""))
                if v is None:
                    error = "no figure"
                    break
                xs.append(v - 1.0)
            if error:
                res.row(name, tool, "unavailable: " + error)
                continue
            late[tool] = median(xs)
            res.row(name, tool, f"{metric} − 1 s = {median(xs) * 1e3:+.0f} ms (median of {len(xs)}, "
                                f"max {max(xs) * 1e3:+.0f} ms)",
                    ratio(late[tool], late.get("packrun exec")) if tool != "packrun exec" else "1.00×")


# --- packrun's own cost, planning ---------------------------------------------


def bench_own_cost(res, ws, n):
    """The runner's own cost over an n-run batch of /bin/true: its peak RSS
    and the CPU time of the packrun process itself per run (its children's
    apart), polled from /proc/<pid>/ every 10 ms."""
    jobfile = batch_jobfile(ws, n)
    out = os.path.join(ws.dir, "batch-own")
    tick = os.sysconf("SC_CLK_TCK")
    t0 = time.perf_counter_ns()
    p = subprocess.Popen([PACKRUN, "run", jobfile, "--out", out, "--quiet"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hwm_kib, self_cpu, polls = 0, 0.0, 0
    while True:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm_kib = max(hwm_kib, int(line.split()[1]))
            # utime + stime of the process alone (cutime/cstime are its children's);
            # a zombie still shows its final figures.
            self_cpu = max(self_cpu, (int(fields[11]) + int(fields[12])) / tick)
            if fields[0] == "Z":
                break
        except (OSError, IndexError, ValueError):
            break
        polls += 1
        if polls % 3000 == 0:
            print(f"  {(time.perf_counter_ns() - t0) / 1e9:.0f} s: "
                  f"{count_lines(os.path.join(out, 'runs.csv'))} rows in runs.csv", file=sys.stderr)
        time.sleep(0.01)
    _, status, ru = os.wait4(p.pid, 0)
    wall = (time.perf_counter_ns() - t0) / 1e9
    rc = os.waitstatus_to_exitcode(status)
    done = count_completed(os.path.join(out, "runs.csv"))
    shutil.rmtree(out, ignore_errors=True)
    total_cpu = ru.ru_utime + ru.ru_stime
    children_cpu = max(0.0, total_cpu - self_cpu)
    for metric, v in (("peak_rss_kib", hwm_kib), ("self_cpu_s", self_cpu), ("cpu_with_children_s", total_cpu),
                      ("self_cpu_ms_per_run", self_cpu * 1e3 / n), ("children_cpu_ms_per_run", children_cpu * 1e3 / n),
                      ("wall_s", wall)):
        res.sample("own_cost", "packrun run", 0, metric, v, exit_code=rc)
    bench = f"packrun's own cost, {n:,}-run batch"
    if rc != 0 or done != n:
        res.row(bench, "packrun run", f"failed: exit {rc}, {done} of {n} runs COMPLETED")
        return
    rss_mb, per_run = hwm_kib * 1024 / 1e6, self_cpu * 1e3 / n
    res.row(bench, "packrun run",
            f"peak RSS {rss_mb:.1f} MB (target < 100 MB: {'met' if rss_mb < 100 else 'missed'}); "
            f"CPU {per_run:.3f} ms per run in the packrun process (target ≤ 0.3 ms: "
            f"{'met' if per_run <= 0.3 else 'missed'}), {children_cpu * 1e3 / n:.3f} ms per run in its reaped "
            f"children; {wall:.1f} s ({n / wall:.0f} runs/s)",
            "—", f"one job, /bin/true, repetitions {n}, cpus 1; VmHWM and utime+stime of the packrun process "
                 f"polled from /proc every 10 ms (clock ticks of 1/{tick} s); children: wait4()'s rusage "
                 f"({total_cpu:.2f} s) less the process's own ({self_cpu:.2f} s)")


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return 0


# --- scale: validate and plan a million runs ------------------------------------

SCALE_TIMEOUT = 120


def scale_jobfiles(ws, n):
    """Two job files of n runs: a side × side matrix of `echo {a} {b}`
    (side = √n) and n repetitions of /bin/true, with the same defaults."""
    side = max(1, math.isqrt(n))
    head = ("version: 1\nname: bench-scale\ndefaults:\n  resources: {cpus: 1, memory: 64MiB}\n"
            "  time_limit: 10s\njobs:\n")
    matrix = os.path.join(ws.dir, "scale-matrix.yaml")
    with open(matrix, "w") as f:
        f.write(head + f"""  m:
    command: ["echo", "{{a}}", "{{b}}"]
    matrix:
      a: {{range: [1, {side}], step: 1}}
      b: {{range: [1, {side}], step: 1}}
""")
    reps = os.path.join(ws.dir, "scale-reps.yaml")
    with open(reps, "w") as f:
        f.write(head + f"""  t:
    command: ["/bin/true"]
    repetitions: {n}
""")
    return [(f"{side * side:,} runs ({side} × {side} matrix)", matrix,
             f"`echo {{a}} {{b}}`, a and b ranges 1..{side}"),
            (f"{n:,} runs (repetitions)", reps, f"/bin/true, repetitions {n}")]


def spawn_rusage(argv, timeout, stderr_path):
    """Start-to-exit in ns, exit code and peak RSS in KiB of argv, stdout to
    /dev/null, stderr to stderr_path; killed after `timeout` s (exit code None
    then). The peak RSS is GNU time's %M (wait4()'s ru_maxrss) rather than the
    driver's own wait4(): a process spawned from Python starts with the
    driver's high-water mark (~20 MB), one forked by time with time's."""
    rss_path = stderr_path + ".rss"
    argv = [which("/usr/bin/time"), "-f", "%M", "-o", rss_path, *argv]
    with open(stderr_path, "w") as err:
        fa = [(os.POSIX_SPAWN_DUP2, DEVNULL, 0), (os.POSIX_SPAWN_DUP2, DEVNULL, 1),
              (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa, setsid=True)
    killed = []

    def kill():
        killed.append(True)
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        timer.cancel()
    ns = time.perf_counter_ns() - t0
    try:
        with open(rss_path) as f:
            kib = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        kib = None
    finally:
        if os.path.exists(rss_path):
            os.unlink(rss_path)
    rc = None if killed else os.waitstatus_to_exitcode(status)
    if rc is not None and os.path.exists(stderr_path):
        # GNU time adds "Command exited with non-zero status N" to stderr.
        with open(stderr_path) as f:
            lines = [l for l in f if not l.startswith("Command exited with non-zero status")]
        with open(stderr_path, "w") as f:
            f.writelines(lines)
    return ns, rc, kib


def bench_scale(res, ws, n):
    """`packrun validate FILE` and `packrun plan --format json FILE` on job
    files of n runs: wall time and peak RSS, each once."""
    err_path = os.path.join(ws.dir, "scale.err")
    targets = {"validate": (1.0, 300), "plan --format json": (5.0, 600)}  # s, MB, at 1,000,000 runs
    for label, path, what in scale_jobfiles(ws, n):
        for cmd, argv in (("validate", [PACKRUN, "validate", path]),
                          ("plan --format json", [PACKRUN, "plan", "--format", "json", path])):
            tool = f"packrun {cmd}"
            t_s, t_mb = targets[cmd]
            target = f"target at 1,000,000 runs ≤ {t_s:g} s and ≤ {t_mb} MB"
            notes = (f"{target}; `{tool} FILE{' > /dev/null' if cmd.startswith('plan') else ''}`: a job file of "
                     f"{what}, defaults resources {{cpus: 1, memory: 64MiB}}, time_limit 10s; "
                     f"wall time and peak RSS (GNU time's %M, ru_maxrss), one run; killed after {SCALE_TIMEOUT} s")
            print(f"  {tool}: {label}", file=sys.stderr)
            ns, rc, maxrss_kib = spawn_rusage(argv, SCALE_TIMEOUT, err_path)
            mb = maxrss_kib * 1024 / 1e6 if maxrss_kib is not None else float("nan")
            res.sample("scale", tool, 0, f"{label}: wall_ns", ns, exit_code="" if rc is None else rc)
            res.sample("scale", tool, 0, f"{label}: max_rss_kib", "" if maxrss_kib is None else maxrss_kib,
                       exit_code="" if rc is None else rc)
            print(f"  {tool}: {ns / 1e9:.2f} s, {mb:.0f} MB, exit {rc}", file=sys.stderr)
            if rc is None:
                res.row(f"scale: {label}", tool, f"timed out: killed after {SCALE_TIMEOUT} s", "—", notes)
                continue
            if rc != 0:
                with open(err_path) as f:
                    err = f.read()
                res.row(f"scale: {label}", tool, f"failed: exit {rc}: {gist(err)}", "—", notes)
                continue
            met = "met" if ns / 1e9 <= t_s and mb <= t_mb else "missed"
            verdict = f" (target {met}: {ns / 1e9 / t_s:.1f}× the time, {mb / t_mb:.1f}× the memory)" \
                if n == 1_000_000 else ""
            res.row(f"scale: {label}", tool, f"{ns / 1e9:.2f} s, peak RSS {mb:.0f} MB{verdict}", "—", notes)


def bench_planning(res):
    ns, rc, out, err = run_captured([PLAN_BENCH, "100000"])
    line = next((l for l in out.splitlines() if l.split()[:1] == ["100000"]), None)
    if rc != 0 or line is None:
        res.row("planning 100,000 runs, 256-CPU fixture", "packrun plan", f"failed: exit {rc}: {gist(err)}")
        return
    f = line.split()
    res.sample("planning", "packrun plan", 0, "plan_ms", f[3].rstrip("ms"))
    res.row("planning 100,000 runs, 256-CPU fixture", "packrun plan",
            f"{f[3]} (makespan {f[4]}, utilisation {f[5]})", "—", "`cargo run --release --example plan_bench`")


# --- images: first unpack, cached start, per-run start by root kind ----------

# The image's tree: Debian's own, as a distribution image holds it (the
# top-level symlinks of a merged /usr, the libraries, the programs, /etc),
# plus the empty mount points a real image has.
IMAGE_TREE = ["etc", "usr/bin", "usr/sbin", "usr/lib64", "usr/lib/x86_64-linux-gnu"]
IMAGE_EMPTY_DIRS = ["dev", "home", "proc", "root", "run", "sys", "tmp", "var", "var/tmp"]


class _HashingWriter:
    """A file-like sink that hashes what passes through it on its way to `out`."""

    def __init__(self, out):
        import hashlib
        self.out, self.h, self.n = out, hashlib.sha256(), 0

    def write(self, data):
        self.h.update(data)
        self.n += len(data)
        self.out.write(data)
        return len(data)

    def flush(self):
        self.out.flush()


def write_oci_image(out, tag, level):
    """An OCI image layout of IMAGE_TREE at `out`, one gzip layer, as
    jobs/images/make-oci.py writes them (index.json, oci-layout, blobs), but
    streamed: the tar goes through a hash (its diff_id) into `gzip -<level>`
    and onto disk, never whole in memory. Host owners and modes are kept.
    Returns (uncompressed tar bytes, compressed bytes, entries)."""
    import hashlib
    import tarfile
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    gz_path = os.path.join(out, "layer.tmp")
    with open(gz_path, "wb") as gz_file:
        gz = subprocess.Popen([which("gzip"), f"-{level}", "-n"], stdin=subprocess.PIPE, stdout=gz_file)
        sink = _HashingWriter(gz.stdin)
        entries = 0
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as t:
            def dir_entry(name):
                d = tarfile.TarInfo(name)
                d.type, d.mode = tarfile.DIRTYPE, 0o755
                t.addfile(d)
            done = set()
            for top in sorted(os.listdir("/")):
                if os.path.islink("/" + top):
                    info = t.gettarinfo("/" + top, arcname=top)
                    t.addfile(info)
                    entries += 1
            for d in IMAGE_EMPTY_DIRS:
                dir_entry(d)
                entries += 1
            for sub in IMAGE_TREE:
                parts = sub.split("/")
                for i in range(1, len(parts)):
                    p = "/".join(parts[:i])
                    if p not in done:
                        done.add(p)
                        dir_entry(p)
                        entries += 1

                def count(info):
                    nonlocal entries
                    entries += 1
                    return info
                t.add("/" + sub, arcname=sub, recursive=True, filter=count)
        gz.stdin.close()
        if gz.wait() != 0:
            raise RuntimeError(f"gzip exited {gz.returncode}")
    tar_size, diff_id = sink.n, "sha256:" + sink.h.hexdigest()
    h = hashlib.sha256()
    with open(gz_path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    gz_size = os.path.getsize(gz_path)
    layer_digest = "sha256:" + h.hexdigest()
    os.rename(gz_path, os.path.join(blobs, h.hexdigest()))

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest, len(data)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    cfg = {"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
           "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cdigest, csize = blob(json.dumps(cfg).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": gz_size}],
    }
    mdigest, msize = blob(json.dumps(manifest).encode())
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "digest": mdigest, "size": msize,
                                  "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return tar_size, gz_size, entries, os.path.join(blobs, h.hexdigest())


def images_jobfile(path, jobs, reps):
    """A job file of /bin/true jobs, `jobs` = {name: rootfs}, interleaved."""
    with open(path, "w") as f:
        f.write("version: 1\nname: bench-images\norder: interleave\njobs:\n")
        for name, rootfs in jobs.items():
            f.write(f"  {name}:\n    command: [\"/bin/true\"]\n    repetitions: {reps}\n"
                    f"    resources: {{cpus: 1}}\n")
            if rootfs is not None:
                f.write(f"    container: {{rootfs: {json.dumps(rootfs)}}}\n")
    return path


def bench_images(res, reps, quick):
    bench = "images: /bin/true in an OCI image"
    level = 1 if quick else 6
    tmp = tempfile.mkdtemp(prefix="packrun-bench-images-", dir="/var/tmp")
    try:
        layout, cache = os.path.join(tmp, "image"), os.path.join(tmp, "cache")
        t0 = time.perf_counter_ns()
        tar_size, gz_size, entries, layer = write_oci_image(layout, "bench", level)
        built = (time.perf_counter_ns() - t0) / 1e9
        tree = (f"{tar_size / 1e6:.0f} MB tar, {entries} entries ({', '.join('/' + d for d in IMAGE_TREE)}, "
                f"the top-level symlinks, empty mount points), one gzip -{level} layer of {gz_size / 1e6:.0f} MB")
        print(f"  image written in {built:.1f} s: {tree}", file=sys.stderr)
        oci = f"oci:{layout}:bench"
        one = images_jobfile(os.path.join(tmp, "one.yaml"), {"img": oci}, 1)
        one_host = images_jobfile(os.path.join(tmp, "one-host.yaml"), {"host": None}, 1)
        n_out = [0]

        def run_batch(jobfile, extra=()):
            n_out[0] += 1
            out = os.path.join(tmp, f"out-{n_out[0]}")
            ns, rc, _, err = run_captured([PACKRUN, "run", jobfile, "--out", out, "--quiet",
                                           "--cache", cache, *extra], timeout=1800)
            return ns, rc, err, out

        # 1. The first start: the unpack into an empty cache, then one run.
        ns, rc, err, out = run_batch(one)
        res.sample("images", "packrun run", 0, "first_unpack_ns", ns, exit_code=rc)
        if rc != 0 or count_completed(os.path.join(out, "runs.csv")) != 1:
            res.row(f"{bench}: first start (unpack)", "packrun run", f"failed: exit {rc}: {gist(err)}", "—", tree)
            return
        res.row(f"{bench}: first start (unpack)", "packrun run",
                f"{ns / 1e9:.2f} s: {tar_size / 1e6 / (ns / 1e9):.0f} MB/s of tar "
                f"({gz_size / 1e6 / (ns / 1e9):.0f} MB/s of gzip blob)",
                "—", f"wall time of `packrun run --cache EMPTY` of a 1-run job: verify, gunzip, apply, syncfs, "
                     f"tree checksum, then the run; image: {tree}")

        # 2. Later starts: the cache holds it. Beside each, a 1-run batch on
        # the host root, alternating, so the difference is the image's part.
        k = 3 if quick else 10
        cached, host = [], []
        for i in range(k):
            pair = [("cached", one, cached), ("host", one_host, host)]
            for name, jobfile, xs in (pair if i % 2 == 0 else pair[::-1]):
                ns, rc, err, _ = run_batch(jobfile)
                res.sample("images", f"packrun run ({name}, 1 run)", i, "start_ns", ns, exit_code=rc)
                if rc != 0:
                    res.row(f"{bench}: cached start", "packrun run", f"failed: exit {rc}: {gist(err)}")
                    return
                xs.append(ns)
        res.row(f"{bench}: cached start", "packrun run",
                f"median {ms(median(cached))} (n={len(cached)})", "—",
                f"wall time of the same `packrun run` of a 1-run job, the image in the cache; "
                f"{ms(median(host))} for a 1-run job on the host root, alternating with it "
                f"({ratio(median(cached), median(host))})")

        # 3. Per-run start by root kind: the same tree as a directory (the
        # layer untarred), the image from the cache, the host root.
        rootdir = os.path.join(tmp, "rootfs")
        os.mkdir(rootdir)
        subprocess.run(["tar", "-xzpf", layer, "-C", rootdir, "--numeric-owner"], check=True)
        kinds = {"oci": oci, "dir": rootdir, "host": None}
        jobfile = images_jobfile(os.path.join(tmp, "per-run.yaml"), kinds, reps)
        ns, rc, err, out = run_batch(jobfile, ["--max-parallel", "1"])
        walls = {name: [] for name in kinds}
        try:
            with open(os.path.join(out, "runs.csv")) as f:
                for row in csv.DictReader(f):
                    if row.get("state") == "COMPLETED" and row.get("job") in walls:
                        walls[row["job"]].append(float(row["wall_time_s"]) * 1e9)
                        res.sample("images", row["job"], row.get("rep", ""), "wall_time_ns",
                                   walls[row["job"]][-1])
        except OSError:
            pass
        labels = {"oci": f"container.rootfs: {oci.replace(tmp, 'TMP')}",
                  "dir": "container.rootfs: TMP/rootfs (the layer untarred: the same tree)",
                  "host": "container.rootfs: host (the default)"}
        ref = median(walls["host"]) if walls["host"] else None
        for name in kinds:
            xs = walls[name]
            if len(xs) != reps:
                res.row(f"{bench}: per-run start", f"packrun run, {name} root",
                        f"failed: exit {rc}, {len(xs)} of {reps} runs COMPLETED: {gist(err)}", "—", labels[name])
                continue
            res.row(f"{bench}: per-run start", f"packrun run, {name} root",
                    f"median {ms(median(xs))}, p90 {ms(p90(xs))} (n={len(xs)})", "—",
                    f"{ratio(median(xs), ref)} the host root; {labels[name]}; wall_time_s of runs.csv "
                    f"(cgroups, container, root, /bin/true, its exit); one batch of {3 * reps} runs, "
                    f"order: interleave, --max-parallel 1; whole batch {ns / 1e9:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- networks: per-run start on a private network against none ----------------


def bench_networks(res, reps):
    """/bin/true on a private network beside `network: none`, in one batch
    (order: interleave, --max-parallel 1): each run's wall_time_s. Twice:
    namespaces pooled (the default), and fresh ones per run (a job that
    keeps a capability gets no pooled namespace, for none and a network
    alike), where the link is made for each run."""
    bench = "networks: /bin/true per-run start"
    tmp = tempfile.mkdtemp(prefix="packrun-bench-networks-", dir="/var/tmp")
    jobs = {
        "none": "{network: none}",
        "lab": "{network: lab}",
        "none-fresh": "{network: none, capabilities: [NET_RAW]}",
        "lab-fresh": "{network: lab, capabilities: [NET_RAW]}",
    }
    try:
        path = os.path.join(tmp, "networks.yaml")
        with open(path, "w") as f:
            f.write("version: 1\nname: bench-networks\norder: interleave\n"
                    "networks:\n  lab: {}\njobs:\n")
            for name, container in jobs.items():
                f.write(f"  {name}:\n    command: [\"/bin/true\"]\n    repetitions: {reps}\n"
                        f"    resources: {{cpus: 1}}\n    container: {container}\n")
        out = os.path.join(tmp, "out")
        ns, rc, _, err = run_captured([PACKRUN, "run", path, "--out", out, "--quiet",
                                       "--max-parallel", "1"], timeout=1800)
        walls = {name: [] for name in jobs}
        try:
            with open(os.path.join(out, "runs.csv")) as f:
                for row in csv.DictReader(f):
                    if row.get("state") == "COMPLETED" and row.get("job") in walls:
                        walls[row["job"]].append(float(row["wall_time_s"]) * 1e9)
                        res.sample("networks", row["job"], row.get("rep", ""), "wall_time_ns",
                                   walls[row["job"]][-1])
        except OSError:
            pass
        for name in jobs:
            xs = walls[name]
            ref_name = "none-fresh" if name.endswith("-fresh") else "none"
            ref = walls[ref_name]
            what = (f"container: {jobs[name]}; wall_time_s of runs.csv (cgroups, namespaces, link, "
                    f"container, /bin/true, its exit, counters); one batch of {len(jobs) * reps} runs, "
                    f"order: interleave, --max-parallel 1; whole batch {ns / 1e9:.2f} s")
            if len(xs) != reps or len(ref) != reps:
                res.row(bench, f"packrun run, {name}",
                        f"failed: exit {rc}, {len(xs)} of {reps} runs COMPLETED: {gist(err)}", "—", what)
                continue
            more = (median(xs) - median(ref)) / 1e6
            res.row(bench, f"packrun run, {name}",
                    f"median {ms(median(xs))}, p90 {ms(p90(xs))} (n={len(xs)})", "—",
                    f"{more:+.2f} ms ({ratio(median(xs), median(ref))}) against {ref_name}; {what}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- main ---------------------------------------------------------------------


def versions(worker, baseline=None):
    def first(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "host": platform.node(), "kernel": platform.release(), "cpu": cpu, "cpus": NPROC,
        "cgroup": "hybrid (v1 controllers + empty cgroup2 at /sys/fs/cgroup/unified)"
        if os.path.ismount(UNIFIED) else ("v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"),
        "packrun": first([PACKRUN, "--version"]), "crun": first(["crun", "--version"]),
        "runc": first(["runc", "--version"]), "bwrap": first(["bwrap", "--version"]),
        "benchexec": first([RUNEXEC, "--version"]), "parallel": first(["parallel", "--version"]),
        "hyperfine": first(["hyperfine", "--version"]), "time": first(["/usr/bin/time", "--version"]),
        "hyperqueue": first([HQ_PYTHON, "-c", "import importlib.metadata as m; print(m.version('hyperqueue'))"]),
        "util-linux unshare": first(["unshare", "--version"]),
        **({"packrun baseline": f"{baseline}: {first([baseline, '--version'])}"} if baseline else {}),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions, for iterating on the suite")
    ap.add_argument("--reps", type=int, help="measured rounds of the per-run benchmark (default 200, quick 30)")
    ap.add_argument("--batch", type=int, default=1000, help="runs in the batch benchmark (default 1000)")
    ap.add_argument("--out", help="results dir (default results/bench/<UTC timestamp>)")
    ap.add_argument("--only", default="per_run,batch,counters,accuracy,limits,own_cost,planning,scale,images,networks",
                    help="comma-separated sections to run")
    ap.add_argument("--own-runs", type=int,
                    help="runs in the own-cost batch (default 100000, quick 5000)")
    ap.add_argument("--scale-runs", type=int,
                    help="runs in each job file of the scale section (default 1000000, quick 100000; "
                         "the matrix is √N × √N)")
    ap.add_argument("--batch-reps", type=int, help="rounds of the batch benchmark (default 3, quick 1)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another packrun binary, measured beside this one (interleaved) in the per_run "
                         "and batch sections as `packrun exec (baseline)` and `packrun run (baseline)`")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker_main()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (cgroups, namespaces, bind mounts), as packrun, crun and runc do")
    if os.environ.get("PACKRUN_BENCH_NS") != "1":
        # Own mount namespace: the rootfs bind mount cannot outlive the driver.
        os.environ["PACKRUN_BENCH_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                              os.path.abspath(__file__), *sys.argv[1:]])
    reps = a.reps or (30 if a.quick else 200)
    batch_reps = a.batch_reps or (1 if a.quick else 3)
    baseline = os.path.abspath(a.baseline) if a.baseline else None
    if baseline and not os.access(baseline, os.X_OK):
        sys.exit(f"bench: --baseline {a.baseline}: not an executable file")
    acc_reps = 1 if a.quick else 3
    sections = set(a.only.split(","))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or os.path.join(ROOT, "results", "bench", stamp)
    tag = f"pb{os.getpid()}"
    needed = [PACKRUN] if sections <= {"counters"} else \
        [PACKRUN, RUNEXEC, os.path.join(BIN, "burn"), os.path.join(BIN, "alloc")]
    for p in needed:
        if not os.path.exists(p):
            sys.exit(f"bench: {p} is missing; run bench/run.sh, which builds it")

    ws = Workspace()
    worker = Worker()
    os.chdir(ws.dir)
    res = Results()
    started = time.time()
    try:
        env = versions(worker, baseline)
        if "per_run" in sections:
            print("per run: /bin/true in a limited container", file=sys.stderr)
            bench_per_run(res, per_run_tools(ws, worker, tag, baseline), reps, warmup=5)
        if "batch" in sections:
            print(f"batch: {a.batch} runs", file=sys.stderr)
            bench_batch(res, ws, worker, a.batch, batch_reps, tag, baseline)
        if "counters" in sections:
            print("counters: four software counters against none", file=sys.stderr)
            bench_counters(res, ws, reps, a.batch, batch_reps, baseline)
        if "accuracy" in sections:
            print("accounting accuracy", file=sys.stderr)
            bench_accuracy(res, ws, acc_reps)
        if "limits" in sections:
            print("limit enforcement", file=sys.stderr)
            bench_limits(res, ws, acc_reps)
        if "own_cost" in sections:
            print("packrun's own cost", file=sys.stderr)
            bench_own_cost(res, ws, a.own_runs or (5000 if a.quick else 100000))
        if "planning" in sections:
            bench_planning(res)
        if "scale" in sections:
            n = a.scale_runs or (100000 if a.quick else 1000000)
            print(f"scale: validate and plan {n} runs", file=sys.stderr)
            bench_scale(res, ws, n)
        if "images" in sections:
            print("images: first unpack, cached start, per-run start by root kind", file=sys.stderr)
            bench_images(res, 10 if a.quick else 30, a.quick)
        if "networks" in sections:
            print("networks: per-run start on a private network against none", file=sys.stderr)
            bench_networks(res, 30 if a.quick else 200)
    finally:
        worker.close()
        os.chdir(ROOT)
        ws.close()

    took = time.time() - started
    notes = [
        f"Host {env['host']}: {env['cpu']}, {env['cpus']} CPUs, kernel {env['kernel']}, cgroup {env['cgroup']}.",
        "vs packrun: the tool's figure ÷ packrun's (above 1 means packrun is faster or closer).",
    ]
    if baseline:
        notes.append(f"Baseline: {env['packrun baseline']}, interleaved with the others in the same rounds; "
                     "new/baseline is this packrun's median ÷ the baseline's.")
    if worker.unmounted:
        notes.append(f"crun refuses hybrid cgroup hosts (\"cgroups in hybrid mode not supported\"), so it ran in a "
                     f"private mount namespace with {UNIFIED} unmounted; its times are taken inside that namespace.")
    command = " ".join(["bench/run.sh", *sys.argv[1:]])
    notes.append(f"Command: `{command}` ({took / 60:.1f} min).")
    table = res.table() + "\n" + "\n".join(notes) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "samples.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "tool", "rep", "metric", "value", "truth", "exit_code", "note"])
        w.writerows(res.samples)
    with open(os.path.join(out, "environment.json"), "w") as f:
        json.dump(env, f, indent=2)
    print(table)
    print(f"written to {os.path.relpath(out, ROOT)}/ (table.md, samples.csv, environment.json)", file=sys.stderr)


if __name__ == "__main__":
    main()
