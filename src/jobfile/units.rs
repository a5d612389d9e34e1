//! Sizes, durations and counts as the job file writes them.

use super::raw::Scalar;
use std::time::Duration;

/// A size in bytes: an integer, or a number with a binary unit. `2G`, `2GB`
/// and `2GiB` are all 2 GiB, as docker, systemd and Slurm read them.
pub fn parse_size(s: &Scalar) -> Result<u64, String> {
    const EXPECTED: &str =
        "expected a number and a unit like 512MiB or 2G, or a whole number of bytes";
    let n = match s {
        Scalar::Int(i) if *i < 0 => return Err(format!("negative size `{i}`: {EXPECTED}")),
        Scalar::Int(i) => u64::try_from(*i).map_err(|_| format!("size `{i}` is too large"))?,
        Scalar::Str(t) => {
            let t = t.trim();
            if t.starts_with('-') {
                return Err(format!("negative size `{t}`: {EXPECTED}"));
            }
            parse_size::Config::new()
                .with_binary()
                .parse_size(t)
                .map_err(|_| format!("invalid size `{t}`: {EXPECTED}"))?
        }
        other => return Err(format!("invalid size `{}`: {EXPECTED}", other.text())),
    };
    if n == 0 {
        return Err(format!(
            "size `{}` is zero: expected more than 0 bytes",
            s.text()
        ));
    }
    Ok(n)
}

/// A duration: an integer (seconds) or text like `30s`, `10m`, `1h30m`, `1h 30m`.
pub fn parse_duration(s: &Scalar) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a duration like 30s, 10m or 1h30m, or a whole number of seconds";
    let d = match s {
        Scalar::Int(i) if *i < 0 => return Err(format!("negative duration `{i}`: {EXPECTED}")),
        Scalar::Int(i) => Duration::from_secs(
            u64::try_from(*i).map_err(|_| format!("duration `{i}` is too large"))?,
        ),
        Scalar::Str(t) => {
            let t = t.trim();
            if t.starts_with('-') {
                return Err(format!("negative duration `{t}`: {EXPECTED}"));
            }
            match t.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(t)
                    .map_err(|_| format!("invalid duration `{t}`: {EXPECTED}"))?,
            }
        }
        other => return Err(format!("invalid duration `{}`: {EXPECTED}", other.text())),
    };
    if d.is_zero() {
        return Err(format!(
            "duration `{}` is zero: expected more than 0",
            s.text()
        ));
    }
    Ok(d)
}

/// A whole number of at least 1 (text after placeholder expansion).
pub fn parse_count(text: &str, what: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.parse::<i128>() {
        Ok(n) if n < 1 => Err(format!("{what} `{t}` must be at least 1")),
        Ok(n) => u64::try_from(n).map_err(|_| format!("{what} `{t}` is too large")),
        Err(_) => Err(format!("invalid {what} `{t}`: expected a whole number")),
    }
}

/// A positive number (text after placeholder expansion).
pub fn parse_positive(text: &str, what: &str) -> Result<f64, String> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        Ok(_) => Err(format!("{what} `{t}` must be more than 0")),
        Err(_) => Err(format!("invalid {what} `{t}`: expected a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Scalar {
        Scalar::Str(t.into())
    }

    #[test]
    fn sizes_use_binary_units_like_docker_and_systemd() {
        assert_eq!(parse_size(&s("512MiB")), Ok(512 << 20));
        assert_eq!(parse_size(&s("2G")), Ok(2 << 30));
        assert_eq!(parse_size(&s("2GiB")), Ok(2 << 30));
        assert_eq!(parse_size(&s("200MB")), Ok(200 << 20));
        assert_eq!(parse_size(&s("64k")), Ok(64 << 10));
        assert_eq!(parse_size(&Scalar::Int(4096)), Ok(4096));
        assert_eq!(parse_size(&s("4096")), Ok(4096));
    }

    #[test]
    fn bad_sizes_echo_the_input_and_say_what_was_expected() {
        let e = parse_size(&s("2 gigs")).unwrap_err();
        assert!(e.contains("`2 gigs`") && e.contains("512MiB"), "{e}");
        assert!(parse_size(&s("0MiB")).unwrap_err().contains("zero"));
        assert!(parse_size(&Scalar::Int(-5))
            .unwrap_err()
            .contains("negative"));
        assert!(parse_size(&s("-5M")).unwrap_err().contains("negative"));
        assert!(parse_size(&Scalar::Float(1.5)).is_err());
    }

    #[test]
    fn durations_accept_compound_units_and_plain_seconds() {
        assert_eq!(parse_duration(&s("30s")), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(&s("10m")), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration(&s("1h30m")), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(&s("1h 30m")), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(&s("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_duration(&Scalar::Int(90)),
            Ok(Duration::from_secs(90))
        );
    }

    #[test]
    fn bad_durations_are_rejected_with_the_input_and_bare_numbers_are_seconds() {
        assert_eq!(parse_duration(&s("30")), Ok(Duration::from_secs(30)));
        let e = parse_duration(&s("soon")).unwrap_err();
        assert!(e.contains("`soon`") && e.contains("1h30m"), "{e}");
        assert!(parse_duration(&s("0s")).unwrap_err().contains("zero"));
        assert!(parse_duration(&Scalar::Int(-1))
            .unwrap_err()
            .contains("negative"));
    }

    #[test]
    fn counts_must_be_whole_and_positive() {
        assert_eq!(parse_count(" 4 ", "cpus"), Ok(4));
        assert!(parse_count("0", "cpus").unwrap_err().contains("at least 1"));
        assert!(parse_count("-2", "cpus")
            .unwrap_err()
            .contains("at least 1"));
        assert!(parse_count("four", "cpus").unwrap_err().contains("`four`"));
        assert_eq!(parse_positive("1.5", "cpu_quota"), Ok(1.5));
        assert!(parse_positive("0", "cpu_quota").is_err());
    }
}
