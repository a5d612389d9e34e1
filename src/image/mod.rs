//! OCI image layouts and docker archives, unpacked into a content-addressed
//! cache of verified root trees.
//!
//! `unpack` reads the source's index, manifest and config (each checked
//! against the digest that names it), checks every layer blob, applies the
//! layers in order into a private staging directory and renames it into
//! place only when everything matched: a tree in the cache is one that was
//! verified whole. The cache entry is keyed by the manifest digest (a docker
//! archive has no manifest blob: its config digest, docker's image id).
//!
//! ```text
//! <cache>/<hex>/rootfs/      the tree
//! <cache>/<hex>/image.json   digest, platform, config, layers, tree checksum, size
//! <cache>/<hex>/last-used    its mtime says when a run last took the entry
//! <cache>/<hex>.lock         flock: one unpack of an image at a time
//! <cache>/<hex>.tmp-PID-RAND a staging tree, never handed out
//! ```

mod blob;
mod cache;
mod extract;
mod source;

use crate::fsx::PathError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use cache::{check, list, remove, Checked, Entry};

/// Where an image comes from, as a job file's `container.rootfs` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OCI image layout directory; `tag` is an `org.opencontainers.image.ref.name`.
    Layout { dir: PathBuf, tag: Option<String> },
    /// A `docker save` / `podman save` tarball.
    DockerArchive { file: PathBuf },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Source::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Source::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
        }
    }
}

/// `oci:PATH[:TAG]` or `docker-archive:PATH`, relative paths taken from
/// `base` (the job file's directory); `None` for anything else (`host`, a
/// plain directory). As in skopeo, an `oci:` path holds no `:`; what follows
/// the first one is the tag.
pub fn parse_source(text: &str, base: &Path) -> Option<Result<Source, String>> {
    let join = |p: &str| {
        if p.is_empty() {
            Err(format!("`{text}` names no path"))
        } else {
            Ok(base.join(p))
        }
    };
    if let Some(rest) = text.strip_prefix("oci:") {
        let (path, tag) = match rest.split_once(':') {
            Some((_, "")) => return Some(Err(format!("`{text}` has an empty tag after `:`"))),
            Some((p, t)) => (p, Some(t.to_string())),
            None => (rest, None),
        };
        return Some(join(path).map(|dir| Source::Layout { dir, tag }));
    }
    let rest = text.strip_prefix("docker-archive:")?;
    Some(join(rest).map(|file| Source::DockerArchive { file }))
}

/// A verified, unpacked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The unpacked tree.
    pub rootfs: PathBuf,
    /// `sha256:…` of the manifest (of the config for a docker archive).
    pub digest: String,
    /// The platform taken, e.g. `linux/amd64`.
    pub platform: String,
    pub config: ImageConfig,
    /// True when this call unpacked the image, false when it was in the cache.
    pub fresh: bool,
    /// What could not be kept as the image has it (device nodes not
    /// permitted here, ownership that cannot be set).
    pub notes: Vec<String>,
}

/// The parts of the image config that say how to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: Option<String>,
}

/// Everything that can go wrong reading, verifying or caching an image.
/// Each message names the file (blob path or archive member) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{file}: blob {digest} is missing")]
    MissingBlob { file: String, digest: String },
    #[error("{file}: {what}")]
    Corrupt { file: String, what: String },
    #[error("{file}: digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{file}: size mismatch: expected {expected} bytes, found {found}")]
    SizeMismatch {
        file: String,
        expected: u64,
        found: u64,
    },
    #[error("{file}: unsupported media type {media_type}")]
    MediaType { file: String, media_type: String },
    #[error("{file}: entry `{entry}` would write outside the root: {why}")]
    Escape {
        file: String,
        entry: String,
        why: String,
    },
    #[error("{file}: entry `{entry}`: {what}")]
    Entry {
        file: String,
        entry: String,
        what: String,
    },
    #[error("{file}: no image tagged `{tag}`; tags there: {}", or_none(tags))]
    NoTag {
        file: String,
        tag: String,
        tags: Vec<String>,
    },
    #[error("{file} holds {} images ({}); {how}", choices.len(), or_none(choices))]
    Ambiguous {
        file: String,
        choices: Vec<String>,
        /// How to pick one.
        how: &'static str,
    },
    #[error(
        "{file}: no image for this machine's platform {wanted}; platforms there: {}",
        or_none(found)
    )]
    Platform {
        file: String,
        wanted: String,
        found: Vec<String>,
    },
    #[error(
        "`{0}` is not a digest prefix: give one or more hex digits, optionally after `sha256:`"
    )]
    BadPrefix(String),
}

fn or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Unpacks `source` into `cache` once and returns its verified tree. Callers
/// racing on the same image (threads or processes) wait for one unpack.
pub fn unpack(source: &Source, cache: &Path) -> Result<Image, ImageError> {
    let plan = source::resolve(source)?;
    cache::get_or_unpack(&plan, cache)
}

/// The cache to use: root's under /var/cache, anybody else's under
/// `$XDG_CACHE_HOME` or `~/.cache`.
pub fn default_cache(euid: u32) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/var/cache/packrun/images");
    }
    let var = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .or_else(|| {
            nix::unistd::User::from_uid(euid.into())
                .ok()
                .flatten()
                .map(|u| u.dir.join(".cache"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join(format!("packrun-{euid}")));
    base.join("packrun/images")
}

/// This machine's platform in OCI's words (Go's GOOS/GOARCH).
pub fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

fn host_arch() -> &'static str {
    use std::env::consts::ARCH;
    match ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_source_takes_the_text_after_the_first_colon_as_tag() {
        let base = Path::new("/jobs");
        assert_eq!(
            parse_source("oci:img:v1.2", base),
            Some(Ok(Source::Layout {
                dir: "/jobs/img".into(),
                tag: Some("v1.2".into())
            }))
        );
        assert_eq!(
            parse_source("oci:/abs/img", base),
            Some(Ok(Source::Layout {
                dir: "/abs/img".into(),
                tag: None
            }))
        );
        assert_eq!(
            parse_source("oci:img:registry.io/x:3", base),
            Some(Ok(Source::Layout {
                dir: "/jobs/img".into(),
                tag: Some("registry.io/x:3".into())
            }))
        );
    }

    #[test]
    fn docker_archive_source_is_a_path_relative_to_the_job_file() {
        assert_eq!(
            parse_source("docker-archive:out/a.tar", Path::new("/j")),
            Some(Ok(Source::DockerArchive {
                file: "/j/out/a.tar".into()
            }))
        );
    }

    #[test]
    fn other_rootfs_values_are_not_images() {
        assert_eq!(parse_source("host", Path::new("/")), None);
        assert_eq!(parse_source("/srv/root", Path::new("/")), None);
        assert_eq!(parse_source("docker://alpine", Path::new("/")), None);
    }

    #[test]
    fn empty_paths_and_tags_are_errors() {
        assert!(matches!(parse_source("oci:", Path::new("/")), Some(Err(_))));
        assert!(matches!(
            parse_source("oci:x:", Path::new("/")),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_source("docker-archive:", Path::new("/")),
            Some(Err(_))
        ));
    }

    #[test]
    fn host_platform_uses_oci_architecture_names() {
        let p = host_platform();
        assert!(p.starts_with("linux/"));
        assert_ne!(p, "linux/x86_64");
        assert_ne!(p, "linux/aarch64");
    }

    #[test]
    fn root_and_users_have_separate_default_caches() {
        assert_eq!(default_cache(0), PathBuf::from("/var/cache/packrun/images"));
        assert!(default_cache(1000).ends_with("packrun/images"));
    }

    #[test]
    fn source_displays_as_written() {
        let s = Source::Layout {
            dir: "/a".into(),
            tag: Some("t".into()),
        };
        assert_eq!(s.to_string(), "oci:/a:t");
    }
}
