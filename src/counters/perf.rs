//! perf events through perf_event_open(2), opened on a run's init from
//! outside the run, with `inherit` (every process and thread the run
//! starts counts into them, see `Open`) and `enable_on_exec` (they start
//! counting when the job execs: init's own set-up, which never execs, is
//! not counted).
//!
//! The system call through `libc::syscall` with our own `perf_event_attr`
//! (its first 64 bytes, PERF_ATTR_SIZE_VER0, which every kernel takes):
//! about as long as a crate's setup for it, and nothing else to trust.
#![allow(unsafe_code)]

use super::Counter;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};

/// perf_event_attr up to PERF_ATTR_SIZE_VER0 (include/uapi/linux/perf_event.h).
#[repr(C)]
#[derive(Default)]
struct Attr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit fields: disabled (0), inherit (1), ..., exclude_hv (6),
    /// enable_on_exec (12).
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const ATTR_SIZE: u32 = 64;
const _: () = assert!(std::mem::size_of::<Attr>() == ATTR_SIZE as usize);

const DISABLED: u64 = 1 << 0;
const INHERIT: u64 = 1 << 1;
const EXCLUDE_HV: u64 = 1 << 6;
const ENABLE_ON_EXEC: u64 = 1 << 12;
const FORMAT_TOTAL_TIME_ENABLED: u64 = 1 << 0;
const FORMAT_TOTAL_TIME_RUNNING: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Opens `c` on process `pid` (0: this process), any CPU.
fn open_event(c: Counter, pid: i32, flags: u64) -> io::Result<File> {
    let (kind, config) = c
        .perf_event()
        .ok_or_else(|| io::Error::other(format!("{c} is not a perf event")))?;
    let attr = Attr {
        kind,
        size: ATTR_SIZE,
        config,
        read_format: FORMAT_TOTAL_TIME_ENABLED | FORMAT_TOTAL_TIME_RUNNING,
        flags,
        ..Attr::default()
    };
    // SAFETY: perf_event_open(2) reads `size` bytes of a live, initialised
    // attr and takes integers otherwise; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            pid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Opens `c` on this process, disabled and not inherited: it counts
/// nothing, but asks what a run's counter would (the same event, the same
/// permission) and, held open, keeps the event's kernel state in place.
///
/// That state is worth keeping: the first software event of a kind turns
/// on its static key in the kernel (a patch of the kernel's text, with an
/// interrupt to every CPU) and the last one to close turns it off again;
/// a batch that holds one of each kind open while its runs open and close
/// theirs pays that once, not twice per run.
pub fn hold(c: Counter) -> io::Result<File> {
    open_event(c, 0, DISABLED | EXCLUDE_HV)
}

/// Opens `c` on this process, disabled, and closes it again: Ok when
/// this machine can count it.
pub fn probe(c: Counter) -> io::Result<()> {
    hold(c).map(drop)
}

/// Why this machine cannot count the perf event `c` (None: it can).
pub(super) fn refusal(c: Counter) -> Option<String> {
    Some(refusal_of(c, &probe(c).err()?))
}

/// Why `c` cannot be counted, from the error opening it gave.
pub(super) fn refusal_of(c: Counter, e: &io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    match code {
        libc::EACCES | libc::EPERM => {
            let level = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unreadable".into());
            format!(
                "packrun may not count it: kernel.perf_event_paranoid is {level}; run packrun as root (or with CAP_PERFMON), or allow it with `sysctl -w kernel.perf_event_paranoid=1`"
            )
        }
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::EINVAL
            if c.source() == super::Source::Hardware =>
        {
            // No hardware event at all, or only not this one?
            let any = [Counter::Cycles, Counter::Instructions]
                .into_iter()
                .any(|h| probe(h).is_ok());
            match any {
                false => "this machine's kernel exposes no hardware counters".into(),
                true => format!("this machine's CPU does not count {c}"),
            }
        }
        libc::ENOSYS => "this kernel has no perf_event_open (CONFIG_PERF_EVENTS is off)".into(),
        _ => format!("perf_event_open failed: {e}"),
    }
}

/// A run's perf events, opened on its init before it lets the job start.
///
/// With `inherit`, every process and thread forked after the open gets
/// its own copy of each event; when one exits, its counts are added to
/// its parent's, and a read of ours adds those of the copies still alive.
/// With `enable_on_exec`, a copy starts counting when its process execs,
/// and one forked from a counting process counts from its start: the
/// job counts from its execve, with everything it starts, and init
/// (which never execs) not at all.
#[derive(Debug)]
pub struct Open {
    events: Vec<(Counter, File)>,
}

impl Open {
    /// Opens the perf events among `chosen` on process `pid`.
    pub fn on(pid: i32, chosen: super::Chosen) -> io::Result<Open> {
        let flags = DISABLED | INHERIT | EXCLUDE_HV | ENABLE_ON_EXEC;
        let events = chosen
            .perf()
            .iter()
            .map(|c| {
                open_event(c, pid, flags)
                    .map(|f| (c, f))
                    .map_err(|e| io::Error::new(e.kind(), format!("perf_event_open {c}: {e}")))
            })
            .collect::<io::Result<_>>()?;
        Ok(Open { events })
    }

    /// The counts so far (once the run's processes are gone: its totals).
    ///
    /// A counter the kernel had to share the PMU with others for
    /// (multiplexed: running less than enabled) is scaled by
    /// time_enabled / time_running, and the reading says so; one that
    /// never ran has no value. The kernel keeps every count in 64 bits
    /// (hardware counters are widened on overflow) and ours start at 0,
    /// so a count cannot wrap within a run.
    pub fn read(&self, into: &mut super::Reading) {
        for (c, file) in &self.events {
            let mut buf = [0u8; 24];
            let value = match (&*file).read_exact(&mut buf) {
                Ok(()) => {
                    let word = |i: usize| {
                        u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
                    };
                    let (count, enabled, running) = (word(0), word(1), word(2));
                    scale(*c, count, enabled, running, into)
                }
                Err(e) => {
                    into.remark(&format!("{c}: not read: {e}"));
                    None
                }
            };
            into.values.push((*c, value));
        }
    }
}

/// A count over the share of time it ran (see `Open::read`).
fn scale(
    c: Counter,
    count: u64,
    enabled: u64,
    running: u64,
    into: &mut super::Reading,
) -> Option<f64> {
    if running >= enabled {
        return Some(count as f64);
    }
    if running == 0 {
        into.remark(&format!(
            "{c}: never counted (the PMU was taken by other events)"
        ));
        return None;
    }
    let factor = enabled as f64 / running as f64;
    into.remark(&format!(
        "{c}: multiplexed, counted {:.1}% of the time and scaled by {factor:.3}",
        100.0 / factor
    ));
    Some(count as f64 * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Reading;

    #[test]
    fn a_multiplexed_count_is_scaled_and_the_reading_says_so() {
        let mut r = Reading::default();
        assert_eq!(scale(Counter::Cycles, 1000, 400, 100, &mut r), Some(4000.0));
        assert!(r.note.contains("cycles: multiplexed"), "{}", r.note);
        assert!(r.note.contains("25.0%"), "{}", r.note);
    }

    #[test]
    fn a_count_that_ran_all_the_time_is_as_read_and_says_nothing() {
        let mut r = Reading::default();
        assert_eq!(scale(Counter::TaskClock, 7, 9, 9, &mut r), Some(7.0));
        assert_eq!(r.note, "");
    }

    #[test]
    fn a_count_that_never_ran_has_no_value() {
        let mut r = Reading::default();
        assert_eq!(scale(Counter::Cycles, 0, 9, 0, &mut r), None);
        assert!(r.note.contains("never counted"));
    }

    #[test]
    fn software_events_open_on_this_process() {
        // Software events exist in every kernel packrun supports, but
        // perf_event_paranoid may refuse them to an ordinary user.
        match probe(Counter::TaskClock) {
            Ok(()) => {}
            Err(e) => assert!(
                matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)),
                "{e}"
            ),
        }
    }
}
