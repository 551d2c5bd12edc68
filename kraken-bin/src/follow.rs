//! Following one deployment until it settles: its status changes come from
//! the API's event stream (`/api/v1/events`) and its log lines from the log
//! stream, both pushed by the server. On a terminal a spinner shows the
//! current status; otherwise (or with `--json`) plain lines are printed.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use kraken_lib::client::ApiEvent;
use kraken_lib::deployment::{Status, StatusChange};
use kraken_lib::state::LogLine;

use crate::cli::Failure;
use crate::commands::{line_text, print_line, Api, PAGE};

/// When following ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Once it runs, failed or is gone.
    Deployed,
    /// Once it is gone or failed.
    Destroyed,
}

impl Finish {
    fn reached(self, status: Status) -> bool {
        match self {
            Self::Deployed => matches!(status, Status::Running | Status::Errored | Status::Destroyed),
            Self::Destroyed => matches!(status, Status::Destroyed | Status::Errored),
        }
    }
}

/// How progress is shown: a spinner on a terminal, plain lines otherwise.
struct Progress {
    spinner: Option<ProgressBar>,
    json: bool,
}

impl Progress {
    fn new(json: bool) -> Self {
        let spinner = (!json && std::io::stdout().is_terminal()).then(|| {
            let spinner = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        });
        Self { spinner, json }
    }

    fn status(&self, change: &StatusChange) {
        if self.json {
            if let Ok(text) = serde_json::to_string(change) {
                println!("{text}");
            }
            return;
        }
        let text = format!("==> {:<26} {}", change.status.as_str(), change.message);
        match &self.spinner {
            Some(spinner) => {
                spinner.println(text);
                spinner.set_message(change.status.as_str());
            }
            None => println!("{text}"),
        }
    }

    fn line(&self, line: &LogLine) {
        match &self.spinner {
            Some(spinner) => spinner.println(line_text(line)),
            None => print_line(line, self.json),
        }
    }

    fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

/// Shows the status changes after the first `seen` ones, and the log lines
/// logged from now on (from the start when `seen` is 0), until `finish` is
/// reached.
pub(crate) async fn follow(api: &Api, id: &str, json: bool, seen: usize, finish: Finish) -> Result<ExitCode> {
    let client = &api.client;
    // Listen before reading, so that no change in between is missed.
    let mut events = client.events().await.map_err(|e| api.fail(e))?;
    let mut next_line = if seen > 0 { latest_offset(api, id).await? } else { 0 };
    let mut lines = client.follow_logs(id, next_line).await.map_err(|e| api.fail(e))?;
    let mut lines_open = true;
    let progress = Progress::new(json);
    let mut deployment = client.deployment(id).await.map_err(|e| api.fail(e))?;
    let mut seen = seen;
    loop {
        let mut reached = false;
        for change in deployment.status_history.iter().skip(seen) {
            progress.status(change);
            reached |= finish.reached(change.status);
        }
        seen = deployment.status_history.len();
        if reached && finish.reached(deployment.status) {
            break;
        }
        tokio::select! {
            event = events.next() => match event {
                // The event has the short form: read the history that came with it.
                Some(Ok(ApiEvent::Deployment(d))) if d.id == id => {
                    deployment = client.deployment(id).await.map_err(|e| api.fail(e))?;
                }
                Some(Ok(ApiEvent::Lagged { .. })) => {
                    deployment = client.deployment(id).await.map_err(|e| api.fail(e))?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    progress.finish();
                    return Err(api.fail(e));
                }
                None => {
                    progress.finish();
                    return Err(Failure::Unreachable(format!(
                        "the platform at {} closed its event stream before deployment {id} settled; \
                         `kraken inspect {id}` shows where it is",
                        client.address()
                    ))
                    .into());
                }
            },
            line = lines.next(), if lines_open => match line {
                Some(Ok(line)) if line.seq >= next_line => {
                    next_line = line.seq + 1;
                    progress.line(&line);
                }
                Some(Ok(_)) => {}
                // The log stream is only a view; the pages below catch up.
                Some(Err(_)) | None => lines_open = false,
            },
        }
    }
    // Show what was logged up to the end (the live stream may lag behind).
    loop {
        let page = client.logs(id, next_line, PAGE).await.map_err(|e| api.fail(e))?;
        for line in page.lines.iter().filter(|l| l.seq >= next_line) {
            progress.line(line);
        }
        next_line = page.next_offset.max(next_line);
        if page.lines.len() < PAGE {
            break;
        }
    }
    progress.finish();
    match deployment.status {
        Status::Errored => {
            let reason = deployment.error.as_deref().unwrap_or("-");
            Err(Failure::Failed(format!("deployment {id} failed: {reason}")).into())
        }
        Status::Running if !json => {
            println!("{id} is running at {}", deployment.address.as_deref().unwrap_or("-"));
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The offset after the last line logged so far.
async fn latest_offset(api: &Api, id: &str) -> Result<u64> {
    let mut offset = 0;
    loop {
        let page = api.client.logs(id, offset, PAGE).await.map_err(|e| api.fail(e))?;
        offset = page.next_offset;
        if page.lines.len() < PAGE {
            return Ok(offset);
        }
    }
}
