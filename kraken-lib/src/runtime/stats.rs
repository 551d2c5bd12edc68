//! Resource samples of a container, computed as `docker stats` does.

use futures::StreamExt;

use super::docker::DockerRuntime;
use super::error::map_err;
use super::{ContainerStats, RuntimeError};

/// CPU use in percent of one core between two samples, as `docker stats`
/// computes it: the container's share of the host's CPU time in the interval,
/// times the number of CPUs. 0 when the interval is empty or unknown.
fn cpu_percent(total: u64, pre_total: u64, system: Option<u64>, pre_system: Option<u64>, cpus: u64) -> f64 {
    let (Some(system), Some(pre_system)) = (system, pre_system) else {
        return 0.0;
    };
    let cpu_delta = total.saturating_sub(pre_total) as f64;
    let system_delta = system.saturating_sub(pre_system) as f64;
    if cpu_delta <= 0.0 || system_delta <= 0.0 {
        return 0.0;
    }
    cpu_delta / system_delta * cpus.max(1) as f64 * 100.0
}

/// Memory in use without the page cache the kernel can drop, as `docker stats`
/// reports it (cgroup v1: `total_inactive_file`; v2: `inactive_file`).
fn memory_in_use(memory: &bollard::container::MemoryStats) -> u64 {
    use bollard::container::MemoryStatsStats as S;
    let cache = match &memory.stats {
        Some(S::V1(v1)) if v1.total_inactive_file > 0 => v1.total_inactive_file,
        Some(S::V1(v1)) => v1.cache,
        Some(S::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    usage_without_cache(memory.usage.unwrap_or(0), cache)
}

/// `usage - cache`, or `usage` when the cache figure does not fit below it.
fn usage_without_cache(usage: u64, cache: u64) -> u64 {
    if cache < usage {
        usage - cache
    } else {
        usage
    }
}
pub(super) async fn stats(rt: &DockerRuntime, id: &str) -> Result<ContainerStats, RuntimeError> {
    let options = bollard::container::StatsOptions { stream: false, one_shot: false };
    let mut samples = rt.docker.stats(id, Some(options));
    let sample = samples
        .next()
        .await
        .ok_or_else(|| RuntimeError::Unexpected(format!("container {id}: the engine sent no stats")))?
        .map_err(|e| map_err(&format!("container {id}"), e))?;
    let cpu = &sample.cpu_stats;
    let pre = &sample.precpu_stats;
    let cpus = cpu
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| cpu.cpu_usage.percpu_usage.as_ref().map(|v| v.len() as u64))
        .unwrap_or(1);
    Ok(ContainerStats {
        cpu_percent: cpu_percent(
            cpu.cpu_usage.total_usage,
            pre.cpu_usage.total_usage,
            cpu.system_cpu_usage,
            pre.system_cpu_usage,
            cpus,
        ),
        memory_bytes: memory_in_use(&sample.memory_stats),
        memory_limit_bytes: sample.memory_stats.limit.unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_follows_the_docker_formula() {
        // 0.5 s of container CPU in 4 s of host CPU time on 2 CPUs = 25 %.
        let pct = cpu_percent(1_500_000_000, 1_000_000_000, Some(12_000_000_000), Some(8_000_000_000), 2);
        assert!((pct - 25.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn cpu_percent_is_zero_without_a_previous_sample_or_interval() {
        assert_eq!(cpu_percent(10, 0, Some(100), None, 2), 0.0);
        assert_eq!(cpu_percent(10, 0, None, None, 2), 0.0);
        assert_eq!(cpu_percent(10, 10, Some(200), Some(100), 2), 0.0);
        assert_eq!(cpu_percent(10, 5, Some(100), Some(100), 2), 0.0);
        // A counter that went backwards (container restarted) gives 0, not a panic.
        assert_eq!(cpu_percent(5, 10, Some(200), Some(100), 2), 0.0);
    }

    #[test]
    fn memory_subtracts_the_cache_only_when_it_fits() {
        assert_eq!(usage_without_cache(1000, 300), 700);
        assert_eq!(usage_without_cache(1000, 0), 1000);
        assert_eq!(usage_without_cache(1000, 5000), 1000);
        assert_eq!(usage_without_cache(0, 0), 0);
    }
}
