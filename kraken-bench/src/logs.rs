//! Log ingest: one deployed app prints a 60-character line as fast as it can
//! (`busybox yes`); the figure is how many lines per second the agent stores
//! (from the stored log's sequence numbers at the start and the end of a
//! window) and its resident memory meanwhile (sampled every 50 ms, and the
//! kernel's peak `VmHWM`), against its memory when idle and the bound the
//! log limits promise.
//!
//! More figures say where the time goes, stage by stage: how many lines a
//! second follower of the same container gets from the engine
//! (`docker logs --follow`, counted while the agent keeps following), how
//! many a reader attached to the container's output gets (`docker attach`,
//! the engine's live stream, which carries no timestamps), how many lines a
//! second the agent's own path takes without the engine (engine-like frames
//! split into lines, through a log sink and the in-process bus, stored by the
//! state, in this process), and how many lines a second the state alone
//! stores (`State::append_logs`, batches as the orchestrator receives them). What the newest
//! stored lines say about lines dropped on the way (`[kraken] N lines
//! dropped`) tells whether the agent kept up with what the engine delivered.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use kraken_lib::bus::memory::MemoryBus;
use kraken_lib::bus::{Body, Bus, Channel, LogEntry};
use kraken_lib::log_sink::{LogSink, BATCH_LINES};
use kraken_lib::node::{GenericNode, NodeConfig, NodeIdentity};
use kraken_lib::output::LineSplitter;
use kraken_lib::runtime::LogPosition;
use kraken_lib::state::{State, StateLimits};
use tokio::io::AsyncReadExt;

use crate::agent::{cpu_time, hwm_bytes, rss_bytes, Agent, Setup};
use crate::app::{Kind, Repo};

/// The line the flooding app prints (its newline makes 61 bytes).
const LINE: &str = "a log line of about sixty characters from the flooding app";

/// How the agent's memory may grow above idle, from `docs/operations.md`.
const BOUND_MIB: f64 = 64.0;

/// Runs the benchmark with a window of `seconds` and prints its report.
pub async fn run(setup: &Setup, seconds: u64) -> Result<()> {
    let window = Duration::from_secs(seconds);
    let agent = Agent::start(setup, |_| Ok(())).await?;
    let pid = agent.pid();
    let idle = rss_bytes(pid).context("reading the agent's memory")?;

    let flood = Repo::new(Kind::Flood)?;
    let id = agent.deploy(&flood.url()).await?;
    let d = agent.wait_for(&id, &["Running"], Duration::from_secs(120)).await?;
    let container =
        d["container_id"].as_str().context("the running deployment names no container")?.to_string();
    let newest = flood_stored(&agent, &id).await?;

    // The agent's rate and memory over the window.
    let before = newest_seq(&agent, &id, newest).await?;
    let cpu_before = cpu_time(pid).context("reading the agent's CPU time")?;
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        peak = peak.max(rss_bytes(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = newest_seq(&agent, &id, before).await?;
    let took = started.elapsed();
    let cpu = cpu_time(pid).context("reading the agent's CPU time")? - cpu_before;
    let hwm = hwm_bytes(pid).unwrap_or(0);
    let (kept, dropped) = newest_lines_and_drops(&agent, &id, after).await?;

    // The engine's own rate to a second follower, the agent still following.
    let engine = engine_rate(&["logs", "--follow", "--tail", "0", &container], window).await?;
    let attached = engine_rate(&["attach", "--no-stdin", "--sig-proxy=false", &container], window).await?;
    agent.destroy(&id).await?;
    drop(agent);

    // The agent's own path, then the state alone.
    let (path_rate, path_dropped) = path_rate(window).await?;
    let state_rate = state_rate(window).await?;

    let rate = (after - before) as f64 / took.as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("## Log ingest (one app printing `{LINE}` without pause, {seconds} s window)\n");
    println!("| what | value | target |\n| --- | --- | --- |");
    println!(
        "| lines stored | {} in {:.1} s: **{rate:.0} lines/s** | ≥ 100,000 lines/s |",
        after - before,
        took.as_secs_f64()
    );
    println!("| agent's resident memory, idle | {:.1} MiB | |", mib(idle));
    println!(
        "| agent's resident memory while flooding | peak {:.1} MiB sampled, {:.1} MiB `VmHWM` (+{:.1} MiB above idle) | ≤ +{BOUND_MIB:.0} MiB |",
        mib(peak),
        mib(hwm),
        mib(hwm.max(peak).saturating_sub(idle))
    );
    println!(
        "| agent's CPU over the window | {:.0} % of one core | |",
        cpu.as_secs_f64() / took.as_secs_f64() * 100.0
    );
    println!("| lines dropped on the way, per the newest {kept} stored lines | {dropped} | |");
    println!("| engine → a second `docker logs --follow` | {engine:.0} lines/s | |");
    println!("| engine → a reader attached (`docker attach`) | {attached:.0} lines/s | |");
    println!(
        "| the agent's path alone (split, log sink, in-process bus, state) | {path_rate:.0} lines/s ({path_dropped} dropped) | |"
    );
    println!("| the state alone (`append_logs`, batches of {BATCH_LINES}) | {state_rate:.0} lines/s | |\n");
    Ok(())
}

/// Waits (30 s at most) until a flooding app's first 1,000 lines are
/// stored; returns the `seq` after the newest stored line.
pub(crate) async fn flood_stored(agent: &Agent, id: &str) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut newest = 0;
    while newest < 1000 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the flooding app's lines are not stored:\n{}",
            agent.log()
        );
        newest = newest_seq(agent, id, newest).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(newest)
}

/// The `seq` after the newest stored log line of deployment `id`, searching
/// forward from `from` (a `seq` known to be stored or passed). A page asked
/// from `x` holds a line when any line at or after `x` is stored, so the
/// newest is found by doubling steps, then halving them: a few dozen small
/// requests, whatever the rate.
pub(crate) async fn newest_seq(agent: &Agent, id: &str, from: u64) -> Result<u64> {
    let any_from = |x: u64| async move {
        let page = agent.get(&format!("/api/v1/deployments/{id}/logs?offset={x}&limit=1")).await?;
        Ok::<_, anyhow::Error>(page["lines"].as_array().is_some_and(|l| !l.is_empty()))
    };
    if !any_from(from).await? {
        return Ok(from);
    }
    let (mut lo, mut step) = (from, 1024);
    let mut hi = loop {
        if any_from(lo + step).await? {
            lo += step;
            step *= 2;
        } else {
            break lo + step;
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if any_from(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// How many of the newest (at most 10,000) lines before `end` were read, and
/// how many lines the `[kraken] N lines dropped` notes among them count.
async fn newest_lines_and_drops(agent: &Agent, id: &str, end: u64) -> Result<(usize, u64)> {
    let (mut offset, mut kept, mut dropped) = (end.saturating_sub(10_000), 0, 0);
    while offset < end {
        let page = agent.get(&format!("/api/v1/deployments/{id}/logs?offset={offset}&limit=5000")).await?;
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        if lines.is_empty() {
            break;
        }
        for l in &lines {
            let text = l["line"].as_str().unwrap_or_default();
            if let Some(n) = text.strip_prefix("[kraken] ").and_then(|r| r.split(' ').next()) {
                dropped += n.parse::<u64>().unwrap_or(0);
            }
        }
        kept += lines.len();
        offset = page["next_offset"].as_u64().unwrap_or(end);
    }
    Ok((kept, dropped))
}

/// Lines a second `docker <args>` prints over `window` (a second follower
/// of the flooding container).
async fn engine_rate(args: &[&str], window: Duration) -> Result<f64> {
    let mut child = tokio::process::Command::new("docker")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running docker logs")?;
    let mut out = child.stdout.take().context("docker logs' output")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0u64;
    let started = Instant::now();
    while started.elapsed() < window {
        let left = window.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, out.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64,
            Ok(Err(e)) => return Err(e).context("reading docker's output"),
        }
    }
    let took = started.elapsed();
    let _ = child.kill().await;
    Ok(lines as f64 / took.as_secs_f64())
}

/// Lines a second the agent's path takes without the engine, and how many
/// it dropped: frames as the engine sends them (`<timestamp> <line>\n`, one
/// line each) split into lines and handed to a [`LogSink`] with their
/// position, published on the in-process bus and stored by the state as the
/// orchestrator stores them, as fast as the frames can be made.
async fn path_rate(window: Duration) -> Result<(f64, u64)> {
    let dir = tempfile::Builder::new().prefix("kraken-bench-path-").tempdir()?;
    let state =
        State::open(&dir.path().join("state"), StateLimits::default()).context("opening the state")?;
    let d = state.create_deployment("https://git.example.invalid/flood.git", "main")?;
    let bus = Arc::new(MemoryBus::new());
    let mut batches = bus.subscribe(&Channel::Log).await?;
    let config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse()?);
    let node = GenericNode::new(NodeIdentity { id: "bench".into(), name: "bench".into() }, config, bus);
    // Lines stored and lines the notes say were dropped, so far.
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let store = {
        let (state, id, counts) = (state.clone(), d.id.clone(), counts.clone());
        tokio::spawn(async move {
            while let Some(delivery) = batches.next().await {
                let Body::Log(batch) = delivery.envelope.body else { continue };
                let mut dropped = 0;
                for l in &batch.lines {
                    if let Some(n) = l.line.strip_prefix("[kraken] ").and_then(|r| r.split(' ').next()) {
                        dropped += n.parse::<u64>().unwrap_or(0);
                    }
                }
                let (state, id, lines) = (state.clone(), id.clone(), batch.lines);
                let count = lines.len() as u64 - u64::from(dropped > 0);
                let _ = tokio::task::spawn_blocking(move || state.append_logs(&id, lines)).await;
                counts.0.fetch_add(count, Ordering::Relaxed);
                counts.1.fetch_add(dropped, Ordering::Relaxed);
            }
        })
    };
    let sink = LogSink::start(node, d.id.clone(), 1);
    let started = Instant::now();
    let mut splitter = LineSplitter::new();
    let mut n = 0u64;
    while started.elapsed() < window {
        for _ in 0..1000 {
            let frame = format!("2026-01-01T00:00:00.{n:09}Z {LINE}\n");
            let (stamp, line) = frame.split_at(30);
            let at = LogPosition { at: stamp.into(), nth: 1 };
            for l in splitter.push("stdout", &line.as_bytes()[1..]) {
                sink.send_at(l.stream, l.text, at.clone());
            }
            n += 1;
        }
        tokio::task::yield_now().await;
    }
    // Every line made is stored or counted as dropped (a last note comes
    // once the sink's queue is empty).
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts.0.load(Ordering::Relaxed) + counts.1.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent's path did not take its lines within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    state.logs(&d.id, u64::MAX, 1)?;
    let took = started.elapsed();
    store.abort();
    drop(sink);
    let stored = counts.0.load(Ordering::Relaxed);
    Ok((stored as f64 / took.as_secs_f64(), counts.1.load(Ordering::Relaxed)))
}

/// Lines a second `State::append_logs` takes, with the default limits, in
/// batches of [`BATCH_LINES`] (the most a worker sends in one message), including the time to commit the last one
/// (a read waits for every queued batch).
async fn state_rate(window: Duration) -> Result<f64> {
    let dir = tempfile::Builder::new().prefix("kraken-bench-state-").tempdir()?;
    let path = dir.path().join("state");
    tokio::task::spawn_blocking(move || {
        let state = State::open(&path, StateLimits::default()).context("opening the state")?;
        let d = state.create_deployment("https://git.example.invalid/flood.git", "main")?;
        let batch: Vec<LogEntry> =
            (0..BATCH_LINES).map(|_| LogEntry { stream: "stdout".into(), line: LINE.into() }).collect();
        let started = Instant::now();
        let mut lines = 0;
        while started.elapsed() < window {
            state.append_logs(&d.id, batch.clone())?;
            lines += batch.len();
        }
        state.logs(&d.id, u64::MAX, 1)?;
        Ok(lines as f64 / started.elapsed().as_secs_f64())
    })
    .await
    .context("the state stage")?
}
