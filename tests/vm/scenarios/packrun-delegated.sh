# packrun started inside a delegated cgroup v2 subtree, as systemd gives a
# service with Delegate=yes: it must move itself (and the other processes
# there) into a leaf, enable the controllers, nest its run cgroups below the
# delegated cgroup, and leave nothing but the leaf behind.
CG=/sys/fs/cgroup
D=$PACKRUN_VM_DELEGATED
# systemd marks such a cgroup with the xattr trusted.delegate, which busybox
# cannot set; packrun takes the same hint from the environment.
export PACKRUN_CGROUP=self
cat >/tmp/deleg.yaml <<'YAML'
version: 1
name: deleg
defaults:
  resources: {cpus: 1, memory: 64MiB}
  time_limit: 30s
jobs:
  where:
    shell: "sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status"
    repetitions: 2
  oom:
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]
YAML

# While a run is going, its cgroup (packrun-<batch> for `packrun exec`)
# sits below the delegated one.
packrun exec --memory 32MiB -- sleep 3 >/tmp/deleg-exec.out 2>&1 &
EPID=$!
_i=0
while [ -z "$(ls -d $D/packrun-b* 2>/dev/null)" ] && [ $_i -lt 100 ]; do
    sleep 0.1
    _i=$((_i + 1))
done
check_eq packrun-delegated-nested "$(ls -d $D/packrun-b* 2>/dev/null | wc -l)" 1
check_eq packrun-delegated-not-at-root "$(ls -d $CG/packrun* 2>/dev/null)" ""
wait $EPID
st=$?
check_eq packrun-delegated-exec-exit "$st" 0
[ "$st" = 0 ] || sed "s/^/exec: /" /tmp/deleg-exec.out
check_eq packrun-delegated-supervisor "$(cat /proc/self/cgroup)" "0::${D#$CG}/supervisor"
check_eq packrun-delegated-controllers "$(cat $D/cgroup.subtree_control)" "cpuset cpu io memory pids"

# The same batch as anywhere else: states and placements in runs.csv.
step packrun-delegated-run 1 packrun run /tmp/deleg.yaml --out /tmp/deleg --quiet
check_eq packrun-delegated-completed "$(grep -c ',where,.*,COMPLETED,' /tmp/deleg/runs.csv)" 2
check_eq packrun-delegated-oom "$(grep -c ',oom,.*,OUT_OF_MEMORY,' /tmp/deleg/runs.csv)" 1
for f in /tmp/deleg/logs/*.out; do
    [ -s "$f" ] || continue
    key=$(basename "$f" .out)
    want=$(grep "^$key," /tmp/deleg/runs.csv | cut -d, -f6)
    check_eq "packrun-delegated-cpus-$key" "$(cat "$f")" "$want"
done
check_eq packrun-delegated-leaves-only-the-leaf "$(find $D -mindepth 1 -type d | sort)" "$D/supervisor"
