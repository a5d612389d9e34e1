//! The end of a run, in the order it happens, once its init has exited
//! (every process of its pid namespace is gone with it):
//!
//! 1. `end`: reap init and take its status report, give the run's writable
//!    dirs back to the runner's user, kill what is left in the cgroup (a
//!    daemon that escaped into the background) and read what the run used;
//!    the emptied cgroup is removed later, between passes of the loop
//!    (`Host::tidy`), since nothing waits on an rmdir;
//! 2. `classify`: its state and reason, from packrun's own kill (a limit,
//!    an interrupt), the kernel's OOM kills, or its exit;
//! 3. `logs::keep`: its stdout and stderr named (or handed to the next run
//!    when empty), cut to the log limit; a log that cannot be kept makes
//!    the run an ERROR, never a silent loss;
//! 4. the record (`Host::collect`), with its pooled network namespace and
//!    host-tree overlays given back for a later run.
//!
//! What backs these up on the ways out that skip them: dropping a
//! `Container` kills and reaps its init, dropping a `RunCgroup` kills its
//! tasks and removes it, dropping the `Host` ends every run still going,
//! and the next packrun removes what a killed one left
//! (`batch::reap_orphans`).

use super::{signal_name, State, SAMPLE_EVERY};
use crate::account::Usage;
use crate::cgroup::RunCgroup;
use crate::container::{self, JobStatus};
use std::time::Duration;

/// How long the end of a run waits for what its init left (its namespace
/// died with init, so this is the kernel catching up).
pub(super) const COLLECT_WAIT: Duration = Duration::from_millis(20);

/// What `end` found of a run whose init exited.
pub(super) struct Ended {
    pub status: JobStatus,
    pub usage: Usage,
    /// Every process of the run is gone (its cgroup is empty).
    pub all_gone: bool,
    /// What could not be done, for the reason: each a note.
    pub notes: Vec<String>,
}

/// Reaps init, empties the cgroup and reads its usage; the cgroup goes to
/// `to_remove`.
pub(super) fn end(
    mut container: container::Container,
    cgroup: RunCgroup,
    to_remove: &mut Vec<RunCgroup>,
) -> Ended {
    let not_given_back = container.give_back();
    let (status, wait_error) = match container.wait() {
        Ok(s) => (s, None),
        Err(e) => (
            JobStatus::default(),
            Some(format!("cannot reap the container's init: {e}")),
        ),
    };
    // Anything the job left behind (a daemon that escaped into the
    // background) dies with the cgroup; usage is read after, so it counts.
    // The wait is short: init's exit killed its namespace already; what
    // is left then is removed later, without holding up the loop.
    let killed = cgroup.end(COLLECT_WAIT);
    let all_gone = matches!(killed, Ok(true));
    let usage = cgroup.usage();
    let sampled = cgroup.peaks_sampled();
    let version = cgroup.version();
    to_remove.push(cgroup);
    let mut notes = Vec::new();
    let mut usage = usage.unwrap_or_else(|e| {
        notes.push(format!("usage unreadable: {}", crate::fsx::chain(&e)));
        Usage::default()
    });
    // cgroup v1's blkio counters miss direct I/O and late writeback; the
    // block I/O that init's reaped processes report is the better figure
    // there. v2's io.stat counts both.
    if version == 1 {
        if let (Some(r), Some(w)) = (status.io_read_bytes, status.io_write_bytes) {
            usage.io_read_bytes = usage.io_read_bytes.max(r);
            usage.io_write_bytes = usage.io_write_bytes.max(w);
        }
    }
    if let Err(e) = killed {
        notes.push(format!(
            "cannot kill what is left: {}",
            crate::fsx::chain(&e)
        ));
    }
    if sampled {
        notes.push(format!(
            "peak memory and pids sampled every {} ms (the kernel keeps no memory.peak or pids.peak)",
            SAMPLE_EVERY.as_millis()
        ));
    }
    notes.extend(wait_error);
    if !not_given_back.is_empty() {
        notes.push(format!(
            "not given back to the runner's user: {}",
            not_given_back.join(", ")
        ));
    }
    Ended {
        status,
        usage,
        all_gone,
        notes,
    }
}

/// The run's state and reason: packrun's own kill first (`killed_for`),
/// then an OOM kill (from the kernel's counter, never from peak >= limit),
/// then how the job exited. `ended`'s notes follow the reason.
pub(super) fn classify(killed_for: Option<(State, String)>, ended: &Ended) -> (State, String) {
    let (state, mut reason) = if let Some((state, reason)) = killed_for {
        (state, reason)
    } else if ended.usage.oom_kills > 0 {
        (
            State::OutOfMemory,
            format!(
                "the kernel's OOM killer killed {} task(s)",
                ended.usage.oom_kills
            ),
        )
    } else {
        match (ended.status.exit_code, ended.status.signal) {
            (Some(0), _) => (State::Completed, "exited".to_string()),
            (Some(c), _) => (State::Failed, format!("exit code {c}")),
            (None, Some(s)) => (
                State::Failed,
                format!("killed by signal {s} ({})", signal_name(s)),
            ),
            (None, None) => (State::Failed, "ended without a status".to_string()),
        }
    };
    for note in &ended.notes {
        reason.push_str("; ");
        reason.push_str(note);
    }
    (state, reason)
}
