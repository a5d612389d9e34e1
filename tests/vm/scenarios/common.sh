# Checks every layout shares: the static packrun runs in the guest, and the
# NUMA nodes the host asked for (PACKRUN_VM_NODE_CPUS="0-1 2-3 ...", set by
# run.sh) are the ones the kernel shows.

v=$(packrun --version 2>&1)
case "$v" in
"packrun "*) ok packrun-version "$v" ;;
*) fail packrun-version "packrun --version printed '$v'" ;;
esac

set -- $PACKRUN_VM_NODE_CPUS
check_eq node-count "$(ls -d /sys/devices/system/node/node* | wc -l)" "$#"
n=0
for cpus in "$@"; do
    check_eq "node$n-cpulist" "$(cat /sys/devices/system/node/node$n/cpulist)" "$cpus"
    n=$((n + 1))
done

# packrun's containers pivot_root away from the guest's root, which the
# kernel refuses for the initial ramfs; init moved the root onto a tmpfs,
# unless the test asked to keep the initramfs (packrun.initramfs=1).
if [ "$PACKRUN_VM_INITRAMFS" = 1 ]; then
    awk '$5 == "/"' /proc/self/mountinfo | sed 's/^/root in mountinfo: /'
    check_eq guest-root-is-initramfs "$(awk '$5 == "/" {print $(NF - 2)}' /proc/self/mountinfo)" rootfs
else
    check_eq guest-root-is-tmpfs "$(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)" tmpfs
fi
