# cgroup v1 as on the development machines (init mounted one hierarchy per
# controller): the same limits packrun sets on v2, through the v1 files.
# Every cgroup made here is removed at the end.
CG=/sys/fs/cgroup

# $CG/NAME is the hierarchy's mount, or (co-mounted) a symlink to it.
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
    m=$(readlink -f $CG/$c)
    opts=$(awk -v m="$m" '$2 == m && $3 == "cgroup" {print $4}' /proc/mounts)
    case ",$opts," in
    *",$c,"*) ok "v1-mount-$c" "$m ($opts)" ;;
    *) fail "v1-mount-$c" "no cgroup v1 mount with option $c at $CG/$c" ;;
    esac
done
if [ "$PACKRUN_VM_LAYOUT" = v1-comounted ]; then
    check_eq v1-cpu-cpuacct-comounted "$(readlink -f $CG/cpu) $(readlink -f $CG/cpuacct)" \
        "$CG/cpu,cpuacct $CG/cpu,cpuacct"
fi
case ",$(awk -v m="$CG/systemd" '$2 == m {print $4}' /proc/mounts)," in
*",name=systemd,"*) ok v1-mount-name-systemd "$CG/systemd" ;;
*) fail v1-mount-name-systemd "no name=systemd hierarchy at $CG/systemd" ;;
esac
check_eq v1-mount-unified "$(awk -v m="$CG/unified" '$2 == m {print $3}' /proc/mounts)" cgroup2

# cpuset: a task cannot join before cpuset.cpus and cpuset.mems are set;
# once set, a process inside sees them.
d=$CG/cpuset/vmtest
mkdir $d
if sh -c "echo \$\$ >$d/tasks" 2>/dev/null; then
    fail v1-cpuset-empty-refuses-tasks "a task joined a cpuset with no cpus"
else
    ok v1-cpuset-empty-refuses-tasks "joining before cpuset.cpus/mems are set fails"
fi
echo 2-3 >$d/cpuset.cpus && echo 1 >$d/cpuset.mems
st=$(in_cgroups_v1 $d cat /proc/self/status)
check_eq v1-cpuset-cpus "$(echo "$st" | sed -n 's/^Cpus_allowed_list:[[:space:]]*//p')" 2-3
check_eq v1-cpuset-mems "$(echo "$st" | sed -n 's/^Mems_allowed_list:[[:space:]]*//p')" 1

# memory.limit_in_bytes: OOM kill, counted in memory.oom_control.
d=$CG/memory/vmtest
mkdir $d && echo 64M >$d/memory.limit_in_bytes
in_cgroups_v1 $d dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null
check_eq v1-oom-exit "$?" 137
check_eq v1-oom-kill-count "$(keyed $d/memory.oom_control oom_kill)" 1
check_ge v1-oom-peak "$(cat $d/memory.max_usage_in_bytes)" $((63 * 1024 * 1024))

# pids.max, then the v1 way to end a cgroup: freeze, SIGKILL all, thaw.
p=$CG/pids/vmtest
f=$CG/freezer/vmtest
mkdir $p $f && echo 5 >$p/pids.max
in_cgroups_v1 "$p $f" sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 600 & done' 2>/dev/null
check_eq v1-pids-current "$(cat $p/pids.current)" 4
check_ge v1-pids-events-max "$(keyed $p/pids.events max)" 1
echo FROZEN >$f/freezer.state
i=0
while [ "$(cat $f/freezer.state)" != FROZEN ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check_eq v1-freezer-frozen "$(cat $f/freezer.state)" FROZEN
for pid in $(cat $f/cgroup.procs); do kill -9 $pid; done
echo THAWED >$f/freezer.state
wait_empty $f/cgroup.procs
check_eq v1-freeze-kill-thaw-empties "$(cat $f/cgroup.procs | wc -l)" 0

# cpu.cfs_quota_us: a spinner at 10% of a CPU gets throttled.
d=$CG/cpu/vmtest
mkdir $d && echo 100000 >$d/cpu.cfs_period_us && echo 10000 >$d/cpu.cfs_quota_us
# (busybox timeout leaves a watcher process behind for up to a second)
in_cgroups_v1 $d timeout 1 sh -c 'while :; do :; done'
wait_empty $d/tasks
check_ge v1-cpu-quota-throttled "$(keyed $d/cpu.stat nr_throttled)" 1

for c in cpu cpuset memory pids freezer; do
    rmdir $CG/$c/vmtest || fail v1-cleanup "rmdir $CG/$c/vmtest"
done
check_eq v1-cleanup "$(ls -d $CG/*/vmtest 2>/dev/null | wc -l)" 0
