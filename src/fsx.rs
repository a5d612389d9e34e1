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

pub fn read_to_string(path: impl AsRef<Path>) -> Result<String, PathError> {
    let p = path.as_ref();
    std::fs::read_to_string(p).at("read", p)
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
