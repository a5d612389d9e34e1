//! The content-addressed cache: one entry per manifest digest, unpacked
//! once under a lock into a staging directory and renamed into place.

use super::blob::{hex, is_sha256_hex, HashRead};
use super::extract::{remove_tree, Extractor};
use super::source::{Compression, Layer, Plan};
use super::{Image, ImageConfig, ImageError};
use crate::fsx::{Context, PathError};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const META: &str = "image.json";
const ROOTFS: &str = "rootfs";
const LAST_USED: &str = "last-used";

/// What `image.json` records about an entry.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    digest: String,
    platform: String,
    source: String,
    config: ImageConfig,
    layers: Vec<LayerMeta>,
    /// sha256 over the tree's paths, types, modes, owners, contents and link targets.
    tree_sha256: String,
    size_bytes: u64,
    #[serde(default)]
    notes: Vec<String>,
    unpacked_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerMeta {
    digest: Option<String>,
    diff_id: Option<String>,
    media_type: String,
    size: u64,
}

/// One image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: String,
    pub size_bytes: u64,
    pub rootfs: PathBuf,
    /// When a run last took it (when it was unpacked, if never).
    pub last_used: SystemTime,
    pub platform: String,
    /// The source it was first unpacked from.
    pub source: String,
}

pub(crate) fn get_or_unpack(plan: &Plan, cache: &Path) -> Result<Image, ImageError> {
    make_cache_dir(cache)?;
    let entry = cache.join(&plan.key);
    if let Some(img) = found(&entry, plan)? {
        return Ok(img);
    }
    let _lock = lock(cache, &plan.key)?;
    // Whoever held the lock before us may have unpacked it.
    if let Some(img) = found(&entry, plan)? {
        return Ok(img);
    }
    remove_stale(cache, &plan.key);
    let tmp = cache.join(format!(
        "{}.tmp-{}-{:016x}",
        plan.key,
        std::process::id(),
        random()
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .at("create the directory", &tmp)?;
    let meta = match build(plan, &tmp).and_then(|m| commit(&tmp, &entry, cache).map(|()| m)) {
        Ok(m) => m,
        Err(e) => {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
    };
    touch(&entry.join(LAST_USED));
    Ok(Image {
        rootfs: entry.join(ROOTFS),
        digest: meta.digest,
        platform: meta.platform,
        config: meta.config,
        fresh: true,
        notes: meta.notes,
    })
}

/// The entry, when it is in the cache (only whole ones ever are).
fn found(entry: &Path, plan: &Plan) -> Result<Option<Image>, ImageError> {
    let Some(meta) = read_meta(entry)? else {
        return Ok(None);
    };
    touch(&entry.join(LAST_USED));
    Ok(Some(Image {
        rootfs: entry.join(ROOTFS),
        digest: meta.digest,
        platform: meta.platform,
        config: plan.config.clone(),
        fresh: false,
        notes: meta.notes,
    }))
}

fn read_meta(entry: &Path) -> Result<Option<Meta>, ImageError> {
    let path = entry.join(META);
    let Some(text) = crate::fsx::read_if_present(&path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ImageError::Corrupt {
            file: path.display().to_string(),
            what: format!("unreadable cache record ({e}); remove the entry"),
        })
}

/// Verifies every layer, applies them into `tmp/rootfs` and records the result.
fn build(plan: &Plan, tmp: &Path) -> Result<Meta, ImageError> {
    // Nothing is used before it is checked.
    for l in &plan.layers {
        match (&l.digest, &l.diff_id) {
            (Some(d), _) => l.blob.verify(d)?,
            (None, Some(id)) => verify_uncompressed(l, id)?,
            (None, None) => return Err(l.blob.corrupt("no digest to verify the layer against")),
        }
    }
    let rootfs = tmp.join(ROOTFS);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&rootfs)
        .at("create the directory", &rootfs)?;
    let mut ex = Extractor::new(&rootfs);
    for l in &plan.layers {
        // Hash again what is really applied: the files may change under us.
        let mut raw = HashRead::new(l.blob.open()?);
        let (compression, head) = sniff(l, &mut raw)?;
        let stream = io::Cursor::new(head).chain(&mut raw);
        let mut diff = HashRead::new(decoder(compression, stream, &l.blob)?);
        ex.layer(&l.blob.label, &mut diff)?;
        diff.drain().map_err(|e| l.blob.corrupt(e.to_string()))?;
        let diff_hex = diff.hex();
        drop(diff);
        raw.drain().at("read", &l.blob.file)?;
        l.blob.check_len(raw.len)?;
        if let Some(d) = &l.digest {
            l.blob.check_digest(d, &raw.hex())?;
        }
        if let Some(id) = &l.diff_id {
            uncompressed(l).check_digest(id, &diff_hex)?;
        }
    }
    let notes = ex.finish()?;
    let (tree_sha256, size_bytes) = tree_sum(&rootfs)?;
    let meta = Meta {
        digest: format!("sha256:{}", plan.key),
        platform: plan.platform.clone(),
        source: plan.source.clone(),
        config: plan.config.clone(),
        layers: plan
            .layers
            .iter()
            .map(|l| LayerMeta {
                digest: l.digest.as_ref().map(|d| format!("sha256:{d}")),
                diff_id: l.diff_id.as_ref().map(|d| format!("sha256:{d}")),
                media_type: l.media_type.clone(),
                size: l.blob.len,
            })
            .collect(),
        tree_sha256,
        size_bytes,
        notes,
        unpacked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = serde_json::to_string_pretty(&meta).expect("cache record serializes");
    crate::fsx::write(tmp.join(META), text + "\n")?;
    Ok(meta)
}

/// The blob's label for a mismatch of its uncompressed content.
fn uncompressed(l: &Layer) -> super::blob::Blob {
    let mut b = l.blob.clone();
    if l.compression != Compression::None {
        b.label = format!("{} (uncompressed)", b.label);
    }
    b
}

/// Checks a layer that only its diff_id vouches for.
fn verify_uncompressed(l: &Layer, diff_id: &str) -> Result<(), ImageError> {
    let mut raw = l.blob.open()?;
    let (compression, head) = sniff(l, &mut raw)?;
    let mut r = HashRead::new(decoder(
        compression,
        io::Cursor::new(head).chain(raw),
        &l.blob,
    )?);
    r.drain().map_err(|e| l.blob.corrupt(e.to_string()))?;
    uncompressed(l).check_digest(diff_id, &r.hex())
}

/// The layer's compression, told by its first bytes when the source did not say.
fn sniff(l: &Layer, r: &mut impl Read) -> Result<(Compression, Vec<u8>), ImageError> {
    if l.compression != Compression::Sniff {
        return Ok((l.compression, Vec::new()));
    }
    let mut head = Vec::with_capacity(4);
    r.take(4).read_to_end(&mut head).at("read", &l.blob.file)?;
    let c = match head.as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    };
    Ok((c, head))
}

fn decoder<'a>(
    c: Compression,
    r: impl Read + 'a,
    blob: &super::blob::Blob,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    Ok(match c {
        Compression::None | Compression::Sniff => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::new(r).map_err(|e| blob.corrupt(format!("zstd: {e}")))?)
        }
    })
}

/// Makes the staged entry durable, then visible in one rename.
fn commit(tmp: &Path, entry: &Path, cache: &Path) -> Result<(), ImageError> {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).at("set the mode of", tmp)?;
    let dir = File::open(tmp).at("open", tmp)?;
    nix::unistd::syncfs(&dir).map_err(|e| PathError::new("sync", tmp, e.into()))?;
    fs::rename(tmp, entry).at("rename into place", entry)?;
    File::open(cache)
        .and_then(|d| d.sync_all())
        .at("sync", cache)?;
    Ok(())
}

fn make_cache_dir(cache: &Path) -> Result<(), PathError> {
    let mode = if nix::unistd::geteuid().is_root() {
        0o755
    } else {
        0o700
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(cache)
        .at("create the cache directory", cache)
}

/// An exclusive flock on `<cache>/<hex>.lock`, held until dropped. Each
/// call opens the file anew, so threads of one process exclude each other
/// as processes do.
fn lock(cache: &Path, hex: &str) -> Result<Flock<File>, ImageError> {
    let path = cache.join(format!("{hex}.lock"));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .at("open", &path)?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| PathError::new("lock", &path, e.into()).into())
}

/// Removes staging directories whose process is gone, and this process's
/// own for `locked` (we hold its lock: nobody is writing it).
fn remove_stale(cache: &Path, locked: &str) {
    let Ok(dir) = fs::read_dir(cache) else { return };
    let me = std::process::id();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some((hex, rest)) = name.to_str().and_then(|n| n.split_once(".tmp-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let gone = pid != me
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                == Err(nix::errno::Errno::ESRCH);
        if gone || (pid == me && hex == locked) {
            let _ = remove_tree(&e.path());
        }
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn touch(path: &Path) {
    // The cache of another user (root's) may not be ours to mark: not an error.
    let _ = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// The tree's checksum and disk usage (each inode once).
fn tree_sum(root: &Path) -> Result<(String, u64), ImageError> {
    let mut sum = TreeSum {
        hasher: Sha256::new(),
        size: 0,
        inodes: HashSet::new(),
        as_root: nix::unistd::geteuid().is_root(),
    };
    sum.walk(root, Path::new(""))?;
    Ok((hex(&sum.hasher.finalize()), sum.size))
}

struct TreeSum {
    hasher: Sha256,
    size: u64,
    inodes: HashSet<(u64, u64)>,
    as_root: bool,
}

impl TreeSum {
    fn walk(&mut self, root: &Path, rel: &Path) -> Result<(), PathError> {
        let path = root.join(rel);
        let m = fs::symlink_metadata(&path).at("inspect", &path)?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else {
            'n'
        };
        self.hasher.update(rel.as_os_str().as_bytes());
        self.hasher.update(
            format!(
                "\0{kind}\0{:o}\0{}\0{}\0",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )
            .as_bytes(),
        );
        if self.inodes.insert((m.dev(), m.ino())) {
            self.size += m.blocks() * 512;
        }
        match kind {
            'f' => {
                let mut f = self.with_access(&path, m.mode(), 0o400, || File::open(&path))?;
                let mut h = HashRead::new(&mut f);
                h.drain().at("read", &path)?;
                self.hasher.update(h.hex().as_bytes());
            }
            'l' => {
                let t = fs::read_link(&path).at("read the link", &path)?;
                self.hasher.update(t.as_os_str().as_bytes());
            }
            'n' => self.hasher.update(m.rdev().to_string().as_bytes()),
            _ => {
                // Rootless, a directory without r-x for its owner is opened
                // up while it is read, then closed again.
                let closed = !self.as_root && m.mode() & 0o500 != 0o500;
                if closed {
                    fs::set_permissions(&path, fs::Permissions::from_mode(m.mode() | 0o500))
                        .at("set the mode of", &path)?;
                }
                let r = self.walk_dir(root, rel, &path);
                if closed {
                    fs::set_permissions(&path, fs::Permissions::from_mode(m.mode() & 0o7777))
                        .at("set the mode of", &path)?;
                }
                r?;
            }
        }
        self.hasher.update(b"\n");
        Ok(())
    }

    fn walk_dir(&mut self, root: &Path, rel: &Path, path: &Path) -> Result<(), PathError> {
        let mut names = Vec::new();
        for e in fs::read_dir(path).at("read", path)? {
            names.push(e.at("read", path)?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            self.walk(root, &rel.join(n))?;
        }
        Ok(())
    }

    /// Runs `f`; rootless and refused, again with `bits` added to the mode.
    fn with_access<T>(
        &self,
        path: &Path,
        mode: u32,
        bits: u32,
        mut f: impl FnMut() -> io::Result<T>,
    ) -> Result<T, PathError> {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !self.as_root => {
                let perm = |m| fs::Permissions::from_mode(m & 0o7777);
                fs::set_permissions(path, perm(mode | bits)).at("set the mode of", path)?;
                let r = f();
                fs::set_permissions(path, perm(mode)).at("set the mode of", path)?;
                r.at("open", path)
            }
            r => r.at("open", path),
        }
    }
}

/// The images in `cache`, by digest; none when it does not exist yet.
pub fn list(cache: &Path) -> Result<Vec<Entry>, ImageError> {
    let mut out = Vec::new();
    for hex in entry_hexes(cache)? {
        let dir = cache.join(&hex);
        let Some(meta) = read_meta(&dir)? else {
            continue;
        };
        let mtime = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
        out.push(Entry {
            digest: meta.digest,
            size_bytes: meta.size_bytes,
            rootfs: dir.join(ROOTFS),
            last_used: mtime(dir.join(LAST_USED))
                .or_else(|| mtime(dir.join(META)))
                .unwrap_or(SystemTime::UNIX_EPOCH),
            platform: meta.platform,
            source: meta.source,
        });
    }
    Ok(out)
}

/// One entry's digest and what checking it found.
pub type Checked = (String, Result<(), ImageError>);

/// Recomputes each entry's tree checksum and compares it with the one
/// recorded when its layers were verified and applied.
pub fn check(cache: &Path) -> Result<Vec<Checked>, ImageError> {
    let mut out = Vec::new();
    for hex in entry_hexes(cache)? {
        let dir = cache.join(&hex);
        let result = (|| {
            let meta = read_meta(&dir)?.ok_or_else(|| ImageError::Corrupt {
                file: dir.join(META).display().to_string(),
                what: "missing".into(),
            })?;
            let rootfs = dir.join(ROOTFS);
            let (found, _) = tree_sum(&rootfs)?;
            if found != meta.tree_sha256 {
                return Err(ImageError::DigestMismatch {
                    file: rootfs.display().to_string(),
                    expected: format!("tree sha256:{}", meta.tree_sha256),
                    found: format!("tree sha256:{found}"),
                });
            }
            Ok(())
        })();
        out.push((format!("sha256:{hex}"), result));
    }
    Ok(out)
}

/// Removes every entry whose digest starts with `digest_prefix` (with or
/// without `sha256:`) and returns their digests.
pub fn remove(cache: &Path, digest_prefix: &str) -> Result<Vec<String>, ImageError> {
    let prefix = digest_prefix
        .strip_prefix("sha256:")
        .unwrap_or(digest_prefix);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::BadPrefix(digest_prefix.into()));
    }
    let prefix = prefix.to_ascii_lowercase();
    let mut removed = Vec::new();
    for hex in entry_hexes(cache)? {
        if !hex.starts_with(&prefix) {
            continue;
        }
        let _lock = lock(cache, &hex)?;
        let entry = cache.join(&hex);
        // Gone from the cache in one rename, then deleted at leisure.
        let doomed = cache.join(format!(
            "{hex}.tmp-{}-{:016x}",
            std::process::id(),
            random()
        ));
        fs::rename(&entry, &doomed).at("rename", &entry)?;
        remove_tree(&doomed)?;
        removed.push(format!("sha256:{hex}"));
    }
    Ok(removed)
}

/// Names of entry directories in `cache`, sorted.
fn entry_hexes(cache: &Path) -> Result<Vec<String>, ImageError> {
    let rd = match fs::read_dir(cache) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.at("read", cache)?,
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.at("read", cache)?;
        if let Some(n) = e.file_name().to_str() {
            if is_sha256_hex(n) && e.path().is_dir() {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_checksum_sees_content_mode_and_link_changes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f"), "one").unwrap();
        std::os::unix::fs::symlink("d/f", r.join("l")).unwrap();
        let (a, size) = tree_sum(r).unwrap();
        assert!(size > 0);
        assert_eq!(tree_sum(r).unwrap().0, a);
        fs::write(r.join("d/f"), "two").unwrap();
        let (b, _) = tree_sum(r).unwrap();
        assert_ne!(a, b);
        fs::set_permissions(r.join("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(tree_sum(r).unwrap().0, b);
    }

    #[test]
    fn stale_staging_dirs_of_dead_processes_go_and_live_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let hex = "a".repeat(64);
        // pid 2^22+1 is above the kernel's pid_max: never a live process.
        let dead = t.path().join(format!("{hex}.tmp-4194305-1"));
        let live = t.path().join(format!("{hex}.tmp-1-1"));
        fs::create_dir_all(dead.join("rootfs/x")).unwrap();
        fs::create_dir(&live).unwrap();
        remove_stale(t.path(), &"b".repeat(64));
        assert!(!dead.exists());
        assert!(live.exists());
    }

    #[test]
    fn a_bad_prefix_is_refused_before_anything_is_removed() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            remove(t.path(), ""),
            Err(ImageError::BadPrefix(_))
        ));
        assert!(matches!(
            remove(t.path(), "sha256:"),
            Err(ImageError::BadPrefix(_))
        ));
        assert!(matches!(
            remove(t.path(), "../x"),
            Err(ImageError::BadPrefix(_))
        ));
        assert!(remove(t.path(), "ab").unwrap().is_empty());
    }
}
