//! Facts about the host that a result depends on: kernel, CPU model, SMT,
//! frequency governor, turbo, ASLR, isolated CPUs. Every reader takes the
//! root of /proc and /sys.

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
    /// Turbo (boost) clocks: `on`, `off` or `unknown` (intel_pstate/no_turbo, cpufreq/boost).
    #[serde(default)]
    pub turbo: String,
    /// Address space layout randomization: `off`, `partial`, `full` or
    /// `unknown` (kernel.randomize_va_space).
    #[serde(default)]
    pub aslr: String,
    /// CPUs kept from the scheduler (isolcpus) and without ticks
    /// (nohz_full), as lists; empty when none.
    #[serde(default)]
    pub isolated_cpus: String,
    #[serde(default)]
    pub nohz_full_cpus: String,
}

/// `on`, `off` or `unknown` from intel_pstate's no_turbo or cpufreq's boost.
pub fn turbo(no_turbo: Option<&str>, boost: Option<&str>) -> &'static str {
    match (no_turbo.map(str::trim), boost.map(str::trim)) {
        (Some("1"), _) => "off",
        (Some("0"), _) => "on",
        (_, Some("1")) => "on",
        (_, Some("0")) => "off",
        _ => "unknown",
    }
}

/// kernel.randomize_va_space in words.
pub fn aslr(value: Option<&str>) -> &'static str {
    match value.map(str::trim) {
        Some("0") => "off",
        Some("1") => "partial",
        Some("2") => "full",
        _ => "unknown",
    }
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
        turbo: turbo(
            read("sys/devices/system/cpu/intel_pstate/no_turbo").as_deref(),
            read("sys/devices/system/cpu/cpufreq/boost").as_deref(),
        )
        .into(),
        aslr: aslr(read("proc/sys/kernel/randomize_va_space").as_deref()).into(),
        isolated_cpus: read("sys/devices/system/cpu/isolated").unwrap_or_default(),
        nohz_full_cpus: read("sys/devices/system/cpu/nohz_full")
            .filter(|s| s != "(null)")
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_and_aslr_read_in_words() {
        assert_eq!(turbo(Some("1\n"), None), "off");
        assert_eq!(turbo(Some("0"), Some("0")), "on");
        assert_eq!(turbo(None, Some("1")), "on");
        assert_eq!(turbo(None, None), "unknown");
        assert_eq!(aslr(Some("2\n")), "full");
        assert_eq!(aslr(Some("0")), "off");
        assert_eq!(aslr(None), "unknown");
    }

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
