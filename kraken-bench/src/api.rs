//! API latency: `GET /api/v1/deployments` (its first page of the default
//! size, and the whole list in one page, `?limit=1000`) and `GET
//! /api/v1/deployments/{id}` with many deployments stored (written into the agent's state before it
//! starts: each one's request, two steps and a failure, as a real history
//! would hold) and many clients at once, each sending its next request as
//! soon as the last was answered. Measured twice in one run: with the agent
//! idle, then while a deployed app prints log lines as fast as it can.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use kraken_lib::deployment::Status;
use kraken_lib::state::{State, StateLimits};

use crate::agent::{Agent, Setup, TOKEN};
use crate::app::{Kind, Repo};
use crate::logs::{flood_stored, newest_seq};
use crate::report::{ms, percentile};

/// How much load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Deployments stored.
    pub deployments: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per client and endpoint.
    pub requests: usize,
}

/// Runs the benchmark and prints its report.
pub async fn run(setup: &Setup, shape: Shape) -> Result<()> {
    let mut ids = Vec::new();
    let agent = Agent::start(setup, |dir| {
        ids = store_deployments(dir, shape.deployments)?;
        Ok(())
    })
    .await?;
    let ids = Arc::new(ids);
    check_pages(&agent, shape.deployments).await?;
    println!(
        "## API latency ({} deployments stored, {} concurrent clients, {} requests each per endpoint)\n",
        shape.deployments, shape.clients, shape.requests
    );
    println!("| agent | endpoint | p50 | p90 | p99 | max | requests/s |\n| --- | --- | --- | --- | --- | --- | --- |");
    report("idle", &measure(&agent, &ids, shape).await?);

    let flood = Repo::new(Kind::Flood)?;
    let id = agent.deploy(&flood.url()).await?;
    agent.wait_for(&id, &["Running"], Duration::from_secs(120)).await?;
    let newest = flood_stored(&agent, &id).await?;
    let (before, started) = (newest_seq(&agent, &id, newest).await?, Instant::now());
    let results = measure(&agent, &ids, shape).await?;
    let (after, took) = (newest_seq(&agent, &id, before).await?, started.elapsed());
    report("an app flooding its log", &results);
    println!(
        "\ntarget p99 < 10 ms. While flooding, the agent stored {} log lines in {:.1} s ({:.0} lines/s).\n",
        after - before,
        took.as_secs_f64(),
        (after - before) as f64 / took.as_secs_f64()
    );
    agent.destroy(&id).await?;
    Ok(())
}

/// Checks, once before measuring, that the pages hold what they should: the
/// first page the default number (or all when fewer), the full one all.
async fn check_pages(agent: &Agent, stored: usize) -> Result<()> {
    let http = reqwest::Client::new();
    for (query, expected) in
        [("", stored.min(kraken_lib::api::DEFAULT_PAGE)), ("?limit=1000", stored.min(1000))]
    {
        let page: serde_json::Value = http
            .get(format!("{}/api/v1/deployments{query}", agent.server))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let items = page["items"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            items == expected,
            "GET /api/v1/deployments{query} gave {items} deployments, not {expected}"
        );
    }
    Ok(())
}

/// Stores `n` failed deployments in the state under `data_dir`; returns their ids.
fn store_deployments(data_dir: &Path, n: usize) -> Result<Vec<String>> {
    let state = State::open(&data_dir.join("state"), StateLimits::default()).context("opening the state")?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let d = state.create_deployment(&format!("https://git.example.invalid/app-{i}.git"), "main")?;
        state.update_deployment(&d.id, |d| {
            let now = Utc::now();
            d.transition(Status::ValidatingDeploymentData, "checking the request", now);
            d.transition(Status::RetrievingApplicationData, "fetching the repository", now);
            d.transition(Status::Errored, "the repository could not be fetched: host not found", now);
            d.error = Some("the repository could not be fetched: host not found".into());
            true
        })?;
        ids.push(d.id);
    }
    Ok(ids)
}

/// The endpoints measured, in the report's order.
const ENDPOINTS: [Endpoint; 3] = [Endpoint::Page, Endpoint::Full, Endpoint::One];

/// What a client asks for.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// The list's first page, of the default size.
    Page,
    /// The whole list in one page.
    Full,
    /// One deployment.
    One,
}

impl Endpoint {
    /// The name in the report.
    fn name(self) -> &'static str {
        match self {
            Self::Page => "GET /api/v1/deployments",
            Self::Full => "GET /api/v1/deployments?limit=1000",
            Self::One => "GET /api/v1/deployments/{id}",
        }
    }

    /// The path of the `n`th request.
    fn path(self, ids: &[String], n: usize) -> String {
        match self {
            Self::Page => "/api/v1/deployments".to_string(),
            Self::Full => "/api/v1/deployments?limit=1000".to_string(),
            Self::One => format!("/api/v1/deployments/{}", ids[n % ids.len()]),
        }
    }
}

/// Every latency and the wall time, per endpoint.
type Results = Vec<(Endpoint, (Vec<Duration>, Duration))>;

async fn measure(agent: &Agent, ids: &Arc<Vec<String>>, shape: Shape) -> Result<Results> {
    let mut results = Vec::new();
    for endpoint in ENDPOINTS {
        results.push((endpoint, load(agent, ids, shape, endpoint).await?));
    }
    Ok(results)
}

/// Runs `shape.clients` clients, each sending `shape.requests` requests one
/// after the other; returns every latency and the wall time.
async fn load(
    agent: &Agent,
    ids: &Arc<Vec<String>>,
    shape: Shape,
    endpoint: Endpoint,
) -> Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..shape.clients {
        // A client of its own per task: its own connection, as separate users would have.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let server = agent.server.clone();
        let ids = Arc::clone(ids);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(shape.requests);
            for r in 0..shape.requests {
                let path = endpoint.path(&ids, c * shape.requests + r);
                let start = Instant::now();
                let resp = http.get(format!("{server}{path}")).bearer_auth(TOKEN).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                samples.push(start.elapsed());
                anyhow::ensure!(status.is_success(), "GET {path}: {status}");
                anyhow::ensure!(!body.is_empty(), "GET {path}: an empty body");
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.context("a client task")??);
    }
    Ok((all, started.elapsed()))
}

fn report(agent: &str, r: &Results) {
    for (endpoint, (samples, wall)) in r {
        let name = endpoint.name();
        println!(
            "| {agent} | {name} | {} | {} | {} | {} | {:.0} |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 90.0)),
            ms(percentile(samples, 99.0)),
            ms(percentile(samples, 100.0)),
            samples.len() as f64 / wall.as_secs_f64()
        );
    }
}
