# Before packrun-networks.sh: its batch, run by an ordinary user (uid
# 1000, no capabilities, no /etc/subuid entry) in a cgroup v2 subtree
# delegated to it (layout v2-delegated-user, as packrun-user.sh): packrun
# makes the networks' namespaces in a user namespace of its own. The
# checks are then named user-net-*.
export PACKRUN_CGROUP=self PACKRUN_VM_NET_PREFIX=user-net
check_eq user-net-uid "$(id -u) $(status_field self CapEff)" "1000 0000000000000000"
