//! Update after a one-file commit: a deployed app, a commit that changes its
//! page, then `POST /api/v1/deployments/{id}/update`; timed from the request
//! to the new page served at the deployment's address. Meanwhile a client
//! asks the app's address (as it was before the update) for its page in a
//! loop, one request after the other, and counts the requests that failed
//! (no connection, an error status, or no answer within a second) between
//! the update request and the new page.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::agent::{Agent, Setup, TOKEN};
use crate::app::{Kind, Repo};
use crate::report::{percentile, secs};

/// Runs `rounds` updates and prints the report.
pub async fn run(setup: &Setup, rounds: usize) -> Result<()> {
    let mut repo = Repo::new(Kind::Web)?;
    let agent = Agent::start(setup, |_| Ok(())).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    let id = agent.deploy(&repo.url()).await?;
    let d = agent.wait_for(&id, &["Running"], Duration::from_secs(120)).await?;
    let mut port = d["host_port"].as_u64().context("the deployment runs without a port")?;
    new_page_served(&agent, &id, &http, "first\n").await?;

    let mut times = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let page = repo.new_page()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client = tokio::spawn(hammer(
            http.clone(),
            format!("http://127.0.0.1:{port}/"),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        ));
        let start = request_update(&agent, &http, &id).await?;
        let now_on = new_page_served(&agent, &id, &http, &page).await?;
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let gap = client.await.context("the looping client")?;
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        rows.push(format!(
            "| {round} | {} | {ok} | {failed} | {} | {} |",
            secs(took),
            secs(gap),
            if now_on == port { "same".to_string() } else { format!("{port} → {now_on}") }
        ));
        times.push(took);
        port = now_on;
    }
    agent.destroy(&id).await?;
    println!("## Update after a one-file commit (rounds: {rounds})\n");
    println!("| round | request to new page | client requests answered | failed | longest without an answer | app's port |\n| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
    println!("\nmedian {} (target: no failed request)\n", secs(percentile(&times, 50.0)));
    Ok(())
}

/// Asks `url` again and again until told to stop, counting the answers with
/// a 2xx status and the requests that failed; returns the longest time
/// between two answers.
async fn hammer(
    http: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> Duration {
    let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let answered = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        };
        if answered {
            gap = gap.max(last.elapsed());
            last = Instant::now();
            ok.fetch_add(1, Ordering::Relaxed);
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
            // A refused connection returns at once: do not spin on it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    gap.max(last.elapsed())
}

/// Asks for the update once the deployment takes one (it refuses with `409`
/// while a step of its last deploy is still going on); returns when the
/// request that was taken was sent.
async fn request_update(agent: &Agent, http: &reqwest::Client, id: &str) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let start = Instant::now();
        let r = http
            .post(format!("{}/api/v1/deployments/{id}/update", agent.server))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status();
        if status.is_success() {
            return Ok(start);
        }
        let body = r.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::CONFLICT || Instant::now() > deadline {
            bail!("POST update: {status}: {body}");
        }
        agent.wait_for(id, &["Running"], Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the deployment's address answers with `page`; returns its port.
async fn new_page_served(agent: &Agent, id: &str, http: &reqwest::Client, page: &str) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = agent.get(&format!("/api/v1/deployments/{id}")).await?;
        if d["status"] == "Errored" {
            bail!("the update failed: {}", d["error"]);
        }
        if let Some(port) = d["host_port"].as_u64() {
            if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/")).send().await {
                if r.status().is_success() && r.text().await.is_ok_and(|t| t == page) {
                    return Ok(port);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("deployment {id} did not serve the new page within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
