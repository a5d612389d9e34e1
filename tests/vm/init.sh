#!/bin/busybox sh
# Guest /init for the VM test suite (tests/vm.rs). Moves the root onto a
# tmpfs (unless `packrun.initramfs=1`), mounts the pseudo file systems, sets
# up the cgroup layout named by `packrun.layout=` on the kernel command line,
# runs /scenario/run.sh with stdout on ttyS1 and stderr on ttyS2 (as uid 1000
# for the v2-delegated-user layout), prints the exit-status marker on the
# console and powers off.
#
# Protocol with the host (tests/vm/harness.rs):
#   console line "packrun-vm: init reached"       -> the boot watchdog stops
#   console line "packrun-vm: exit status N"      -> the scenario's status
# A missing exit marker means the guest crashed.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# `packrun.initramfs=1` on the kernel command line keeps the initial ramfs
# as the root, as on hosts that run from their initramfs.
initramfs=0
if [ ! -e /.packrun-vm-root ]; then
    /bin/busybox mkdir -p /proc
    /bin/busybox mount -t proc proc /proc
    case " $(/bin/busybox cat /proc/cmdline) " in *" packrun.initramfs=1 "*) initramfs=1 ;; esac
    /bin/busybox umount /proc
fi
if [ ! -e /.packrun-vm-root ] && [ $initramfs = 0 ]; then
    # pivot_root(2) refuses the initial ramfs as the current root, and
    # packrun's containers pivot_root away from it: move everything onto a
    # tmpfs and start again from there.
    /bin/busybox mkdir -p /newroot
    /bin/busybox mount -t tmpfs -o mode=755 root /newroot
    for f in /*; do
        case "$f" in /newroot | /proc | /sys | /dev) ;; *) /bin/busybox cp -a "$f" /newroot/ ;; esac
    done
    /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev
    /bin/busybox mknod -m 600 /newroot/dev/console c 5 1
    /bin/busybox touch /newroot/.packrun-vm-root
    exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
# A host name, as on a real machine (runs.csv's host column).
hostname packrun-vm
echo "packrun-vm: init reached"

die() {
    echo "packrun-vm: setup failed: $*"
    echo "packrun-vm: exit status 125"
    poweroff -f
}

# Raw serial lines so the host files hold the scenario's bytes exactly.
stty -F /dev/ttyS1 raw -echo || die "stty ttyS1"
stty -F /dev/ttyS2 raw -echo || die "stty ttyS2"

# Kernel modules the test asked for (tests/vm/harness.rs put them in
# /modules, each after those it depends on), loaded before the scenario.
if [ -f /modules/order ]; then
    for m in $(cat /modules/order); do
        insmod /modules/$m.ko || die "insmod $m"
    done
fi

layout=$(sed -n 's/.*packrun\.layout=\([^ ]*\).*/\1/p' /proc/cmdline)
CG=/sys/fs/cgroup
CONTROLLERS="cpuset cpu io memory pids"

mount_v2() {
    mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $CG || die "mount cgroup2 on $CG"
}

enable_controllers() { # DIR: enable every v2 controller in DIR's subtree
    for c in $CONTROLLERS; do
        echo "+$c" >"$1/cgroup.subtree_control" || die "enable +$c in $1/cgroup.subtree_control"
    done
}

case "$layout" in
v2)
    mount_v2
    enable_controllers $CG
    ;;
v2-delegated-user)
    # As systemd delegates a user's manager (user@1000.service,
    # Delegate=yes): the controllers are enabled down to its parent; the
    # cgroup itself, its cgroup.procs, cgroup.threads and
    # cgroup.subtree_control belong to the user, so the user can create and
    # fill cgroups below it and enable controllers for them.
    mount_v2
    enable_controllers $CG
    u=$CG/user.slice/user-1000.slice/user@1000.service
    mkdir -p $u || die "mkdir delegated cgroup"
    enable_controllers $CG/user.slice
    enable_controllers $CG/user.slice/user-1000.slice
    chown 1000:1000 $u $u/cgroup.procs $u/cgroup.threads $u/cgroup.subtree_control ||
        die "chown delegated cgroup"
    # The user: in /etc/passwd for su, with a home of its own and no
    # /etc/subuid or /etc/subgid entry (so a user namespace can map only
    # the user's own ids).
    mkdir -p /etc /tmp/u || die "mkdir /etc /tmp/u"
    echo "root:x:0:0:root:/root:/bin/sh" >/etc/passwd
    echo "packrun:x:1000:1000:packrun:/tmp/u:/bin/sh" >>/etc/passwd
    printf 'root:x:0:\npackrun:x:1000:\n' >/etc/group
    rm -f /etc/subuid /etc/subgid
    chown 1000:1000 /tmp/u && chmod 700 /tmp/u || die "chown /tmp/u"
    export PACKRUN_VM_DELEGATED=$u PACKRUN_VM_USER=packrun
    ;;
v2-delegated)
    # As systemd gives a service with Delegate=yes: the controllers are
    # enabled down to the service's cgroup, the service's main process sits
    # in it, and what happens below it is the service's business.
    mount_v2
    enable_controllers $CG
    mkdir -p $CG/system.slice/packrun.service || die "mkdir delegated cgroup"
    enable_controllers $CG/system.slice
    export PACKRUN_VM_DELEGATED=$CG/system.slice/packrun.service
    ;;
v1)
    # As on the development machines: one hierarchy per controller, a
    # name=systemd hierarchy and an (empty) cgroup2 at unified/.
    mount -t tmpfs -o mode=755 cgroup $CG || die "mount tmpfs on $CG"
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p $CG/$c && mount -t cgroup -o $c cgroup $CG/$c || die "mount cgroup v1 $c"
    done
    mkdir -p $CG/systemd && mount -t cgroup -o none,name=systemd cgroup $CG/systemd || die "mount name=systemd"
    mkdir -p $CG/unified && mount -t cgroup2 cgroup2 $CG/unified || die "mount cgroup2 on unified"
    ;;
v1-comounted)
    # As systemd's legacy and hybrid modes: cpu and cpuacct (and net_cls and
    # net_prio) share a hierarchy, reached through symlinks named after
    # each controller.
    mount -t tmpfs -o mode=755 cgroup $CG || die "mount tmpfs on $CG"
    for c in cpu,cpuacct cpuset memory devices freezer net_cls,net_prio blkio pids; do
        mkdir -p $CG/$c && mount -t cgroup -o $c cgroup $CG/$c || die "mount cgroup v1 $c"
    done
    for c in cpu cpuacct net_cls net_prio; do
        case $c in cpu*) dir=cpu,cpuacct ;; *) dir=net_cls,net_prio ;; esac
        ln -s $dir $CG/$c || die "symlink $CG/$c"
    done
    mkdir -p $CG/systemd && mount -t cgroup -o none,name=systemd cgroup $CG/systemd || die "mount name=systemd"
    mkdir -p $CG/unified && mount -t cgroup2 cgroup2 $CG/unified || die "mount cgroup2 on unified"
    ;;
*)
    die "unknown packrun.layout=$layout on the kernel command line"
    ;;
esac
export PACKRUN_VM_LAYOUT=$layout PACKRUN_VM_INITRAMFS=$initramfs

cd /scenario || die "no /scenario"
if [ -n "$PACKRUN_VM_USER" ]; then
    # Into the delegated cgroup as root, then the user's shell: busybox su
    # (root needs no password) sets uid, gid and groups from /etc/passwd
    # and /etc/group, HOME, USER and LOGNAME, and keeps the rest of the
    # environment.
    sh -c 'echo $$ >"$PACKRUN_VM_DELEGATED/cgroup.procs" && exec su -s /bin/sh "$PACKRUN_VM_USER" -c "cd /scenario && exec sh /scenario/run.sh"' \
        >/dev/ttyS1 2>/dev/ttyS2 </dev/null
elif [ -n "$PACKRUN_VM_DELEGATED" ]; then
    # Only the scenario's shell enters the delegated cgroup (this init stays
    # at the root), so the scenario is the service's only process.
    sh -c 'echo $$ >"$PACKRUN_VM_DELEGATED/cgroup.procs" && exec sh /scenario/run.sh' \
        >/dev/ttyS1 2>/dev/ttyS2 </dev/null
else
    sh /scenario/run.sh >/dev/ttyS1 2>/dev/ttyS2 </dev/null
fi
status=$?
sync
echo "packrun-vm: exit status $status"
poweroff -f
