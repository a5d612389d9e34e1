# A run's GPU without root on cgroup v2 (uid 1000 in a delegated subtree):
# no device program can be loaded, so the run only gets its GPU's node
# bound in, and its row says so. The user cannot mknod: /dev/null, a
# character device anybody may open, stands in for the GPU's node.
export PACKRUN_CGROUP=self
R=$HOME/gpus
b=0000:03:00.0
d=$R/sys/bus/pci/devices/$b
mkdir -p "$d" "$R/proc/driver/nvidia/gpus/$b" "$R/dev"
echo 0x030200 >"$d/class"
echo 0x10de >"$d/vendor"
echo 0 >"$d/numa_node"
echo 0-1 >"$d/local_cpulist"
printf 'Model: fake\nDevice Minor: \t 0\n' >"$R/proc/driver/nvidia/gpus/$b/information"
ln -s /dev/null "$R/dev/nvidia0"
PACKRUN_GPU_ROOT=$R timeout 120 packrun exec --gpus 1 --cpus 1 --format csv -- \
    sh -c 'ls -l /dev/nvidia0 && echo "visible=$CUDA_VISIBLE_DEVICES"' >/tmp/gu.out 2>/tmp/gu.csv
blob gpu-user-output cat /tmp/gu.out
blob gpu-user-record cat /tmp/gu.csv
grep -v '^packrun: ' /tmp/gu.csv >/tmp/gu-row.csv
check_eq gpu-user-state "$(csv_cols /tmp/gu-row.csv state)" COMPLETED
check_eq gpu-user-bound-only "$(csv_cols /tmp/gu-row.csv gpus)" "0000:03:00.0 (bound only)"
check_eq gpu-user-env "$(grep visible= /tmp/gu.out)" "visible=0"
if grep -q '^c.* /dev/nvidia0$' /tmp/gu.out; then
    ok gpu-user-node "its node is bound in"
else
    fail gpu-user-node "$(cat /tmp/gu.out)"
fi
