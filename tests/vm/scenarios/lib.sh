# Helpers sourced by /scenario/run.sh before the scenario files (busybox sh).
#
# Every check prints one line on stdout:
#   ok NAME: detail
#   FAIL NAME: detail
# The host (tests/vm.rs) fails the test on any FAIL line and on any expected
# check NAME that never printed "ok", so a check that silently did not run
# fails too. finish() exits 1 when a check failed.

FAILED=0

ok() { # NAME DETAIL
    echo "ok $1: $2"
}

fail() { # NAME DETAIL
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
}

check_eq() { # NAME ACTUAL EXPECTED
    if [ "$2" = "$3" ]; then
        ok "$1" "$2"
    else
        fail "$1" "got '$2', expected '$3'"
    fi
}

check_ge() { # NAME ACTUAL MINIMUM   (integers)
    if [ "$2" -ge "$3" ] 2>/dev/null; then
        ok "$1" "$2 >= $3"
    else
        fail "$1" "got '$2', expected at least $3"
    fi
}

# Prints a field of a flat-keyed file ("key value" lines), e.g.
# `keyed memory.events oom_kill`.
keyed() { # FILE KEY
    sed -n "s/^$2 //p" "$1"
}

# Prints a field of /proc/PID/status, e.g. `status_field self Cpus_allowed_list`.
status_field() { # PID KEY
    sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"
}

# Prints a node's meminfo field in kB, e.g. `node_kb 2 Shmem`.
node_kb() { # NODE KEY
    sed -n "s/^Node $1 $2:[[:space:]]*\([0-9]*\) kB/\1/p" "/sys/devices/system/node/node$1/meminfo"
}

# Runs a command inside a cgroup (by its directory) and prints its output.
# The subshell joins the cgroup before exec, so nothing of it runs outside.
in_cgroup() { # DIR CMD...
    _dir=$1
    shift
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$_dir" "$@"
}

# Same for cgroup v1: join every listed hierarchy's directory first.
in_cgroups_v1() { # "DIR1 DIR2 ..." CMD...
    _dirs=$1
    shift
    sh -c 'for d in $0; do echo $$ >"$d/tasks" || exit 126; done; exec "$@"' "$_dirs" "$@"
}

# Waits up to 10 s until a cgroup's process list FILE (cgroup.procs or
# tasks) is empty; exiting processes still count until they are reaped.
wait_empty() { # FILE
    _i=0
    while [ -n "$(cat "$1")" ] && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
}

# Prints a blob between marker lines, for the host to parse.
blob() { # NAME CMD...
    _name=$1
    shift
    echo "begin-blob $_name"
    "$@"
    _st=$?
    echo
    echo "end-blob $_name"
    return $_st
}

# Runs a packrun step with its output as a blob. EXPECTED_STATUS may be
# `any`. A todo!() or a missing subcommand in packrun fails the check
# as "packrun does not implement this yet".
step() { # NAME EXPECTED_STATUS CMD...
    _n=$1
    _want=$2
    shift 2
    blob "$_n" "$@" >/tmp/step.out 2>&1
    _st=$?
    cat /tmp/step.out
    if grep -q -e "not yet implemented" -e "unrecognized subcommand" /tmp/step.out; then
        fail "$_n" "packrun does not implement this yet: $(grep -m1 -e 'not yet implemented' -e 'unrecognized subcommand' /tmp/step.out)"
    elif [ "$_want" != any ] && [ "$_st" != "$_want" ]; then
        fail "$_n" "exit status $_st, expected $_want"
    else
        ok "$_n" "exit status $_st"
    fi
}

# Prints the named columns of every row of a CSV file with a header line,
# tab-separated (so `cut -f` finds empty fields), one line per row. Finds
# columns by name, so new columns do not move them; handles quoted fields
# (not ones spanning lines). Exits 2 when a column is missing.
csv_cols() { # FILE NAME...
    _f=$1
    shift
    awk -v want="$*" '
    function fields(line, out,    n, i, c, f, q) {
        n = 0; f = ""; q = 0
        for (i = 1; i <= length(line); i++) {
            c = substr(line, i, 1)
            if (q) {
                if (c != "\"") f = f c
                else if (substr(line, i + 1, 1) == "\"") { f = f c; i++ }
                else q = 0
            } else if (c == "\"") q = 1
            else if (c == ",") { out[++n] = f; f = "" }
            else f = f c
        }
        out[++n] = f
        return n
    }
    NR == 1 {
        n = fields($0, head)
        for (i = 1; i <= n; i++) col[head[i]] = i
        m = split(want, w, " ")
        for (j = 1; j <= m; j++)
            if (!(w[j] in col)) { print "csv_cols: no column " w[j] >"/dev/stderr"; exit 2 }
        next
    }
    {
        delete row
        fields($0, row)
        line = ""
        for (j = 1; j <= m; j++) line = line (j > 1 ? "\t" : "") row[col[w[j]]]
        print line
    }' "$_f"
}

finish() {
    if [ "$FAILED" -gt 0 ]; then
        echo "$FAILED check(s) failed"
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
