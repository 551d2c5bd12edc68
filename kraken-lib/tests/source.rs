//! Fetching app sources with real git: fixture repositories in temporary
//! directories, reached by path, `file://` and a real `git daemon`.

mod common;

use std::path::Path;

use common::git::{free_port, FixtureRepo, GitDaemon};
use kraken_lib::source::{self, FetchLimits, SourceError};

const MANIFEST: &str = "name = \"hello\"\n[build]\nkind = \"static\"\n";

fn app_repo() -> FixtureRepo {
    FixtureRepo::new(&[
        ("shipwreck.toml", MANIFEST),
        ("index.html", "<h1>v1</h1>"),
        ("src/app.js", "console.log(1)"),
    ])
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kraken-source-test-").tempdir().expect("temporary directory")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect("checked-out file")
}

#[test]
fn fetch_by_local_path_records_the_commit_and_files() {
    let repo = app_repo();
    let tip = repo.head_of("main");
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let checkout = source::fetch(&repo.path_str(), "main", &dest, FetchLimits::default()).expect("fetch");

    assert_eq!(checkout.commit, tip);
    assert_eq!(checkout.dir, dest);
    assert_eq!(checkout.manifest_text, MANIFEST);
    assert_eq!(read(&dest, "shipwreck.toml"), MANIFEST);
    assert_eq!(read(&dest, "index.html"), "<h1>v1</h1>");
    assert_eq!(read(&dest, "src/app.js"), "console.log(1)");
}

#[test]
fn fetch_by_relative_path_works() {
    let repo = app_repo();
    let cwd = std::env::current_dir().expect("current directory");
    let relative = pathdiff(repo.path(), &cwd);
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let checkout = source::fetch(&relative, "main", &dest, FetchLimits::default()).expect("fetch");

    assert_eq!(checkout.commit, repo.head_of("main"));
    assert_eq!(read(&dest, "index.html"), "<h1>v1</h1>");
}

/// `target` relative to `base` (both absolute), with `..` steps.
fn pathdiff(target: &Path, base: &Path) -> String {
    let target: Vec<_> = target.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); base.len() - common];
    parts.extend(target[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.join("/")
}

#[test]
fn fetch_by_file_url_checks_out_the_branch_asked_for() {
    let repo = app_repo();
    let main_tip = repo.head_of("main");
    repo.branch("next");
    repo.checkout("next");
    let next_tip = repo.commit(&[("index.html", "<h1>next</h1>")], "Next page");
    repo.checkout("main");
    let scratch = scratch();

    let next = source::fetch(&repo.url(), "next", &scratch.path().join("next"), FetchLimits::default())
        .expect("fetch next");
    let main = source::fetch(&repo.url(), "main", &scratch.path().join("main"), FetchLimits::default())
        .expect("fetch main");

    assert_eq!(next.commit, next_tip);
    assert_eq!(read(&next.dir, "index.html"), "<h1>next</h1>");
    assert_eq!(main.commit, main_tip);
    assert_eq!(read(&main.dir, "index.html"), "<h1>v1</h1>");
}

#[test]
fn fetch_into_an_existing_empty_directory_works_and_a_full_one_is_refused() {
    let repo = app_repo();
    let scratch = scratch();
    let checkout = source::fetch(&repo.url(), "main", scratch.path(), FetchLimits::default()).expect("fetch");
    assert_eq!(read(&checkout.dir, "index.html"), "<h1>v1</h1>");

    let err =
        source::fetch(&repo.url(), "main", scratch.path(), FetchLimits::default()).expect_err("not empty");
    assert!(matches!(err, SourceError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        read(scratch.path(), "index.html"),
        "<h1>v1</h1>",
        "a refused fetch must not touch the directory"
    );
}

#[test]
fn latest_commit_follows_new_commits() {
    let repo = app_repo();
    let first = repo.head_of("main");
    assert_eq!(source::latest_commit(&repo.url(), "main").expect("latest"), first);

    let second = repo.commit(&[("index.html", "<h1>v2</h1>")], "Second version");
    assert_ne!(first, second);
    assert_eq!(source::latest_commit(&repo.url(), "main").expect("latest"), second);
    assert_eq!(source::latest_commit(&repo.path_str(), "main").expect("latest by path"), second);

    let scratch = scratch();
    let checkout = source::fetch(&repo.url(), "main", scratch.path(), FetchLimits::default()).expect("fetch");
    assert_eq!(checkout.commit, second);
    assert_eq!(read(scratch.path(), "index.html"), "<h1>v2</h1>");
}

#[test]
fn list_branches_gives_names_and_commits() {
    let repo = app_repo();
    repo.branch("dev");
    let branches = source::list_branches(&repo.url()).expect("list");
    let tip = repo.head_of("main");
    assert_eq!(branches, vec![("dev".to_string(), tip.clone()), ("main".to_string(), tip)]);
}

#[test]
fn missing_branch_lists_the_available_ones() {
    let repo = app_repo();
    repo.branch("dev");
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let err = source::fetch(&repo.url(), "prod", &dest, FetchLimits::default()).expect_err("no such branch");
    match &err {
        SourceError::BranchNotFound { branch, available, .. } => {
            assert_eq!(branch, "prod");
            assert_eq!(available, "dev, main");
        }
        other => panic!("expected BranchNotFound, got {other:?}"),
    }
    assert!(!dest.exists(), "a failed fetch must remove what it created");

    let err = source::latest_commit(&repo.url(), "prod").expect_err("no such branch");
    assert!(
        matches!(err, SourceError::BranchNotFound { ref available, .. } if available == "dev, main"),
        "{err}"
    );
}

#[test]
fn missing_manifest_is_reported_and_nothing_is_left() {
    let repo = FixtureRepo::new(&[("README.md", "no manifest here")]);
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let err = source::fetch(&repo.url(), "main", &dest, FetchLimits::default()).expect_err("no manifest");
    assert!(matches!(err, SourceError::NoManifest { ref branch, .. } if branch == "main"), "{err}");
    assert!(err.to_string().contains("shipwreck.toml"), "{err}");
    assert!(!dest.exists(), "a failed fetch must remove what it created");
}

#[test]
fn manifest_in_a_subdirectory_does_not_count() {
    let repo = FixtureRepo::new(&[("app/shipwreck.toml", MANIFEST)]);
    let scratch = scratch();
    let err =
        source::fetch(&repo.url(), "main", scratch.path(), FetchLimits::default()).expect_err("not at root");
    assert!(matches!(err, SourceError::NoManifest { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(scratch.path()).expect("read dest").count(),
        0,
        "dest must be emptied again"
    );
}

#[test]
fn non_utf8_manifest_is_refused() {
    let repo = FixtureRepo::empty();
    repo.commit_bytes(&[("shipwreck.toml", &[b'n', 0xff, 0xfe, b'\n'])], "Binary manifest");
    let scratch = scratch();
    let dest = scratch.path().join("checkout");
    let err = source::fetch(&repo.url(), "main", &dest, FetchLimits::default()).expect_err("not UTF-8");
    assert!(matches!(err, SourceError::ManifestNotUtf8 { .. }), "{err}");
    assert!(err.to_string().contains("UTF-8"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn a_directory_that_is_not_a_repository_is_not_found() {
    let not_a_repo = scratch();
    std::fs::write(not_a_repo.path().join("shipwreck.toml"), MANIFEST).expect("write");
    let scratch = scratch();
    let dest = scratch.path().join("checkout");
    let path = not_a_repo.path().to_str().expect("UTF-8").to_string();

    let err = source::fetch(&path, "main", &dest, FetchLimits::default()).expect_err("not a repo");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
    assert!(!dest.exists());

    let err = source::latest_commit(&format!("file://{path}"), "main").expect_err("not a repo");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");

    let missing = not_a_repo.path().join("missing");
    let err = source::fetch(missing.to_str().expect("UTF-8"), "main", &dest, FetchLimits::default())
        .expect_err("missing path");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
}

#[test]
fn invalid_urls_and_branches_are_refused_before_anything_is_written() {
    let scratch = scratch();
    let dest = scratch.path().join("checkout");
    for url in [
        "",
        "   ",
        "ssh://git@127.0.0.1/app.git",
        "git@127.0.0.1:team/app.git",
        "--upload-pack=touch /tmp/kraken-pwned",
        "-c",
        "ftp://127.0.0.1/app",
        "ext::sh -c id",
        "https://",
    ] {
        let err = source::fetch(url, "main", &dest, FetchLimits::default()).expect_err(url);
        match &err {
            SourceError::InvalidUrl { reason, .. } => {
                assert!(reason.contains("https://") || reason.contains("file:///"), "{url:?}: {reason}")
            }
            other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
        }
        let err = source::latest_commit(url, "main").expect_err(url);
        assert!(matches!(err, SourceError::InvalidUrl { .. }), "{url:?}: {err}");
    }
    assert!(!dest.exists());

    let repo = app_repo();
    for branch in ["", "a..b", "-main", "has space", "HEAD"] {
        let err = source::fetch(&repo.url(), branch, &dest, FetchLimits::default()).expect_err(branch);
        assert!(matches!(err, SourceError::InvalidBranch { .. }), "{branch:?}: {err}");
    }
    assert!(!dest.exists());
}

/// Deterministic content that does not compress well.
fn noise(len: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + (state % 90) as u8)
        })
        .collect()
}

#[test]
fn a_repository_over_the_size_limit_is_refused() {
    let big = noise(64 * 1024);
    let repo = FixtureRepo::new(&[("shipwreck.toml", MANIFEST), ("data.txt", &big)]);
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let err = source::fetch(
        &repo.url(),
        "main",
        &dest,
        FetchLimits { max_bytes: 16 * 1024, ..FetchLimits::default() },
    )
    .expect_err("too big");
    assert!(matches!(err, SourceError::TooLarge { limit_bytes: 16384, .. }), "{err}");
    assert!(!dest.exists(), "a refused fetch must remove what it created");

    let checkout = source::fetch(
        &repo.url(),
        "main",
        &dest,
        FetchLimits { max_bytes: 1024 * 1024, ..FetchLimits::default() },
    )
    .expect("fits the limit");
    assert_eq!(read(&checkout.dir, "data.txt"), big);
}

#[test]
fn fetch_commit_checks_out_an_older_commit_of_the_branch() {
    let repo = app_repo();
    let first = repo.head_of("main");
    let second = repo.commit(&[("index.html", "<h1>v2</h1>")], "Second version");
    let scratch = scratch();

    let old = source::fetch_commit(
        &repo.url(),
        "main",
        &first,
        &scratch.path().join("old"),
        FetchLimits::default(),
    )
    .expect("older commit");
    assert_eq!(old.commit, first);
    assert_eq!(read(&old.dir, "index.html"), "<h1>v1</h1>");

    let new = source::fetch_commit(
        &repo.url(),
        "main",
        &second,
        &scratch.path().join("new"),
        FetchLimits::default(),
    )
    .expect("newest commit");
    assert_eq!(new.commit, second);
    assert_eq!(read(&new.dir, "index.html"), "<h1>v2</h1>");
}

#[test]
fn fetch_commit_refuses_a_commit_no_longer_on_the_branch() {
    let repo = app_repo();
    let first = repo.head_of("main");
    let dropped = repo.commit(&[("index.html", "<h1>dropped</h1>")], "Will be force-pushed away");
    repo.reset_branch("main", &first);
    let replacement = repo.commit(&[("index.html", "<h1>replacement</h1>")], "Replacement");
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let err = source::fetch_commit(&repo.url(), "main", &dropped, &dest, FetchLimits::default())
        .expect_err("commit not on the branch");
    match &err {
        SourceError::CommitNotOnBranch { commit, tip, branch, .. } => {
            assert_eq!(commit, &dropped);
            assert_eq!(tip, &replacement);
            assert_eq!(branch, "main");
        }
        other => panic!("expected CommitNotOnBranch, got {other:?}"),
    }
    assert!(!dest.exists());

    let err = source::fetch_commit(&repo.url(), "main", "abc123", &dest, FetchLimits::default())
        .expect_err("short id");
    assert!(matches!(err, SourceError::InvalidCommit { .. }), "{err}");
}

#[test]
fn fetch_over_git_daemon() {
    let base = scratch();
    let repo = app_repo();
    let served = base.path().join("app.git");
    std::fs::rename(repo.path().join(".git"), &served).expect("move the repository under the daemon's base");
    let bare = git2::Repository::open(&served).expect("open served repository");
    bare.config().and_then(|mut c| c.set_bool("core.bare", true)).expect("mark bare");
    let tip = bare.refname_to_id("refs/heads/main").expect("main").to_string();

    let daemon = GitDaemon::start(base.path());
    let url = daemon.url("app.git");
    assert_eq!(source::latest_commit(&url, "main").expect("latest over git://"), tip);

    let scratch = scratch();
    let dest = scratch.path().join("checkout");
    let checkout = source::fetch(&url, "main", &dest, FetchLimits::default()).expect("fetch over git://");
    assert_eq!(checkout.commit, tip);
    assert_eq!(checkout.manifest_text, MANIFEST);
    assert_eq!(read(&dest, "index.html"), "<h1>v1</h1>");
    assert!(dest.join(".git/shallow").exists(), "a fetch over git:// should be shallow");

    let err = source::fetch(
        &url,
        "main",
        &scratch.path().join("small"),
        FetchLimits { max_bytes: 64, ..FetchLimits::default() },
    )
    .expect_err("over a tiny limit");
    assert!(matches!(err, SourceError::TooLarge { limit_bytes: 64, .. }), "{err}");
    assert!(!scratch.path().join("small").exists());

    let err = source::fetch(
        &daemon.url("missing.git"),
        "main",
        &scratch.path().join("other"),
        FetchLimits::default(),
    )
    .expect_err("no such repository");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
    assert!(!scratch.path().join("other").exists());
}

#[test]
fn http_url_with_nothing_listening_is_not_found() {
    let url = format!("http://127.0.0.1:{}/app.git", free_port());
    let scratch = scratch();
    let dest = scratch.path().join("checkout");

    let err = source::fetch(&url, "main", &dest, FetchLimits::default()).expect_err("nothing listens");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
    assert!(!dest.exists());

    let err = source::latest_commit(&url, "main").expect_err("nothing listens");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
}
