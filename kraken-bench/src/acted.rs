//! Request stored → acted on: the time from a deployment request's commit
//! (its first status, `DeploymentRequested`) to the orchestrator's first step
//! on it (the next status), read from the status history the platform keeps.
//! The requests name a repository with nothing to build, so each fails at
//! once after that first step and many can be made cheaply.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::agent::{Agent, Setup};
use crate::app::{Kind, Repo};
use crate::report::{ms, percentile};

/// Runs the benchmark and prints its report.
pub async fn run(setup: &Setup, requests: usize) -> Result<()> {
    let repo = Repo::new(Kind::Empty)?;
    let agent = Agent::start(setup, |_| Ok(())).await?;
    let mut samples = Vec::new();
    for _ in 0..requests {
        let id = agent.deploy(&repo.url()).await?;
        // The repository has nothing to build: the deployment ends Errored.
        let d = wait_errored(&agent, &id).await?;
        samples
            .push(stored_to_acted(&d).with_context(|| format!("deployment {id} has no second status: {d}"))?);
    }
    println!("## Request stored → acted on ({requests} requests, one at a time)\n");
    println!("| p50 | p90 | p99 | max |\n| --- | --- | --- | --- |");
    println!(
        "| {} | {} | {} | {} |\n\ntarget < 10 ms\n",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(percentile(&samples, 100.0))
    );
    Ok(())
}

async fn wait_errored(agent: &Agent, id: &str) -> Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = agent.get(&format!("/api/v1/deployments/{id}")).await?;
        if d["status"] == "Errored" {
            return Ok(d);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "deployment {id} did not end within 60 s: {d}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The time between a deployment's first and second status in its history.
pub fn stored_to_acted(d: &Value) -> Option<Duration> {
    let history = d["status_history"].as_array()?;
    let at = |i: usize| -> Option<DateTime<Utc>> { history.get(i)?["at"].as_str()?.parse().ok() };
    (at(1)? - at(0)?).to_std().ok()
}
