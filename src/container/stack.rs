//! A stack for a child cloned with CLONE_VM: init's, and the job's.

use std::io;

/// Memory a child cloned with CLONE_VM runs on, with a guard page below it
/// (a stack overflow faults instead of writing into memory it shares): the
/// job until its execve, and init when it shares the runner's memory.
pub(super) struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// Far more than the job's setup uses (system calls on small locals).
    const SIZE: usize = 256 << 10;
    const GUARD: usize = 4096;

    pub(super) fn new() -> io::Result<ChildStack> {
        let len = Self::SIZE + Self::GUARD;
        // SAFETY: an anonymous private mapping of our own; the lowest page
        // is made inaccessible as the guard. Nothing else refers to it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::mprotect(base, Self::GUARD, libc::PROT_NONE) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(e);
            }
            Ok(ChildStack { base, len })
        }
    }

    /// The top of the stack (stacks grow down on every Linux ABI we build for).
    pub(super) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our own mapping, 16-byte aligned (page aligned).
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }

    /// clone3's view: the lowest usable address (above the guard) and the size.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn usable(&self) -> (u64, u64) {
        (self.base as u64 + Self::GUARD as u64, Self::SIZE as u64)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once; init has its own copy.
        unsafe { libc::munmap(self.base, self.len) };
    }
}
