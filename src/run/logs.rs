//! A run's stdout and stderr: the pool of unnamed log files a batch's
//! runs write to, where each log goes, and keeping them when a run ended
//! (named only if the job wrote there, cut to the log limit).

use super::{Options, Output, Record};
use crate::container::JobOutput;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where stdout and stderr go: `logs/<name>.out` and `.err` (unnamed
/// files of the `LogPool`, named at the end if the job wrote to them; else
/// made by the container's init, see JobOutput::Files), or the runner's own.
pub(super) type Logs = Option<RunLogs>;

/// A run's log files.
pub(super) struct RunLogs {
    pub(super) out: PathBuf,
    pub(super) err: PathBuf,
    /// The pool's unnamed files the job writes to (stdout, stderr); None:
    /// init makes the files at `out` and `err`.
    pub(super) pooled: Option<[OwnedFd; 2]>,
}

pub(super) fn job_output(
    opts: &Options,
    name: &str,
    pool: &mut LogPool,
) -> Result<(Logs, JobOutput), String> {
    match &opts.output {
        Output::Logs(dir) => {
            let (o, e) = log_paths(dir, name);
            if let Some([a, b]) = pool.take_pair() {
                match (a.try_clone(), b.try_clone()) {
                    (Ok(stdout), Ok(stderr)) => {
                        let logs = RunLogs {
                            out: o,
                            err: e,
                            pooled: Some([a, b]),
                        };
                        return Ok((Some(logs), JobOutput::Fds { stdout, stderr }));
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        return Err(format!("cannot duplicate a log file: {e}"))
                    }
                }
            }
            let output = JobOutput::Files {
                stdout: o.clone(),
                stderr: e.clone(),
            };
            let logs = RunLogs {
                out: o,
                err: e,
                pooled: None,
            };
            Ok((Some(logs), output))
        }
        Output::Inherit => match (
            std::io::stdout().as_fd().try_clone_to_owned(),
            std::io::stderr().as_fd().try_clone_to_owned(),
        ) {
            (Ok(stdout), Ok(stderr)) => Ok((None, JobOutput::Fds { stdout, stderr })),
            (Err(e), _) | (_, Err(e)) => Err(format!("cannot duplicate stdout/stderr: {e}")),
        },
    }
}

/// The log files of a run that failed before or while starting: those
/// its init got to create (the unnamed files of a `LogPool` are dropped:
/// nothing wrote to them before the job's execve).
pub(super) fn set_logs(rec: &mut Record, logs: Logs) {
    if let Some(RunLogs {
        out,
        err,
        pooled: None,
    }) = logs
    {
        rec.stdout = out.is_file().then_some(out);
        rec.stderr = err.is_file().then_some(err);
    }
}

fn log_paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let logs = dir.join("logs");
    (
        logs.join(format!("{key}.out")),
        logs.join(format!("{key}.err")),
    )
}

/// Blocks allocated to a running run's stdout and stderr logs.
pub(super) fn log_blocks(l: &RunLogs) -> u64 {
    let blocks = |st: nix::sys::stat::FileStat| st.st_blocks as u64 * 512;
    match &l.pooled {
        Some(fds) => fds
            .iter()
            .filter_map(|fd| nix::sys::stat::fstat(fd).ok())
            .map(blocks)
            .sum(),
        None => [&l.out, &l.err]
            .iter()
            .filter_map(|p| nix::sys::stat::stat(p.as_path()).ok())
            .map(blocks)
            .sum(),
    }
}

/// Unnamed files (O_TMPFILE) in the results' `logs/` for the jobs' stdout
/// and stderr, each used by one run at a time. A run's file gets its name
/// (`logs/<key>.out`) when the run is over and only if the job wrote to it;
/// an empty one goes back for a later run. Making an inode is most of what
/// a short run costs (ext4 scans for recently deleted inodes), and most
/// runs of a benchmark write nothing to stderr. Where the file system has
/// no O_TMPFILE, init makes the named files instead (JobOutput::Files).
pub(super) struct LogPool {
    /// `logs/`, None: no pool.
    dir: Option<OwnedFd>,
    free: Vec<OwnedFd>,
    /// What a fresh file looks like (st_mode, st_uid, st_gid, file status
    /// flags): one that differs is not handed on.
    fresh: Option<(u32, u32, u32, i32)>,
    /// `logs/` held nothing when the batch began: no stale file of an
    /// earlier batch can stand where a run's log goes.
    was_empty: bool,
}

impl LogPool {
    pub(super) fn new(output: &Output) -> LogPool {
        let mut pool = LogPool {
            dir: None,
            free: Vec::new(),
            fresh: None,
            was_empty: false,
        };
        let Output::Logs(dir) = output else {
            return pool;
        };
        let logs = dir.join("logs");
        pool.was_empty = std::fs::read_dir(&logs).is_ok_and(|mut d| d.next().is_none());
        pool.dir = File::open(&logs).ok().map(OwnedFd::from);
        // One file to learn whether the file system has O_TMPFILE.
        match pool.make() {
            Some(fd) => pool.free.push(fd),
            None => pool.dir = None,
        }
        pool
    }

    pub(super) fn make(&mut self) -> Option<OwnedFd> {
        use nix::fcntl::OFlag;
        let dir = self.dir.as_ref()?;
        let fd = nix::fcntl::openat(
            dir,
            ".",
            OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .ok()?;
        if self.fresh.is_none() {
            self.fresh = Some(looks(&fd)?.0);
        }
        Some(fd)
    }

    /// Two files for a run's stdout and stderr; None: no pool here.
    pub(super) fn take_pair(&mut self) -> Option<[OwnedFd; 2]> {
        self.dir.as_ref()?;
        let a = match self.free.pop() {
            Some(fd) => fd,
            None => self.make()?,
        };
        let b = match self.free.pop() {
            Some(fd) => fd,
            None => match self.make() {
                Some(fd) => fd,
                None => {
                    self.free.push(a);
                    return None;
                }
            },
        };
        Some([a, b])
    }

    /// Named `path` if the job wrote to it (or something of the run may
    /// still hold it: `all_gone` false), else given back for a later run.
    /// A stale file of an earlier batch at `path` goes either way, as
    /// init's O_TRUNC did. Ok(true): the log is at `path`.
    pub(super) fn keep(
        &mut self,
        fd: OwnedFd,
        path: &Path,
        all_gone: bool,
    ) -> Result<bool, nix::Error> {
        use nix::fcntl::AtFlags;
        use nix::unistd::{linkat, unlinkat, UnlinkatFlags};
        use std::os::fd::AsRawFd;
        let name = path.file_name().unwrap_or_default();
        let reusable =
            all_gone && looks(&fd).is_some_and(|(l, empty)| empty && Some(l) == self.fresh);
        let dir = self.dir.as_ref().expect("a pooled file has a pool");
        if reusable {
            if !self.was_empty {
                match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(nix::Error::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            self.free.push(fd);
            return Ok(false);
        }
        let from = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let link = || {
            linkat(
                nix::fcntl::AT_FDCWD,
                from.as_str(),
                dir,
                name,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        };
        match link() {
            Err(nix::Error::EEXIST) => {
                unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
                link()?;
            }
            r => r?,
        }
        Ok(true)
    }
}

/// (st_mode, st_uid, st_gid, file status flags) of a pool's file, and
/// whether it is empty, at offset 0 and has no name.
pub(super) fn looks(fd: &OwnedFd) -> Option<((u32, u32, u32, i32), bool)> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).ok()?;
    let offset = nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekCur).ok()?;
    let empty = st.st_size == 0 && st.st_nlink == 0 && offset == 0;
    Some(((st.st_mode, st.st_uid, st.st_gid, flags), empty))
}

/// Keeps a run's logs once it ended (`all_gone`: every process of it is
/// gone, so an empty pooled file nothing holds may serve the next run;
/// else a file is kept under its name) and cuts each to `limit`. Returns
/// the stdout and stderr kept, what the reason should add, and the error
/// of a log that could not be kept (the run's output is lost then).
pub(super) fn keep(
    logs: Logs,
    pool: &mut LogPool,
    all_gone: bool,
    limit: u64,
) -> (Option<PathBuf>, Option<PathBuf>, String, Option<String>) {
    let mut said = String::new();
    let mut log_error = None;
    let Some(RunLogs { out, err, pooled }) = logs else {
        return (None, None, said, None);
    };
    let (o, e) = match pooled {
        None => (Some(out), Some(err)),
        Some([fo, fe]) => {
            let mut keep = |fd: OwnedFd, path: PathBuf, what: &str| match pool
                .keep(fd, &path, all_gone)
            {
                Ok(true) => Some(path),
                Ok(false) => None,
                Err(e) => {
                    log_error
                        .get_or_insert(format!("cannot keep {what} as {}: {e}", path.display()));
                    None
                }
            };
            (keep(fo, out, "stdout"), keep(fe, err, "stderr"))
        }
    };
    for (path, what) in [(&o, "stdout"), (&e, "stderr")] {
        let Some(path) = path else { continue };
        match cap_log(path, limit) {
            Ok(0) => {}
            Ok(cut) => said.push_str(&format!(
                "; {what} cut to its first and last {} bytes ({cut} left out)",
                limit / 2
            )),
            Err(e) => said.push_str(&format!("; {what} over {limit} bytes and not cut: {e}")),
        }
    }
    (o, e, said, log_error)
}

/// Cuts a log file longer than `limit` to its first and last `limit / 2`
/// bytes with a marker line between them saying how much was left out, as
/// BenchExec keeps head and tail. Returns the bytes left out (0: not cut).
fn cap_log(path: &Path, limit: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if len <= limit {
        return Ok(0);
    }
    let head = limit / 2;
    let tail = limit - head;
    let cut = len - head - tail;
    let marker = format!(
        "\n[packrun: {cut} bytes left out here; the log was cut to its first and last bytes]\n"
    );
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    f.write_all_at(marker.as_bytes(), head)?;
    // Move the tail down behind the marker, front to back (the target
    // lies before the source, so nothing is overwritten before it is read).
    let mut buf = vec![0u8; (64 << 10).min(tail as usize).max(1)];
    let (mut from, mut to) = (len - tail, head + marker.len() as u64);
    while from < len {
        let n = f.read_at(&mut buf, from)?;
        if n == 0 {
            break;
        }
        f.write_all_at(&buf[..n], to)?;
        from += n as u64;
        to += n as u64;
    }
    f.set_len(to)?;
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_tail_around_a_line_saying_how_much_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.out");
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(cap_log(&path, 100).unwrap(), 900);
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.starts_with(&text[..50]), "{kept}");
        assert!(kept.ends_with(&text[950..]), "{kept}");
        assert!(
            kept.contains("\n[packrun: 900 bytes left out here"),
            "{kept}"
        );
        // Short enough: left alone.
        std::fs::write(&path, "short").unwrap();
        assert_eq!(cap_log(&path, 100).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
    }
}
