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
