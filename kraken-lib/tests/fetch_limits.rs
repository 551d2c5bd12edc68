//! Bounded fetching with the real helper program (`kraken-fetch`) and real
//! git servers on loopback: a server that accepts connections and never
//! answers cannot block the platform, a queue bounds how many fetches run and
//! wait, the download and the checkout count against one size limit, and
//! errors name no path of this machine.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::git::{FixtureRepo, GitDaemon};
use kraken_lib::fetcher::{FetchError, FetchProgram, Fetcher};
use kraken_lib::source::FetchLimits;

/// The tests count this process's helpers, so they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn helper() -> FetchProgram {
    FetchProgram::Program(PathBuf::from(env!("CARGO_BIN_EXE_kraken-fetch")))
}

fn limits() -> FetchLimits {
    FetchLimits {
        idle_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(60),
        concurrent: 2,
        queued: 2,
        ..FetchLimits::default()
    }
}

/// A TCP server on loopback that accepts every connection and never answers.
struct BlackHole {
    port: u16,
    _task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { port, _task: task }
    }
}

/// The helper processes this test process has running (or not reaped).
fn helpers_alive() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid …
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = after.split(' ').collect();
        if fields.get(1) == Some(&me.as_str()) && stat.contains("(kraken-fetch)") {
            found.push(stat.split(' ').take(3).collect::<Vec<_>>().join(" "));
        }
    }
    found
}

/// A bare copy of `repo` served by a `git daemon` as `app.git`.
fn serve(repo: &FixtureRepo, base: &Path) -> GitDaemon {
    let served = base.join("app.git");
    git2::Repository::clone(repo.path().to_str().expect("utf-8"), base.join("work")).expect("clone");
    std::fs::rename(base.join("work/.git"), &served).expect("move");
    let bare = git2::Repository::open(&served).expect("open");
    bare.config().and_then(|mut c| c.set_bool("core.bare", true)).expect("bare");
    GitDaemon::start(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_block_fetching() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hole = BlackHole::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let fetcher = Fetcher::new(helper(), limits(), false, data.path());

    // Forty checks at once against a server that never answers: two run, two
    // wait, the others are refused at once; the ones that ran are stopped.
    let urls =
        [format!("git://127.0.0.1:{}/app.git", hole.port), format!("http://127.0.0.1:{}/app.git", hole.port)];
    let checks = (0..40).map(|i| {
        let fetcher = fetcher.clone();
        let url = urls[i % 2].clone();
        let dest = data.path().join(format!("c{i}"));
        async move { fetcher.try_fetch(&url, "main", None, &dest).await }
    });
    let results = futures::future::join_all(checks).await;
    let busy = results.iter().filter(|r| matches!(r, Err(FetchError::Busy { .. }))).count();
    let stopped: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(e @ FetchError::TimedOut { .. }) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!((busy, stopped.len()), (36, 4), "{results:?}");
    assert!(stopped[0].contains("made no progress for 2 s"), "{}", stopped[0]);
    let refused = results.iter().find_map(|r| r.as_ref().err().filter(|e| e.is_busy())).expect("a refusal");
    assert!(refused.to_string().contains("try again"), "{refused}");

    // A normal fetch right after is served.
    let repo = FixtureRepo::new(&[("shipwreck.toml", "[app]\nname = \"a\"\n"), ("index.html", "hi")]);
    let served = tempfile::tempdir().expect("tempdir");
    let daemon = serve(&repo, served.path());
    let dest = data.path().join("normal");
    let checkout = tokio::time::timeout(
        Duration::from_secs(60),
        fetcher.try_fetch(&daemon.url("app.git"), "main", None, &dest),
    )
    .await
    .expect("the normal fetch does not hang")
    .expect("the normal fetch succeeds");
    assert_eq!(checkout.commit, repo.head_of("main"));
    assert_eq!(std::fs::read_to_string(dest.join("index.html")).expect("checked out"), "hi");

    // Nothing is left running: no helper process, nothing admitted.
    assert_eq!(fetcher.admitted(), 0);
    assert!(helpers_alive().is_empty(), "helpers left: {:?}", helpers_alive());
}

#[tokio::test]
async fn deployments_wait_their_turn_instead_of_being_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hole = BlackHole::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let fetcher =
        Fetcher::new(helper(), FetchLimits { queued: 0, concurrent: 1, ..limits() }, false, data.path());
    let url = format!("git://127.0.0.1:{}/app.git", hole.port);
    let waiting = (0..3).map(|i| {
        let fetcher = fetcher.clone();
        let (url, dest) = (url.clone(), data.path().join(format!("d{i}")));
        async move { fetcher.fetch(&url, "main", None, &dest).await }
    });
    let results = futures::future::join_all(waiting).await;
    assert!(results.iter().all(|r| matches!(r, Err(FetchError::TimedOut { .. }))), "{results:?}");
    assert!(helpers_alive().is_empty());
}

#[tokio::test]
async fn the_download_and_the_checkout_count_against_one_limit() {
    let _one = ONE_AT_A_TIME.lock().await;
    // 48 KiB that do not compress: about as large downloaded as checked out.
    let mut noise = vec![0u8; 48 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for b in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = (state >> 24) as u8;
    }
    let repo = FixtureRepo::empty();
    repo.commit_bytes(&[("shipwreck.toml", b"[app]\nname = \"a\"\n"), ("noise.bin", &noise)], "noise");
    let served = tempfile::tempdir().expect("tempdir");
    let daemon = serve(&repo, served.path());
    let data = tempfile::tempdir().expect("tempdir");
    let small = FetchLimits { max_bytes: 80 * 1024, ..limits() };
    let fetcher = Fetcher::new(helper(), small, false, data.path());
    let dest = data.path().join("over");
    let err = fetcher.fetch(&daemon.url("app.git"), "main", None, &dest).await.expect_err("over the limit");
    assert!(err.to_string().contains("larger than the 81920-byte limit"), "{err}");
    assert!(!dest.exists(), "nothing of the refused fetch is left");
    let roomy = Fetcher::new(helper(), FetchLimits { max_bytes: 160 * 1024, ..limits() }, false, data.path());
    roomy.fetch(&daemon.url("app.git"), "main", None, &data.path().join("fits")).await.expect("fits");
}

#[tokio::test]
async fn errors_name_no_path_of_this_machine_and_local_sources_need_leave() {
    let _one = ONE_AT_A_TIME.lock().await;
    let data = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(&[("shipwreck.toml", "[app]\nname = \"a\"\n")]);
    let refusing = Fetcher::new(helper(), limits(), false, data.path());
    let err =
        refusing.fetch(&repo.path_str(), "main", None, &data.path().join("x")).await.expect_err("local");
    assert!(err.to_string().contains("--allow-local-sources"), "{err}");

    let allowing = Fetcher::new(helper(), limits(), true, data.path());
    // A destination that is not empty makes the helper fail naming it.
    let dest = data.path().join("busy");
    std::fs::create_dir_all(dest.join("occupied")).expect("mkdir");
    let err = allowing.fetch(&repo.path_str(), "main", None, &dest).await.expect_err("not empty");
    let text = err.to_string();
    let data_dir = data.path().to_str().expect("utf-8");
    assert!(!text.contains(data_dir), "the data directory is named: {text}");
    assert!(text.contains("<checkout>"), "{text}");
    let ok =
        allowing.fetch(&repo.url(), "main", None, &data.path().join("fine")).await.expect("file:// allowed");
    assert_eq!(ok.commit, repo.head_of("main"));
}
