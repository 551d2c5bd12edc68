//! Bounded fetching: every fetch runs in a child process that is stopped
//! when it outlasts its time limit, and a queue bounds how many run at once.
//!
//! libgit2 has no time limit of its own: a server that accepts a connection
//! and never answers holds a fetch (and its thread) forever. So a fetch does
//! not run in the agent: the agent starts a helper process (by default its
//! own executable again, with the argument [`CHILD_ARG`]), hands it the
//! request on its standard input and reads the answer from its standard
//! output. The helper reports progress on its standard error whenever data
//! arrives or files are written; a helper that makes no progress for
//! [`FetchLimits::idle_timeout`], or runs longer than
//! [`FetchLimits::timeout`], is killed, its checkout removed by the caller,
//! and nothing is left running. The download and its checkout count against
//! one size limit ([`FetchLimits::max_bytes`]), and what the helper uses in
//! memory is not the agent's.
//!
//! At most [`FetchLimits::concurrent`] fetches run at once. Work of the
//! platform (a deployment's fetch) waits its turn ([`Fetcher::fetch`]); a
//! check asked for through the API waits only while fewer than
//! [`FetchLimits::queued`] are already waiting, and is refused with
//! [`FetchError::Busy`] otherwise ([`Fetcher::try_fetch`]).
//!
//! A program embedding `kraken-lib` calls [`run_child_if_asked`] first thing
//! in its `main`, so that it can serve as its own helper; or it names another
//! program with [`FetchProgram::Program`].
//!
//! Messages never name this machine's paths beyond what the caller gave: the
//! checkout's and the data directory's paths are replaced in what the helper
//! says.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::source::{self, Checkout, FetchLimits, SourceError};

/// The first argument that makes a program embedding `kraken-lib` act as a
/// fetch helper (see [`run_child_if_asked`]).
pub const CHILD_ARG: &str = "__kraken-fetch";

/// The largest request or answer passed to or from a helper.
const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
/// The most of a helper's other output kept for an error message.
const MAX_SAID_BYTES: usize = 2048;
/// How often (at most) a helper says it makes progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// The line a helper writes to its standard error when it makes progress.
const PROGRESS_LINE: &str = "progress";

/// Which program runs fetches.
///
/// Only a program that runs fetches itself ([`run_child_if_asked`],
/// [`child_main`], [`FetchProgram::in_process`]) links libgit2 and, through
/// it, OpenSSL; a program that names another one for its fetches (the
/// `kraken` binary names `kraken-fetch`) does not load them at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FetchProgram {
    /// This executable, started again with [`CHILD_ARG`]; its `main` calls
    /// [`run_child_if_asked`].
    #[default]
    CurrentExe,
    /// Another program, started with [`CHILD_ARG`], that runs [`child_main`]
    /// (such as `kraken-fetch`, which the `kraken` binary uses).
    Program(PathBuf),
    /// A thread of this process ([`FetchProgram::in_process`]). libgit2
    /// cannot be stopped there, so the time limits do not hold: only for
    /// tests of other parts and for trusted sources.
    InProcess(InProcessFetch),
}

impl FetchProgram {
    /// Fetches on a thread of this process (see [`FetchProgram::InProcess`]).
    pub fn in_process() -> Self {
        FetchProgram::InProcess(InProcessFetch(answer))
    }
}

/// The fetch a [`FetchProgram::InProcess`] runs: made by
/// [`FetchProgram::in_process`] only, so that the fetching code is part of a
/// program only when it asks for it.
#[derive(Clone, Copy)]
pub struct InProcessFetch(fn(&ChildRequest, &dyn Fn()) -> ChildAnswer);

impl std::fmt::Debug for InProcessFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessFetch")
    }
}

/// Every in-process fetch is the same one.
impl PartialEq for InProcessFetch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for InProcessFetch {}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request was refused before anything was fetched.
    #[error(transparent)]
    Refused(#[from] SourceError),
    /// The fetch ran and failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// The fetch took too long and was stopped.
    #[error("fetching `{url}` {why} and was stopped; is the git server answering?")]
    TimedOut {
        /// The URL given.
        url: String,
        /// Which limit it reached.
        why: String,
    },
    /// As many fetches as allowed are running and waiting.
    #[error(
        "{running} repositories are being fetched and {waiting} wait, the most this platform takes at once; \
         try again in a few seconds"
    )]
    Busy {
        /// Fetches running.
        running: usize,
        /// Fetches waiting.
        waiting: usize,
    },
    /// The helper process could not be started or did not answer as one.
    #[error(
        "the fetch helper `{program}` failed: {detail}; a program embedding kraken-lib calls \
         kraken_lib::fetcher::run_child_if_asked() first in main, or sets NodeConfig::fetch_program"
    )]
    Helper {
        /// The program started.
        program: String,
        /// What went wrong.
        detail: String,
    },
}

impl FetchError {
    /// Whether the fetch was refused only because too many were under way
    /// (asking again later may succeed).
    pub fn is_busy(&self) -> bool {
        matches!(self, FetchError::Busy { .. })
    }
}

/// What the agent asks a helper.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRequest {
    url: String,
    branch: String,
    commit: Option<String>,
    dest: PathBuf,
    max_bytes: u64,
    allow_local: bool,
}

/// What a helper answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildAnswer {
    Done { commit: String, manifest_text: String },
    Failed { message: String },
}

/// Runs fetches under the limits; cheap to clone (clones share the queue).
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    program: FetchProgram,
    limits: FetchLimits,
    allow_local: bool,
    /// Paths replaced in messages: (path, what to say instead).
    hidden: Vec<(String, &'static str)>,
    slots: Semaphore,
    /// Fetches admitted: running or waiting for a slot.
    admitted: AtomicUsize,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("program", &self.inner.program)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Counts a fetch as admitted until dropped.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Fetcher {
    /// A fetcher running `program` under `limits`; local sources only when
    /// `allow_local`. Paths under `data_dir` are not named in messages.
    pub fn new(program: FetchProgram, limits: FetchLimits, allow_local: bool, data_dir: &Path) -> Self {
        let mut hidden = Vec::new();
        if let Some(dir) = data_dir.to_str().filter(|d| d.len() > 1) {
            hidden.push((dir.to_string(), "<data dir>"));
            if let Ok(real) = data_dir.canonicalize() {
                if let Some(real) = real.to_str().filter(|r| *r != dir) {
                    hidden.push((real.to_string(), "<data dir>"));
                }
            }
        }
        Self {
            inner: Arc::new(Inner {
                program,
                limits,
                allow_local,
                hidden,
                slots: Semaphore::new(limits.concurrent.max(1)),
                admitted: AtomicUsize::new(0),
            }),
        }
    }

    /// The limits fetches run under.
    pub fn limits(&self) -> FetchLimits {
        self.inner.limits
    }

    /// How many fetches run or wait right now.
    pub fn admitted(&self) -> usize {
        self.inner.admitted.load(Ordering::SeqCst)
    }

    /// Fetches `branch` of `url` (at `commit`, when given) into `dest`,
    /// waiting for a place as long as it takes.
    ///
    /// # Errors
    /// [`FetchError`] saying what went wrong; on error nothing the fetch
    /// wrote in `dest` is meant to be kept (the caller removes it).
    pub async fn fetch(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        dest: &Path,
    ) -> Result<Checkout, FetchError> {
        self.inner.admitted.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(&self.inner.admitted);
        let result = self.run_admitted(url, branch, commit, dest).await;
        drop(admitted);
        result
    }

    /// As [`Fetcher::fetch`], but refused with [`FetchError::Busy`] at once
    /// when all places to run and to wait are taken.
    ///
    /// # Errors
    /// As [`Fetcher::fetch`], and [`FetchError::Busy`].
    pub async fn try_fetch(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        dest: &Path,
    ) -> Result<Checkout, FetchError> {
        let limits = self.inner.limits;
        let capacity = limits.concurrent.max(1) + limits.queued;
        let taken = self
            .inner
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < capacity).then_some(n + 1));
        if let Err(n) = taken {
            let running = n.min(limits.concurrent.max(1));
            return Err(FetchError::Busy { running, waiting: n - running });
        }
        let admitted = Admitted(&self.inner.admitted);
        let result = self.run_admitted(url, branch, commit, dest).await;
        drop(admitted);
        result
    }

    async fn run_admitted(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        dest: &Path,
    ) -> Result<Checkout, FetchError> {
        // Refused before waiting for a place: a local source not allowed.
        source::check_allowed(url, self.inner.allow_local)?;
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|e| FetchError::Failed(format!("the fetch queue closed: {e}")))?;
        let request = ChildRequest {
            url: url.to_string(),
            branch: branch.to_string(),
            commit: commit.map(str::to_string),
            dest: dest.to_path_buf(),
            max_bytes: self.inner.limits.max_bytes,
            allow_local: self.inner.allow_local,
        };
        let answer = match &self.inner.program {
            FetchProgram::InProcess(InProcessFetch(fetch)) => {
                let fetch = *fetch;
                tokio::task::spawn_blocking(move || fetch(&request, &|| {}))
                    .await
                    .map_err(|e| FetchError::Failed(format!("the fetch task failed: {e}")))?
            }
            FetchProgram::CurrentExe => self.run_child(&current_exe(), &request).await?,
            FetchProgram::Program(program) => self.run_child(program, &request).await?,
        };
        match answer {
            ChildAnswer::Done { commit, manifest_text } => {
                Ok(Checkout { dir: dest.to_path_buf(), commit, manifest_text })
            }
            ChildAnswer::Failed { message } => Err(FetchError::Failed(self.hide_paths(&message, dest))),
        }
    }

    /// `text` without this machine's paths: `dest` (a checkout) and the data
    /// directory are replaced by `<checkout>` and `<data dir>`.
    pub fn hide_paths(&self, text: &str, dest: &Path) -> String {
        let mut text = text.to_string();
        if let Some(dest) = dest.to_str().filter(|d| d.len() > 1) {
            text = text.replace(dest, "<checkout>");
        }
        for (path, instead) in &self.inner.hidden {
            text = text.replace(path.as_str(), instead);
        }
        text
    }

    /// Runs one fetch in a helper process under the time limits.
    async fn run_child(&self, program: &Path, request: &ChildRequest) -> Result<ChildAnswer, FetchError> {
        let shown = program.display().to_string();
        let helper = |detail: String| FetchError::Helper { program: shown.clone(), detail };
        let payload = serde_json::to_vec(request).map_err(|e| helper(e.to_string()))?;
        let mut child = tokio::process::Command::new(program)
            .arg(CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| helper(format!("cannot start it: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(helper("its standard streams are missing".into()));
        };
        let limits = self.inner.limits;
        let overall = tokio::time::Instant::now() + limits.timeout;
        let mut idle = tokio::time::Instant::now() + limits.idle_timeout;
        let mut reading = Box::pin(async move {
            let mut output = Vec::new();
            let mut stdout = stdout.take(MAX_MESSAGE_BYTES + 1);
            stdout.read_to_end(&mut output).await.map(|_| output)
        });
        let mut stderr = stderr;
        let mut chunk = [0u8; 4096];
        // The end of what the helper said besides its progress, for messages.
        let mut said = Vec::new();
        let mut stderr_open = true;
        let written = async move {
            stdin.write_all(&payload).await?;
            // Closing the pipe is what tells the helper the request is whole.
            drop(stdin);
            Ok::<(), std::io::Error>(())
        };
        enum Stop {
            Timeout,
            Broken(&'static str),
        }
        let outcome: Result<Vec<u8>, Stop> = async {
            tokio::select! {
                r = written => r.map_err(|_| Stop::Broken("it stopped reading its request"))?,
                () = tokio::time::sleep_until(idle.min(overall)) => return Err(Stop::Timeout),
            }
            loop {
                tokio::select! {
                    read = &mut reading => return read.map_err(|_| Stop::Broken("its answer could not be read")),
                    n = stderr.read(&mut chunk), if stderr_open => match n {
                        Ok(0) | Err(_) => stderr_open = false,
                        Ok(n) => {
                            // Whatever the helper writes there means it is alive.
                            idle = tokio::time::Instant::now() + limits.idle_timeout;
                            let text = String::from_utf8_lossy(&chunk[..n]).replace(&format!("{PROGRESS_LINE}\n"), "");
                            said.extend_from_slice(text.as_bytes());
                            if said.len() > MAX_SAID_BYTES {
                                said.drain(..said.len() - MAX_SAID_BYTES);
                            }
                        }
                    },
                    () = tokio::time::sleep_until(idle.min(overall)) => return Err(Stop::Timeout),
                }
            }
        }
        .await;
        drop(reading);
        let output = match outcome {
            Ok(output) => output,
            Err(Stop::Timeout) => {
                // SIGKILL and reap: nothing of the fetch is left running.
                let _ = child.kill().await;
                let why = if tokio::time::Instant::now() >= overall {
                    format!("took longer than {} s", limits.timeout.as_secs())
                } else {
                    format!("made no progress for {} s", limits.idle_timeout.as_secs())
                };
                return Err(FetchError::TimedOut { url: request.url.clone(), why });
            }
            Err(Stop::Broken(what)) => {
                let _ = child.kill().await;
                return Err(helper(what.to_string()));
            }
        };
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| helper(e.to_string()))?,
            () = tokio::time::sleep_until(overall) => {
                let _ = child.kill().await;
                return Err(helper("it did not exit after answering".into()));
            }
        };
        if output.len() as u64 > MAX_MESSAGE_BYTES {
            return Err(helper("its answer is too large".into()));
        }
        serde_json::from_slice::<ChildAnswer>(&output).map_err(|e| {
            let said = self.hide_paths(String::from_utf8_lossy(&said).trim(), &request.dest);
            let said = if said.is_empty() { String::new() } else { format!("; it said: {said}") };
            helper(format!("it exited with {status} without an answer ({e}){said}"))
        })
    }
}

/// The path to run this executable again: `/proc/self/exe` where it exists
/// (it works even when the file was replaced by an upgrade), else what the
/// standard library finds.
fn current_exe() -> PathBuf {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        return proc;
    }
    std::env::current_exe().unwrap_or(proc)
}

/// Does the fetch `request` asks for, calling `progress` when it progresses.
fn answer(request: &ChildRequest, progress: &dyn Fn()) -> ChildAnswer {
    let limits = FetchLimits { max_bytes: request.max_bytes, ..FetchLimits::default() };
    let fetched = source::check_allowed(&request.url, request.allow_local).and_then(|()| {
        source::fetch_reporting(
            &request.url,
            &request.branch,
            request.commit.as_deref(),
            &request.dest,
            limits,
            progress,
        )
    });
    match fetched {
        Ok(checkout) => ChildAnswer::Done { commit: checkout.commit, manifest_text: checkout.manifest_text },
        Err(e) => ChildAnswer::Failed { message: e.to_string() },
    }
}

/// When this process was started as a fetch helper (its first argument is
/// [`CHILD_ARG`]), does the fetch and exits; otherwise returns at once.
/// Call it first thing in `main`, before anything else is set up.
pub fn run_child_if_asked() {
    if std::env::args_os().nth(1).is_some_and(|a| a == CHILD_ARG) {
        std::process::exit(child_main());
    }
}

/// The helper's body: reads a request on standard input, fetches, writes the
/// answer on standard output and progress on standard error; returns the
/// exit code.
pub fn child_main() -> i32 {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_MESSAGE_BYTES).read_to_end(&mut input) {
        eprintln!("cannot read the request: {e}");
        return 2;
    }
    let request: ChildRequest = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("not a fetch request: {e}");
            return 2;
        }
    };
    let last = std::cell::Cell::new(std::time::Instant::now());
    let progress = || {
        if last.get().elapsed() >= PROGRESS_EVERY {
            last.set(std::time::Instant::now());
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{PROGRESS_LINE}");
            let _ = err.flush();
        }
    };
    // Say it started, so the idle limit counts from now.
    eprintln!("{PROGRESS_LINE}");
    let answer = answer(&request, &progress);
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &answer) {
        Ok(()) => {
            let _ = out.flush();
            0
        }
        Err(e) => {
            eprintln!("cannot write the answer: {e}");
            2
        }
    }
}
