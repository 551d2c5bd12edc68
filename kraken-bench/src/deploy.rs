//! Deploy overhead: the same app, in the same run, deployed by hand (`git
//! clone` + `docker build` + `docker run`) and through Kraken's API, each
//! timed from the request to the app's first HTTP 200. Rounds alternate the
//! two paths; each round commits a new page first, so neither build finds
//! the page's layer in the engine's cache.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::agent::{Agent, Setup};
use crate::app::{Kind, Repo};
use crate::report::{percentile, secs};

/// Runs the benchmark and prints its report.
pub async fn run(setup: &Setup, rounds: usize) -> Result<()> {
    let mut repo = Repo::new(Kind::Web)?;
    let agent = Agent::start(setup, |_| Ok(())).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let mut by_hand = Vec::new();
    let mut kraken = Vec::new();
    for _ in 0..rounds {
        let page = repo.new_page()?;
        by_hand.push(deploy_by_hand(&repo, &page, &http).await?);
        let page = repo.new_page()?;
        kraken.push(deploy_with_kraken(&agent, &repo, &page, &http).await?);
    }
    let hand = percentile(&by_hand, 50.0);
    let ours = percentile(&kraken, 50.0);
    println!("## Deploy overhead (request to first HTTP 200, {rounds} rounds each, median)\n");
    println!("| path | median | min | max |\n| --- | --- | --- | --- |");
    for (name, s) in
        [("git clone + docker build + docker run", &by_hand), ("kraken POST /api/v1/deployments", &kraken)]
    {
        println!(
            "| {name} | {} | {} | {} |",
            secs(percentile(s, 50.0)),
            secs(percentile(s, 0.0)),
            secs(percentile(s, 100.0))
        );
    }
    let overhead = ours.as_secs_f64() - hand.as_secs_f64();
    println!(
        "\noverhead: {:.0} ms (target ≤ 100 ms), ratio {:.2}\n",
        overhead * 1000.0,
        ours.as_secs_f64() / hand.as_secs_f64().max(f64::EPSILON)
    );
    Ok(())
}

async fn deploy_by_hand(repo: &Repo, page: &str, http: &reqwest::Client) -> Result<Duration> {
    let work = tempfile::Builder::new().prefix("kraken-bench-clone-").tempdir()?;
    let clone = work.path().join("app");
    let image = format!("kraken-bench-byhand:{}", kraken_lib::deployment::random_id(4));
    let start = Instant::now();
    run_cmd(
        "git",
        &["clone", "-q", "--depth", "1", "-b", "main", &repo.url(), &clone.display().to_string()],
    )?;
    run_cmd("docker", &["build", "-q", "-t", &image, &clone.display().to_string()])?;
    let id = run_cmd("docker", &["run", "-d", "-p", "127.0.0.1::8080", &image])?;
    let result = async {
        let port = run_cmd("docker", &["port", &id, "8080/tcp"])?;
        let port =
            port.lines().next().and_then(|l| l.rsplit(':').next()).context("a published port")?.to_string();
        first_200(http, &format!("http://127.0.0.1:{port}/"), page).await?;
        Ok(start.elapsed())
    }
    .await;
    let _ = run_cmd("docker", &["rm", "-f", &id]);
    let _ = run_cmd("docker", &["rmi", "-f", &image]);
    result
}

/// Returns the time from the request to the first 200.
async fn deploy_with_kraken(
    agent: &Agent,
    repo: &Repo,
    page: &str,
    http: &reqwest::Client,
) -> Result<Duration> {
    let start = Instant::now();
    let id = agent.deploy(&repo.url()).await?;
    let d = agent.wait_for(&id, &["Running"], Duration::from_secs(120)).await?;
    // The agent publishes on --publish-ip, 127.0.0.1.
    let Some(port) = d["host_port"].as_u64() else { bail!("deployment {id} runs without a port: {d}") };
    first_200(http, &format!("http://127.0.0.1:{port}/"), page).await?;
    let took = start.elapsed();
    agent.destroy(&id).await?;
    Ok(took)
}

/// Polls `url` until it answers 200 with `page`.
async fn first_200(http: &reqwest::Client, url: &str, page: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() && r.text().await.is_ok_and(|t| t == page) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer with the new page within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn run_cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
