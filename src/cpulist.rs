//! The kernel's list format for CPUs and memory nodes ("0-3,8-11").
//!
//! Used by `/sys/devices/system/cpu/online`, `cpuset.cpus`, `Cpus_allowed_list`
//! and friends. A `CpuList` is a sorted set of ids without duplicates.

use std::fmt;
use std::str::FromStr;

/// A sorted, duplicate-free set of CPU or memory-node ids.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuList(Vec<u32>);

/// A list that is not in the kernel's `0-3,8` format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU list `{input}`: {reason}; expected ids and ranges like 0-3,8")]
pub struct CpuListError {
    pub input: String,
    pub reason: String,
}

impl CpuList {
    pub fn new() -> Self {
        CpuList(Vec::new())
    }

    /// Builds a list from any ids; sorts and removes duplicates.
    pub fn from_ids<I: IntoIterator<Item = u32>>(ids: I) -> Self {
        let mut v: Vec<u32> = ids.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        CpuList(v)
    }

    /// Parses the kernel's list format. Blank input (an empty file) is the empty list.
    pub fn parse(input: &str) -> Result<Self, CpuListError> {
        let err = |reason: String| CpuListError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let mut ids = Vec::new();
        if s.is_empty() {
            return Ok(CpuList(ids));
        }
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(err("empty element".into()));
            }
            // The kernel also accepts "0-7:2/4" (stride groups) on input, but never prints it.
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: u32 = a
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("`{a}` is not a number")))?;
                    let b: u32 = b
                        .trim()
                        .parse()
                        .map_err(|_| err(format!("`{b}` is not a number")))?;
                    if b < a {
                        return Err(err(format!("range `{part}` goes backwards")));
                    }
                    if b - a > 1 << 20 {
                        return Err(err(format!("range `{part}` is implausibly large")));
                    }
                    ids.extend(a..=b);
                }
                None => ids.push(
                    part.parse()
                        .map_err(|_| err(format!("`{part}` is not a number")))?,
                ),
            }
        }
        Ok(CpuList::from_ids(ids))
    }

    pub fn ids(&self) -> &[u32] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, id: u32) -> bool {
        self.0.binary_search(&id).is_ok()
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    pub fn intersection(&self, other: &CpuList) -> CpuList {
        CpuList(
            self.0
                .iter()
                .copied()
                .filter(|c| other.contains(*c))
                .collect(),
        )
    }
    pub fn union(&self, other: &CpuList) -> CpuList {
        CpuList::from_ids(self.0.iter().chain(other.0.iter()).copied())
    }
    pub fn difference(&self, other: &CpuList) -> CpuList {
        CpuList(
            self.0
                .iter()
                .copied()
                .filter(|c| !other.contains(*c))
                .collect(),
        )
    }
    pub fn is_disjoint(&self, other: &CpuList) -> bool {
        self.0.iter().all(|c| !other.contains(*c))
    }
    pub fn is_subset(&self, other: &CpuList) -> bool {
        self.0.iter().all(|c| other.contains(*c))
    }
}

impl fmt::Display for CpuList {
    /// Formats as the kernel does: ascending ranges joined by commas ("0-3,8").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let v = &self.0;
        let mut first = true;
        while i < v.len() {
            let mut j = i;
            while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j == i {
                write!(f, "{}", v[i])?;
            } else {
                write!(f, "{}-{}", v[i], v[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuList({self})")
    }
}

impl FromStr for CpuList {
    type Err = CpuListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuList::parse(s)
    }
}

impl serde::Serialize for CpuList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for CpuList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CpuList::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(
            CpuList::parse("0-3,8-11").unwrap().ids(),
            &[0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(CpuList::parse("5\n").unwrap().ids(), &[5]);
        assert_eq!(CpuList::parse("3,1,2").unwrap().ids(), &[1, 2, 3]);
    }

    #[test]
    fn empty_file_is_the_empty_list() {
        assert!(CpuList::parse("\n").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_and_backward_ranges_naming_the_input() {
        let e = CpuList::parse("0-3,x").unwrap_err();
        assert!(e.to_string().contains("`0-3,x`"), "{e}");
        assert!(CpuList::parse("4-2").is_err());
        assert!(CpuList::parse("1,,2").is_err());
    }

    #[test]
    fn formats_like_the_kernel() {
        assert_eq!(
            CpuList::from_ids([0, 1, 2, 3, 8, 10, 11]).to_string(),
            "0-3,8,10-11"
        );
        assert_eq!(CpuList::new().to_string(), "");
    }

    #[test]
    fn set_operations() {
        let a = CpuList::parse("0-7").unwrap();
        let b = CpuList::parse("4-11").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "4-7");
        assert_eq!(a.difference(&b).to_string(), "0-3");
        assert_eq!(a.union(&b).to_string(), "0-11");
        assert!(!a.is_disjoint(&b));
        assert!(CpuList::parse("1-2").unwrap().is_subset(&a));
    }
}
