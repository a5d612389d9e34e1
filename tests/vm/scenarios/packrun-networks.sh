# Private networks on cgroup v2 with a kernel that has netem: the batch of
# /jobs/vm-networks.yaml (see there), then what is left. As root, or as
# the user of packrun-networks-user.sh (sourced before this one). /init loaded veth,
# bridge, sch_tbf and sch_netem (they are modules in the guest's kernel).
CG=/sys/fs/cgroup
JOBS=/jobs/vm-networks.yaml
OUT=${HOME%/}/net-out
TAB=$(printf '\t')
N=${PACKRUN_VM_NET_PREFIX:-net}

missing=""
for m in veth bridge sch_tbf sch_netem; do
    [ -d /sys/module/$m ] || missing="$missing $m"
done
check_eq $N-modules "${missing:-none} missing" "none missing"

# What the guest holds before: links, network namespaces, cgroups.
links() { ls /sys/class/net | tr '\n' ' '; }
netns() { for p in /proc/[0-9]*; do readlink $p/ns/net; done 2>/dev/null | sort -u | wc -l; }
cgroups() { find $CG -type d ! -name supervisor | sort; }
LINKS_BEFORE=$(links)
NETNS_BEFORE=$(netns)
cgroups >/tmp/net-cgroups-before

step $N-doctor any packrun doctor
step $N-run 0 timeout 300 packrun run $JOBS --out $OUT --quiet
if [ -f $OUT/runs.csv ]; then
    blob runs.csv cat $OUT/runs.csv
    for f in $(find $OUT/logs -type f | sort); do
        blob "log $f" cat "$f"
    done
fi
csv_cols $OUT/runs.csv run_key job state net_rx_bytes net_tx_bytes net_rx_packets net_tx_packets userns \
    >/tmp/net-rows 2>&1
blob net-rows cat /tmp/net-rows
col() { # JOB FIELD: a field of the job's row (fields as csv_cols above)
    grep "^[^$TAB]*$TAB$1$TAB" /tmp/net-rows | head -n 1 | cut -f"$2"
}
said() { # JOB: what the job's run printed
    cat "$OUT/logs/$(col "$1" 1).out" 2>/dev/null
}
check_eq $N-all-completed "$(cut -f3 /tmp/net-rows | sort | uniq -c | sed 's/^ *//')" "10 COMPLETED"
if [ "$(id -u)" != 0 ]; then
    # Without subordinate ids: root in every run is the user alone.
    check_eq $N-userns "$(cut -f8 /tmp/net-rows | sort | uniq -c | sed 's/^ *//')" "10 0:$(id -u):1"
fi

# Two runs on lab talked: the server saw the client's 8 MB, then the last
# run's 2000 bytes (at the client's address again, its link reused).
peers=$(said server | grep '^peer ' | cut -d' ' -f2,4 | tr '\n' ' ')
case "$peers" in
"10.80.0."[12]" 8000000 10.80.0."[12]" 2000 ") ok $N-two-runs-talk "$peers" ;;
*) fail $N-two-runs-talk "the server saw: '$peers'" ;;
esac
for job in server client last other; do
    check_eq "$N-devices-$job" "$(said $job | head -n 1)" "devices eth0 lo"
done
check_eq $N-devices-alone "$(said alone | head -n 1)" "devices lo"
# From another network, from `none` and from the host: no way to lab.
for job in other alone host; do
    check_eq "$N-unreachable-from-$job" "$(said $job | grep -c ' not reached: Network is unreachable$')" 2
done

# rate: the shaped link's goodput stays at its 10 Mbit/s, well below the
# unshaped one's on lab (TCG's figure, whatever it is).
shaped=$(said sink | sed -n 's/^peer .* bytes 2000000 mbit //p')
unshaped=$(said server | sed -n 's/^peer .* bytes 8000000 mbit //p')
if [ -n "$shaped" ] && [ -n "$unshaped" ] &&
    awk -v s="$shaped" -v u="$unshaped" 'BEGIN { exit !(s <= 10.5 && u >= 2 * s) }'; then
    ok $N-rate "10mbit link: $shaped Mbit/s; unshaped: $unshaped Mbit/s"
else
    fail $N-rate "10mbit link: '$shaped' Mbit/s; unshaped: '$unshaped' Mbit/s"
fi
# delay 20ms on each end of each link: a round trip crosses four of them.
line=$(said ping | grep '^ping answered')
min_us=$(echo "$line" | sed -n 's/.* min_us \([0-9]*\) .*/\1/p')
check_ge $N-delay "${min_us:-none}" 80000
echo "$N: $line"
# loss 10% at each of those four: about 66 of 100 come back.
answered=$(echo "$line" | sed -n 's/^ping answered \([0-9]*\) of 100 .*/\1/p')
if [ -n "$answered" ] && [ "$answered" -ge 20 ] && [ "$answered" -le 95 ]; then
    ok $N-loss "$answered of 100 answered"
else
    fail $N-loss "'$answered' of 100 answered, expected 20 to 95 (about 66)"
fi

# Each run's traffic in its row: the client's 8 MB with TCP's headers, the
# server got them; runs on no private network have empty cells.
tx=$(col client 5)
if [ -n "$tx" ] && [ "$tx" -ge 8000000 ] && [ "$tx" -le 9200000 ]; then
    ok $N-counted-tx "$tx"
else
    fail $N-counted-tx "client net_tx_bytes '$tx', expected 8000000 to 9200000"
fi
check_ge $N-counted-rx "$(col server 4)" 8002000
check_ge $N-counted-packets "$(col server 6)" 100
check_eq $N-uncounted "$(col alone 4)|$(col alone 5)|$(col host 4)|$(col host 7)" "|||"

# Nothing left: no link, namespace, process or cgroup.
check_eq $N-leaves-no-link "$(links)" "$LINKS_BEFORE"
check_eq $N-leaves-no-namespace "$(netns)" "$NETNS_BEFORE"
check_eq $N-leaves-no-process "$(ps -o args | grep -e '^nettalk' -e '^packrun run')" ""
check_eq $N-leaves-no-cgroup "$(cgroups | diff /tmp/net-cgroups-before -)" ""

# Ctrl-C while runs talk: packrun ends the batch (exit 130) and leaves
# nothing either.
INT_OUT=${HOME%/}/net-int
timeout 300 packrun run $JOBS --out $INT_OUT --quiet >/tmp/net-int.out 2>&1 &
PID=$!
_i=0
until grep -qs '^devices eth0 lo' $INT_OUT/logs/*.out || [ $_i -ge 600 ]; do
    sleep 0.1
    _i=$((_i + 1))
done
if kill -0 $PID 2>/dev/null && [ $_i -lt 600 ]; then
    kill -INT $PID
    wait $PID
    check_eq $N-sigint-exit "$?" 130
else
    fail $N-sigint-exit "no run on a network started, or packrun ended first: $(head -c 300 /tmp/net-int.out)"
fi
check_eq $N-sigint-leaves-no-link "$(links)" "$LINKS_BEFORE"
check_eq $N-sigint-leaves-no-namespace "$(netns)" "$NETNS_BEFORE"
check_eq $N-sigint-leaves-no-process "$(ps -o args | grep -e '^nettalk' -e '^packrun run')" ""
check_eq $N-sigint-leaves-no-cgroup "$(cgroups | diff /tmp/net-cgroups-before -)" ""

# SIGKILL while two runs talk (/jobs/vm-networks-kill.yaml), then
# --resume: the runs run again, once, and nothing is left after that
# either.
KILL_OUT=${HOME%/}/net-kill
timeout 300 packrun run /jobs/vm-networks-kill.yaml --out $KILL_OUT --quiet >/tmp/net-kill.out 2>&1 &
PID=$!
# Killed once both runs go (a run's log reaches logs/ only at its end,
# so the logs cannot tell): neither may have ended, or the resumed batch
# would hold only the other, which waits for its peer in vain.
_i=0
until [ "$(ps -o args | grep -c '^nettalk')" -ge 2 ] || [ $_i -ge 600 ]; do
    sleep 0.1
    _i=$((_i + 1))
done
kill -KILL $PID
wait $PID
step $N-resume-after-sigkill 0 timeout 300 packrun run --resume $KILL_OUT --quiet
if [ -f $KILL_OUT/runs.csv ]; then
    csv_cols $KILL_OUT/runs.csv run_key state >/tmp/net-kill-rows 2>&1
    check_eq $N-resume-each-run-once "$(cut -f1 /tmp/net-kill-rows | sort -u | wc -l) $(grep -c "${TAB}COMPLETED\$" /tmp/net-kill-rows)" "2 2"
else
    fail $N-resume-each-run-once "no runs.csv in $KILL_OUT"
fi
check_eq $N-resume-leaves-no-link "$(links)" "$LINKS_BEFORE"
check_eq $N-resume-leaves-no-namespace "$(netns)" "$NETNS_BEFORE"
check_eq $N-resume-leaves-no-process "$(ps -o args | grep -e '^nettalk' -e '^packrun run')" ""
check_eq $N-resume-leaves-no-cgroup "$(cgroups | diff /tmp/net-cgroups-before -)" ""

if [ -f $OUT/runs.csv ]; then
    check_eq $N-results-owned "$(find $OUT ! -user "$(id -u)")" ""
else
    fail $N-results-owned "no results in $OUT"
fi
