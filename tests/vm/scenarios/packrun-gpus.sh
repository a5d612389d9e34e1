# A run's GPUs on cgroup v2 as root: packrun attaches a BPF device program
# to each run's cgroup. Character devices with NVIDIA's major (195) and no
# driver behind them stand in for two GPUs below a machine root of the
# scenario's own (PACKRUN_GPU_ROOT). The run opens its own node and gets past
# the cgroup to the missing driver (ENXIO); it opens the other GPU's node,
# bound in by the job itself, and the program says no (EPERM).
R=/var/lib/packrun-gpus
for i in 0 1; do
    b=0000:0$((i + 3)):00.0
    d=$R/sys/bus/pci/devices/$b
    mkdir -p "$d" "$R/proc/driver/nvidia/gpus/$b" "$R/dev"
    echo 0x030200 >"$d/class"
    echo 0x10de >"$d/vendor"
    echo 0 >"$d/numa_node"
    echo 0-1 >"$d/local_cpulist"
    printf 'Model: fake\nDevice Minor: \t %s\n' "$i" >"$R/proc/driver/nvidia/gpus/$b/information"
    mknod -m 666 "$R/dev/nvidia$i" c 195 "$i"
done
mknod -m 666 "$R/dev/nvidiactl" c 195 255
PROBE='own=$(ls /dev | grep -E "^nvidia[0-9]+$")
echo "own=$own visible=$CUDA_VISIBLE_DEVICES"
(exec 3</dev/$own) 2>&1
(exec 3</fakedev/nvidia$((1 - ${own#nvidia}))) 2>&1
true'
PACKRUN_GPU_ROOT=$R timeout 120 packrun exec --gpus 1 --cpus 1 --bind "$R/dev:/fakedev" \
    --format csv -- sh -c "$PROBE" >/tmp/gpu.out 2>/tmp/gpu.csv
blob gpu-output cat /tmp/gpu.out
blob gpu-record cat /tmp/gpu.csv
# The record, without what packrun said before it (no NVIDIA library here).
grep -v '^packrun: ' /tmp/gpu.csv >/tmp/gpu-row.csv
own=$(sed -n 's/^own=\(nvidia[0-9]*\) .*/\1/p' /tmp/gpu.out)
check_eq gpu-env "$(sed -n 's/^own=[^ ]* //p' /tmp/gpu.out)" "visible=0"
if grep -q "/dev/$own.*No such device or address" /tmp/gpu.out && [ -n "$own" ]; then
    ok gpu-own-enxio "its own node $own reaches the (missing) driver"
else
    fail gpu-own-enxio "own node '$own': $(cat /tmp/gpu.out)"
fi
if grep -q "/fakedev/nvidia.*Operation not permitted" /tmp/gpu.out; then
    ok gpu-other-eperm "the other GPU's node is denied"
else
    fail gpu-other-eperm "$(cat /tmp/gpu.out)"
fi
check_eq gpu-row "$(csv_cols /tmp/gpu-row.csv gpus)" "0000:0$((${own#nvidia} + 3)):00.0"
check_eq gpu-state "$(csv_cols /tmp/gpu-row.csv state)" COMPLETED
