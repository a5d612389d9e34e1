//! Who owns a batch's cgroups, so that a later packrun can clean up after
//! one that was killed: the batch cgroup is named after the runner's pid
//! and start time, and a batch whose runner is gone is an orphan.

use super::cpulock::Owner;

/// The cgroup name of this process's batch.
pub fn batch_id(owner: Owner) -> String {
    format!("b{}-{}", owner.pid, owner.start_ticks)
}

/// The runner a batch cgroup name belongs to (None for names packrun did not make).
pub fn owner_of(batch_id: &str) -> Option<Owner> {
    let (pid, ticks) = batch_id.strip_prefix('b')?.split_once('-')?;
    Some(Owner {
        pid: pid.parse().ok()?,
        start_ticks: ticks.parse().ok()?,
    })
}

/// Batch names whose runner is no longer alive.
pub fn orphans<'a>(batches: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    batches
        .into_iter()
        .filter(|b| owner_of(b).is_some_and(|o| !o.is_alive()))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_round_trip_to_their_owner() {
        let o = Owner {
            pid: 42,
            start_ticks: 777,
        };
        assert_eq!(owner_of(&batch_id(o)), Some(o));
        assert_eq!(owner_of("something-else"), None);
    }

    #[test]
    fn only_batches_of_dead_runners_are_orphans() {
        let me = batch_id(Owner::current());
        let dead = batch_id(Owner {
            pid: 1,
            start_ticks: u64::MAX,
        });
        assert_eq!(orphans([me.as_str(), dead.as_str(), "manual"]), vec![dead]);
    }
}
