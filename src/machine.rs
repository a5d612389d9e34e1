//! Facts about the host that a result depends on: kernel, CPU model, SMT,
//! frequency governor. Every reader takes the root of /proc and /sys.

use std::path::Path;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Machine {
    pub host: String,
    pub kernel: String,
    pub cpu_model: String,
    /// `on`, `off`, `forceoff`, `notsupported` or `unknown` (sys/devices/system/cpu/smt/control).
    pub smt: String,
    /// Governors in use, e.g. `performance` or `powersave, schedutil`; `none` without cpufreq.
    pub governor: String,
}

/// The CPU model from /proc/cpuinfo text (x86 `model name`, arm `CPU part` fallbacks).
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "cpu model" | "Processor")
                .then(|| v.trim().to_string())
        })
        .filter(|s| !s.is_empty())
}

/// Reads the facts below `root` (`/` on the real machine).
pub fn read(root: &Path) -> Machine {
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut governors: Vec<String> = std::fs::read_dir(root.join("sys/devices/system/cpu"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    governors.sort();
    governors.dedup();
    Machine {
        host: read("proc/sys/kernel/hostname").unwrap_or_default(),
        kernel: read("proc/sys/kernel/osrelease").unwrap_or_default(),
        cpu_model: read("proc/cpuinfo")
            .and_then(|c| parse_cpu_model(&c))
            .unwrap_or_else(|| "unknown".into()),
        smt: read("sys/devices/system/cpu/smt/control").unwrap_or_else(|| "unknown".into()),
        governor: if governors.is_empty() {
            "none".into()
        } else {
            governors.join(", ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_comes_from_the_first_model_name_line() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(parse_cpu_model(text).unwrap(), "Intel(R) Xeon(R) Gold 6230");
        assert_eq!(parse_cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn reads_a_fake_root_and_names_missing_facts() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.1.0-13-amd64\n").unwrap();
        std::fs::write(r.join("proc/sys/kernel/hostname"), "node7\n").unwrap();
        for c in ["cpu0", "cpu1"] {
            std::fs::create_dir_all(r.join(format!("sys/devices/system/cpu/{c}/cpufreq"))).unwrap();
            std::fs::write(
                r.join(format!(
                    "sys/devices/system/cpu/{c}/cpufreq/scaling_governor"
                )),
                "performance\n",
            )
            .unwrap();
        }
        let m = read(r);
        assert_eq!(m.kernel, "6.1.0-13-amd64");
        assert_eq!(m.host, "node7");
        assert_eq!(m.governor, "performance");
        assert_eq!(m.smt, "unknown");
        assert_eq!(m.cpu_model, "unknown");
    }
}
