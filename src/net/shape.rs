//! The qdisc that shapes one end of a run's link, in the kernel's own
//! encoding (the `TCA_OPTIONS` of tbf, tc-tbf(8), and of netem,
//! tc-netem(8)): the crate has no typed options for either.

use crate::jobfile::PrivateNet;
use netlink_packet_core::DefaultNla;
use netlink_packet_route::tc::TcAttribute;

/// How long a packet may wait in tbf's queue: tc's usual `latency 50ms`.
const QUEUE_NS: u64 = 50_000_000;
/// The scheduler clock's ticks are 64 ns (PSCHED_SHIFT, net/pkt_sched.h).
const PSCHED_SHIFT: u32 = 6;
/// netem's queue in packets (tc's default).
const NETEM_LIMIT: u32 = 1000;

/// The root qdisc of each end of a link.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `rate` alone: a token bucket of `rate` bytes per second.
    Tbf { rate: u64, burst: u32, limit: u32 },
    /// `delay` or `loss` (and maybe `rate`, netem's own): netem.
    Netem {
        delay_ns: u64,
        /// Share of packets dropped, of u32::MAX.
        loss: u32,
        rate: Option<u64>,
    },
}

impl Shape {
    /// The shape of `net`'s links, or None when they go unshaped.
    pub fn of(net: &PrivateNet) -> Option<Shape> {
        let rate = net.rate.map(|bits| (bits / 8).max(1));
        if net.needs_netem() {
            return Some(Shape::Netem {
                delay_ns: net
                    .delay
                    .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as u64),
                loss: net
                    .loss
                    .map_or(0, |pct| (pct / 100.0 * f64::from(u32::MAX)) as u32),
                rate,
            });
        }
        let rate = rate?;
        // A bucket of 4 ms of traffic, at least 32 KiB (tc's advice: no
        // less than rate / HZ, and a few full-size frames).
        let burst = (rate / 250).clamp(32 << 10, u64::from(u32::MAX / 2)) as u32;
        let limit = (rate.saturating_mul(QUEUE_NS) / 1_000_000_000 + u64::from(burst))
            .min(u64::from(u32::MAX)) as u32;
        Some(Shape::Tbf { rate, burst, limit })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Shape::Tbf { .. } => "tbf",
            Shape::Netem { .. } => "netem",
        }
    }

    /// `TCA_OPTIONS` of the qdisc.
    pub fn options(&self) -> TcAttribute {
        const TCA_OPTIONS: u16 = 2;
        TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, self.option_bytes()))
    }

    fn option_bytes(&self) -> Vec<u8> {
        match *self {
            Shape::Tbf { rate, burst, limit } => tbf(rate, burst, limit),
            Shape::Netem {
                delay_ns,
                loss,
                rate,
            } => netem(delay_ns, loss, rate),
        }
    }
}

/// One netlink attribute: length, type, value, padded to 4 bytes.
fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// struct tc_ratespec (linux/pkt_sched.h) of `rate` bytes per second,
/// counted on Ethernet (so the kernel needs no rate table).
fn ratespec(rate: u64) -> [u8; 12] {
    const TC_LINKLAYER_ETHERNET: u8 = 1;
    let mut r = [0u8; 12];
    r[1] = TC_LINKLAYER_ETHERNET;
    r[8..12].copy_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    r
}

fn tbf(rate: u64, burst: u32, limit: u32) -> Vec<u8> {
    const TCA_TBF_PARMS: u16 = 1;
    const TCA_TBF_RATE64: u16 = 4;
    const TCA_TBF_BURST: u16 = 6;
    // struct tc_tbf_qopt: rate, peakrate, limit (bytes), buffer (ticks), mtu.
    let buffer_ns = u64::from(burst) * 1_000_000_000 / rate.max(1);
    let buffer = (buffer_ns >> PSCHED_SHIFT).min(u64::from(u32::MAX)) as u32;
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(rate));
    qopt.extend_from_slice(&[0u8; 12]);
    qopt.extend_from_slice(&limit.to_ne_bytes());
    qopt.extend_from_slice(&buffer.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes());
    let mut out = Vec::new();
    nla(&mut out, TCA_TBF_PARMS, &qopt);
    if rate > u64::from(u32::MAX) {
        nla(&mut out, TCA_TBF_RATE64, &rate.to_ne_bytes());
    }
    nla(&mut out, TCA_TBF_BURST, &burst.to_ne_bytes());
    out
}

fn netem(delay_ns: u64, loss: u32, rate: Option<u64>) -> Vec<u8> {
    const TCA_NETEM_RATE: u16 = 6;
    const TCA_NETEM_RATE64: u16 = 8;
    const TCA_NETEM_LATENCY64: u16 = 10;
    // struct tc_netem_qopt: latency (ticks), limit, loss, gap, duplicate,
    // jitter; the attributes follow it.
    let ticks = (delay_ns >> PSCHED_SHIFT).min(u64::from(u32::MAX)) as u32;
    let mut out = Vec::with_capacity(64);
    for v in [ticks, NETEM_LIMIT, loss, 0, 0, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    nla(
        &mut out,
        TCA_NETEM_LATENCY64,
        &(delay_ns as i64).to_ne_bytes(),
    );
    if let Some(rate) = rate {
        // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead.
        let mut r = Vec::with_capacity(16);
        r.extend_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
        r.extend_from_slice(&[0u8; 12]);
        nla(&mut out, TCA_NETEM_RATE, &r);
        if rate > u64::from(u32::MAX) {
            nla(&mut out, TCA_NETEM_RATE64, &rate.to_ne_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::Subnet;
    use std::time::Duration;

    fn net(rate: Option<u64>, delay: Option<Duration>, loss: Option<f64>) -> PrivateNet {
        PrivateNet {
            name: "lab".into(),
            subnet: Subnet::parse("10.5.0.0/24").unwrap(),
            rate,
            delay,
            loss,
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn an_unshaped_network_gets_no_qdisc() {
        assert_eq!(Shape::of(&net(None, None, None)), None);
    }

    #[test]
    fn a_rate_becomes_tbf_in_bytes_with_its_burst_and_queue() {
        let s = Shape::of(&net(Some(100_000_000), None, None)).unwrap();
        let Shape::Tbf { rate, burst, limit } = s else {
            panic!("{s:?}")
        };
        assert_eq!(rate, 12_500_000);
        assert_eq!(burst, 50_000);
        assert_eq!(limit, 625_000 + 50_000);
        let b = s.option_bytes();
        // TCA_TBF_PARMS: 4 + 36 bytes; the rate at offset 8 of the ratespec.
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 40);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 1);
        assert_eq!(b[4 + 1], 1, "link layer ethernet");
        assert_eq!(u32_at(&b, 4 + 8), 12_500_000);
        assert_eq!(u32_at(&b, 4 + 24), limit);
        // TCA_TBF_BURST after it.
        assert_eq!(u16::from_ne_bytes([b[42], b[43]]), 6);
        assert_eq!(u32_at(&b, 44), burst);
        assert_eq!(b.len(), 48);
    }

    #[test]
    fn a_slow_rate_still_gets_a_bucket_of_full_frames() {
        let Some(Shape::Tbf { burst, .. }) = Shape::of(&net(Some(1_000_000), None, None)) else {
            panic!()
        };
        assert_eq!(burst, 32 << 10);
    }

    #[test]
    fn delay_and_loss_become_netem_with_the_rate_as_its_own() {
        let s = Shape::of(&net(
            Some(8_000_000),
            Some(Duration::from_millis(5)),
            Some(50.0),
        ))
        .unwrap();
        assert_eq!(s.kind(), "netem");
        let b = s.option_bytes();
        assert_eq!(u32_at(&b, 0), 5_000_000 >> 6);
        assert_eq!(u32_at(&b, 4), NETEM_LIMIT);
        assert_eq!(u32_at(&b, 8), u32::MAX / 2);
        // LATENCY64 then RATE.
        assert_eq!(u16::from_ne_bytes([b[26], b[27]]), 10);
        assert_eq!(i64::from_ne_bytes(b[28..36].try_into().unwrap()), 5_000_000);
        assert_eq!(u16::from_ne_bytes([b[38], b[39]]), 6);
        assert_eq!(u32_at(&b, 40), 1_000_000);
    }
}
