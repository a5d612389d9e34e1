//! Blobs (files of a layout, members of an archive) and their digests.

use super::ImageError;
use crate::fsx::Context;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// A byte range of a file: a whole blob of a layout or one member of a tar.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// How messages name it: the blob's path, or `ARCHIVE (member NAME)`.
    pub label: String,
}

/// Small JSON documents (index, manifest, config) are read whole; anything
/// larger than this is not one.
pub(crate) const MAX_JSON: u64 = 16 << 20;

impl Blob {
    pub fn open(&self) -> Result<io::Take<File>, ImageError> {
        let mut f = File::open(&self.file).at("open", &self.file)?;
        if self.offset > 0 {
            f.seek(SeekFrom::Start(self.offset))
                .at("read", &self.file)?;
        }
        Ok(f.take(self.len))
    }

    /// The whole blob, checked against `want` (a sha256 hex) when given.
    pub fn read_verified(&self, want: Option<&str>) -> Result<Vec<u8>, ImageError> {
        if self.len > MAX_JSON {
            return Err(self.corrupt(format!(
                "{} bytes is too large for a JSON document",
                self.len
            )));
        }
        let mut buf = Vec::with_capacity(self.len as usize);
        self.open()?.read_to_end(&mut buf).at("read", &self.file)?;
        self.check_len(buf.len() as u64)?;
        if let Some(want) = want {
            self.check_digest(want, &sha256_hex(&buf))?;
        }
        Ok(buf)
    }

    /// Streams the blob through sha256 and compares.
    pub fn verify(&self, want: &str) -> Result<(), ImageError> {
        let mut r = HashRead::new(self.open()?);
        io::copy(&mut r, &mut io::sink()).at("read", &self.file)?;
        self.check_len(r.len)?;
        self.check_digest(want, &r.hex())
    }

    pub fn check_len(&self, found: u64) -> Result<(), ImageError> {
        if found != self.len {
            return Err(ImageError::SizeMismatch {
                file: self.label.clone(),
                expected: self.len,
                found,
            });
        }
        Ok(())
    }

    pub fn check_digest(&self, want: &str, found: &str) -> Result<(), ImageError> {
        if want != found {
            return Err(ImageError::DigestMismatch {
                file: self.label.clone(),
                expected: format!("sha256:{want}"),
                found: format!("sha256:{found}"),
            });
        }
        Ok(())
    }

    pub fn corrupt(&self, what: impl Into<String>) -> ImageError {
        ImageError::Corrupt {
            file: self.label.clone(),
            what: what.into(),
        }
    }
}

/// A reader that hashes and counts what passes through it.
pub(crate) struct HashRead<R> {
    inner: R,
    hasher: Sha256,
    pub len: u64,
}

impl<R: Read> HashRead<R> {
    pub fn new(inner: R) -> Self {
        HashRead {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
    /// Reads what is left, so the digest covers the whole stream.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
    pub fn hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The hex of `sha256:<64 lowercase hex>`, or None.
pub(crate) fn sha256_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    is_sha256_hex(hex).then_some(hex)
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_lowercase_64_hex_digests_are_taken() {
        let h = sha256_hex(b"x");
        assert_eq!(sha256_of(&format!("sha256:{h}")), Some(h.as_str()));
        assert_eq!(sha256_of(&format!("sha256:{}", h.to_uppercase())), None);
        assert_eq!(sha256_of("sha256:../../etc/passwd"), None);
        assert_eq!(sha256_of(&format!("sha512:{h}")), None);
    }

    #[test]
    fn hash_read_counts_and_hashes_what_it_passes() {
        let mut r = HashRead::new(&b"hello"[..]);
        r.drain().unwrap();
        assert_eq!(r.len, 5);
        assert_eq!(r.hex(), sha256_hex(b"hello"));
    }
}
