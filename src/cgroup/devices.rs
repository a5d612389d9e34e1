//! Device control: which device nodes a run's tasks may open.
//!
//! packrun denies, per run, the character devices of GPUs that are not the
//! run's (and the vendor's shared nodes when the run has none of that
//! vendor's GPUs); everything else stays as it was.
//! - v1: one `c MAJOR:MINOR rwm` line per device into the run's
//!   `devices.deny` (the group starts allowing all, inherited from its parent).
//! - v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the run's group
//!   (with `BPF_F_ALLOW_MULTI`, so programs above it, e.g. systemd's, still
//!   apply). Loading one needs CAP_SYS_ADMIN in the initial user namespace:
//!   without root, v2 has no device control and a run only gets its own
//!   nodes bound in (docs/gpus.md). The program lives as long as the group.
//!
//! The program is written here by hand, as instructions: load the type,
//! major and minor from `struct bpf_cgroup_dev_ctx`, compare them with each
//! denied device, return 0 (deny) on a match, else 1 (allow). It is a few
//! dozen lines of our own against a BPF library and its build-time
//! dependencies (libbpf, clang) for one program of this shape.
// The bpf(2) calls below are the only unsafe code outside `container`:
// they live here because the cgroup owns its device control (v1 and v2
// behind one interface), and each call says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `struct bpf_cgroup_dev_ctx` (linux/bpf.h): access_type at 0
/// ((access << 16) | type), major at 4, minor at 8.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One `struct bpf_insn`, as its 8 bytes.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [
        code,
        (src << 4) | (dst & 0xf),
        o[0],
        o[1],
        i[0],
        i[1],
        i[2],
        i[3],
    ]
}

/// The program that denies the character devices `deny` (major, minor)
/// and allows every other device and access.
pub fn deny_program(deny: &[(u32, u32)]) -> Vec<[u8; 8]> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, CTX_MAJOR, 0),
        insn(LDX_MEM_W, 4, 1, CTX_MINOR, 0),
    ];
    for &(major, minor) in deny {
        // Each test jumps past the rest of its block (to the next device).
        p.push(insn(JMP_JNE_K, 2, 0, 4, BPF_DEVCG_DEV_CHAR));
        p.push(insn(JMP_JNE_K, 3, 0, 3, major as i32));
        p.push(insn(JMP_JNE_K, 4, 0, 2, minor as i32));
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// The v1 `devices.deny` lines for `deny`.
pub fn v1_deny_lines(deny: &[(u32, u32)]) -> Vec<String> {
    deny.iter()
        .map(|(major, minor)| format!("c {major}:{minor} rwm"))
        .collect()
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads the program denying `deny` and attaches it to the v2 group `dir`.
pub fn attach_v2(dir: &Path, deny: &[(u32, u32)]) -> Result<(), String> {
    let prog = deny_program(deny);
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"packrun");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: bpf(2) BPF_PROG_LOAD reads `attr` (size given) and, through
    // its pointers, `prog` (insn_cnt instructions of 8 bytes), the
    // NUL-terminated license, and writes at most log_size bytes to `log`;
    // all of them live until the call returns. See bpf(2).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as u32,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let verifier = String::from_utf8_lossy(&log[..end]).trim().to_string();
        return Err(match verifier.is_empty() {
            true => format!("load a BPF device program: {e}"),
            false => format!("load a BPF device program: {e}: {verifier}"),
        });
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor
    // that nothing else owns; OwnedFd closes it once.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let group = std::fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let attr = ProgAttach {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: bpf(2) BPF_PROG_ATTACH only reads `attr` (size given); both
    // descriptors in it are open for the call. The attachment holds its
    // own reference to the program, so closing `prog_fd` after is sound.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>() as u32,
        )
    };
    if r < 0 {
        return Err(format!(
            "attach a BPF device program to {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_tests_type_major_and_minor_of_each_denied_device() {
        let p = deny_program(&[(195, 1), (195, 3)]);
        assert_eq!(p.len(), 4 + 2 * 5 + 2);
        // r2 = *(u32 *)(r1 + 0)
        assert_eq!(p[0], [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        // if r3 != 195 goto +3
        assert_eq!(p[5], [0x55, 0x03, 3, 0, 195, 0, 0, 0]);
        // if r4 != 3 goto +2, in the second block
        assert_eq!(p[11], [0x55, 0x04, 2, 0, 3, 0, 0, 0]);
        // r0 = 1; exit
        assert_eq!(p[14], [0xb7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(p[15], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v1_deny_lines(&[(195, 1)]), ["c 195:1 rwm"]);
    }
}
