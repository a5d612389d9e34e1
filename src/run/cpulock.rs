//! CPUs claimed by every packrun process on this machine, in one lock file
//! (flock), so two batches never hand out the same CPU.
//!
//! The file holds one line per claim: `<pid> <start ticks> <cpu list>`.
//! Claims of processes that are gone (or whose pid was reused) are dropped
//! by whoever reads them next.

use crate::cpulist::CpuList;
pub use crate::fsx::{private_dir, runtime_dir, ROOT_DIR};
use crate::fsx::{Context, PathError};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where this process's packrun keeps its claims: see [`runtime_dir`].
pub fn default_path() -> PathBuf {
    runtime_dir(
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
    .join("cpus")
}

/// Opens (creating) the claims file readable and writable by its owner
/// only: a run that could open it could flock it and stall every packrun.
fn open_claims(path: &Path) -> Result<std::fs::File, PathError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at("open", path)
}

/// Identity of a process that survives pid reuse: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub start_ticks: u64,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// True while that very process still runs.
    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of /proc/<pid>/stat: the start time in clock ticks after boot.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Parses /proc/<pid>/stat text (the command may hold spaces and parentheses).
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command come state (field 3) ... starttime is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, PartialEq)]
struct Claim {
    owner: Owner,
    cpus: CpuList,
}

fn parse_claims(text: &str) -> Vec<Claim> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let start_ticks = it.next()?.parse().ok()?;
            let cpus = CpuList::parse(it.next().unwrap_or("")).ok()?;
            Some(Claim {
                owner: Owner { pid, start_ticks },
                cpus,
            })
        })
        .collect()
}

fn render_claims(claims: &[Claim]) -> String {
    claims
        .iter()
        .filter(|c| !c.cpus.is_empty())
        .map(|c| format!("{} {} {}\n", c.owner.pid, c.owner.start_ticks, c.cpus))
        .collect()
}

/// The claims files a batch uses: the CPUs', and the GPUs' (`gpus` beside
/// it, holding each GPU as [`crate::gpus::bus_key`]) when it asks for GPUs.
/// The GPUs' file is locked only inside the CPUs' lock.
pub struct Claims {
    pub cpus: CpuLock,
    pub gpus: Option<CpuLock>,
}

/// This process's handle on the shared claims file.
pub struct CpuLock {
    path: PathBuf,
    owner: Owner,
    /// What this process holds now.
    mine: CpuList,
    /// The claims file, kept open between updates (one open less per
    /// placement); None after an error, then opened again.
    file: Option<std::fs::File>,
}

impl CpuLock {
    pub fn new(path: &Path) -> Result<CpuLock, PathError> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        // A file made by an older packrun may be world-readable.
        let file = open_claims(path)?;
        let mode = file.metadata().at("inspect", path)?.mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .at("restrict the mode (to 0600) of", path)?;
        }
        Ok(CpuLock {
            path: path.to_path_buf(),
            owner: Owner::current(),
            mine: CpuList::new(),
            file: Some(file),
        })
    }

    /// Runs `f` with the file locked, given the CPUs that other live
    /// processes hold; `f` returns what this process holds afterwards.
    pub fn update<T>(&mut self, f: impl FnOnce(&CpuList) -> (CpuList, T)) -> Result<T, PathError> {
        let file = match self.file.take() {
            Some(f) => f,
            None => open_claims(&self.path)?,
        };
        // Unlocked again below (or when dropped on an error path).
        let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))
            .at("lock", &self.path)?;
        // From the start: the file stays open, its offset where the last
        // write left it.
        file.seek(SeekFrom::Start(0)).at("seek", &self.path)?;
        let mut text = String::new();
        file.read_to_string(&mut text).at("read", &self.path)?;
        let mut claims: Vec<Claim> = parse_claims(&text)
            .into_iter()
            .filter(|c| c.owner != self.owner && c.owner.is_alive())
            .collect();
        let others = claims
            .iter()
            .fold(CpuList::new(), |acc, c| acc.union(&c.cpus));
        let (mine, out) = f(&others);
        self.mine = mine.clone();
        claims.push(Claim {
            owner: self.owner,
            cpus: mine,
        });
        let new = render_claims(&claims);
        // Overwrite, then cut to length: ext4 flushes a file truncated to
        // zero and rewritten on close (auto_da_alloc), once per placement.
        // Unchanged claims (a run ended and the next took its CPU) are
        // not written again.
        if new != text {
            file.seek(SeekFrom::Start(0)).at("seek", &self.path)?;
            file.write_all(new.as_bytes()).at("write", &self.path)?;
            file.set_len(new.len() as u64).at("truncate", &self.path)?;
        }
        self.file = file.unlock().ok();
        Ok(out)
    }

    pub fn held(&self) -> &CpuList {
        &self.mine
    }
}

impl Drop for CpuLock {
    fn drop(&mut self) {
        if !self.mine.is_empty() {
            let _ = self.update(|_| (CpuList::new(), ()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn start_ticks_survive_spaces_and_parentheses_in_the_command() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_ticks(stat), Some(987654));
    }

    #[test]
    fn claims_of_dead_processes_are_dropped_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpus");
        let me = Owner::current();
        // pid 1 with a start time it never had is a dead claim.
        std::fs::write(
            &path,
            format!("1 999999999999 0-3\n{} {} 9\n", me.pid, me.start_ticks + 1),
        )
        .unwrap();
        let mut lock = CpuLock::new(&path).unwrap();
        let seen = lock
            .update(|others| (CpuList::parse("5").unwrap(), others.clone()))
            .unwrap();
        assert!(seen.is_empty(), "dead claims must not block CPUs: {seen}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{} {} 5\n", me.pid, me.start_ticks));
        drop(lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn root_keeps_claims_in_run_and_a_user_in_the_runtime_dir_or_tmp() {
        assert_eq!(
            runtime_dir(0, Some(OsStr::new("/run/user/0"))),
            Path::new("/run/packrun")
        );
        assert_eq!(
            runtime_dir(1000, Some(OsStr::new("/run/user/1000"))),
            Path::new("/run/user/1000/packrun")
        );
        assert_eq!(runtime_dir(1000, None), Path::new("/tmp/packrun-1000"));
        assert_eq!(
            runtime_dir(1000, Some(OsStr::new("relative"))),
            Path::new("/tmp/packrun-1000"),
            "a relative XDG_RUNTIME_DIR is ignored, as the spec says"
        );
    }

    #[test]
    fn the_claims_file_is_made_private_and_an_old_world_readable_one_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("packrun");
        let path = sub.join("cpus");
        CpuLock::new(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        CpuLock::new(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_claims_directory_of_another_user_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let e = crate::fsx::chain(&private_dir(&link).unwrap_err());
        assert!(e.contains("not a directory"), "{e}");
        // As root a directory given away; otherwise one root owns.
        let other = if nix::unistd::geteuid().is_root() {
            let d = dir.path().join("theirs");
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(4242), None).unwrap();
            d
        } else {
            PathBuf::from("/")
        };
        let e = crate::fsx::chain(&private_dir(&other).unwrap_err());
        assert!(e.contains("expected a directory of uid"), "{e}");
        assert!(e.contains(&other.display().to_string()), "{e}");
    }

    #[test]
    fn another_live_process_claims_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpus");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).unwrap();
        std::fs::write(&path, format!("{pid} {ticks} 2-3\n")).unwrap();
        let mut lock = CpuLock::new(&path).unwrap();
        let seen = lock
            .update(|others| (CpuList::new(), others.clone()))
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen.to_string(), "2-3");
    }

    #[test]
    fn a_later_update_reads_the_claims_another_packrun_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpus");
        let mut lock = CpuLock::new(&path).unwrap();
        lock.update(|_| (CpuList::parse("0").unwrap(), ())).unwrap();
        // Another live packrun claims 2-3 through a file of its own.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).unwrap();
        let mine = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{pid} {ticks} 2-3\n{mine}")).unwrap();
        let seen = lock
            .update(|others| (CpuList::parse("0").unwrap(), others.clone()))
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            seen.to_string(),
            "2-3",
            "the kept-open file is read from its start"
        );
    }
}
