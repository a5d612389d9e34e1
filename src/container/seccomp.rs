//! The job's seccomp filter, compiled once per process and loaded by the job
//! just before execve.
//!
//! Default: allow. Denied with EPERM: the kernel keyring, new namespaces
//! (unshare, setns, clone with a CLONE_NEW* flag), mount table changes, bpf,
//! perf, userfaultfd, io_uring, kexec, kernel modules, vsock sockets and
//! personality(2) values other than those docker's default profile allows.
//! clone3 gets ENOSYS, as in docker's profile: its flags sit in a struct a
//! filter cannot read, and ENOSYS makes glibc fall back to clone, whose flags
//! the filter checks.
//!
//! Linux AIO: io_setup(2) gets ENOSYS, as on a kernel built without AIO,
//! which programs (libaio users, databases, fio) take as "use synchronous
//! I/O" where EPERM may be fatal. The events of all AIO contexts share one
//! machine-wide counter (fs.aio-max-nr, 65,536 by default) with no
//! per-user or per-cgroup split, so one io_setup(65536) would leave every
//! other process on the machine with EAGAIN. A job that opts in
//! (`container.aio`) may make contexts of at most its run's share of
//! events each; a bigger request gets EAGAIN, as when the counter is full.
//! The filter sees one call at a time: it bounds a context, not how many
//! contexts a job makes. POSIX AIO (aio_read(3) and the like) is glibc's
//! threads and needs none of this. A syscall from a foreign ABI (i386 or x32 on x86_64)
//! is refused too, so the denials cannot be bypassed by numbering.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// The programs to load, in order (each one a separate seccomp(2) call).
/// `aio`: the most events an io_setup(2) may ask for, or None to refuse
/// io_setup (see the top).
pub fn programs(aio: Option<u64>) -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        format!(
            "no seccomp filter for the architecture {}",
            std::env::consts::ARCH
        )
    })?;
    let mut out = Vec::new();
    if cfg!(target_arch = "x86_64") {
        out.push(deny_x32());
    }
    out.push(compile(eperm_rules()?, libc::EPERM, arch)?);
    let mut enosys = BTreeMap::from([(libc::SYS_clone3, vec![])]);
    match aio {
        None => {
            enosys.insert(libc::SYS_io_setup, vec![]);
        }
        Some(most) => {
            let err = |e: seccompiler::BackendError| format!("seccomp rule: {e}");
            // io_setup(unsigned nr_events, aio_context_t *ctxp)
            let over = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Gt, most)
                .map_err(err)?;
            out.push(compile(
                BTreeMap::from([(
                    libc::SYS_io_setup,
                    vec![SeccompRule::new(vec![over]).map_err(err)?],
                )]),
                libc::EAGAIN,
                arch,
            )?);
        }
    }
    out.push(compile(enosys, libc::ENOSYS, arch)?);
    Ok(out)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))
}

fn eperm_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let err = |e: seccompiler::BackendError| format!("seccomp rule: {e}");
    let always = [
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        always.iter().map(|&nr| (nr, vec![])).collect();
    // clone(flags, ...): deny when any namespace bit is set. CLONE_NEWTIME is
    // left out: in clone(2) that bit belongs to the exit signal field.
    let ns_flags = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in ns_flags {
        let flag = flag as u64;
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(err)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let vsock = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_VSOCK as u64,
    )
    .map_err(err)?;
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![vsock]).map_err(err)?],
    );
    // personality(2): only the values docker's default profile allows
    // (PER_LINUX, PER_LINUX32, UNAME26 with either, and the query
    // 0xffffffff); READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and the rest are
    // refused.
    let allowed: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
    let not_allowed = allowed
        .iter()
        .map(|&v| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    rules.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(not_allowed).map_err(err)?],
    );
    Ok(rules)
}

/// x86_64 only: a syscall number with the x32 bit set gets ENOSYS (x32
/// numbers would slip past rules written for the 64-bit numbers).
fn deny_x32() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JGE_K: u16 = 0x35; // BPF_JMP (5) | BPF_JGE (0x30) | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let stmt = |code, k| seccompiler::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        stmt(LD_W_ABS, 0), // seccomp_data.nr
        seccompiler::sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_for_this_architecture() {
        for aio in [None, Some(21845)] {
            let progs = programs(aio).unwrap();
            assert!(progs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        }
    }
}
