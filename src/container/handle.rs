//! A started container as the runner holds it: setup's outcome, signals,
//! the job's status, and giving the run's writable dirs back.

use super::clone::Spawner;
use super::config::describe_errno;
use super::rootfs::RootDir;
use super::{child, ids, JobStatus, SetupError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// A started container: its init (pid 1 inside) as seen from the host.
///
/// Dropping a container that was not waited for kills it (SIGKILL to init,
/// which takes the whole pid namespace down) and reaps init.
#[derive(Debug)]
pub struct Container {
    pub pid: i32,
    /// pidfd of init: readable when it exits.
    pub pidfd: OwnedFd,
    /// Read end of the status pipe: init writes the job's raw wait status.
    pub(super) status: OwnedFd,
    /// Read end of the error pipe (non-blocking) while setup is under way:
    /// EOF once the job exec'd, or the step and errno that failed.
    pub(super) setup: Option<OwnedFd>,
    /// What the error pipe said so far.
    pub(super) setup_msg: Vec<u8>,
    /// The directory the root was mounted on: removed once setup is over
    /// (init has pivoted away from it) or when the container is dropped.
    pub(super) root: Option<RootDir>,
    pub(super) reaped: bool,
    /// The thread that cloned init sharing the runner's memory (see
    /// `clone_shared`): it returns once init is gone and is joined on drop.
    pub(super) spawner: Option<Spawner>,
    /// `ContainerConfig::netns`, kept for `take_netns`.
    pub(super) netns: Option<OwnedFd>,
    /// The pooled overlays of the host's tree the run's were copied from
    /// (`ContainerConfig::host_tree`), kept for `take_host_tree`.
    pub(super) host_tree: Option<super::config::HostTree>,
    /// The run's id maps and the host directories of its writable dirs,
    /// whose content goes back to the runner's user (`give_back`).
    pub(super) ids: Option<ids::IdMaps>,
    pub(super) writable: Vec<PathBuf>,
}

impl Container {
    /// The error pipe to poll for readability while setup is under way;
    /// None once `poll_setup` reported the end of setup.
    pub fn setup_fd(&self) -> Option<BorrowedFd<'_>> {
        self.setup.as_ref().map(|f| f.as_fd())
    }

    /// Reads the error pipe without blocking: Ok(true) once the job has
    /// exec'd (every writer closed it without a word), Ok(false) while
    /// setup goes on, Err with the step that failed. Once init exited its
    /// answer is final (init writes the error before it exits).
    pub fn poll_setup(&mut self) -> Result<bool, SetupError> {
        let Some(fd) = &self.setup else {
            return Ok(true);
        };
        let mut buf = [0u8; child::ERR_MAX];
        loop {
            // SAFETY: read(2) into a live local buffer from our own pipe.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let room = child::ERR_MAX.saturating_sub(self.setup_msg.len());
                self.setup_msg
                    .extend_from_slice(&buf[..(n as usize).min(room)]);
                continue;
            }
            if n == 0 {
                break;
            }
            match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                e => {
                    self.end_setup();
                    return Err(SetupError::os("read setup status", e));
                }
            }
        }
        self.end_setup();
        match parse_setup_error(&self.setup_msg) {
            None => Ok(true),
            Some(e) => Err(e),
        }
    }

    /// Blocks until setup is over (see `poll_setup`).
    pub fn wait_setup(&mut self) -> Result<(), SetupError> {
        loop {
            if self.poll_setup()? {
                return Ok(());
            }
            let Some(fd) = &self.setup else {
                return Ok(());
            };
            let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    self.end_setup();
                    return Err(SetupError::os("wait for setup", e.into()));
                }
            }
        }
    }

    /// The network namespace given in `ContainerConfig::netns`, for a later
    /// run to join: only once this container's init has exited (then every
    /// process that was in it is gone).
    pub fn take_netns(&mut self) -> Option<OwnedFd> {
        self.netns.take()
    }

    /// The overlays of the host's tree the run's were copied from
    /// (`ContainerConfig::pool_host_tree`), for a later run: only once
    /// this container's init has exited, so that no lock a process of
    /// this run took on them is left when the next run starts.
    pub fn take_host_tree(&mut self) -> Option<super::config::HostTree> {
        self.host_tree.take()
    }

    fn end_setup(&mut self) {
        self.setup = None;
        self.root = None;
    }

    /// Sends `signal` to init; SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
    /// SIGUSR2 are forwarded to the job, SIGKILL kills the namespace.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(2) with a pidfd we own, a null siginfo and
        // no flags; the pidfd cannot refer to a recycled pid.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<u8>(),
                0,
            )
        };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for init to exit and returns how the job ended; what the
    /// job wrote in its writable dirs is the runner's user's again.
    pub fn wait(mut self) -> io::Result<JobStatus> {
        let status = wait_pid(self.pid, 0)?.expect("blocking waitpid returns a status");
        self.reaped = true;
        self.give_back();
        Ok(self.job_status(status))
    }

    /// Once init has exited: gives what the run's ids own in its writable
    /// dirs back to the runner's user (see `give_back`), once. Returns the
    /// paths it could not change. `wait` and dropping do it too.
    pub fn give_back(&mut self) -> Vec<String> {
        give_back(&std::mem::take(&mut self.writable), self.ids.as_ref())
    }

    /// Like `wait`, without blocking: None while init runs (poll `pidfd` for
    /// readability to know when to call it).
    pub fn try_wait(&mut self) -> io::Result<Option<JobStatus>> {
        if self.reaped {
            return Err(io::Error::other("container already reaped"));
        }
        match wait_pid(self.pid, libc::WNOHANG)? {
            None => Ok(None),
            Some(status) => {
                self.reaped = true;
                Ok(Some(self.job_status(status)))
            }
        }
    }

    /// The job's status from the status pipe, or, when init died without
    /// writing one (killed from outside), init's own status.
    fn job_status(&self, init_status: i32) -> JobStatus {
        let mut raw = [0u8; 20];
        let n = read_full(self.status.as_raw_fd(), &mut raw);
        if n != raw.len() {
            return decode_status(init_status);
        }
        let word = |r: std::ops::Range<usize>| {
            i64::from_ne_bytes(raw[r].try_into().expect("8 bytes")).max(0) as u64
        };
        JobStatus {
            io_read_bytes: Some(word(4..12) * 512),
            io_write_bytes: Some(word(12..20) * 512),
            ..decode_status(i32::from_ne_bytes(raw[..4].try_into().expect("4 bytes")))
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.signal(libc::SIGKILL);
            let _ = wait_pid(self.pid, 0);
        }
        if let Some(thread) = self.spawner.take() {
            // init is gone, so its clone3 has returned or is about to.
            let _ = thread.join();
        }
        self.give_back();
    }
}

fn decode_status(status: i32) -> JobStatus {
    if libc::WIFEXITED(status) {
        JobStatus {
            exit_code: Some(libc::WEXITSTATUS(status)),
            ..JobStatus::default()
        }
    } else if libc::WIFSIGNALED(status) {
        JobStatus {
            signal: Some(libc::WTERMSIG(status)),
            ..JobStatus::default()
        }
    } else {
        JobStatus::default()
    }
}

/// waitpid(2) on one child, retrying on EINTR. None: WNOHANG and still running.
fn wait_pid(pid: i32, flags: i32) -> io::Result<Option<i32>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into a local i32.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc == pid {
            return Ok(Some(status));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read (errors count as EOF).
fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: read(2) into the unfilled tail of a live buffer.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if n > 0 {
            done += n as usize;
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    done
}

/// The error pipe's whole content: None when every writer closed it without
/// a word (the job exec'd), else the step and errno the child reported.
fn parse_setup_error(buf: &[u8]) -> Option<SetupError> {
    let n = buf.len();
    if n == 0 {
        return None;
    }
    if n < 4 {
        return Some(SetupError::new(
            "read setup status",
            "short message from the container",
        ));
    }
    let errno = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let step = String::from_utf8_lossy(&buf[4..n]).into_owned();
    Some(SetupError::new(step, describe_errno(errno)))
}

/// A writable dir is the job's: owned by its ids inside, mapped to the
/// host (as root; rootless, the job's id already maps to the user's own,
/// who owns the directory).
pub(super) fn give_to_job(
    dir: &Path,
    ids: Option<&ids::IdMaps>,
    user: Option<(u32, u32)>,
) -> Result<(), String> {
    let Some(ids) = ids else { return Ok(()) };
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = user.unwrap_or((0, 0));
    let (Some(hu), Some(hg)) = (ids.host_uid(uid), ids.host_gid(gid)) else {
        return Ok(());
    };
    std::os::unix::fs::chown(dir, Some(hu), Some(hg)).map_err(|e| {
        format!(
            "cannot give {} to the run's ids {hu}:{hg}: {e}",
            dir.display()
        )
    })
}

/// After the run: everything in its writable dirs that its ids own goes
/// back to the runner's user, who can then read and delete the results
/// folder (chown before and after rather than idmapped mounts: it works on
/// every file system and kernel, and costs a walk only of runs that have
/// writable dirs). Rootless there is nothing to give back: the job's id
/// is the user's own. Returns the paths it could not change.
fn give_back(dirs: &[PathBuf], ids: Option<&ids::IdMaps>) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut failed = Vec::new();
    let Some(ids) = ids else { return failed };
    if !nix::unistd::geteuid().is_root() {
        return failed;
    }
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let (own_u, own_g) = (ids.holds(meta.uid(), false), ids.holds(meta.gid(), true));
        if own_u || own_g {
            let r = std::os::unix::fs::lchown(&path, own_u.then_some(uid), own_g.then_some(gid));
            if let Err(e) = r {
                failed.push(format!("{}: {e}", path.display()));
            }
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_wait_status_decodes_to_exit_code_or_signal() {
        assert_eq!(
            decode_status(3 << 8),
            JobStatus {
                exit_code: Some(3),
                ..JobStatus::default()
            }
        );
        assert_eq!(
            decode_status(libc::SIGKILL),
            JobStatus {
                signal: Some(9),
                ..JobStatus::default()
            }
        );
    }
}
