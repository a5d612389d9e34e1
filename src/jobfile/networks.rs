//! `networks:` and `container.network` checked into `PrivateNet`s: names,
//! subnets (given ones apart, the rest chosen), rates, delays and losses.

use super::raw::{DurationValue, FloatValue, RawNetwork, Scalar};
use super::subnet::{self, Subnet};
use super::types::{Network, PrivateNet};
use super::units;
use super::yaml::{p, YPath};
use std::sync::Arc;

/// One problem: where, and what.
pub type Problem = (YPath, String);

/// Names a private network may not have: they are `container.network`'s
/// own words.
const RESERVED: &[&str] = &["none", "host"];

/// The networks of the file in its order, and the problems found.
pub fn networks(raw: Vec<(String, RawNetwork)>) -> (Vec<Arc<PrivateNet>>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut given: Vec<(String, Option<Subnet>)> = Vec::new();
    let mut out = Vec::new();
    for (name, r) in raw {
        let at = |key: &str| p(&["networks", &name, key]);
        if RESERVED.contains(&name.as_str()) {
            problems.push((
                p(&["networks", &name]),
                format!("network name `{name}` is reserved (`container.network: {name}` means the built-in mode): choose another name"),
            ));
        } else if !valid_name(&name) {
            problems.push((
                p(&["networks", &name]),
                format!(
                    "invalid network name `{name}`: expected letters, digits, `.`, `_` and `-`"
                ),
            ));
        }
        let subnet = r.subnet.as_deref().and_then(|s| {
            Subnet::parse(s)
                .map_err(|e| problems.push((at("subnet"), e)))
                .ok()
        });
        if let Some(s) = subnet {
            if let Some((other, _)) = given.iter().find(|(_, o)| o.is_some_and(|o| o.overlaps(s))) {
                problems.push((
                    at("subnet"),
                    format!("subnet `{s}` overlaps the subnet of network `{other}`: expected subnets apart"),
                ));
            }
        }
        given.push((name.clone(), subnet));
        let rate = r.rate.as_deref().and_then(|t| {
            parse_rate(t)
                .map_err(|e| problems.push((at("rate"), e)))
                .ok()
        });
        let delay = r.delay.as_ref().and_then(|DurationValue(d)| {
            units::parse_duration(d)
                .map_err(|e| problems.push((at("delay"), format!("delay: {e}"))))
                .ok()
        });
        let loss = r.loss.as_ref().and_then(|FloatValue(l)| {
            parse_loss(l)
                .map_err(|e| problems.push((at("loss"), e)))
                .ok()
        });
        out.push(PrivateNet {
            name,
            // Filled below once every given subnet is known.
            subnet: subnet.unwrap_or(Subnet {
                addr: std::net::Ipv4Addr::UNSPECIFIED,
                prefix: 32,
            }),
            rate,
            delay,
            loss,
        });
    }
    let mut taken: Vec<Subnet> = given.iter().filter_map(|(_, s)| *s).collect();
    for (net, (_, s)) in out.iter_mut().zip(&given) {
        if s.is_none() && net.subnet.prefix == 32 {
            match subnet::choose(&taken) {
                Some(c) => {
                    net.subnet = c;
                    taken.push(c);
                }
                None => problems.push((
                    p(&["networks", &net.name]),
                    "no free private /16 left to choose: give this network a `subnet:`".into(),
                )),
            }
        }
    }
    (out.into_iter().map(Arc::new).collect(), problems)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `container.network`: a built-in word or a network of the file; the
/// error lists what there is.
pub fn network(word: Option<&str>, nets: &[Arc<PrivateNet>]) -> Result<Network, String> {
    match word {
        None | Some("none") => Ok(Network::None),
        Some("host") => Ok(Network::Host),
        Some(name) => match nets.iter().find(|n| n.name == name) {
            Some(n) => Ok(Network::Private(n.clone())),
            None => {
                let mut words: Vec<String> = vec!["`none`".into(), "`host`".into()];
                words.extend(
                    nets.iter()
                        .filter(|n| !RESERVED.contains(&n.name.as_str()))
                        .map(|n| format!("`{}`", n.name)),
                );
                let of_file = if nets.is_empty() {
                    " (the file has no `networks:`)"
                } else {
                    ""
                };
                Err(format!(
                    "unknown network `{name}`: expected {}{of_file}",
                    words.join(", ")
                ))
            }
        },
    }
}

/// A rate as tc writes one, in bits per second: `100mbit`, `1gbit`,
/// `500kbit`, `64000bit` (decimal units; `/s` allowed after).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a rate like 100mbit, 1gbit or 500kbit";
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix("/s").unwrap_or(&t);
    let bad = || format!("invalid rate `{text}`: {EXPECTED}");
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?);
    let scale: f64 = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    let bits = n * scale;
    if !bits.is_finite() || bits < 8.0 {
        return Err(format!("rate `{text}` is too low: {EXPECTED}"));
    }
    if bits > 1e12 {
        return Err(format!("rate `{text}` is too high: {EXPECTED}"));
    }
    Ok(bits as u64)
}

/// A loss in percent: a number or `"0.5%"`, above 0 and at most 100.
fn parse_loss(s: &Scalar) -> Result<f64, String> {
    const EXPECTED: &str = "expected a percentage above 0 and at most 100, like 0.5 or \"0.5%\"";
    let v = match s {
        Scalar::Int(i) => *i as f64,
        Scalar::Float(f) => *f,
        Scalar::Str(t) => t
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .map_err(|_| format!("invalid loss `{t}`: {EXPECTED}"))?,
        Scalar::Bool(b) => return Err(format!("invalid loss `{b}`: {EXPECTED}")),
    };
    if !(v > 0.0 && v <= 100.0) {
        return Err(format!("loss `{}`: {EXPECTED}", s.text()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_tc_writes_them() {
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1Gbit/s"), Ok(1_000_000_000));
        assert_eq!(parse_rate("1.5kbit"), Ok(1500));
        for bad in ["100", "100mb", "fast", "0mbit", "-1mbit"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("expected a rate"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn losses_are_percentages() {
        assert_eq!(parse_loss(&Scalar::Float(0.5)), Ok(0.5));
        assert_eq!(parse_loss(&Scalar::Str("2%".into())), Ok(2.0));
        assert!(parse_loss(&Scalar::Int(0)).is_err());
        assert!(parse_loss(&Scalar::Int(101)).is_err());
    }

    #[test]
    fn an_unknown_network_names_the_ones_there_are() {
        let (nets, problems) = networks(vec![("lab".into(), RawNetwork::default())]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(network(Some("host"), &nets), Ok(Network::Host));
        assert_eq!(network(None, &nets), Ok(Network::None));
        assert!(matches!(network(Some("lab"), &nets), Ok(Network::Private(n)) if n.name == "lab"));
        let e = network(Some("labb"), &nets).unwrap_err();
        assert_eq!(e, "unknown network `labb`: expected `none`, `host`, `lab`");
    }
}
