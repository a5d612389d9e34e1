# packrun on a host whose root is the initial ramfs (init kept it:
# packrun.initramfs=1). pivot_root(2) refuses to move rootfs away, so
# packrun must enter a run's root another way; the run must still have no
# way back out to the host's root, and a job that asks to keep
# CAP_SYS_CHROOT (the capability that would allow it) must be refused.
CG=/sys/fs/cgroup
JOBS=/jobs/vm-initramfs.yaml
OUT=/tmp/initramfs-results
TAB=$(printf '\t')

# The guest's set-up itself: pivot_root is really refused here.
mkdir -p /mnt
err=$(unshare -m sh -c 'mount -t tmpfs vm-probe /mnt && mkdir /mnt/old && cd /mnt && pivot_root . old' 2>&1)
st=$?
case "$st:$err" in
0:*) fail initramfs-pivot-root-refused "pivot_root away from the initramfs succeeded" ;;
*"Invalid argument"*) ok initramfs-pivot-root-refused "$err" ;;
*) fail initramfs-pivot-root-refused "failed, but not with EINVAL: $err" ;;
esac

find $CG -type d | sort >/tmp/cgroups-before
step initramfs-run 1 timeout 120 packrun run $JOBS --out $OUT --quiet
if [ -f $OUT/runs.csv ]; then
    blob runs.csv cat $OUT/runs.csv
    for f in $(find $OUT/logs -type f | sort); do
        blob "log $f" cat "$f"
    done
fi
csv_cols $OUT/runs.csv run_key job state termination_reason >/tmp/initramfs-rows 2>&1
sed 's/^/row: /' /tmp/initramfs-rows
check_eq initramfs-completed "$(grep -c "^[^$TAB]*${TAB}hello${TAB}COMPLETED${TAB}" /tmp/initramfs-rows)" 2
check_eq initramfs-escape-completed "$(grep -c "^[^$TAB]*${TAB}escape${TAB}COMPLETED${TAB}" /tmp/initramfs-rows)" 1
key=$(grep "^[^$TAB]*${TAB}escape${TAB}" /tmp/initramfs-rows | head -n 1 | cut -f1)
log=$OUT/logs/$key.out
said() { sed -n "s/^$1: //p" "$log" 2>/dev/null; }
case "$(said chroot)" in
*"Operation not permitted"*) ok initramfs-escape-chroot-denied "$(said chroot)" ;;
*) fail initramfs-escape-chroot-denied "chroot / inside the run: '$(said chroot)'" ;;
esac
if [ -n "$(said root)" ]; then
    check_eq initramfs-escape-dotdot-is-root "$(said dotdot)" "$(said root)"
    check_eq initramfs-escape-dotdotdot-is-root "$(said dotdotdot)" "$(said root)"
else
    fail initramfs-escape-dotdot-is-root "the escape run listed no /: $(head -c 300 "$log" 2>&1)"
fi
check_eq initramfs-keep-chroot-refused "$(grep "^[^$TAB]*${TAB}keep_chroot${TAB}" /tmp/initramfs-rows | cut -f3)" ERROR
step initramfs-exec-true 0 timeout 60 packrun exec -- true
find $CG -type d | sort >/tmp/cgroups-after
check_eq initramfs-leaves-no-cgroup "$(diff /tmp/cgroups-before /tmp/cgroups-after)" ""
