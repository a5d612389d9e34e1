//! Whether a service is ready: a TCP port that accepts connections inside
//! its network namespace. A short-lived thread joins that namespace
//! (setns(2) on `/proc/<init>/ns/net`, which moves that thread only) and
//! connects to 127.0.0.1:PORT, with a pause between tries that grows from
//! 1 ms to 100 ms, until a connection succeeds, the timeout passes or the
//! probe is dropped. The same code serves `network: host` (the namespace
//! is the runner's own: no setns) and a run's own namespace. The loop
//! polls the probe's end of a socket pair, so it waits on nothing.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);
/// The longest one connect may take (a SYN nobody answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A readiness check going on in its own thread.
pub struct Probe {
    rx: UnixStream,
    got: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl Probe {
    /// Starts checking `port` in the network namespace of process
    /// `init_pid` for at most `timeout`.
    pub fn start(init_pid: i32, port: u16, timeout: Duration) -> std::io::Result<Probe> {
        let path = format!("/proc/{init_pid}/ns/net");
        let ns = File::open(&path)?;
        let own = std::fs::metadata("/proc/self/ns/net")?;
        let theirs = ns.metadata()?;
        let ns = (own.ino() != theirs.ino() || own.dev() != theirs.dev()).then_some(ns);
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("packrun-ready".into())
            .spawn(move || {
                let said = match probe(ns, port, timeout, &stopped) {
                    Ok(()) => String::new(),
                    Err(why) => why,
                };
                // The loop reads it when it comes; a loop gone reads nothing.
                let _ = (&tx).write_all(format!("{}{said}", u8::from(said.is_empty())).as_bytes());
            })?;
        Ok(Probe {
            rx,
            got: Vec::new(),
            stop,
        })
    }

    /// What the loop polls: readable when the probe has its answer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// None: no answer yet; Some(Ok): ready; Some(Err): not ready, why.
    pub fn answer(&mut self) -> Option<Result<(), String>> {
        match (&self.rx).read_to_end(&mut self.got) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => return Some(Err(format!("readiness check failed: {e}"))),
        }
        let text = String::from_utf8_lossy(&self.got);
        match text.split_at_checked(1) {
            Some(("1", _)) => Some(Ok(())),
            Some((_, why)) => Some(Err(why.to_string())),
            None => Some(Err("readiness check ended without an answer".into())),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // The thread ends at its next try.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Joins `ns` (None: stays in the runner's) and connects to
/// 127.0.0.1:`port` until it works or `timeout` passes.
fn probe(ns: Option<File>, port: u16, timeout: Duration, stop: &AtomicBool) -> Result<(), String> {
    if let Some(ns) = ns {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!("cannot enter the service's network namespace to check port {port}: {e}")
        })?;
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let error =
            match TcpStream::connect_timeout(&addr, left.clamp(FIRST_PAUSE, CONNECT_TIMEOUT)) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
        if left.is_zero() {
            return Err(format!(
                "not ready: port {port} accepted no TCP connection within {} (last try: {error})",
                humantime::format_duration(timeout)
            ));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn wait(p: &mut Probe) -> Result<(), String> {
        loop {
            if let Some(a) = p.answer() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_port_that_listens_is_ready_and_one_that_does_not_times_out_naming_it() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = std::process::id() as i32;
        let mut p = Probe::start(me, port, Duration::from_secs(10)).expect("start");
        assert_eq!(wait(&mut p), Ok(()));
        drop(l);
        let mut p = Probe::start(me, port, Duration::from_millis(30)).expect("start");
        let e = wait(&mut p).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "not ready: port {port} accepted no TCP connection within 30ms"
            )),
            "{e}"
        );
    }
}
