//! The client commands (`deploy`, `validate`, `ps`, `inspect`, `logs`,
//! `update`, `rm`, `nodes`): each one call or two of the platform's API
//! through kraken-lib's typed client.

use std::process::ExitCode;

use anyhow::Result;
use futures::StreamExt;
use kraken_lib::client::{Client, ClientError, SourceRequest};
use kraken_lib::deployment::Status;
use kraken_lib::state::LogLine;
use serde::Serialize;

use crate::cli::{Command, Failure};
use crate::follow::{follow, Finish};

/// The most lines one page of a log holds.
pub(crate) const PAGE: usize = 5000;

/// The API client of the CLI: kraken-lib's client, and failures with the
/// CLI's exit codes and hints.
pub(crate) struct Api {
    pub(crate) client: Client,
}

impl Api {
    /// Turns a client error into a failure a person can act on.
    pub(crate) fn fail(&self, error: ClientError) -> anyhow::Error {
        let server = self.client.address();
        match error {
            ClientError::Refused { status, message } => {
                let hint = if status == reqwest::StatusCode::UNAUTHORIZED && !self.client.has_token() {
                    " (no token found: pass --token or KRAKEN_TOKEN)"
                } else {
                    ""
                };
                Failure::Refused(format!("the platform refused ({status}): {message}{hint}")).into()
            }
            e @ (ClientError::Unreachable { .. } | ClientError::TimedOut { .. } | ClientError::BadAddress(_)) => {
                Failure::Unreachable(format!(
                    "cannot reach the platform at {server} ({e}); is `kraken up` running there? (--server or KRAKEN_SERVER)"
                ))
                .into()
            }
            other => anyhow::Error::new(other),
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// A log line as the CLI shows it.
pub(crate) fn print_line(line: &LogLine, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(line) {
            println!("{text}");
        }
    } else {
        println!("{}", line_text(line));
    }
}

/// A log line as text: stdout as it is, other streams named.
pub(crate) fn line_text(line: &LogLine) -> String {
    match &*line.stream {
        "stdout" => line.line.clone(),
        other => format!("[{other}] {}", line.line),
    }
}

/// Runs one client command.
pub(crate) async fn client_command(api: &Api, command: Command, json: bool) -> Result<ExitCode> {
    let client = &api.client;
    match command {
        Command::Up(_) | Command::Orchestrator(_) | Command::Worker(_) => {
            Err(anyhow::anyhow!("agent commands are not client commands"))
        }
        Command::Deploy { url, branch, follow: following } => {
            let url = local_path_to_absolute(&url);
            let created = client.create(&SourceRequest { url, branch }).await.map_err(|e| api.fail(e))?;
            if !following {
                if json {
                    print_json(&created)?;
                } else {
                    println!("{}", created.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                println!("deployment {} requested", created.id);
            }
            follow(api, &created.id, json, 0, Finish::Deployed).await
        }
        Command::Validate { url, branch } => {
            let url = local_path_to_absolute(&url);
            let v = client.validate(&SourceRequest { url, branch }).await.map_err(|e| api.fail(e))?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "ok: `{}` on port {} built by the {} builder ({})",
                    v.manifest.app.name, v.manifest.config.port, v.builder, v.reason
                );
                println!("commit {}", v.commit);
                crate::cli::print_plan(&serde_json::to_value(&v.plan)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ps { all } => {
            let list = client.deployments().await.map_err(|e| api.fail(e))?;
            let items: Vec<_> = list.into_iter().filter(|d| all || d.status != Status::Destroyed).collect();
            if json {
                print_json(&items)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<14} {:<20} {:<26} {:<12} {:<9} ADDRESS", "ID", "NAME", "STATUS", "NODE", "COMMIT");
            for d in items {
                let commit = or_dash(d.commit.as_deref());
                println!(
                    "{:<14} {:<20} {:<26} {:<12} {:<9} {}",
                    d.id,
                    or_dash(d.name.as_deref()),
                    d.status.as_str(),
                    or_dash(d.node.as_deref()),
                    commit.get(..8).unwrap_or(commit),
                    or_dash(d.address.as_deref())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { id } => {
            let d = client.deployment(&id).await.map_err(|e| api.fail(e))?;
            if json {
                print_json(&d)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} ({}) {} {}@{}", d.id, or_dash(d.name.as_deref()), d.status, d.url, d.branch);
            println!(
                "address: {}   node: {}   commit: {}",
                or_dash(d.address.as_deref()),
                or_dash(d.node.as_deref()),
                or_dash(d.commit.as_deref())
            );
            for c in &d.status_history {
                println!("  {}  {:<26} {}", c.at.to_rfc3339(), c.status.as_str(), c.message);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { id, follow: following } => {
            if following {
                let mut lines = client.follow_logs(&id, 0).await.map_err(|e| api.fail(e))?;
                while let Some(line) = lines.next().await {
                    print_line(&line.map_err(|e| api.fail(e))?, json);
                }
            } else {
                let mut offset = 0u64;
                loop {
                    let page = client.logs(&id, offset, PAGE).await.map_err(|e| api.fail(e))?;
                    for l in &page.lines {
                        print_line(l, json);
                    }
                    offset = page.next_offset;
                    if page.lines.len() < PAGE {
                        break;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Update { id, follow: following } => {
            client.update(&id).await.map_err(|e| api.fail(e))?;
            if !following {
                if !json {
                    println!("update of {id} requested");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let before = client.deployment(&id).await.map_err(|e| api.fail(e))?;
            follow(api, &id, json, before.status_history.len().saturating_sub(1), Finish::Deployed).await
        }
        Command::Rm { id, wait } => {
            client.destroy(&id).await.map_err(|e| api.fail(e))?;
            if !wait {
                if !json {
                    println!("destruction of {id} requested");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let before = client.deployment(&id).await.map_err(|e| api.fail(e))?;
            follow(api, &id, json, before.status_history.len().saturating_sub(1), Finish::Destroyed).await
        }
        Command::Nodes => {
            let nodes = client.nodes().await.map_err(|e| api.fail(e))?;
            if json {
                print_json(&nodes)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<12} {:<16} {:<13} {:<5} {:>5} {:>13} {:>4} {:>4} ADDRESS",
                "ID", "NAME", "ROLE", "UP", "CPU%", "MEMORY", "APPS", "PRIO"
            );
            let gib = |v: u64| v as f64 / (1u64 << 30) as f64;
            for n in nodes {
                let role = serde_json::to_value(n.role)?;
                println!(
                    "{:<12} {:<16} {:<13} {:<5} {:>5.1} {:>5.1}/{:<5.1}GiB {:>4} {:>4} {}",
                    n.id,
                    n.name,
                    role.as_str().unwrap_or("-"),
                    if n.up { "yes" } else { "no" },
                    n.stats.cpu_percent,
                    gib(n.stats.memory_used_bytes),
                    gib(n.stats.memory_total_bytes),
                    n.deployments.len(),
                    n.rollover_priority,
                    n.address
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A relative local path means the directory here, not on the server: make it absolute.
fn local_path_to_absolute(url: &str) -> String {
    if url.contains("://") || url.starts_with('/') {
        return url.to_string();
    }
    match std::fs::canonicalize(url) {
        Ok(p) if p.is_dir() => p.display().to_string(),
        _ => url.to_string(),
    }
}
