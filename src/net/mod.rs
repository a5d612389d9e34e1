//! Private networks (`networks:` in the job file). Each network is a
//! bridge in a network namespace of packrun's own, held by a file
//! descriptor only (never bind-mounted), so that it, its bridges and the
//! host ends of the links go with packrun, after a SIGKILL too: the host
//! gets no interface, route or firewall rule. A run on a network gets
//! `eth0`, one end of a veth pair made with that end right in the run's
//! namespace, with its address, up, and no route but its subnet's; the
//! other end is a port of the bridge. `rate` is a tbf on both ends (the
//! run's end set from here before the run starts, in a namespace the
//! run's user namespace does not own); `delay` and `loss` are netem.
//! All through route netlink: no `ip` or `tc`.
//!
//! A run's namespace with its link is kept for a later run on the same
//! network once every process in it is gone (as `none` runs' namespaces
//! are pooled): making a namespace and the kernel's teardown of it cost
//! more than the run start. Counters are then read as differences.

mod netlink;
mod shape;

pub use netlink::Traffic;
pub use shape::Shape;

use crate::jobfile::PrivateNet;
use netlink::Netlink;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// The index of `lo` in every network namespace (LOOPBACK_IFINDEX).
const LOOPBACK: u32 = 1;

/// The namespace of packrun's own with one bridge per network.
pub struct Plumbing {
    link: Netlink,
    nets: Vec<Bridge>,
    /// Serial number of the next host end (`h<N>`).
    next: u64,
    /// Holds the namespace (the socket does too): dropped last.
    _ns: OwnedFd,
}

struct Bridge {
    net: Arc<PrivateNet>,
    index: u32,
    shape: Option<Shape>,
    /// Which address slots are taken (by a running or a pooled link).
    taken: Vec<bool>,
    /// Links whose runs ended, for later runs.
    free: Vec<Link>,
}

/// A run's link: its namespace (lo and eth0, addressed and shaped), and
/// what reads its counters.
pub struct Link {
    ns: OwnedFd,
    sock: Netlink,
    eth0: u32,
    addr: Ipv4Addr,
    slot: u32,
    net: usize,
    /// The counters when it was handed to its run.
    before: Traffic,
}

impl Link {
    /// The run's address on its network.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The namespace for the run to join (a descriptor of its own).
    pub fn namespace(&self) -> io::Result<OwnedFd> {
        self.ns.try_clone()
    }
}

/// Runs `f` on a thread of its own in a new network namespace, with
/// loopback up and a netlink socket there, and returns the namespace, the
/// socket and what `f` made. The thread ends right after, so no thread of
/// packrun leaves the host's network.
fn in_new_namespace() -> io::Result<(OwnedFd, Netlink)> {
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(|| -> io::Result<(OwnedFd, Netlink)> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            // IPv4 only: links made here from now on get no IPv6 (no
            // neighbour or listener reports in a run's counters); loopback
            // keeps ::1. The sysctls under /proc/sys/net are the opening
            // thread's namespace's. A kernel without IPv6 has none.
            let path = "/proc/sys/net/ipv6/conf/default/disable_ipv6";
            match std::fs::write(path, "1") {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io::Error::new(e.kind(), format!("{path}: {e}")))
                }
                _ => {}
            }
            let mut sock = Netlink::open()?;
            sock.set_up(LOOPBACK)?;
            Ok((ns.into(), sock))
        })?
        .join()
        .map_err(|_| io::Error::other("the thread making a network namespace panicked"))?
}

impl Plumbing {
    /// The namespace with a bridge for each of `nets`. Fails when the
    /// kernel cannot shape their links as asked (no netem, no tbf).
    pub fn new(nets: &[Arc<PrivateNet>]) -> io::Result<Plumbing> {
        let (ns, mut link) =
            in_new_namespace().map_err(|e| with_context("make packrun's network namespace", e))?;
        let mut bridges = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let name = format!("br{i}");
            let index = link.new_bridge(&name).map_err(|e| {
                let e = missing_module(e, "bridge", "CONFIG_BRIDGE");
                with_context(&format!("make the bridge of network `{}`", net.name), e)
            })?;
            link.no_ipv6(index)?;
            link.set_up(index)?;
            let shape = Shape::of(net);
            if let Some(s) = &shape {
                // Tried on the idle bridge first: a kernel without the
                // qdisc says so before any run starts.
                link.add_qdisc(index, s)
                    .and_then(|()| link.del_qdisc(index))
                    .map_err(|e| unshapeable(net, s, e))?;
            }
            bridges.push(Bridge {
                net: net.clone(),
                index,
                shape,
                taken: Vec::new(),
                free: Vec::new(),
            });
        }
        Ok(Plumbing {
            link,
            nets: bridges,
            next: 0,
            _ns: ns,
        })
    }

    /// A link on `net` for a run: a pooled one unless `fresh`.
    pub fn attach(&mut self, net: &PrivateNet, fresh: bool) -> io::Result<Link> {
        let n = self
            .nets
            .iter()
            .position(|b| b.net.name == net.name)
            .ok_or_else(|| io::Error::other(format!("no bridge for network `{}`", net.name)))?;
        let reused = match fresh {
            true => None,
            false => self.nets[n].free.pop(),
        };
        let mut link = match reused {
            Some(l) => l,
            None => self.new_link(n)?,
        };
        link.before = link.sock.traffic(link.eth0)?;
        Ok(link)
    }

    fn new_link(&mut self, n: usize) -> io::Result<Link> {
        let b = &mut self.nets[n];
        let slot = match b.taken.iter().position(|t| !t) {
            Some(s) => s,
            None => {
                b.taken.push(false);
                b.taken.len() - 1
            }
        } as u32;
        let addr = b.net.subnet.host(slot).ok_or_else(|| {
            io::Error::other(format!(
                "network `{}`: subnet {} has no address left for another run",
                b.net.name, b.net.subnet
            ))
        })?;
        let (ns, mut sock) = in_new_namespace()?;
        let host = format!("h{}", self.next);
        self.next += 1;
        let bridge = (b.index, b.net.subnet.prefix, b.shape.clone());
        let host_end = self
            .link
            .new_veth(&host, bridge.0, ns.as_fd(), mac_of(addr))
            .map_err(|e| missing_module(e, "veth", "CONFIG_VETH"))?;
        self.link.no_ipv6(host_end)?;
        self.link.set_up(host_end)?;
        let eth0 = sock.index_of("eth0")?;
        sock.no_ipv6(eth0)?;
        sock.add_address(eth0, addr, bridge.1)?;
        sock.set_up(eth0)?;
        if let Some(s) = &bridge.2 {
            // What the run sends, and what it gets.
            sock.add_qdisc(eth0, s)?;
            self.link.add_qdisc(host_end, s)?;
        }
        self.nets[n].taken[slot as usize] = true;
        Ok(Link {
            ns,
            sock,
            eth0,
            addr,
            slot,
            net: n,
            before: Traffic::default(),
        })
    }

    /// The traffic of `link`'s run, read now that the run has ended; the
    /// link is kept for a later run when `reuse`, else it is gone (its
    /// namespace, and with it both ends, once the last holder closes it).
    pub fn detach(&mut self, mut link: Link, reuse: bool) -> io::Result<Traffic> {
        let traffic = link.sock.traffic(link.eth0).map(|t| t.since(link.before));
        let b = &mut self.nets[link.net];
        if reuse && traffic.is_ok() {
            b.free.push(link);
        } else {
            b.taken[link.slot as usize] = false;
            link.slot = u32::MAX;
        }
        traffic
    }
}

/// The MAC address of the run's `eth0` at `addr`: locally administered,
/// the address in its last four bytes. A later link at the same address
/// (after its namespace went) has the same one, so the other runs' ARP
/// entries for it stay right.
fn mac_of(addr: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x02, 0x70, a, b, c, d]
}

/// The kernel answers a link kind it has no driver for with EOPNOTSUPP:
/// name the module to load, as `unshapeable` does for qdiscs.
fn missing_module(e: io::Error, module: &str, config: &str) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => io::Error::new(
            e.kind(),
            format!("{e}: this kernel has no `{module}` links (`modprobe {module}`, or a kernel built with {config})"),
        ),
        _ => e,
    }
}

fn with_context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn unshapeable(net: &PrivateNet, s: &Shape, e: io::Error) -> io::Error {
    // The kernel answers an unknown qdisc kind with ENOENT.
    let answer = match e.raw_os_error() {
        Some(libc::ENOENT) => "which this kernel does not have".to_string(),
        _ => format!("which this kernel refused ({e})"),
    };
    let why = match s {
        Shape::Netem { .. } => "`delay` and `loss` need the netem qdisc (the kernel's sch_netem module, CONFIG_NET_SCH_NETEM)",
        Shape::Tbf { .. } => "`rate` needs the tbf qdisc (the kernel's sch_tbf module, CONFIG_NET_SCH_TBF)",
    };
    io::Error::new(
        e.kind(),
        format!(
            "network `{}`: {why}, {answer}; `packrun doctor` tells what to load",
            net.name
        ),
    )
}

/// Whether this kernel has the qdisc `kind` (`tbf`, `netem`): tried on
/// the loopback of a namespace made for the purpose. Needs root.
pub fn has_qdisc(kind: &str) -> io::Result<bool> {
    let net = PrivateNet {
        name: "probe".into(),
        subnet: crate::jobfile::Subnet::parse("10.0.0.0/30").map_err(io::Error::other)?,
        rate: Some(1_000_000),
        delay: (kind == "netem").then_some(std::time::Duration::from_millis(1)),
        loss: None,
    };
    let shape = Shape::of(&net).ok_or_else(|| io::Error::other("no shape"))?;
    let (_ns, mut sock) = in_new_namespace()?;
    match sock.add_qdisc(LOOPBACK, &shape) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `net` holds as many runs at once as may be on it: `runs` of
/// the batch are on it, at most one per CPU of the `cpus` at once.
pub fn check_capacity(net: &PrivateNet, runs: usize, cpus: usize) -> Result<(), String> {
    let at_once = runs.min(cpus);
    let hosts = net.subnet.hosts() as usize;
    if hosts >= at_once {
        return Ok(());
    }
    let prefix = (1..=crate::jobfile::subnet_max_prefix())
        .rev()
        .find(|p| (1usize << (32 - u32::from(*p))) - 2 >= at_once)
        .unwrap_or(8);
    Err(format!(
        "network `{}`: subnet {} has addresses for {hosts} runs, but up to {at_once} of its {runs} runs may run at once on this machine's {cpus} CPUs: expected a larger subnet, a /{prefix} or shorter prefix",
        net.name, net.subnet
    ))
}

/// The checks before a batch with private networks starts: root, or
/// packrun in a user namespace of its own (`own_userns`: whether it
/// entered one, or why it could not), room on each network, and the
/// qdiscs its shaping needs, tried in a namespace like the batch's own,
/// made and dropped here.
pub fn check_batch(
    nets: &[(Arc<PrivateNet>, usize)],
    cpus: usize,
    own_userns: io::Result<bool>,
) -> Result<(), String> {
    if nets.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<String> = nets
        .iter()
        .filter_map(|(n, runs)| check_capacity(n, *runs, cpus).err())
        .collect();
    let names: Vec<&str> = nets.iter().map(|(n, _)| n.name.as_str()).collect();
    match own_userns {
        Err(e) => problems.push(format!(
            "private networks ({}) need root, or a user namespace of packrun's own, which it could not enter: {e}; use `network: none` or `host`",
            names.join(", ")
        )),
        Ok(_) if problems.is_empty() => {
            let list: Vec<Arc<PrivateNet>> = nets.iter().map(|(n, _)| n.clone()).collect();
            if let Err(e) = Plumbing::new(&list) {
                problems.push(e.to_string());
            }
        }
        Ok(_) => {}
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Subnet;

    fn net(subnet: &str) -> PrivateNet {
        PrivateNet {
            name: "lab".into(),
            subnet: Subnet::parse(subnet).unwrap(),
            rate: None,
            delay: None,
            loss: None,
        }
    }

    #[test]
    fn a_link_kind_the_kernel_lacks_names_the_module_to_load() {
        let e = missing_module(
            io::Error::from_raw_os_error(libc::EOPNOTSUPP),
            "veth",
            "CONFIG_VETH",
        );
        let text = e.to_string();
        assert!(
            text.contains("`modprobe veth`") && text.contains("CONFIG_VETH"),
            "{text}"
        );
        let other = missing_module(
            io::Error::from_raw_os_error(libc::EPERM),
            "veth",
            "CONFIG_VETH",
        );
        assert!(!other.to_string().contains("modprobe"), "{other}");
    }

    #[test]
    fn a_subnet_must_hold_the_runs_that_may_be_on_it_at_once() {
        // A /30 holds two runs: enough for 100 runs on 2 CPUs, or 2 runs.
        assert_eq!(check_capacity(&net("10.5.0.0/30"), 100, 2), Ok(()));
        assert_eq!(check_capacity(&net("10.5.0.0/30"), 2, 64), Ok(()));
        let e = check_capacity(&net("10.5.0.0/30"), 100, 8).unwrap_err();
        assert_eq!(
            e,
            "network `lab`: subnet 10.5.0.0/30 has addresses for 2 runs, but up to 8 of its 100 runs may run at once on this machine's 8 CPUs: expected a larger subnet, a /28 or shorter prefix"
        );
        assert!(check_capacity(&net("10.5.0.0/24"), 300, 256).is_err());
        assert_eq!(check_capacity(&net("10.5.0.0/23"), 300, 256), Ok(()));
    }

    #[test]
    fn without_root_or_a_user_namespace_of_its_own_a_batch_is_refused_saying_why() {
        let nets = [(Arc::new(net("10.5.0.0/24")), 2)];
        let refused = io::Error::other(
            "packrun runs 3 threads; only a process with one may enter a user namespace",
        );
        assert_eq!(
            check_batch(&nets, 2, Err(refused)),
            Err("private networks (lab) need root, or a user namespace of packrun's own, which it could not enter: packrun runs 3 threads; only a process with one may enter a user namespace; use `network: none` or `host`".into())
        );
        // Room is checked either way, and reported with it.
        let crowded = [(Arc::new(net("10.5.0.0/30")), 100)];
        let e = check_batch(&crowded, 8, Err(io::Error::other("no"))).unwrap_err();
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn a_runs_mac_address_is_local_and_follows_its_ip_address() {
        assert_eq!(
            mac_of(Ipv4Addr::new(10, 77, 0, 2)),
            [0x02, 0x70, 10, 77, 0, 2]
        );
    }

    #[test]
    fn traffic_since_a_reused_links_start_is_the_difference() {
        let before = Traffic {
            rx_bytes: 100,
            tx_bytes: 50,
            rx_packets: 2,
            tx_packets: 1,
        };
        let now = Traffic {
            rx_bytes: 1100,
            tx_bytes: 90,
            rx_packets: 12,
            tx_packets: 3,
        };
        assert_eq!(
            now.since(before),
            Traffic {
                rx_bytes: 1000,
                tx_bytes: 40,
                rx_packets: 10,
                tx_packets: 2
            }
        );
    }
}
