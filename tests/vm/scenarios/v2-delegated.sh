# A delegated cgroup v2 subtree as systemd gives a Delegate=yes service: the
# scenario's shell is the service's only process, in $PACKRUN_VM_DELEGATED.
# What packrun must do there: move itself into a leaf, then enable the
# controllers, then create the run cgroups.
D=$PACKRUN_VM_DELEGATED
CG=/sys/fs/cgroup

check_eq delegated-own-cgroup "$(cat /proc/self/cgroup)" "0::${D#$CG}"
for c in cpuset cpu io memory pids; do
    case " $(cat $D/cgroup.controllers) " in
    *" $c "*) ok "delegated-controller-$c" "available in the delegated cgroup" ;;
    *) fail "delegated-controller-$c" "not in $(cat $D/cgroup.controllers)" ;;
    esac
done

# No internal processes: with a process inside, domain controllers cannot
# be enabled for children.
err=$( (echo +memory >$D/cgroup.subtree_control) 2>&1)
st=$?
case "$st:$err" in
0:*) fail delegated-enable-with-process-busy "enabling +memory with a process inside succeeded" ;;
*[Bb]usy*) ok delegated-enable-with-process-busy "$err" ;;
*) fail delegated-enable-with-process-busy "failed, but not with EBUSY: $err" ;;
esac

# The dance: into a leaf first, then enable, then run cgroups.
mkdir $D/supervisor && echo $$ >$D/supervisor/cgroup.procs
check_eq delegated-moved-to-leaf "$(cat /proc/self/cgroup)" "0::${D#$CG}/supervisor"
for c in cpuset cpu io memory pids; do
    echo "+$c" >$D/cgroup.subtree_control || fail delegated-enable-after-move "+$c"
done
check_eq delegated-enable-after-move "$(cat $D/cgroup.subtree_control)" "cpuset cpu io memory pids"

r=$D/run-1
mkdir $r && echo 2-3 >$r/cpuset.cpus && echo 1 >$r/cpuset.mems && echo 64M >$r/memory.max
st=$(in_cgroup $r cat /proc/self/status)
check_eq delegated-run-cpus "$(echo "$st" | sed -n 's/^Cpus_allowed_list:[[:space:]]*//p')" 2-3
check_eq delegated-run-mems "$(echo "$st" | sed -n 's/^Mems_allowed_list:[[:space:]]*//p')" 1
in_cgroup $r dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null
check_eq delegated-run-oom-exit "$?" 137
check_eq delegated-run-oom-kill-count "$(keyed $r/memory.events oom_kill)" 1
rmdir $r || fail delegated-cleanup "rmdir $r"
check_eq delegated-cleanup "$(ls -d $D/run-* 2>/dev/null | wc -l)" 0
