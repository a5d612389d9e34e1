# cgroup v2 facts packrun relies on (init enabled every controller at the
# root). Every cgroup made here is removed at the end.
CG=/sys/fs/cgroup

check_eq v2-mounted "$(awk '$2 == "/sys/fs/cgroup" {print $3}' /proc/mounts)" cgroup2
for c in cpuset cpu io memory pids; do
    case " $(cat $CG/cgroup.subtree_control) " in
    *" $c "*) ok "v2-controller-$c" "enabled in the root's subtree_control" ;;
    *) fail "v2-controller-$c" "not in $(cat $CG/cgroup.subtree_control)" ;;
    esac
done

# cpuset: a process inside sees the cgroup's CPUs and memory nodes.
d=$CG/vmtest-cpuset
mkdir $d && echo 2-3 >$d/cpuset.cpus && echo 1 >$d/cpuset.mems
st=$(in_cgroup $d cat /proc/self/status)
check_eq v2-cpuset-cpus "$(echo "$st" | sed -n 's/^Cpus_allowed_list:[[:space:]]*//p')" 2-3
check_eq v2-cpuset-mems "$(echo "$st" | sed -n 's/^Mems_allowed_list:[[:space:]]*//p')" 1
check_eq v2-cpuset-effective "$(cat $d/cpuset.cpus.effective)" 2-3

# cpuset.mems: page cache written from inside lands on that node.
d=$CG/vmtest-node2
mkdir $d && echo 4-5 >$d/cpuset.cpus && echo 2 >$d/cpuset.mems
before=$(node_kb 2 Shmem)
in_cgroup $d dd if=/dev/zero of=/tmp/vmtest-node2 bs=1M count=32 2>/dev/null
after=$(node_kb 2 Shmem)
check_ge v2-mems-node2-shmem-grew-kb "$((after - before))" 32768
rm -f /tmp/vmtest-node2

# memory.max: a 256 MiB allocation under a 64 MiB limit is OOM-killed and
# the kernel counts it.
d=$CG/vmtest-oom
mkdir $d && echo 64M >$d/memory.max
in_cgroup $d dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null
check_eq v2-oom-exit "$?" 137
check_eq v2-oom-kill-count "$(keyed $d/memory.events oom_kill)" 1
check_ge v2-oom-peak "$(cat $d/memory.peak)" $((63 * 1024 * 1024))
if [ "$(cat $d/memory.peak)" -le $((64 * 1024 * 1024)) ]; then
    ok v2-oom-peak-within-limit "$(cat $d/memory.peak)"
else
    fail v2-oom-peak-within-limit "memory.peak $(cat $d/memory.peak) above memory.max"
fi

# pids.max: forks beyond the limit fail; cgroup.kill ends the rest. The
# shell and 4 sleeps reach the limit of 5, the 5th fork fails (and ends the
# shell), 4 sleeps stay.
d=$CG/vmtest-pids
mkdir $d && echo 5 >$d/pids.max
in_cgroup $d sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 600 & done' 2>/dev/null
check_eq v2-pids-current "$(cat $d/pids.current)" 4
check_ge v2-pids-events-max "$(keyed $d/pids.events max)" 1
echo 1 >$d/cgroup.kill
wait_empty $d/cgroup.procs
check_eq v2-cgroup-kill-empties "$(cat $d/cgroup.procs | wc -l)" 0

# cpu.max: a spinner at 10% of a CPU gets throttled (counted, not timed).
d=$CG/vmtest-cpu
mkdir $d && echo "10000 100000" >$d/cpu.max
# (busybox timeout leaves a watcher process behind for up to a second)
in_cgroup $d timeout 1 sh -c 'while :; do :; done'
wait_empty $d/cgroup.procs
check_ge v2-cpu-max-throttled "$(keyed $d/cpu.stat nr_throttled)" 1

for d in $CG/vmtest-*; do
    rmdir $d || fail v2-cleanup "rmdir $d"
done
check_eq v2-cleanup "$(ls -d $CG/vmtest-* 2>/dev/null | wc -l)" 0
