# Socket buffers a run holds count against its memory limit and show in
# its peak. On cgroup v2 the kernel charges them to the run's
# memory.current with its pages: nothing to turn on. A run (64 MiB limit)
# holds TCP buffers below its limit: 10 loopback connections whose
# listeners never read (busybox nc -e sleep) and whose senders push 3 MiB
# each. It prints what it holds, from its own /proc/net/tcp (send and
# receive queues). (Past its limit the kernel OOM-kills the run instead,
# before it could print: then its peak is the limit, which only the
# buffers could have reached.)
HOG='for i in $(seq 1 10); do nc -l -p $((5000 + i)) -e sleep 20 2>/dev/null & done
sleep 1
for i in $(seq 1 10); do
    (dd if=/dev/zero bs=65536 count=48 2>/dev/null | nc 127.0.0.1 $((5000 + i)) 2>/dev/null) &
done
sleep 8
awk "NR > 1 { split(\$5, q, \":\"); s += (\"0x\" q[1]) + 0 + (\"0x\" q[2]) } END { print s + 0 }" /proc/net/tcp'
timeout 120 packrun exec --cpus 1 --memory 64MiB --format csv -- sh -c "$HOG" >/tmp/sock.out 2>/tmp/sock.csv
blob socket-memory-record cat /tmp/sock.csv
held=$(tail -n 1 /tmp/sock.out)
peak=$(csv_cols /tmp/sock.csv memory_peak_bytes)
state=$(csv_cols /tmp/sock.csv state)
check_eq socket-memory-state "$state" COMPLETED
# Enough held to tell: 8 MiB at least.
check_ge socket-memory-held "$held" $((8 * 1024 * 1024))
# In the peak: memory.peak holds the socket buffers.
check_ge socket-memory-in-peak "$peak" "$held"
# Within the limit, as everything memory.current holds.
if [ "$peak" -le $((64 * 1024 * 1024)) ] 2>/dev/null; then
    ok socket-memory-held-to-limit "peak $peak"
else
    fail socket-memory-held-to-limit "peak $peak bytes with a 64 MiB limit"
fi
