//! The new root, planned before clone: the steps (`MountOp`) init takes
//! to build it, in order. Pure but for a few looks at the host's tree
//! (which sources are directories, which mount targets and top-level
//! entries the host has), so it is tested on paths.

use super::{ContainerConfig, SetupError};
use crate::jobfile::{Network, Rootfs};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One step of building the root, done by init before pivot_root. Paths
/// are absolute on the host (the new root is `<root dir>/...`); `shown` is
/// the path as the job will see it, for error messages.
#[derive(Debug)]
pub(super) enum MountOp {
    /// mount(2).
    Mount(MountArgs),
    /// A directory root: the idmapped copy the runner sent in the slot
    /// after the binds' (see spawn::idmapped_mounts) when there is one,
    /// else this bind.
    RootDir(MountArgs),
    /// mount_setattr(2) AT_RECURSIVE MOUNT_ATTR_RDONLY.
    ReadOnly {
        target: CString,
        shown: CString,
    },
    /// mkdir -p (only into a writable rootfs directory, before it is made read-only).
    MkdirAll {
        path: CString,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    /// An empty file to bind a device node onto.
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// runc's masked paths: /dev/null over a file, an empty read-only tmpfs
    /// over a directory, nothing when missing.
    Mask {
        path: CString,
        shown: CString,
    },
    /// A fresh sysfs: moved from `child::Fds::sysfs` when the spawner
    /// thread made one (in a pooled network namespace), else mounted.
    Sysfs {
        target: CString,
    },
    /// A bind of the host path opened into slot `slot` (see Plan::bind_sources).
    Bind {
        what: &'static str,
        slot: usize,
        target: CString,
        shown: CString,
    },
    /// init takes the job's ids inside (keeping its capabilities there):
    /// file systems the run mounts belong to its user namespace, and the
    /// kernel makes nothing in them for an id the namespace does not map.
    Become,
    /// runc's read-only paths: bound onto themselves read-only; nothing when missing.
    ReadOnlyPath {
        path: CString,
        shown: CString,
    },
    /// The run's staging tmpfs on `dir` (see `Stage`) with the empty
    /// overlay layer and the new root's mount point in it; made before
    /// the clone where `child::Fds::staged` says so.
    Stage {
        dir: CString,
        empty: CString,
        root: CString,
    },
    /// A mount of the host's tree (its root or one below) as a read-only
    /// overlay of its own on `target`: `source` over the empty layer
    /// (`data` holds both). A file opened through an overlay is an inode
    /// of the overlay, so a lock taken on it (flock, fcntl) stays in the
    /// run and never reaches the host's inode, which the host's programs
    /// lock. The thread that clones init mounts these (slot `slot`) in a
    /// mount namespace of its own, which init's is a copy of (see
    /// `child::Fds::staged`): there the host's mounts are not locked, as
    /// they are in the run's user namespace, where the kernel refuses an
    /// overlay on a tree with mounts below it that the run may not look
    /// under. Where it did not, `source` is bound with everything below it
    /// as before; once the host's root was bound so, the ops for the mounts
    /// below it do nothing.
    HostTree {
        slot: Option<usize>,
        data: CString,
        source: CString,
        target: CString,
        shown: CString,
    },
}

/// The arguments of one mount(2), and for error messages what it does and
/// the target as the job sees it.
#[derive(Debug)]
pub(super) struct MountArgs {
    pub(super) what: &'static str,
    pub(super) source: Option<CString>,
    pub(super) target: CString,
    pub(super) fstype: Option<CString>,
    pub(super) flags: libc::c_ulong,
    pub(super) data: Option<CString>,
    pub(super) shown: CString,
}

/// Paths runc masks (files get /dev/null, directories an empty read-only tmpfs).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths runc makes read-only.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

pub(super) fn cstr(bytes: impl AsRef<[u8]>, what: &str) -> Result<CString, SetupError> {
    CString::new(bytes.as_ref()).map_err(|_| {
        SetupError::new(
            "prepare",
            format!(
                "{what} `{}` contains a NUL byte",
                String::from_utf8_lossy(bytes.as_ref())
            ),
        )
    })
}

pub(super) fn path_cstr(path: &Path) -> Result<CString, SetupError> {
    cstr(path.as_os_str().as_bytes(), "path")
}

/// `root` + `inside` (an absolute path without `..`), as a C string.
fn under(root: &Path, inside: &Path) -> Result<CString, SetupError> {
    if !inside.is_absolute() || inside.components().any(|c| c == Component::ParentDir) {
        return Err(SetupError::new(
            "prepare",
            format!(
                "path `{}` inside the container: expected an absolute path without `..`",
                inside.display()
            ),
        ));
    }
    let rel = inside.strip_prefix("/").unwrap_or(inside);
    if rel.as_os_str().is_empty() {
        return path_cstr(root);
    }
    path_cstr(&root.join(rel))
}

/// The job's HOME: a fresh writable directory in a tmpfs of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Home {
    pub(super) path: &'static str,
    /// USER and LOGNAME.
    pub(super) user: &'static str,
    /// A tmpfs of its own (below the hidden /home).
    own_tmpfs: bool,
}

impl Home {
    /// /root for root inside, /home/packrun for other ids; /tmp when the
    /// job shows or binds those paths (then they are not fresh).
    pub(super) fn of(uid: u32, hidden: &[PathBuf]) -> Home {
        let hid = |p: &str| hidden.iter().any(|h| h == Path::new(p));
        let (path, user, own_tmpfs) = match uid {
            0 if hid("/root") => ("/root", "root", false),
            0 => ("/tmp", "root", false),
            _ if hid("/home") => ("/home/packrun", "packrun", true),
            _ => ("/tmp", "packrun", false),
        };
        Home {
            path,
            user,
            own_tmpfs,
        }
    }
}

/// The paths that get a fresh tmpfs: `jobfile::HIDDEN_PATHS` less those
/// made visible, plus those asked for; not a path the job binds something
/// onto (its bind covers it), nor one the root lacks or has as a symlink
/// (/var/run -> /run is covered by /run), nor one below another.
pub(super) fn hidden_paths(cfg: &ContainerConfig) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = crate::jobfile::HIDDEN_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| !cfg.visible.contains(p))
        .collect();
    for h in &cfg.hidden {
        if !list.contains(h) {
            list.push(h.clone());
        }
    }
    let bound = |p: &PathBuf| {
        cfg.mounts.iter().any(|m| &m.target == p) || cfg.writable.iter().any(|(_, t)| t == p)
    };
    list.retain(|p| !bound(p) && is_dir_in_root(&cfg.rootfs, p));
    let all = list.clone();
    list.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    list
}

/// Whether `inside` is a directory (not a symlink) of the run's root. A
/// directory root gets /tmp made when it lacks it.
fn is_dir_in_root(rootfs: &Rootfs, inside: &Path) -> bool {
    let host = match rootfs {
        // The default hidden paths of the host tree: looked at once per process.
        Rootfs::Host
            if crate::jobfile::HIDDEN_PATHS
                .iter()
                .any(|p| Path::new(p) == inside) =>
        {
            static HOST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
            let dirs = HOST.get_or_init(|| {
                crate::jobfile::HIDDEN_PATHS
                    .iter()
                    .copied()
                    .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
                    .collect()
            });
            return dirs.iter().any(|d| Path::new(d) == inside);
        }
        Rootfs::Host => inside.to_path_buf(),
        Rootfs::Dir(dir) if inside == Path::new("/tmp") => return dir.is_dir(),
        Rootfs::Dir(dir) => dir.join(inside.strip_prefix("/").unwrap_or(inside)),
    };
    std::fs::symlink_metadata(host).is_ok_and(|m| m.is_dir())
}

/// Whether a mount target lies inside a tmpfs the run gets (so its mount
/// point is made there, not in the root).
fn in_tmpfs(target: &Path, hidden: &[PathBuf]) -> bool {
    hidden.iter().any(|h| target != h && target.starts_with(h))
}

/// The mount point for a bind of `source` at `target`: a directory, or an
/// empty file for anything else (a file, a unix socket, a device).
fn mount_point(root: &Path, source: &Path, target: &Path) -> Result<Vec<MountOp>, SetupError> {
    if !source.is_dir() {
        let parent = target.parent().unwrap_or(Path::new("/"));
        Ok(vec![
            MountOp::MkdirAll {
                path: under(root, parent)?,
            },
            MountOp::Touch {
                path: under(root, target)?,
            },
        ])
    } else {
        Ok(vec![MountOp::MkdirAll {
            path: under(root, target)?,
        }])
    }
}

/// The steps that build the new root at `root`, in order.
pub(super) fn root_ops(
    cfg: &ContainerConfig,
    root: &Path,
    hidden: &[PathBuf],
    home: Home,
    job_ids: (u32, u32),
    userns: bool,
) -> Result<Vec<MountOp>, SetupError> {
    // (source, target) of every bind, and whether its mount point is made
    // in the root (before it turns read-only) or in a tmpfs of the run.
    let binds: Vec<(&Path, &Path)> = cfg
        .mounts
        .iter()
        .map(|m| (m.source.as_path(), m.target.as_path()))
        .chain(cfg.writable.iter().map(|(s, t)| (s.as_path(), t.as_path())))
        .collect();
    let (in_tmpfs_binds, in_root_binds): (Vec<_>, Vec<_>) =
        binds.iter().partition(|(_, t)| in_tmpfs(t, hidden));
    let mut ops = root_mount_ops(cfg, root, hidden, &in_root_binds, userns)?;
    ops.extend(kernel_fs_ops(cfg, root)?);
    ops.extend(dev_ops(root, &cfg.devices)?);
    ops.extend(hidden_ops(root, hidden, home, job_ids)?);
    for (source, target) in &in_tmpfs_binds {
        ops.extend(mount_point(root, source, target)?);
    }
    ops.extend(bind_ops(cfg, root)?);
    ops.extend(mask_ops(root)?);
    Ok(ops)
}

/// A C string of text written in this file (the error, which cannot
/// happen, calls it a path).
fn lit(text: &str) -> Result<CString, SetupError> {
    cstr(text, "path")
}

/// `inside` (absolute, written in this file) below the new root at `root`.
fn at(root: &Path, inside: &str) -> Result<CString, SetupError> {
    under(root, Path::new(inside))
}

/// mount(2) of `source` on `inside` the new root.
fn mount_at(
    root: &Path,
    what: &'static str,
    source: &str,
    inside: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<MountOp, SetupError> {
    Ok(MountOp::Mount(MountArgs {
        what,
        source: Some(lit(source)?),
        target: at(root, inside)?,
        fstype: fstype.map(lit).transpose()?,
        flags,
        data: data.map(lit).transpose()?,
        shown: lit(inside)?,
    }))
}

/// The root itself, read-only at the end: the host's tree as overlays
/// (see `host_tree_ops`), or a bind of the rootfs directory, with the
/// mount points of `in_root_binds` made in a rootfs directory first; or a
/// tmpfs root when a bind needs a mount point the host tree lacks.
/// `Become` comes before the first inode the run makes in a file system
/// of its own.
fn root_mount_ops(
    cfg: &ContainerConfig,
    root: &Path,
    hidden: &[PathBuf],
    in_root_binds: &[&(&Path, &Path)],
    userns: bool,
) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = Vec::new();
    if let Rootfs::Host = cfg.rootfs {
        // A tmpfs of the run's on the root directory's base holds the
        // empty layer and the copies of the host's mounts (see
        // MountOp::HostTree), and the new root itself, `root`.
        if userns {
            ops.push(MountOp::Become);
        }
        let stage = Stage::of(root);
        ops.push(MountOp::Stage {
            dir: path_cstr(&stage.dir)?,
            empty: path_cstr(&stage.empty)?,
            root: path_cstr(root)?,
        });
    }
    let host_missing = match cfg.rootfs {
        Rootfs::Host => {
            missing_host_targets(&in_root_binds.iter().map(|(_, t)| *t).collect::<Vec<_>>())?
        }
        Rootfs::Dir(_) => Vec::new(),
    };
    if !host_missing.is_empty() {
        // The host tree is never written to, so a mount point it lacks (a
        // new top-level directory such as /data) needs a root of our own: a
        // tmpfs holding the host's top-level entries bound in, plus the new
        // directories. Only runs that ask for such a mount pay for it.
        ops.extend(tmpfs_root_ops(root, &host_missing)?);
    } else if let Rootfs::Host = cfg.rootfs {
        ops.extend(host_tree_ops(cfg, root, hidden)?);
    } else if let Rootfs::Dir(dir) = &cfg.rootfs {
        // A directory root is an idmapped copy when the runner could make
        // one (its files' owners are the run's ids: the image's root is
        // the run's root).
        ops.push(MountOp::RootDir(MountArgs {
            what: "bind root",
            source: Some(path_cstr(dir)?),
            target: path_cstr(root)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            shown: path_cstr(dir)?,
        }));
    }
    if matches!(cfg.rootfs, Rootfs::Dir(_)) {
        // Mount points must exist before the tree turns read-only. The host
        // tree is never written to: its mount points must exist already.
        for inside in ["/proc", "/sys", "/dev", "/tmp"] {
            ops.push(MountOp::MkdirAll {
                path: at(root, inside)?,
            });
        }
        for (source, target) in in_root_binds {
            ops.extend(mount_point(root, source, target)?);
        }
    }
    if userns && matches!(cfg.rootfs, Rootfs::Dir(_)) {
        ops.push(MountOp::Become);
    }
    ops.push(MountOp::ReadOnly {
        target: path_cstr(root)?,
        shown: lit("/")?,
    });
    Ok(ops)
}

/// Most mounts of the host's tree a run gets as overlays of their own
/// (`MountOp::HostTree` slots); those past it are bound as they are.
pub(super) const MAX_TREES: usize = 32;

/// Where a run on the host's tree stages its root: a tmpfs of its own
/// on `dir` (the root directory's base, in the run's mount namespace
/// only) holding the empty overlay layer (`e`) and the new root (`r`).
pub(super) struct Stage {
    pub(super) dir: PathBuf,
    empty: PathBuf,
}

impl Stage {
    pub(super) fn of(root: &Path) -> Stage {
        let dir = root.parent().unwrap_or(root).to_path_buf();
        Stage {
            empty: dir.join("e"),
            dir,
        }
    }
}

/// The new root of a run below the root directory base `base`: the
/// base itself, or on the host's tree `r` in the run's tmpfs there.
pub(super) fn new_root(cfg: &ContainerConfig, base: &Path) -> PathBuf {
    match cfg.rootfs {
        Rootfs::Host => base.join("r"),
        Rootfs::Dir(_) => base.to_path_buf(),
    }
}

/// The host's root and each mount below it that the run sees (not
/// below /proc, /sys or /dev, which it gets fresh, nor below a path it
/// hides or binds something onto), each a read-only overlay of its own
/// (`MountOp::HostTree`), parents before children, as the host mounted
/// them.
fn host_tree_ops(
    cfg: &ContainerConfig,
    root: &Path,
    hidden: &[PathBuf],
) -> Result<Vec<MountOp>, SetupError> {
    let stage = Stage::of(root);
    // overlay's options split at ',' and its lower dirs at ':'.
    let plain = |p: &Path| !p.to_string_lossy().contains([',', ':', '\\']);
    let covered = |p: &Path| {
        ["/proc", "/sys", "/dev"].iter().any(|k| p.starts_with(k))
            || hidden.iter().any(|h| p.starts_with(h))
            || p.starts_with(&stage.dir)
            || cfg.mounts.iter().any(|m| p.starts_with(&m.target))
            || cfg.writable.iter().any(|(_, t)| p.starts_with(t))
    };
    let below = host_mount_points()
        .iter()
        .filter(|(p, _)| !covered(p))
        .map(|(p, dir)| (p.as_path(), *dir));
    let mut ops = Vec::new();
    for (i, (tree, dir)) in std::iter::once((Path::new("/"), true))
        .chain(below)
        .enumerate()
    {
        ops.push(MountOp::HostTree {
            slot: (plain(&stage.dir) && plain(tree) && dir && i < MAX_TREES).then_some(i),
            data: cstr(
                format!("lowerdir={}:{}", tree.display(), stage.empty.display()),
                "overlay options",
            )?,
            source: path_cstr(tree)?,
            target: under(root, tree)?,
            shown: path_cstr(tree)?,
        });
    }
    Ok(ops)
}

/// The host's mount points below / (and whether each is a directory),
/// read once per process.
fn host_mount_points() -> &'static [(PathBuf, bool)] {
    static POINTS: std::sync::OnceLock<Vec<(PathBuf, bool)>> = std::sync::OnceLock::new();
    POINTS.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mount_points(&text)
            .into_iter()
            .map(|p| {
                let dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
                (p, dir)
            })
            .collect()
    })
}

/// The mount points of /proc/self/mountinfo text below / (field 5,
/// octal escapes undone), in its order.
pub(super) fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p != "/")
        .map(|p| {
            let b = p.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let oct = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match (b[i], oct) {
                    (b'\\', Some(d)) => {
                        out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                        i += 4;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// A tmpfs root holding the host's top-level entries and the directories
/// `host_missing` that the host tree lacks.
fn tmpfs_root_ops(root: &Path, host_missing: &[PathBuf]) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = vec![MountOp::Mount(MountArgs {
        what: "mount tmpfs root on",
        source: Some(lit("tmpfs")?),
        target: path_cstr(root)?,
        fstype: Some(lit("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(lit("mode=755,size=64k")?),
        shown: lit("/")?,
    })];
    ops.extend(host_top_level_ops(root)?);
    for t in host_missing {
        ops.push(MountOp::MkdirAll {
            path: under(root, t)?,
        });
    }
    Ok(ops)
}

/// /proc, and /sys: a fresh sysfs without a network, else the host's.
fn kernel_fs_ops(cfg: &ContainerConfig, root: &Path) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = vec![mount_at(
        root,
        "mount proc on",
        "proc",
        "/proc",
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?];
    if cfg.network != Network::Host {
        // A fresh sysfs shows the run's network namespace's devices (only
        // lo): mounted by init, or made by the thread that joined a pooled
        // namespace for it (see child::Fds::sysfs).
        ops.push(MountOp::Sysfs {
            target: at(root, "/sys")?,
        });
    } else {
        // The host's /sys (an overlay of the host's root has none of
        // what is mounted below it).
        ops.push(mount_at(
            root,
            "bind /sys on",
            "/sys",
            "/sys",
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?);
        ops.push(MountOp::ReadOnly {
            target: at(root, "/sys")?,
            shown: lit("/sys")?,
        });
    }
    Ok(ops)
}

/// The run's devpts: a new instance with at most the run's share of the
/// ptys every devpts but the host's shares (kernel.pty.max minus
/// kernel.pty.reserve, machine-wide: see shares.rs).
fn devpts_options() -> String {
    let mut opts = String::from("newinstance,ptmxmode=0666,mode=0620");
    if let Some((_, share)) = super::shares::shares().pty {
        opts += &format!(",max={share}");
    }
    opts
}

/// A fresh /dev: a tmpfs with the host's harmless devices bound in, the
/// run's own `devices` (its GPUs' nodes: host path, path inside), a devpts
/// of its own, /dev/shm, and the usual symlinks.
fn dev_ops(root: &Path, devices: &[(PathBuf, PathBuf)]) -> Result<Vec<MountOp>, SetupError> {
    let (nosuid, nodev, noexec) = (libc::MS_NOSUID, libc::MS_NODEV, libc::MS_NOEXEC);
    let mut ops = vec![mount_at(
        root,
        "mount tmpfs on",
        "tmpfs",
        "/dev",
        Some("tmpfs"),
        nosuid | noexec,
        Some("mode=755,size=65536k"),
    )?];
    for dev in DEVICES {
        let inside = format!("/dev/{dev}");
        ops.push(MountOp::Touch {
            path: at(root, &inside)?,
        });
        ops.push(mount_at(
            root,
            "bind device on",
            &inside,
            &inside,
            None,
            libc::MS_BIND,
            None,
        )?);
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (host, inside) in devices {
        let Some(inside_str) = inside.to_str() else {
            continue;
        };
        if let Some(dir) = inside.parent().filter(|d| *d != Path::new("/dev")) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
                ops.push(MountOp::Mkdir {
                    path: at(root, &dir.to_string_lossy())?,
                    mode: 0o755,
                });
            }
        }
        ops.push(MountOp::Touch {
            path: at(root, inside_str)?,
        });
        ops.push(mount_at(
            root,
            "bind device on",
            &host.to_string_lossy(),
            inside_str,
            None,
            libc::MS_BIND,
            None,
        )?);
    }
    ops.push(MountOp::Mkdir {
        path: at(root, "/dev/pts")?,
        mode: 0o755,
    });
    ops.push(mount_at(
        root,
        "mount devpts on",
        "devpts",
        "/dev/pts",
        Some("devpts"),
        nosuid | noexec,
        Some(&devpts_options()),
    )?);
    ops.push(MountOp::Symlink {
        target: lit("pts/ptmx")?,
        link: at(root, "/dev/ptmx")?,
    });
    ops.push(MountOp::Mkdir {
        path: at(root, "/dev/shm")?,
        mode: 0o1777,
    });
    ops.push(mount_at(
        root,
        "mount tmpfs on",
        "shm",
        "/dev/shm",
        Some("tmpfs"),
        nosuid | nodev | noexec,
        Some("mode=1777"),
    )?);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: lit(target)?,
            link: at(root, &format!("/dev/{link}"))?,
        });
    }
    Ok(ops)
}

/// The host's private state, out of sight: a fresh tmpfs each, mounted
/// by init, which already sits in the run's memory cgroup (so they count
/// in its memory), owned by the job's ids inside; and HOME's own tmpfs.
fn hidden_ops(
    root: &Path,
    hidden: &[PathBuf],
    home: Home,
    (uid, gid): (u32, u32),
) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = Vec::new();
    for h in hidden {
        let mode = match h.to_str() {
            Some("/tmp" | "/var/tmp") => "1777",
            Some("/root") => "700",
            _ => "755",
        };
        ops.push(MountOp::Mount(MountArgs {
            what: "mount tmpfs on",
            source: Some(lit("tmpfs")?),
            target: under(root, h)?,
            fstype: Some(lit("tmpfs")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(lit(&format!("mode={mode},uid={uid},gid={gid}"))?),
            shown: path_cstr(h)?,
        }));
    }
    if home.own_tmpfs {
        ops.push(MountOp::MkdirAll {
            path: at(root, home.path)?,
        });
        ops.push(mount_at(
            root,
            "mount tmpfs on",
            "tmpfs",
            home.path,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&format!("mode=700,uid={uid},gid={gid}")),
        )?);
    }
    Ok(ops)
}

/// The job's mounts (read-only ones made so) and writable dirs. Their
/// sources were opened by init before it took the job's ids (see
/// Plan::bind_sources), in this order.
fn bind_ops(cfg: &ContainerConfig, root: &Path) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = Vec::new();
    let mut slot = 0..;
    for m in &cfg.mounts {
        let shown = path_cstr(&m.target)?;
        ops.push(MountOp::Bind {
            what: "bind mount on",
            slot: slot.next().expect("unbounded"),
            target: under(root, &m.target)?,
            shown: shown.clone(),
        });
        if m.read_only {
            ops.push(MountOp::ReadOnly {
                target: under(root, &m.target)?,
                shown,
            });
        }
    }
    for (_, target) in &cfg.writable {
        ops.push(MountOp::Bind {
            what: "bind writable dir on",
            slot: slot.next().expect("unbounded"),
            target: under(root, target)?,
            shown: path_cstr(target)?,
        });
    }
    Ok(ops)
}

/// runc's masked and read-only paths.
fn mask_ops(root: &Path) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = Vec::new();
    for p in MASKED_PATHS {
        ops.push(MountOp::Mask {
            path: at(root, p)?,
            shown: lit(p)?,
        });
    }
    for p in READONLY_PATHS {
        ops.push(MountOp::ReadOnlyPath {
            path: at(root, p)?,
            shown: lit(p)?,
        });
    }
    Ok(ops)
}

/// Top-level directories that mount targets need and the host tree lacks.
/// A missing target deeper in an existing host directory cannot be made
/// without writing to the host: that is an error naming it.
fn missing_host_targets(targets: &[&Path]) -> Result<Vec<PathBuf>, SetupError> {
    let mut missing = Vec::new();
    for t in targets {
        if t.exists() {
            continue;
        }
        let mut comps = t
            .components()
            .skip_while(|c| matches!(c, std::path::Component::RootDir));
        let Some(first) = comps.next() else { continue };
        let top = Path::new("/").join(first);
        if top.exists() {
            return Err(SetupError::new(
                format!("mount target {}", t.display()),
                format!(
                    "it does not exist in the host tree, which stays read-only; mount at a new top-level directory (like /data) or create {} on the host",
                    t.display()
                ),
            ));
        }
        if !missing.contains(&top) {
            missing.push(top);
        }
    }
    Ok(missing)
}

/// The host's top-level entries recreated in a tmpfs root: directories
/// bound in (recursively), symlinks copied, files bound; /proc, /sys, /dev
/// and /tmp only as mount points, since fresh ones go there.
fn host_top_level_ops(root: &Path) -> Result<Vec<MountOp>, SetupError> {
    let mut ops = Vec::new();
    let entries = std::fs::read_dir("/").map_err(|e| SetupError::os("read the host's /", e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let host = Path::new("/").join(&name);
        let inside = under(root, &host)?;
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            let target = std::fs::read_link(&host)
                .map_err(|e| SetupError::os(format!("readlink {}", host.display()), e))?;
            ops.push(MountOp::Symlink {
                target: path_cstr(&target)?,
                link: inside,
            });
        } else if ft.is_dir() {
            ops.push(MountOp::Mkdir {
                path: inside.clone(),
                mode: 0o755,
            });
            if !matches!(name.to_str(), Some("proc" | "sys" | "dev" | "tmp")) {
                ops.push(MountOp::Mount(MountArgs {
                    what: "bind host directory",
                    source: Some(path_cstr(&host)?),
                    target: inside,
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                    shown: path_cstr(&host)?,
                }));
            }
        } else if ft.is_file() {
            ops.push(MountOp::Touch {
                path: inside.clone(),
            });
            ops.push(MountOp::Mount(MountArgs {
                what: "bind host file",
                source: Some(path_cstr(&host)?),
                target: inside,
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
                shown: path_cstr(&host)?,
            }));
        }
    }
    Ok(ops)
}

/// Where the directories new roots are mounted on live: packrun's state
/// directory, /run/packrun as root, else this user's own (0700) one, not
/// a shared /tmp where another user could make the name first.
pub(super) fn root_dir_base() -> PathBuf {
    crate::fsx::runtime_dir(
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// The directory to mount the new root on: packrun's runtime directory
/// itself, made once per process. Every container mounts its root there
/// inside its own mount namespace only (see child::make_mounts_private),
/// so on the host it stays as it is, and runs that start at once share it:
/// no directory to make and remove per run.
pub(super) fn make_root_dir() -> io::Result<PathBuf> {
    let base = root_dir_base();
    // Checked (and made) once per process, not per run.
    static MADE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    MADE.get_or_init(|| crate::fsx::private_dir(&base).map_err(|e| crate::fsx::chain(&e)))
        .clone()
        .map_err(io::Error::other)?;
    Ok(base)
}

/// The directory init mounts the root on, held until setup is over.
#[derive(Debug)]
pub(super) struct RootDir(pub(super) PathBuf);

/// Removes the root directories (`/run/packrun/root-<pid>-<n>`, rootless
/// in the user's state directory) that an older packrun (one directory per
/// container) killed in the middle of starting a container left behind. They
/// are empty on the host: the mounts on them lived in the dead container's
/// mount namespace. Directories of live processes are left alone.
pub fn remove_stale_root_dirs() {
    let Ok(entries) = std::fs::read_dir(root_dir_base()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("root-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Mount;

    #[test]
    fn paths_inside_must_be_absolute_without_dotdot() {
        let root = Path::new("/run/r");
        assert_eq!(
            under(root, Path::new("/data/x")).unwrap().to_str().unwrap(),
            "/run/r/data/x"
        );
        assert_eq!(
            under(root, Path::new("/")).unwrap().to_str().unwrap(),
            "/run/r"
        );
        let e = under(root, Path::new("/a/../etc")).unwrap_err();
        assert!(e.message.contains("`/a/../etc`"), "{e}");
        assert!(under(root, Path::new("data")).is_err());
    }

    #[test]
    fn the_hosts_private_dirs_are_hidden_unless_shown_or_bound_and_extra_ones_are_added() {
        let root = tempfile::tempdir().unwrap();
        for d in ["tmp", "run", "home", "root", "srv/secret", "var/tmp"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        // /var/run -> /run is covered by /run.
        std::os::unix::fs::symlink("../run", root.path().join("var/run")).unwrap();
        let mut cfg = config(Rootfs::Dir(root.path().into()));
        let list = |cfg: &ContainerConfig| {
            hidden_paths(cfg)
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(list(&cfg), ["/tmp", "/var/tmp", "/run", "/home", "/root"]);
        cfg.visible = vec!["/home".into()];
        cfg.hidden = vec!["/srv/secret".into(), "/run/user".into(), "/missing".into()];
        cfg.mounts = vec![Mount {
            source: "/data".into(),
            target: "/root".into(),
            read_only: true,
        }];
        assert_eq!(list(&cfg), ["/tmp", "/var/tmp", "/run", "/srv/secret"]);
        let hidden = hidden_paths(&cfg);
        assert!(in_tmpfs(Path::new("/run/x.sock"), &hidden));
        assert!(!in_tmpfs(Path::new("/run"), &hidden));
        assert!(!in_tmpfs(Path::new("/data"), &hidden));
    }

    #[test]
    fn home_is_root_s_or_packrun_s_fresh_dir_and_tmp_when_that_is_not_fresh() {
        let all: Vec<PathBuf> = ["/tmp", "/home", "/root"].map(PathBuf::from).into();
        assert_eq!(Home::of(0, &all).path, "/root");
        assert_eq!(Home::of(0, &all).user, "root");
        let h = Home::of(1000, &all);
        assert_eq!(
            (h.path, h.user, h.own_tmpfs),
            ("/home/packrun", "packrun", true)
        );
        assert_eq!(Home::of(0, &all[..2]).path, "/tmp");
        assert_eq!(Home::of(7, &all[..1]).path, "/tmp");
    }

    /// Where the tests' new root would be mounted: never touched.
    const ROOT: &str = "/new/root";

    fn config(rootfs: Rootfs) -> ContainerConfig {
        let (out, _) = nix::unistd::pipe().unwrap();
        let (err, _) = nix::unistd::pipe().unwrap();
        ContainerConfig {
            rootfs,
            ..ContainerConfig::new(vec!["x".into()], out, err)
        }
    }

    fn mount(source: &Path, target: &str, read_only: bool) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only,
        }
    }

    fn ops(cfg: &ContainerConfig, userns: bool) -> Vec<MountOp> {
        let hidden = hidden_paths(cfg);
        let home = Home::of(0, &hidden);
        root_ops(cfg, Path::new(ROOT), &hidden, home, (0, 0), userns).unwrap()
    }

    /// The path an op acts on, as the job sees it (below ROOT).
    fn inside(op: &MountOp) -> Option<String> {
        let path = match op {
            MountOp::Mount(m) | MountOp::RootDir(m) => &m.target,
            MountOp::ReadOnly { target, .. }
            | MountOp::Sysfs { target }
            | MountOp::Bind { target, .. }
            | MountOp::HostTree { target, .. } => target,
            MountOp::MkdirAll { path }
            | MountOp::Mkdir { path, .. }
            | MountOp::Touch { path }
            | MountOp::Mask { path, .. }
            | MountOp::ReadOnlyPath { path, .. } => path,
            MountOp::Symlink { link, .. } => link,
            MountOp::Become | MountOp::Stage { .. } => return None,
        };
        let path = path.to_str().unwrap();
        // None for the staging tmpfs beside the root.
        Some(match path.strip_prefix(ROOT)? {
            "" => "/".to_string(),
            p => p.to_string(),
        })
    }

    fn makes_inode(op: &MountOp) -> bool {
        matches!(
            op,
            MountOp::MkdirAll { .. }
                | MountOp::Mkdir { .. }
                | MountOp::Touch { .. }
                | MountOp::Symlink { .. }
        )
    }

    /// A file system the run mounts (not a bind of the host's).
    fn mounts_a_file_system(op: &MountOp) -> bool {
        matches!(op, MountOp::Mount(m) if m.fstype.is_some())
    }

    fn position(ops: &[MountOp], what: impl Fn(&MountOp) -> bool) -> usize {
        ops.iter()
            .position(what)
            .unwrap_or_else(|| panic!("no such op in {ops:#?}"))
    }

    /// The first op of a kind on `path` (inside).
    fn find(ops: &[MountOp], path: &str, kind: impl Fn(&MountOp) -> bool) -> usize {
        position(ops, |op| kind(op) && inside(op).as_deref() == Some(path))
    }

    fn tree(dirs: &[&str], files: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        for f in files {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        t
    }

    #[test]
    fn a_bind_below_run_gets_its_mount_point_after_the_run_tmpfs_and_before_the_bind() {
        let rootfs = tree(&["run", "src/dir"], &["src/sock"]);
        let mut cfg = config(Rootfs::Dir(rootfs.path().into()));
        cfg.mounts = vec![
            mount(&rootfs.path().join("src/dir"), "/run/x", false),
            mount(&rootfs.path().join("src/sock"), "/run/app/sock", false),
        ];
        let ops = ops(&cfg, true);
        let root_read_only = find(&ops, "/", |op| matches!(op, MountOp::ReadOnly { .. }));
        let run_tmpfs = find(&ops, "/run", mounts_a_file_system);
        assert!(root_read_only < run_tmpfs);

        let dir = find(&ops, "/run/x", |op| matches!(op, MountOp::MkdirAll { .. }));
        let dir_bind = find(&ops, "/run/x", |op| matches!(op, MountOp::Bind { .. }));
        assert!(run_tmpfs < dir && dir < dir_bind, "{ops:#?}");

        let parent = find(&ops, "/run/app", |op| {
            matches!(op, MountOp::MkdirAll { .. })
        });
        let file = find(&ops, "/run/app/sock", |op| {
            matches!(op, MountOp::Touch { .. })
        });
        let file_bind = find(&ops, "/run/app/sock", |op| {
            matches!(op, MountOp::Bind { .. })
        });
        assert!(
            run_tmpfs < parent && parent < file && file < file_bind,
            "{ops:#?}"
        );
    }

    #[test]
    fn become_comes_before_the_first_inode_made_in_a_file_system_of_the_run() {
        let rootfs = tree(&["run", "tmp", "data", "src"], &[]);
        let mut cfg = config(Rootfs::Dir(rootfs.path().into()));
        cfg.mounts = vec![mount(&rootfs.path().join("src"), "/data/in", false)];
        let ops = ops(&cfg, true);
        let become_at = position(&ops, |op| matches!(op, MountOp::Become));
        assert_eq!(
            ops.iter()
                .filter(|op| matches!(op, MountOp::Become))
                .count(),
            1
        );
        let first_fs = position(&ops, mounts_a_file_system);
        let first_inode = first_fs + position(&ops[first_fs..], makes_inode);
        assert!(become_at < first_inode, "{ops:#?}");
        // The mount point in the rootfs directory is made before, as the
        // host uid that owns it.
        let in_root = find(&ops, "/data/in", makes_inode);
        assert!(in_root < become_at, "{ops:#?}");

        let host_ids = self::ops(&cfg, false);
        assert!(!host_ids.iter().any(|op| matches!(op, MountOp::Become)));
    }

    #[test]
    fn a_new_top_level_dir_on_the_hosts_tree_makes_a_tmpfs_root_after_become() {
        let mut cfg = config(Rootfs::Host);
        let target = "/packrun-no-such-top-level-dir/data";
        assert!(!Path::new(target).parent().unwrap().exists());
        cfg.mounts = vec![mount(Path::new("/tmp"), target, true)];
        let ops = ops(&cfg, true);
        assert!(matches!(ops[0], MountOp::Become), "{ops:#?}");
        position(
            &ops,
            |op| matches!(op, MountOp::Mount(m) if m.what == "mount tmpfs root on"),
        );
        let dir = find(&ops, "/packrun-no-such-top-level-dir", |op| {
            matches!(op, MountOp::MkdirAll { .. })
        });
        let root_read_only = find(&ops, "/", |op| matches!(op, MountOp::ReadOnly { .. }));
        assert!(dir < root_read_only, "{ops:#?}");
    }

    #[test]
    fn mount_points_come_from_field_five_with_escapes_undone() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    22 27 0:21 / /proc rw - proc proc rw\n\
                    28 27 0:25 / /mnt/my\\040disk ro - tmpfs x ro\n";
        assert_eq!(
            mount_points(text),
            [PathBuf::from("/proc"), PathBuf::from("/mnt/my disk")]
        );
    }

    #[test]
    fn the_hosts_root_is_an_overlay_staged_after_become_in_a_tmpfs_of_the_run() {
        let cfg = config(Rootfs::Host);
        let ops = ops(&cfg, true);
        let become_at = position(&ops, |op| matches!(op, MountOp::Become));
        let stage = position(&ops, |op| matches!(op, MountOp::Stage { .. }));
        let root_tree = position(
            &ops,
            |op| matches!(op, MountOp::HostTree { slot: Some(0), source, .. } if source.to_bytes() == b"/"),
        );
        let read_only = find(&ops, "/", |op| matches!(op, MountOp::ReadOnly { .. }));
        assert!(
            become_at < stage && stage < root_tree && root_tree < read_only,
            "{ops:#?}"
        );
        let MountOp::HostTree { data, .. } = &ops[root_tree] else {
            unreachable!()
        };
        assert_eq!(data.to_str().unwrap(), "lowerdir=/:/new/e");
        // Nothing of the host's below /proc, /sys, /dev or a hidden path.
        for op in &ops {
            if let MountOp::HostTree { source, .. } = op {
                let p = Path::new(source.to_str().unwrap());
                assert!(
                    !["/proc", "/sys", "/dev", "/tmp", "/run"]
                        .iter()
                        .any(|k| p.starts_with(k)),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn read_only_binds_are_followed_by_a_read_only_op_and_others_are_not() {
        let rootfs = tree(&["a", "b", "c"], &[]);
        let mut cfg = config(Rootfs::Dir(rootfs.path().into()));
        cfg.mounts = vec![
            mount(&rootfs.path().join("a"), "/ro", true),
            mount(&rootfs.path().join("b"), "/rw", false),
        ];
        cfg.writable = vec![(rootfs.path().join("c"), "/w".into())];
        let ops = ops(&cfg, true);
        let binds: Vec<(usize, usize, String)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match op {
                MountOp::Bind { slot, .. } => Some((i, *slot, inside(op).unwrap())),
                _ => None,
            })
            .collect();
        let slots: Vec<(usize, &str)> = binds.iter().map(|(_, s, t)| (*s, t.as_str())).collect();
        assert_eq!(slots, [(0, "/ro"), (1, "/rw"), (2, "/w")]);
        for (i, _, target) in &binds {
            let next = &ops[i + 1];
            let read_only =
                matches!(next, MountOp::ReadOnly { .. }) && inside(next).as_ref() == Some(target);
            assert_eq!(
                read_only,
                target == "/ro",
                "after the bind on {target}: {next:?}"
            );
        }
    }
}
