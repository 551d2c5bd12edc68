//! Footprint: an idle agent's resident memory and CPU, and the size of the
//! binary that runs it. The agent starts with an empty data directory (one
//! machine, in-process bus, no apps); memory is read from `VmRSS` once it
//! has answered `/ping` and run for a settling period, CPU from the
//! process's user + system time over the measuring window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::agent::{cpu_time, rss_bytes, Agent, Setup};

/// Runs the benchmark over `seconds` and prints its report.
pub async fn run(setup: &Setup, seconds: u64) -> Result<()> {
    let size = std::fs::metadata(&setup.kraken)
        .with_context(|| format!("reading {}", setup.kraken.display()))?
        .len();
    let helper = setup.kraken.with_file_name("kraken-fetch");
    let helper_size =
        std::fs::metadata(&helper).with_context(|| format!("reading {}", helper.display()))?.len();
    let agent = Agent::start(setup, |_| Ok(())).await?;
    let pid = agent.pid();
    let started_rss = rss_bytes(pid).context("reading the agent's memory")?;
    // The measuring window: an idle agent has nothing to wait for, so the
    // window itself is the measurement.
    let window = Duration::from_secs(seconds);
    let cpu_before = cpu_time(pid).context("reading the agent's CPU time")?;
    let start = Instant::now();
    let mut peak = started_rss;
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_bytes(pid).unwrap_or(0));
    }
    let cpu_after = cpu_time(pid).context("reading the agent's CPU time")?;
    let rss = rss_bytes(pid).context("reading the agent's memory")?;
    let cpu = (cpu_after - cpu_before).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
    let mb = |b: u64| b as f64 / 1_000_000.0;
    println!("## Footprint (idle agent, {seconds} s window)\n");
    println!("| what | value | target |\n| --- | --- | --- |");
    println!("| binary size | {:.1} MB ({size} bytes) | < 15 MB |", mb(size));
    println!(
        "| fetch helper size (`kraken-fetch`, runs only while a repository is fetched) | {:.1} MB ({helper_size} bytes) | |",
        mb(helper_size)
    );
    println!("| resident memory on /ping | {:.1} MB | |", mb(started_rss));
    println!("| resident memory after the window | {:.1} MB (peak {:.1} MB) | < 15 MB |", mb(rss), mb(peak));
    println!("| CPU over the window | {cpu:.2} % of one core | |\n");
    drop(agent);
    Ok(())
}
