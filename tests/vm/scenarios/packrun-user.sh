# packrun run by an ordinary user (uid 1000) in a cgroup v2 subtree
# delegated to it as systemd delegates one (layout v2-delegated-user: init
# moved this shell into $PACKRUN_VM_DELEGATED as root, then became uid 1000
# with su). No /etc/subuid entry, so a run's user namespace can map only the
# user's own id: root inside is uid 1000 outside. packrun must keep its
# runs below the delegated cgroup, in cgroups it creates itself, and leave
# only its supervisor leaf behind.
CG=/sys/fs/cgroup
D=$PACKRUN_VM_DELEGATED
JOBS=/jobs/vm-user.yaml
OUT=$HOME/out
TAB=$(printf '\t')
# systemd marks a delegated cgroup with the xattr trusted.delegate, which
# busybox cannot set; packrun takes the same hint from the environment.
export PACKRUN_CGROUP=self

# The guest's set-up itself: who this shell is and what it may do.
check_eq user-uid "$(id -u):$(id -g) $(id -G)" "1000:1000 1000"
check_eq user-no-capabilities "$(status_field self CapEff)" 0000000000000000
check_eq user-home "$HOME $(stat -c %u:%g "$HOME")" "/tmp/u 1000:1000"
check_eq user-no-subuid "$(ls /etc/subuid /etc/subgid 2>/dev/null)" ""
check_eq user-in-delegated-cgroup "$(cat /proc/self/cgroup)" "0::${D#$CG}"
check_eq user-owns-delegated-cgroup \
    "$(stat -c %u:%g $D $D/cgroup.procs $D/cgroup.threads $D/cgroup.subtree_control | sort -u)" 1000:1000
check_eq user-parent-not-owned "$(stat -c %u "${D%/*}/cgroup.subtree_control")" 0
for c in cpuset cpu io memory pids; do
    case " $(cat $D/cgroup.controllers) " in
    *" $c "*) ;;
    *) fail user-controllers "$c not in $D/cgroup.controllers: $(cat $D/cgroup.controllers)" ;;
    esac
done
ok user-controllers "$(cat $D/cgroup.controllers)"
# What packrun will do as this user: a cgroup below the delegated one, this
# shell into it, controllers enabled, a limit set; then all undone, so
# packrun starts from the delegated cgroup as under systemd.
P=$D/vm-probe
if mkdir $P 2>/tmp/probe.err && echo $$ >$P/cgroup.procs 2>>/tmp/probe.err; then
    check_eq user-can-mkdir-and-move "$(cat /proc/self/cgroup)" "0::${P#$CG}"
else
    fail user-can-mkdir-and-move "$(cat /tmp/probe.err)"
fi
if echo "+cpuset +memory +pids" >$D/cgroup.subtree_control 2>/tmp/probe.err; then
    check_eq user-can-write-subtree-control "$(cat $D/cgroup.subtree_control)" "cpuset memory pids"
else
    fail user-can-write-subtree-control "$(cat /tmp/probe.err)"
fi
if echo 64M >$P/memory.max 2>/tmp/probe.err; then
    check_eq user-can-set-limits "$(cat $P/memory.max)" 67108864
else
    fail user-can-set-limits "$(cat /tmp/probe.err)"
fi
echo "-cpuset -memory -pids" >$D/cgroup.subtree_control
echo $$ >$D/cgroup.procs
rmdir $P
check_eq user-probe-undone "$(cat /proc/self/cgroup) [$(cat $D/cgroup.subtree_control)] [$(find $D -mindepth 1 -type d)]" "0::${D#$CG} [] []"

# packrun as this user. Each packrun command gets a time limit of its own,
# so one that hangs fails its check instead of the whole VM's deadline.
step user-doctor any packrun doctor
step user-run 1 timeout 120 packrun run $JOBS --out $OUT --quiet
if [ -f $OUT/runs.csv ]; then
    blob runs.csv cat $OUT/runs.csv
    for f in $(find $OUT/logs -type f | sort); do
        blob "log $f" cat "$f"
    done
fi
csv_cols $OUT/runs.csv run_key job cpus mems state >/tmp/user-rows 2>&1
check_eq user-completed "$(grep -c "${TAB}where${TAB}.*${TAB}COMPLETED\$" /tmp/user-rows)" 1
check_eq user-oom "$(grep -c "${TAB}oom${TAB}.*${TAB}OUT_OF_MEMORY\$" /tmp/user-rows)" 1
check_eq user-timeout "$(grep -c "${TAB}timeout${TAB}.*${TAB}TIMEOUT\$" /tmp/user-rows)" 1
# Every run printed where it ran, as seen from inside: as in runs.csv.
inside() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
for job in where oom timeout; do
    row=$(grep "^[^$TAB]*$TAB$job$TAB" /tmp/user-rows | head -n 1)
    key=$(echo "$row" | cut -f1)
    line=$(grep -h '^where ' "$OUT/logs/$key.out" 2>/dev/null | head -n 1)
    if [ -z "$row" ] || [ -z "$line" ]; then
        for c in cpus mems; do fail "user-$c-$job" "no row in runs.csv or nothing printed from inside"; done
        [ $job = where ] && fail user-inside-uid "the run printed nothing" && fail user-inside-uid-map "the run printed nothing"
        continue
    fi
    check_eq "user-cpus-$job" "$(inside cpus)" "$(echo "$row" | cut -f3)"
    check_eq "user-mems-$job" "$(inside mems)" "$(echo "$row" | cut -f4)"
    if [ $job = where ]; then
        # root inside, mapped to the user's own uid alone.
        check_eq user-inside-uid "$(inside uid)" 0
        case "$(inside uid_map)" in
        0:0:4294967295) fail user-inside-uid-map "the identity map: the run shares the host's user ids" ;;
        *) check_eq user-inside-uid-map "$(inside uid_map)" 0:1000:1 ;;
        esac
    fi
done
# A disk hog beside a neighbour: stopped at its budget without root.
DISK_OUT=$HOME/out-disk
step user-disk-run 1 timeout 120 packrun run /jobs/vm-user-disk.yaml --out $DISK_OUT --quiet
csv_cols $DISK_OUT/runs.csv run_key job state termination_reason >/tmp/user-disk-rows 2>&1
blob user-disk-rows cat /tmp/user-disk-rows
check_eq user-disk-hog "$(grep "${TAB}hog${TAB}" /tmp/user-disk-rows | cut -f3-4 | sed 's/exceeded: .*/exceeded/')" "FAILED${TAB}disk budget 4.0 MiB exceeded"
nkey=$(grep "${TAB}neighbour${TAB}" /tmp/user-disk-rows | cut -f1)
check_eq user-disk-neighbour "$(grep "${TAB}neighbour${TAB}" /tmp/user-disk-rows | cut -f3) $(cat $DISK_OUT/logs/$nkey.out 2>&1)" "COMPLETED neighbour wrote 1048576 bytes"
rm -rf $DISK_OUT
step user-exec-true 0 timeout 60 packrun exec -- true
step user-exec-uid-map 0 timeout 60 packrun exec --memory 32MiB -- cat /proc/self/uid_map

# Per-user counters: every run of this user charges uid 1000's counters
# (the runs' user namespaces are the user's), so each run gets a share of
# the user's inotify instances, set in its own namespace. Two runs that
# take all they can hold the same share each, and the user's own
# processes still get one.
hold() { # FILE: the hog's "held N", once it printed it
    for _i in $(seq 1 120); do
        grep -q '^held ' "$1" 2>/dev/null && break
        sleep 0.5
    done
    sed -n 's/^held //p' "$1"
}
timeout 120 packrun exec --memory 32MiB -- /usr/bin/inotify_hog hog >/tmp/hog1 2>/tmp/hog1.err &
HOG1=$!
N1=$(hold /tmp/hog1)
timeout 120 packrun exec --memory 32MiB -- /usr/bin/inotify_hog hog >/tmp/hog2 2>/tmp/hog2.err &
HOG2=$!
N2=$(hold /tmp/hog2)
if [ -n "$N1" ] && [ "$N1" -gt 0 ] && [ "$N1" = "$N2" ]; then
    ok user-inotify-each-run-a-share "$N1 and $N2 of $(cat /proc/sys/user/max_inotify_instances)"
else
    fail user-inotify-each-run-a-share "the first run holds '$N1', the second '$N2': $(cat /tmp/hog1.err /tmp/hog2.err | grep -i -m3 -e error -e state)"
fi
check_eq user-inotify-user-keeps-some "$(/usr/bin/inotify_hog probe)" ok
kill $HOG1 $HOG2 2>/dev/null
wait $HOG1 $HOG2 2>/dev/null

# Nothing left below the delegated cgroup but packrun's leaf, and the
# results belong to the user.
check_eq user-leaves-only-the-leaf "$(find $D -mindepth 1 -type d | sort)" "$D/supervisor"
if [ -n "$(find $OUT -type f 2>/dev/null)" ]; then
    check_eq user-results-owned "$(find $OUT ! -user 1000)" ""
else
    fail user-results-owned "no results in $OUT"
fi
