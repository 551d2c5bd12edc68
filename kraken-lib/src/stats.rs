//! Node statistics from `sysinfo`: CPU, memory, load and uptime, sampled by
//! every node and reported on the bus.

use serde::{Deserialize, Serialize};

/// One sample of a node's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct NodeStats {
    /// CPU use over all cores, 0–100.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Memory installed, bytes.
    pub memory_total_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Seconds since the machine booted.
    pub uptime_secs: u64,
    /// Logical CPUs.
    pub cpus: usize,
}

/// Samples the local machine. Keep one and call [`Sampler::sample`] repeatedly:
/// CPU use is measured between two calls.
pub struct Sampler {
    system: sysinfo::System,
}

impl Sampler {
    /// A sampler; its first CPU reading covers the time since it was made.
    pub fn new() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self { system }
    }

    /// Takes a sample now.
    pub fn sample(&mut self) -> NodeStats {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let load = sysinfo::System::load_average();
        NodeStats {
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            load: [load.one, load.five, load.fifteen],
            uptime_secs: sysinfo::System::uptime(),
            cpus: self.system.cpus().len(),
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_this_machine() {
        let mut s = Sampler::new();
        let stats = s.sample();
        assert!(stats.memory_total_bytes > 0);
        assert!(stats.memory_used_bytes <= stats.memory_total_bytes);
        assert!(stats.cpus >= 1);
        assert!(stats.uptime_secs > 0);
        assert!((0.0..=100.0).contains(&stats.cpu_percent));
    }
}
