//! Applying layer tars, in order, to a staging root.
//!
//! Each entry's path is walked component by component below the root with
//! lstat: a symlink met on the way is followed only when it is relative and
//! stays inside the root; an absolute one, or one that climbs out, makes the
//! entry an error. The last component is never followed: whatever is there
//! is removed and the entry is created in its place (files with O_NOFOLLOW
//! and O_EXCL). So nothing is ever written outside the root, whatever the
//! layers hold. Whiteouts follow the OCI image spec: `.wh.NAME` deletes NAME
//! of the layers below, `.wh..wh..opq` hides all that the layers below put
//! in its directory.

use super::ImageError;
use crate::fsx::{Context, PathError};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};
use tar::EntryType;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Links followed while resolving one path, as the kernel's MAXSYMLINKS.
const MAX_HOPS: usize = 40;

/// What a directory gets once every layer is in: until then each one is
/// 0700 and ours, so later entries can always be written into it.
struct DirMeta {
    mode: u32,
    mtime: Option<u64>,
    owner: Option<(u32, u32)>,
}

pub(crate) struct Extractor {
    root: PathBuf,
    /// Keep the tar's uid/gid (root); rootless everything is the user's.
    chown: bool,
    dirs: BTreeMap<PathBuf, DirMeta>,
    pub notes: Vec<String>,
}

impl Extractor {
    /// `root` must exist and be empty.
    pub fn new(root: &Path) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(
            root.to_path_buf(),
            DirMeta {
                mode: 0o755,
                mtime: None,
                owner: None,
            },
        );
        Extractor {
            root: root.to_path_buf(),
            chown: nix::unistd::geteuid().is_root(),
            dirs,
            notes: Vec::new(),
        }
    }

    /// Applies one layer tar; `file` names it in errors.
    pub fn layer(&mut self, file: &str, reader: impl Read) -> Result<(), ImageError> {
        let corrupt = |e: io::Error| ImageError::Corrupt {
            file: file.into(),
            what: format!("not a readable layer tar: {e}"),
        };
        let mut archive = tar::Archive::new(reader);
        // Paths written by this layer: whiteouts apply to the layers below only.
        let mut seen: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let raw = entry.path().map_err(corrupt)?.into_owned();
            let shown = raw.display().to_string();
            let entry_err = |what: String| ImageError::Entry {
                file: file.into(),
                entry: shown.clone(),
                what,
            };
            let escape = |why: String| ImageError::Escape {
                file: file.into(),
                entry: shown.clone(),
                why,
            };
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                EntryType::XGlobalHeader
                    | EntryType::XHeader
                    | EntryType::GNULongName
                    | EntryType::GNULongLink
            ) {
                continue;
            }
            let comps = components(&raw).map_err(escape)?;
            let header = entry.header();
            let mode = header.mode().map_err(corrupt)? & 0o7777;
            let mtime = header.mtime().ok();
            let owner = match (header.uid(), header.gid()) {
                (Ok(u), Ok(g)) => Some((u as u32, g as u32)),
                _ => None,
            };
            let Some((name, parents)) = comps.split_last() else {
                // `./` itself: the root's own mode and times.
                if kind.is_dir() {
                    self.dirs
                        .insert(self.root.clone(), DirMeta { mode, mtime, owner });
                    continue;
                }
                return Err(entry_err("names the root but is not a directory".into()));
            };
            let dir = self.parent_dir(parents, &mut seen).map_err(escape)?;
            let name_bytes = name.as_bytes();
            if name == OPAQUE {
                opaque(&dir, &seen)?;
                continue;
            }
            if name_bytes.starts_with(b".wh..wh.") {
                continue; // aufs bookkeeping, not content
            }
            if let Some(victim) = name_bytes.strip_prefix(WHITEOUT.as_bytes()) {
                let victim = dir.join(OsStr::from_bytes(victim));
                if !seen.contains(&victim) {
                    remove_any(&victim)?;
                }
                continue;
            }
            let dest = dir.join(name);
            match kind {
                EntryType::Directory => {
                    let is_dir = fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir());
                    if !is_dir {
                        remove_any(&dest)?;
                        mkdir(&dest)?;
                    }
                    self.dirs.insert(dest.clone(), DirMeta { mode, mtime, owner });
                }
                EntryType::Regular | EntryType::Continuous => {
                    self.file(&dest, &mut entry, DirMeta { mode, mtime, owner }, &corrupt)?;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(corrupt)?
                        .ok_or_else(|| entry_err("a symlink without a target".into()))?;
                    remove_any(&dest)?;
                    std::os::unix::fs::symlink(&target, &dest).at("create the symlink", &dest)?;
                    self.set_owner(&dest, owner)?;
                    if let Some(t) = mtime {
                        symlink_mtime(&dest, t)?;
                    }
                }
                EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(corrupt)?
                        .ok_or_else(|| entry_err("a hard link without a target".into()))?;
                    self.hard_link(&dest, &target, &entry_err, &escape)?;
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    let meta = DirMeta { mode, mtime, owner };
                    if !self.node(&dest, kind, header, meta)? {
                        self.notes.push(format!(
                            "{file}: device node {shown} skipped: creating device nodes is not permitted here"
                        ));
                        continue;
                    }
                }
                other => {
                    return Err(entry_err(format!(
                        "entry type {other:?} is not supported (packrun reads files, directories, links, devices and fifos)"
                    )))
                }
            }
            seen.insert(dest);
        }
        // The tar's end may come before the stream's: read the rest too,
        // so the digests cover every byte.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
        Ok(())
    }

    /// The directory an entry goes into, made where a layer left it out;
    /// the ones made count as written by this layer (`seen`).
    fn parent_dir(
        &mut self,
        parents: &[std::ffi::OsString],
        seen: &mut HashSet<PathBuf>,
    ) -> Result<PathBuf, String> {
        let dirs = &mut self.dirs;
        resolve(
            &self.root,
            parents,
            Some(&mut |p: &Path| {
                seen.insert(p.to_path_buf());
                dirs.insert(
                    p.to_path_buf(),
                    DirMeta {
                        mode: 0o755,
                        mtime: None,
                        owner: None,
                    },
                );
            }),
        )
    }

    /// A regular file entry, written whole, then given its times, owner
    /// and mode.
    fn file(
        &mut self,
        dest: &Path,
        content: &mut impl Read,
        meta: DirMeta,
        corrupt: &dyn Fn(io::Error) -> ImageError,
    ) -> Result<(), ImageError> {
        remove_any(dest)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .at("create", dest)?;
        io::copy(content, &mut f).map_err(corrupt)?;
        if let Some(t) = meta.mtime {
            f.set_times(times(t)).at("set the times of", dest)?;
        }
        self.set_owner(dest, meta.owner)?;
        f.set_permissions(fs::Permissions::from_mode(meta.mode))
            .at("set the mode of", dest)?;
        Ok(())
    }

    /// A hard link entry: to a file that an earlier entry or layer made,
    /// never to a directory.
    fn hard_link(
        &self,
        dest: &Path,
        target: &Path,
        entry_err: &dyn Fn(String) -> ImageError,
        escape: &dyn Fn(String) -> ImageError,
    ) -> Result<(), ImageError> {
        let src = self
            .link_source(target)
            .map_err(|why| escape(format!("its hard link target {}: {why}", target.display())))?;
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {
                return Err(entry_err(format!(
                    "a hard link to the directory {}",
                    target.display()
                )))
            }
            Ok(_) => {}
            Err(_) => {
                return Err(entry_err(format!(
                    "a hard link to {}, which no layer so far holds",
                    target.display()
                )))
            }
        }
        if src != dest {
            remove_any(dest)?;
            fs::hard_link(&src, dest).at("create the hard link", dest)?;
        }
        Ok(())
    }

    /// A device node or fifo entry; false when creating device nodes is
    /// not permitted here (rootless), and the node was skipped.
    fn node(
        &mut self,
        dest: &Path,
        kind: EntryType,
        header: &tar::Header,
        meta: DirMeta,
    ) -> Result<bool, ImageError> {
        remove_any(dest)?;
        let dev = nix::sys::stat::makedev(
            header.device_major().ok().flatten().unwrap_or(0).into(),
            header.device_minor().ok().flatten().unwrap_or(0).into(),
        );
        let sflag = match kind {
            EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
            EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
            _ => nix::sys::stat::SFlag::S_IFIFO,
        };
        let perm = nix::sys::stat::Mode::from_bits_truncate(0o600);
        match nix::sys::stat::mknod(dest, sflag, perm, dev) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) if kind != EntryType::Fifo => return Ok(false),
            Err(e) => return Err(PathError::new("create the node", dest, e.into()).into()),
        }
        if let Some(t) = meta.mtime {
            File::open(dest).and_then(|f| f.set_times(times(t))).ok();
        }
        self.set_owner(dest, meta.owner)?;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode))
            .at("set the mode of", dest)?;
        Ok(true)
    }

    /// Gives every directory its mode, times and owner, deepest first
    /// (setting a parent's mtime after its children are done).
    pub fn finish(self) -> Result<Vec<String>, ImageError> {
        let chown = self.chown;
        let mut notes = self.notes;
        for (dir, meta) in self.dirs.iter().rev() {
            if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                continue; // removed or replaced by a later layer
            }
            if let Some(t) = meta.mtime {
                File::open(dir)
                    .and_then(|f| f.set_times(times(t)))
                    .at("set the times of", dir)?;
            }
            if chown {
                if let Some((u, g)) = meta.owner {
                    if let Err(e) = std::os::unix::fs::lchown(dir, Some(u), Some(g)) {
                        notes.push(format!("{}: owner {u}:{g} not kept: {e}", dir.display()));
                    }
                }
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode))
                .at("set the mode of", dir)?;
        }
        Ok(notes)
    }

    /// lchown: never through a symlink.
    fn set_owner(&mut self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), ImageError> {
        let (true, Some((u, g))) = (self.chown, owner) else {
            return Ok(());
        };
        if let Err(e) = std::os::unix::fs::lchown(path, Some(u), Some(g)) {
            // A user namespace that does not map the id: keep going as
            // rootless would, and say so once.
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)) {
                self.chown = false;
                self.notes.push(format!(
                    "ownership not kept from {} on: {e}",
                    path.display()
                ));
                return Ok(());
            }
            return Err(PathError::new("change the owner of", path, e).into());
        }
        Ok(())
    }

    /// Where a hard link's target is, resolved inside the root.
    fn link_source(&self, target: &Path) -> Result<PathBuf, String> {
        let comps = components(target)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err("names the root".into());
        };
        Ok(resolve(&self.root, parents, None)?.join(name))
    }
}

/// An entry's path as plain names: a leading `/` and `.` are dropped, `..`
/// is refused (no layer needs it; it is how a tar climbs out).
fn components(p: &Path) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::ParentDir => return Err("its path holds `..`".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// The real directory below `root` that `comps` name, never leaving the
/// root: relative symlinks are followed inside it, an absolute one or one
/// that climbs above the root is refused. Missing directories are made
/// when `create` is given (and reported to it), else an error.
fn resolve(
    root: &Path,
    comps: &[OsString],
    mut create: Option<&mut dyn FnMut(&Path)>,
) -> Result<PathBuf, String> {
    let mut real: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if real.pop().is_none() {
                return Err("a symlink on its path leads above the root".into());
            }
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let here: PathBuf = real.iter().collect();
        let path = root.join(&here).join(&c);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => real.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err("too many levels of symlinks".into());
                }
                let target = fs::read_link(&path).map_err(|e| e.to_string())?;
                let shown = here.join(&c);
                if target.is_absolute() {
                    return Err(format!(
                        "it goes through /{}, a symlink to the absolute path {}",
                        shown.display(),
                        target.display()
                    ));
                }
                let mut spliced: VecDeque<OsString> = VecDeque::new();
                for t in target.components() {
                    match t {
                        Component::Normal(s) => spliced.push_back(s.to_os_string()),
                        Component::ParentDir => spliced.push_back("..".into()),
                        _ => {}
                    }
                }
                spliced.extend(todo);
                todo = spliced;
            }
            Ok(_) => return Err(format!("/{} is not a directory", here.join(&c).display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create.as_mut() {
                Some(report) => {
                    mkdir(&path).map_err(|e| e.to_string())?;
                    report(&path);
                    real.push(c);
                }
                None => return Err(format!("/{} does not exist", here.join(&c).display())),
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(root.join(real.iter().collect::<PathBuf>()))
}

fn mkdir(path: &Path) -> Result<(), PathError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .at("create the directory", path)
}

/// Removes whatever is at `path` (never following a symlink); nothing there is fine.
pub(crate) fn remove_any(path: &Path) -> Result<(), PathError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PathError::new("inspect", path, e)),
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path).at("remove", path),
    }
}

/// Drops from `dir` everything the layers below put there.
fn opaque(dir: &Path, seen: &HashSet<PathBuf>) -> Result<(), PathError> {
    for child in fs::read_dir(dir).at("read", dir)? {
        let child = child.at("read", dir)?.path();
        if !seen.contains(&child) {
            remove_any(&child)?;
        } else if fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir()) {
            opaque(&child, seen)?;
        }
    }
    Ok(())
}

fn times(secs: u64) -> FileTimes {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    FileTimes::new().set_accessed(t).set_modified(t)
}

fn symlink_mtime(path: &Path, secs: u64) -> Result<(), PathError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| PathError::new("set the times of", path, e.into()))
}

/// Removes a tree, first giving its directories back the owner's rwx
/// where a layer took them away (rootless, mode bits bind us too).
pub(crate) fn remove_tree(path: &Path) -> Result<(), PathError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            fs::remove_dir_all(path).at("remove", path)
        }
        r => r.at("remove", path),
    }
}

fn open_up(dir: &Path) {
    let Ok(m) = fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = fs::set_permissions(
        dir,
        fs::Permissions::from_mode(std::os::unix::fs::MetadataExt::mode(&m) | 0o700),
    );
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            open_up(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_lose_leading_slash_and_dots_but_not_dotdot() {
        assert_eq!(
            components(Path::new("/./a/b/")).unwrap(),
            vec![OsString::from("a"), OsString::from("b")]
        );
        assert!(components(Path::new("a/../../evil")).is_err());
        assert!(components(Path::new("./")).unwrap().is_empty());
    }

    #[test]
    fn resolve_follows_relative_symlinks_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("usr/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        let c = |s: &str| components(Path::new(s)).unwrap();
        assert_eq!(
            resolve(root, &c("lib"), None).unwrap(),
            root.join("usr/lib")
        );
        let up = resolve(root, &c("usr/up"), None).unwrap_err();
        assert!(up.contains("above the root"), "{up}");
        let abs = resolve(root, &c("abs"), None).unwrap_err();
        assert!(abs.contains("/etc"), "{abs}");
        assert!(resolve(root, &c("missing"), None).is_err());
    }
}
