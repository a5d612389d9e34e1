#!/bin/sh
# packrun's benchmark against crun, runc, bwrap, BenchExec, GNU parallel, xargs,
# hyperfine, HyperQueue and GNU time. Installs the peers (Debian packages;
# BenchExec and HyperQueue from PyPI into the virtualenv target/bench/venv),
# builds packrun in release mode and the helpers, then runs bench/bench.py.
# Needs root and network for the first run. Options go to the driver: --quick,
# --reps N, --batch-reps N, --own-runs N, --scale-runs N, --only SECTIONS,
# --baseline PATH. The sections: per_run, batch, counters, accuracy, limits, own_cost,
# planning, scale, images.
#
# own_cost runs a 100,000-run batch (a few minutes); scale validates and plans
# two job files of 1,000,000 runs each (each command killed after 120 s).
#
# --baseline PATH measures another packrun binary (say, one built from an
# earlier commit) beside this one: `packrun exec (baseline)` in the per_run
# section and `packrun run (baseline)` in the batch section, interleaved round
# robin with the other tools in the same rounds; their rows give new/baseline.
#   git worktree add --detach ../old <commit> && (cd ../old && cargo build --release)
#   sudo bench/run.sh --only per_run,batch --baseline ../old/target/release/packrun
set -eu
cd "$(dirname "$0")/.."

need=""
for p in crun:crun runc:runc bwrap:bubblewrap parallel:parallel hyperfine:hyperfine \
         stress-ng:stress-ng /usr/bin/time:time gcc:gcc unshare:util-linux; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need="$need ${p#*:}"
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
if [ -n "$need" ]; then
    echo "bench: installing$need" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >&2
fi

venv=target/bench/venv
if [ ! -x "$venv/bin/runexec" ]; then
    echo "bench: installing BenchExec into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q benchexec >&2
fi
# HyperQueue: its Python API; its server and worker are in the wheel's native
# module and run as threads of the Python process (LocalCluster).
if ! "$venv/bin/python" -c 'import hyperqueue' 2>/dev/null; then
    echo "bench: installing HyperQueue into $venv" >&2
    "$venv/bin/pip" install -q hyperqueue >&2
fi

mkdir -p target/bench/bin
for h in burn alloc; do
    if [ ! -x "target/bench/bin/$h" ] || [ "tests/helpers/$h.c" -nt "target/bench/bin/$h" ]; then
        gcc -O2 -o "target/bench/bin/$h" "tests/helpers/$h.c"
    fi
done

cargo build --release --quiet --bin packrun --example plan_bench >&2
exec python3 bench/bench.py "$@"
