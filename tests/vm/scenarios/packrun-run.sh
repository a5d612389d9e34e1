# packrun running jobs/vm-numa.yaml and one `packrun exec` on this guest.
# The blobs (runs.csv, every run's logs, exec's record) are checked on the
# host by tests/vm.rs; here exit codes and leftover cgroups.
CG=/sys/fs/cgroup
JOBS=/jobs/vm-numa.yaml
OUT=/tmp/vm-results
find $CG -type d | sort >/tmp/cgroups-before
step packrun-run 0 packrun run $JOBS --out $OUT --quiet
if [ -f $OUT/runs.csv ]; then
    blob runs.csv cat $OUT/runs.csv
    for f in $(find $OUT/logs -type f | sort); do
        blob "log $f" cat "$f"
    done
fi
step packrun-exec-oom any packrun exec --cpus 2 --memory 64MiB --format csv -- dd if=/dev/zero of=/dev/null bs=256M count=1

find $CG -type d | sort >/tmp/cgroups-after
check_eq packrun-leaves-no-cgroup "$(diff /tmp/cgroups-before /tmp/cgroups-after)" ""

# Interruptions: SIGINT ends the batch (exit 130) and removes its cgroups;
# after SIGKILL, `run --resume` cleans up, runs only what is missing, and
# leaves no cgroup behind.
LONG=/jobs/vm-long.yaml

# Starts `packrun run` in the background and waits (up to 60 s) until its
# runs have made cgroups. Sets PID; fails NAME when packrun exits first.
start_long() { # NAME OUT
    packrun run $LONG --out "$2" --quiet >/tmp/long.out 2>&1 &
    PID=$!
    _i=0
    while [ "$(find $CG -type d | wc -l)" -le "$(wc -l </tmp/cgroups-before)" ] && [ $_i -lt 600 ]; do
        if ! kill -0 $PID 2>/dev/null; then
            fail "$1" "packrun run exited before its runs started: $(head -c 300 /tmp/long.out)"
            return 1
        fi
        sleep 0.1
        _i=$((_i + 1))
    done
    sleep 1
}

if start_long packrun-sigint-exit /tmp/vm-int; then
    kill -INT $PID
    wait $PID
    check_eq packrun-sigint-exit "$?" 130
fi
find $CG -type d | sort >/tmp/cgroups-after
check_eq packrun-sigint-leaves-no-cgroup "$(diff /tmp/cgroups-before /tmp/cgroups-after)" ""

if start_long packrun-resume-after-sigkill /tmp/vm-kill; then
    kill -KILL $PID
    wait $PID
fi
step packrun-resume-after-sigkill 0 packrun run --resume /tmp/vm-kill --quiet
find $CG -type d | sort >/tmp/cgroups-after
check_eq packrun-resume-leaves-no-cgroup "$(diff /tmp/cgroups-before /tmp/cgroups-after)" ""
[ -f /tmp/vm-kill/runs.csv ] && blob resumed-runs.csv cat /tmp/vm-kill/runs.csv
