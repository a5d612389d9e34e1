//! Which host ids a run's user namespace maps its ids to.
//!
//! Every run has a user namespace of its own, as root too. Its ids never
//! map to host uid 0:
//!
//! - **As root** each run gets a block of ids of its own: `size` ids from
//!   `base + slot × size`, where the slot is the run's first CPU. CPUs are
//!   handed out disjointly (within a batch, and between packruns through
//!   the claims file), so runs at the same time never share an id. The ids
//!   come from the `/etc/subuid` and `/etc/subgid` entries of a user named
//!   `packrun` when they exist (as podman's `--userns=auto` takes those of
//!   `containers`), else from [`DEFAULT_BASE`]: the top eighth of the range
//!   systemd sets aside for containers (524288–1879048191), 65,536 per CPU
//!   for up to 4,096 CPUs, below 2^31 (ids above it break tools that keep
//!   ids in a signed int).
//! - **Rootless with subordinate ranges** (newuidmap and newgidmap from the
//!   `uidmap` package, and entries for the user in /etc/subuid and
//!   /etc/subgid): the job's own id inside maps to the user's id (so the
//!   user owns what the job writes), every other id inside to the run's
//!   block of the user's subordinate range.
//! - **Rootless without them**: the job's id inside maps to the user's own
//!   id alone, all an unprivileged process may map (user_namespaces(7)).

/// First host id of the default range (1610612736).
pub const DEFAULT_BASE: u32 = 0x6000_0000;
/// Ids in the default range (268435456: 65,536 for each of 4,096 CPUs).
pub const DEFAULT_COUNT: u32 = 0x1000_0000;
/// Most ids one run gets (a whole 16-bit id space, as systemd-nspawn and
/// podman give a container).
pub const BLOCK: u32 = 65_536;

/// One line of uid_map or gid_map: `count` ids from `inside` map to host ids from `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A run's uid and gid maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
}

impl IdMaps {
    /// The text for /proc/PID/uid_map (or gid_map): one `inside outside count` line each.
    pub fn map_text(maps: &[IdMap]) -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
            .collect()
    }

    /// The arguments newuidmap and newgidmap take after the pid.
    pub fn helper_args(maps: &[IdMap]) -> Vec<String> {
        maps.iter()
            .flat_map(|m| [m.inside, m.outside, m.count])
            .map(|n| n.to_string())
            .collect()
    }

    /// The uid map for a runs.csv row: `inside:outside:count` lines joined by spaces.
    pub fn describe(&self) -> String {
        self.uid
            .iter()
            .map(|m| format!("{}:{}:{}", m.inside, m.outside, m.count))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The host id that `inside` maps to.
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        lookup(&self.uid, inside)
    }

    pub fn host_gid(&self, inside: u32) -> Option<u32> {
        lookup(&self.gid, inside)
    }

    /// Whether `host` is one of the host uids (or gids, `gid`) this run maps.
    pub fn holds(&self, host: u32, gid: bool) -> bool {
        let maps = if gid { &self.gid } else { &self.uid };
        maps.iter()
            .any(|m| host >= m.outside && host - m.outside < m.count)
    }
}

fn lookup(maps: &[IdMap], inside: u32) -> Option<u32> {
    maps.iter()
        .find(|m| inside >= m.inside && inside - m.inside < m.count)
        .map(|m| m.outside + (inside - m.inside))
}

/// CPU slots of this machine: the highest possible CPU id + 1, the same
/// for every packrun on it whatever its affinity (so their blocks line up).
pub fn machine_slots() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|t| crate::cpulist::CpuList::parse(t.trim()).ok())
        .and_then(|l| l.iter().max())
        .map_or(nix::sched::CpuSet::count() as u32, |m| m + 1)
}

/// Where the runs' ids come from on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// As root: `size` ids per slot from `uid.0` and `gid.0`.
    Blocks {
        uid: (u32, u32),
        gid: (u32, u32),
        size: u32,
        /// Where the range came from, for doctor and the manifest.
        origin: String,
    },
    /// Rootless, with subordinate ranges and newuidmap/newgidmap.
    Subordinate {
        uid: u32,
        gid: u32,
        sub_uid: (u32, u32),
        sub_gid: (u32, u32),
        size: u32,
    },
    /// Rootless: the user's own uid and gid alone.
    Own { uid: u32, gid: u32 },
}

/// The first `name_or_id:start:count` entry of /etc/subuid (or subgid)
/// text for `name` or `id`.
pub fn parse_subid(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (count > 0 && start > 0).then_some((start, count))
    })
}

/// Whether an entry of /etc/subuid or /etc/subgid names its user by
/// number: only then does root's `detect` need the `packrun` user's uid
/// (an entry by name matches without it).
pub fn keyed_by_number(subuid: &str, subgid: &str) -> bool {
    subuid.lines().chain(subgid.lines()).any(|l| {
        l.trim()
            .split(':')
            .next()
            .is_some_and(|who| !who.is_empty() && who.parse::<u32>().is_ok())
    })
}

/// What the machine offers, for `detect`.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub euid: u32,
    pub egid: u32,
    /// The user's name (rootless) or None.
    pub user_name: Option<String>,
    /// The uid of a user named `packrun`, if one exists.
    pub packrun_uid: Option<u32>,
    pub subuid: String,
    pub subgid: String,
    /// newuidmap and newgidmap are installed.
    pub helpers: bool,
    /// CPU slots: the highest CPU id + 1.
    pub slots: u32,
}

impl IdSource {
    pub fn detect(p: &Probe) -> IdSource {
        let slots = p.slots.max(1);
        if p.euid == 0 {
            let id = p.packrun_uid.unwrap_or(u32::MAX);
            let sub = parse_subid(&p.subuid, "packrun", id)
                .zip(parse_subid(&p.subgid, "packrun", id))
                .filter(|(u, g)| u.1 / slots >= 1 && g.1 / slots >= 1);
            return match sub {
                Some((uid, gid)) => IdSource::Blocks {
                    uid,
                    gid,
                    size: (uid.1.min(gid.1) / slots).min(BLOCK),
                    origin: format!(
                        "the `packrun` entries of /etc/subuid ({}:{}) and /etc/subgid ({}:{})",
                        uid.0, uid.1, gid.0, gid.1
                    ),
                },
                None => IdSource::Blocks {
                    uid: (DEFAULT_BASE, DEFAULT_COUNT),
                    gid: (DEFAULT_BASE, DEFAULT_COUNT),
                    size: (DEFAULT_COUNT / slots).min(BLOCK),
                    origin: "packrun's default range (no `packrun` entries in /etc/subuid and /etc/subgid)".into(),
                },
            };
        }
        let name = p.user_name.as_deref().unwrap_or("");
        let sub = parse_subid(&p.subuid, name, p.euid).zip(parse_subid(&p.subgid, name, p.egid));
        match sub {
            // A block needs room for more than the job's own id.
            Some((sub_uid, sub_gid)) if p.helpers && sub_uid.1.min(sub_gid.1) / slots >= 2 => {
                IdSource::Subordinate {
                    uid: p.euid,
                    gid: p.egid,
                    sub_uid,
                    sub_gid,
                    size: (sub_uid.1.min(sub_gid.1) / slots).min(BLOCK - 1) + 1,
                }
            }
            _ => IdSource::Own {
                uid: p.euid,
                gid: p.egid,
            },
        }
    }

    /// This machine's source: reads /etc/subuid, /etc/subgid and the
    /// password database, and looks for newuidmap on PATH.
    /// The password database is asked only for what `detect` uses: a
    /// lookup of a name it lacks loads every NSS module (systemd's userdb
    /// among them), which costs more than the rest of a short run's start.
    pub fn host(slots: u32) -> IdSource {
        let euid = nix::unistd::geteuid();
        let root = euid.is_root();
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let on_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
        };
        let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
        let user_name = match root {
            true => None,
            false => nix::unistd::User::from_uid(euid)
                .ok()
                .flatten()
                .map(|u| u.name),
        };
        let packrun_uid = match root && keyed_by_number(&subuid, &subgid) {
            true => nix::unistd::User::from_name("packrun")
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw()),
            false => None,
        };
        IdSource::detect(&Probe {
            euid: euid.as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            user_name,
            packrun_uid,
            subuid,
            subgid,
            // Inside packrun's own user namespace a setuid helper is not.
            helpers: !root
                && !super::in_own_user_namespace()
                && on_path("newuidmap")
                && on_path("newgidmap"),
            slots,
        })
    }

    /// Whether the maps must be written by newuidmap and newgidmap.
    pub fn needs_helpers(&self) -> bool {
        matches!(self, IdSource::Subordinate { .. })
    }

    /// The maps of a run in `slot` (its first CPU) whose job runs as
    /// `user` (uid, gid) inside.
    pub fn maps(&self, slot: u32, user: (u32, u32)) -> Result<IdMaps, String> {
        match *self {
            IdSource::Blocks { uid, gid, size, .. } => {
                let too_high = |what: &str, id: u32| {
                    format!(
                        "{what} {id} inside: a run maps only ids 0-{} here",
                        size - 1
                    )
                };
                if user.0 >= size {
                    return Err(too_high("uid", user.0));
                }
                if user.1 >= size {
                    return Err(too_high("gid", user.1));
                }
                let block = |base: u32| IdMap {
                    inside: 0,
                    outside: base + slot * size,
                    count: size,
                };
                if (slot + 1) * size > uid.1.min(gid.1) {
                    return Err(format!(
                        "CPU {slot} is beyond the {} runs the id range holds",
                        uid.1.min(gid.1) / size
                    ));
                }
                Ok(IdMaps {
                    uid: vec![block(uid.0)],
                    gid: vec![block(gid.0)],
                })
            }
            IdSource::Subordinate {
                uid,
                gid,
                sub_uid,
                sub_gid,
                size,
            } => {
                let around = |own: u32, sub: (u32, u32), inside: u32, what: &str| {
                    if inside >= size {
                        return Err(format!(
                            "{what} {inside} inside: a run maps only ids 0-{} here",
                            size - 1
                        ));
                    }
                    // size - 1 subordinate ids per slot.
                    let base = sub.0 + slot * (size - 1);
                    if (slot + 1) * (size - 1) > sub.1 {
                        return Err(format!(
                            "CPU {slot} is beyond the runs the subordinate range holds"
                        ));
                    }
                    Ok(split_around(inside, own, base, size))
                };
                Ok(IdMaps {
                    uid: around(uid, sub_uid, user.0, "uid")?,
                    gid: around(gid, sub_gid, user.1, "gid")?,
                })
            }
            IdSource::Own { uid, gid } => Ok(IdMaps {
                uid: vec![IdMap {
                    inside: user.0,
                    outside: uid,
                    count: 1,
                }],
                gid: vec![IdMap {
                    inside: user.1,
                    outside: gid,
                    count: 1,
                }],
            }),
        }
    }

    /// One line for doctor and the manifest.
    pub fn describe(&self) -> String {
        match self {
            IdSource::Blocks {
                uid, size, origin, ..
            } => format!(
                "each run its own {size} ids from {}-{}, by its first CPU, from {origin}",
                uid.0,
                uid.0 as u64 + uid.1 as u64 - 1
            ),
            IdSource::Subordinate { uid, sub_uid, size, .. } => format!(
                "the job's id is your uid {uid}; the other {} ids of a run come from your subordinate range {}:{} (newuidmap)",
                size - 1,
                sub_uid.0,
                sub_uid.1
            ),
            IdSource::Own { uid, .. } => format!(
                "the job's id is your uid {uid} alone (no subordinate ids in /etc/subuid and /etc/subgid, or no newuidmap)"
            ),
        }
    }
}

/// `inside` maps to `own`; the other ids 0..size from `base` on.
fn split_around(inside: u32, own: u32, base: u32, size: u32) -> Vec<IdMap> {
    let mut maps = Vec::new();
    if inside > 0 {
        maps.push(IdMap {
            inside: 0,
            outside: base,
            count: inside,
        });
    }
    maps.push(IdMap {
        inside,
        outside: own,
        count: 1,
    });
    if inside + 1 < size {
        maps.push(IdMap {
            inside: inside + 1,
            outside: base + inside,
            count: size - inside - 1,
        });
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_keyed_by_a_uid_need_the_packrun_users_uid() {
        assert!(!keyed_by_number("", ""));
        assert!(!keyed_by_number(
            "packrun:100000:65536\nalice:165536:65536\n",
            ""
        ));
        assert!(keyed_by_number("", "packrun:1:2\n1001:100000:65536\n"));
        assert!(!keyed_by_number("# comment\n\n", ":1:2\n"));
    }

    fn probe(euid: u32) -> Probe {
        Probe {
            euid,
            egid: euid,
            slots: 2,
            ..Probe::default()
        }
    }

    #[test]
    fn root_without_subids_takes_disjoint_blocks_of_the_default_range_by_first_cpu() {
        let s = IdSource::detect(&probe(0));
        let a = s.maps(0, (0, 0)).unwrap();
        let b = s.maps(1, (0, 0)).unwrap();
        assert_eq!(
            a.uid,
            [IdMap {
                inside: 0,
                outside: DEFAULT_BASE,
                count: BLOCK
            }]
        );
        assert_eq!(b.uid[0].outside, DEFAULT_BASE + BLOCK);
        assert!(!a.holds(0, false) && !b.holds(0, false), "never host root");
        assert!(!a.holds(b.uid[0].outside, false), "blocks are disjoint");
        assert_eq!(a.host_uid(1000), Some(DEFAULT_BASE + 1000));
        assert!((DEFAULT_BASE as u64 + DEFAULT_COUNT as u64) < (1u64 << 31));
    }

    #[test]
    fn root_uses_the_packrun_subid_entries_split_among_the_cpus() {
        let mut p = probe(0);
        p.subuid = "alice:100000:65536\npackrun:200000:65536\n".into();
        p.subgid = "packrun:300000:65536\n".into();
        let s = IdSource::detect(&p);
        let m = s.maps(1, (0, 0)).unwrap();
        assert_eq!(
            m.uid[0],
            IdMap {
                inside: 0,
                outside: 200000 + 32768,
                count: 32768
            }
        );
        assert_eq!(m.gid[0].outside, 300000 + 32768);
        assert!(
            s.describe().contains("/etc/subuid (200000:65536)"),
            "{}",
            s.describe()
        );
        let e = s.maps(0, (40000, 0)).unwrap_err();
        assert!(e.contains("uid 40000 inside"), "{e}");
    }

    #[test]
    fn rootless_maps_the_jobs_id_to_the_user_and_the_rest_to_subordinate_ids() {
        let mut p = probe(1000);
        p.user_name = Some("alice".into());
        p.subuid = "alice:100000:65536\n".into();
        p.subgid = "1000:100000:65536\n".into();
        p.helpers = true;
        let s = IdSource::detect(&p);
        let m = s.maps(1, (0, 0)).unwrap();
        assert_eq!(
            m.uid[0],
            IdMap {
                inside: 0,
                outside: 1000,
                count: 1
            }
        );
        assert_eq!(m.uid[1].inside, 1);
        assert_eq!(m.uid[1].outside, 100000 + 32768);
        let m = s.maps(0, (33, 33)).unwrap();
        assert_eq!(
            m.uid,
            [
                IdMap {
                    inside: 0,
                    outside: 100000,
                    count: 33
                },
                IdMap {
                    inside: 33,
                    outside: 1000,
                    count: 1
                },
                IdMap {
                    inside: 34,
                    outside: 100033,
                    count: 32769 - 34
                },
            ]
        );
        assert_eq!(IdMaps::helper_args(&m.uid)[..3], ["0", "100000", "33"]);
        // Without newuidmap: the user's own id alone.
        p.helpers = false;
        assert_eq!(
            IdSource::detect(&p),
            IdSource::Own {
                uid: 1000,
                gid: 1000
            }
        );
    }

    #[test]
    fn rootless_without_subids_maps_the_jobs_id_to_the_users_own() {
        let s = IdSource::detect(&probe(1000));
        let m = s.maps(0, (1000, 100)).unwrap();
        assert_eq!(IdMaps::map_text(&m.uid), "1000 1000 1\n");
        assert_eq!(IdMaps::map_text(&m.gid), "100 1000 1\n");
        assert_eq!(m.describe(), "1000:1000:1");
    }

    #[test]
    fn subid_lines_match_by_name_or_id_and_skip_junk() {
        let t = "# c\nbob:1:2\n1000:5000:10\nbad\nalice:x:5\n";
        assert_eq!(parse_subid(t, "alice", 1000), Some((5000, 10)));
        assert_eq!(parse_subid(t, "carol", 7), None);
    }
}
