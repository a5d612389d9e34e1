//! NVIDIA's management library (`libnvidia-ml.so.1`), loaded at run time:
//! the memory in use and the utilization of a GPU, by PCI bus id. Nothing
//! links against it; without it (no NVIDIA driver, AMD and Intel GPUs) the
//! GPU columns of a row stay empty.

/// The loaded library.
pub struct Nvml(nvml_wrapper::Nvml);

/// The library's file: the versioned name the driver installs (the
/// unversioned one comes only with development packages).
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// One look at a GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub memory_used: u64,
    /// Percent of the last sample period in which a kernel ran.
    pub utilization: u32,
}

impl Nvml {
    /// Loads and initialises the library; the error says why not.
    pub fn load() -> Result<Nvml, String> {
        nvml_wrapper::Nvml::builder()
            .lib_path(std::ffi::OsStr::new(LIBRARY))
            .init()
            .map(Nvml)
            .map_err(|e| format!("NVIDIA's management library ({LIBRARY}) cannot be used: {e}"))
    }

    /// A GPU's memory in use and utilization now; None when the library
    /// does not know the bus id or cannot say.
    pub fn sample(&self, bus_id: &str) -> Option<Sample> {
        let d = self.0.device_by_pci_bus_id(bus_id).ok()?;
        Some(Sample {
            memory_used: d.memory_info().ok()?.used,
            utilization: d.utilization_rates().ok()?.gpu,
        })
    }
}

/// A run's samples of its GPUs: the most memory they held at once and the
/// mean utilization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    peak: Option<u64>,
    utilization_sum: f64,
    samples: u32,
}

impl Usage {
    /// Adds one look at all of a run's GPUs (none answered: nothing).
    pub fn add(&mut self, gpus: &[Sample]) {
        if gpus.is_empty() {
            return;
        }
        let used: u64 = gpus.iter().map(|s| s.memory_used).sum();
        self.peak = Some(self.peak.map_or(used, |p| p.max(used)));
        let mean = gpus.iter().map(|s| s.utilization as f64).sum::<f64>() / gpus.len() as f64;
        self.utilization_sum += mean;
        self.samples += 1;
    }

    pub fn memory_peak(&self) -> Option<u64> {
        self.peak
    }

    pub fn mean_utilization(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.utilization_sum / self.samples as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keeps_the_peak_of_the_sum_and_the_mean_utilization() {
        let mut u = Usage::default();
        assert_eq!((u.memory_peak(), u.mean_utilization()), (None, None));
        let s = |m, p| Sample {
            memory_used: m,
            utilization: p,
        };
        u.add(&[s(100, 50), s(300, 100)]);
        u.add(&[s(350, 0), s(0, 0)]);
        u.add(&[]);
        assert_eq!(u.memory_peak(), Some(400));
        assert_eq!(u.mean_utilization(), Some(37.5));
    }

    #[test]
    fn without_the_library_loading_says_which_file_is_missing() {
        // No NVIDIA driver on the machines the tests run on.
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            return;
        }
        let e = Nvml::load().err().expect("no library here");
        assert!(e.contains("libnvidia-ml.so.1"), "{e}");
    }
}
