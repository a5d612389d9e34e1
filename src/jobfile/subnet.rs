//! IPv4 subnets of private networks: parsing `10.5.0.0/24`, the addresses
//! runs get on one, and the subnets packrun picks for networks that name
//! none.

use std::net::Ipv4Addr;

/// An IPv4 network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// The longest prefix a network may have: a /30 holds two runs.
pub const MAX_PREFIX: u8 = 30;

impl Subnet {
    /// `A.B.C.D/N` with no host bits set and N from 8 to 30.
    pub fn parse(text: &str) -> Result<Subnet, String> {
        const EXPECTED: &str = "expected an IPv4 subnet like 10.5.0.0/24 (prefix 8 to 30)";
        let (addr, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet `{text}`: {EXPECTED}"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("invalid subnet `{text}`: {EXPECTED}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=MAX_PREFIX).contains(p))
            .ok_or_else(|| format!("invalid prefix in subnet `{text}`: {EXPECTED}"))?;
        let s = Subnet { addr, prefix };
        if u32::from(addr) & !s.mask() != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & s.mask());
            return Err(format!(
                "subnet `{text}` has host bits set: expected {net}/{prefix}"
            ));
        }
        Ok(s)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// How many runs it holds at once: every address but the network's and
    /// the broadcast address (the bridge has none: nothing routes).
    pub fn hosts(self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 2
    }

    /// The address of the `i`-th run slot (0-based), if the subnet has one.
    pub fn host(self, i: u32) -> Option<Ipv4Addr> {
        (i < self.hosts()).then(|| Ipv4Addr::from(u32::from(self.addr) + 1 + i))
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A subnet for a network that names none: the first /16 of
/// 10.200.0.0–10.255.0.0, then of 172.16.0.0/12, that overlaps none of
/// `taken`. Runs see only their own network, so the host's own subnets
/// do not matter; distinct subnets keep one run's address from meaning
/// two networks in a record.
pub fn choose(taken: &[Subnet]) -> Option<Subnet> {
    let tens = (200..=255u8).map(|b| Ipv4Addr::new(10, b, 0, 0));
    let one72 = (16..=31u8).map(|b| Ipv4Addr::new(172, b, 0, 0));
    tens.chain(one72)
        .map(|addr| Subnet { addr, prefix: 16 })
        .find(|s| !taken.iter().any(|t| t.overlaps(*s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_parses_and_counts_its_hosts() {
        let s = Subnet::parse("10.5.0.0/24").unwrap();
        assert_eq!(s.addr, Ipv4Addr::new(10, 5, 0, 0));
        assert_eq!(s.hosts(), 254);
        assert_eq!(s.host(0), Some(Ipv4Addr::new(10, 5, 0, 1)));
        assert_eq!(s.host(253), Some(Ipv4Addr::new(10, 5, 0, 254)));
        assert_eq!(s.host(254), None);
        assert_eq!(Subnet::parse("192.168.1.4/30").unwrap().hosts(), 2);
        assert_eq!(s.to_string(), "10.5.0.0/24");
    }

    #[test]
    fn bad_subnets_say_what_was_expected() {
        for (text, says) in [
            ("10.5.0.0", "expected an IPv4 subnet"),
            ("10.5.0/24", "expected an IPv4 subnet"),
            ("10.5.0.0/31", "prefix"),
            ("10.5.0.0/4", "prefix"),
            ("10.5.0.1/24", "host bits set: expected 10.5.0.0/24"),
        ] {
            let e = Subnet::parse(text).unwrap_err();
            assert!(e.contains(says) && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn chosen_subnets_avoid_the_given_ones_and_each_other() {
        let given = Subnet::parse("10.200.7.0/24").unwrap();
        let a = choose(&[given]).unwrap();
        assert_eq!(a.to_string(), "10.201.0.0/16");
        let b = choose(&[given, a]).unwrap();
        assert_eq!(b.to_string(), "10.202.0.0/16");
        let wide = Subnet::parse("10.0.0.0/8").unwrap();
        assert_eq!(choose(&[wide]).unwrap().to_string(), "172.16.0.0/16");
    }
}
