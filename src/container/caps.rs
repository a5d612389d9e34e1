//! Capability names and numbers (capabilities(7), linux/capability.h).

use crate::jobfile::CAPABILITIES as NAMES;

/// `CAP_NET_RAW`, `cap_net_raw` or `NET_RAW` → 13.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The highest capability this kernel knows (capabilities(7): /proc/sys/kernel/cap_last_cap).
pub fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(NAMES.len() as u32 - 1)
            .min(63)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_accepted_in_any_spelling() {
        assert_eq!(number("CAP_NET_RAW"), Some(13));
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_FLY"), None);
    }
}
