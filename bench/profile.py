#!/usr/bin/env python3
"""Where the time of `packrun exec -- /bin/true` goes.

  sudo python3 bench/profile.py [--runs 30] [-- EXTRA PACKRUN EXEC ARGS]

1. Wall time: `strace -f -ttt -T -y` of every run; prints the syscalls that
   waited longest (with the file each fd is) and per-syscall totals over all
   processes. strace slows every syscall down, so read the ranking, not the
   absolute figures.
2. CPU time: `perf record -e cpu-clock -g` over the same number of runs;
   prints the hottest symbols, user and kernel.
3. A timeline of one run: when each process did its notable syscalls,
   relative to the start.

Writes the raw traces to results/bench/profile-<UTC timestamp>/.
"""

import argparse
import collections
import datetime
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKRUN = os.path.join(ROOT, "target", "release", "packrun")
LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*?)\s+<(\d+\.\d+)>$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(.*?)\s+<(\d+\.\d+)>$")
NOTABLE = ("clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "mkdir", "rmdir",
           "execve", "wait4", "waitid", "exit_group", "kill", "pidfd_send_signal", "sethostname")


def parse(path):
    """(pid, start, syscall, args, result, seconds) per finished syscall."""
    pending = {}
    out = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if rest.endswith("<unfinished ...>"):
                name = rest.split("(", 1)[0]
                pending[(pid, name)] = (ts, rest[len(name) + 1:-len("<unfinished ...>")].rstrip())
                continue
            c = CALL.match(rest)
            if c:
                out.append((pid, ts, c.group(1), c.group(2), c.group(3), float(c.group(4))))
                continue
            r = RESUMED.match(rest)
            if r:
                start, args = pending.pop((pid, r.group(1)), (ts, ""))
                out.append((pid, start, r.group(1), args + r.group(2), r.group(3), float(r.group(4))))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("extra", nargs="*", help="packrun exec options (default: --cpuset 1 --memory 256MiB --pids 64)")
    a = ap.parse_args()
    for tool in ("strace", "perf"):
        if shutil.which(tool) is None:
            sys.exit(f"profile: `{tool}` is missing (apt-get install strace linux-perf)")
    opts = a.extra or ["--cpuset", "1", "--memory", "256MiB", "--pids", "64"]
    cmd = [PACKRUN, "exec", *opts, "--", "/bin/true"]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "results", "bench", "profile-" + stamp)
    os.makedirs(out)

    # Untraced wall time first, for scale.
    walls = []
    for _ in range(a.runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - t)
    walls.sort()
    print(f"`{' '.join(cmd[1:])}` untraced: median {walls[len(walls) // 2] * 1e3:.2f} ms over {a.runs} runs\n")

    calls = []
    for i in range(a.runs):
        trace = os.path.join(out, f"strace-{i}.txt")
        subprocess.run(["strace", "-f", "-ttt", "-T", "-y", "-s", "60", "-o", trace, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        calls.extend((i, *c) for c in parse(trace))

    print(f"Slowest syscalls over {a.runs} traced runs (seconds, strace-inflated):")
    for run, pid, ts, name, args, ret, dur in sorted(calls, key=lambda c: -c[-1])[:25]:
        print(f"  {dur * 1e3:8.2f} ms  run {run:<3} {name}({args[:90]}) = {ret[:30]}")

    per = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for *_, name, args, ret, dur in calls:
        p = per[name]
        p[0] += 1
        p[1] += dur
        p[2] = max(p[2], dur)
    print(f"\nPer syscall, all processes, per run (calls, total ms, max ms):")
    for name, (n, tot, mx) in sorted(per.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"  {name:<18} {n / a.runs:7.1f} {tot / a.runs * 1e3:9.2f} {mx * 1e3:9.2f}")

    # A timeline of the median run (by traced length).
    spans = collections.defaultdict(lambda: [float("inf"), 0.0])
    for run, pid, ts, name, args, ret, dur in calls:
        s = spans[run]
        s[0], s[1] = min(s[0], ts), max(s[1], ts + dur)
    mid = sorted(spans, key=lambda r: spans[r][1] - spans[r][0])[len(spans) // 2]
    t0 = spans[mid][0]
    print(f"\nTimeline of run {mid} (ms from its first syscall; notable syscalls and any ≥ 0.5 ms):")
    for run, pid, ts, name, args, ret, dur in sorted((c for c in calls if c[0] == mid), key=lambda c: c[2]):
        if name in NOTABLE or dur >= 0.0005 or "cgroup.procs" in args:
            print(f"  {(ts - t0) * 1e3:8.2f} +{dur * 1e3:6.2f}  pid {pid:<7} {name}({args[:80]}) = {ret[:24]}")

    perf_data = os.path.join(out, "perf.data")
    loop = " ; ".join([" ".join(cmd) + " >/dev/null 2>&1"] * a.runs)
    subprocess.run(["perf", "record", "-q", "-o", perf_data, "-e", "cpu-clock", "-F", "4000", "-g",
                    "--", "sh", "-c", loop], check=False, stderr=subprocess.DEVNULL)
    rep = subprocess.run(["perf", "report", "-i", perf_data, "--no-children", "--sort", "comm,dso,sym",
                          "--stdio", "-g", "none", "--percent-limit", "1"],
                         capture_output=True, text=True).stdout
    print(f"\nOn-CPU hot spots over {a.runs} runs (perf cpu-clock, ≥ 1% of samples):")
    print("\n".join("  " + l for l in rep.splitlines() if l.strip() and not l.startswith("#")))
    with open(os.path.join(out, "perf-report.txt"), "w") as f:
        f.write(rep)
    print(f"\nraw traces in {os.path.relpath(out, ROOT)}/", file=sys.stderr)


if __name__ == "__main__":
    main()
