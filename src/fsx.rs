//! File helpers that attach the path to every I/O error, once.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error together with the path it happened on.
#[derive(Debug)]
pub struct PathError {
    pub path: PathBuf,
    pub op: &'static str,
    pub source: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}", self.op, self.path.display())
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl PathError {
    pub fn new(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        PathError {
            path: path.as_ref().to_path_buf(),
            op,
            source,
        }
    }
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Adds the path to an `io::Result`.
pub trait Context<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T, PathError>;
}

impl<T> Context<T> for io::Result<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T, PathError> {
        self.map_err(|e| PathError::new(op, path, e))
    }
}

/// Reads a whole file. Unlike `std::fs::read_to_string` it does not stat
/// the file first to size the buffer: cgroupfs, sysfs and procfs report
/// sizes that mean nothing, and on the per-run path every syscall counts.
pub fn read_to_string(path: impl AsRef<Path>) -> Result<String, PathError> {
    let p = path.as_ref();
    read_file(p)?.ok_or_else(|| PathError::new("read", p, io::ErrorKind::NotFound.into()))
}

/// Like `read_to_string`, but a missing file is `None` (an optional
/// interface file: one open instead of a stat and an open).
pub fn read_if_present(path: impl AsRef<Path>) -> Result<Option<String>, PathError> {
    read_file(path.as_ref())
}

fn read_file(p: &Path) -> Result<Option<String>, PathError> {
    use std::io::Read;
    let mut f = match std::fs::File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PathError::new("read", p, e)),
    };
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PathError::new("read", p, e)),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| PathError::new("read", p, io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Reads a one-value file (sysfs, cgroupfs) and trims the trailing newline.
pub fn read_trimmed(path: impl AsRef<Path>) -> Result<String, PathError> {
    Ok(read_to_string(path)?.trim().to_string())
}

/// Writes the whole value in one write(2), as cgroupfs and sysfs want.
pub fn write(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> Result<(), PathError> {
    let p = path.as_ref();
    std::fs::write(p, data).at("write", p)
}

/// Replaces `path` as a whole: writes `.<name>.tmp` beside it, syncs it and
/// renames it over `path`, so a reader sees the old file or the new one,
/// never half of one. A temp file a crash left behind is overwritten.
pub fn write_atomic(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> Result<(), PathError> {
    use std::io::Write;
    let p = path.as_ref();
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).at("create", &tmp)?;
    f.write_all(data.as_ref()).at("write", &tmp)?;
    f.sync_all().at("sync", &tmp)?;
    std::fs::rename(&tmp, p).at("rename a temp file to", p)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .at("sync", dir)
}

/// Writes the value in one write(2) to an existing file (an optional
/// interface file); `false` when there is no such file.
pub fn write_if_present(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> Result<bool, PathError> {
    use std::io::Write;
    let p = path.as_ref();
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(PathError::new("write", p, e)),
    };
    f.write_all(data.as_ref()).at("write", p)?;
    Ok(true)
}

/// Formats an error and its chain of causes on one line: "a: b: c".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.ends_with(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

/// The directory of root's claims, shared by every packrun run as root.
pub const ROOT_DIR: &str = "/run/packrun";

/// The directory of packrun's per-machine state for a user: `/run/packrun`
/// for root; otherwise `$XDG_RUNTIME_DIR/packrun` (when set to an absolute
/// path), else `/tmp/packrun-<uid>`. Each user's packruns share one claims
/// file there; different users' are apart.
pub fn runtime_dir(euid: u32, xdg_runtime_dir: Option<&std::ffi::OsStr>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from(ROOT_DIR);
    }
    match xdg_runtime_dir.map(Path::new) {
        Some(d) if d.is_absolute() => d.join("packrun"),
        _ => PathBuf::from(format!("/tmp/packrun-{euid}")),
    }
}

/// Creates `dir` (mode 0700 when it is new and not root's shared
/// directory) and checks that it belongs to this user: a directory of
/// somebody else (say one made in /tmp ahead of us) is refused.
pub fn private_dir(dir: &Path) -> Result<(), PathError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let euid = nix::unistd::geteuid().as_raw();
    let made = if dir == Path::new(ROOT_DIR) {
        std::fs::create_dir_all(dir)
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    };
    made.at("create", dir)?;
    // Not followed: a symbolic link is judged by its own owner.
    let meta = std::fs::symlink_metadata(dir).at("inspect", dir)?;
    if !meta.is_dir() || meta.uid() != euid {
        return Err(PathError::new(
            "use",
            dir,
            std::io::Error::other(format!(
                "it is {} of uid {}; expected a directory of uid {euid} (this user), as packrun keeps its CPU claims there",
                if meta.is_dir() { "a directory" } else { "not a directory but a file or link" },
                meta.uid()
            )),
        ));
    }
    Ok(())
}
