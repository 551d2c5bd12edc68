//! Fixture git repositories for tests: real repositories made with `git2` in
//! temporary directories, with a branch `main` and fixed author details.

use std::path::{Path, PathBuf};

use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature};

/// A non-bare git repository in a temporary directory, removed when dropped.
///
/// Commits go to the branch checked out (`main` at first); files are written
/// to the work tree and committed with everything else in it.
pub struct FixtureRepo {
    dir: tempfile::TempDir,
    repo: Repository,
}

impl FixtureRepo {
    /// A new repository on branch `main` with one commit holding `files`
    /// (`(relative path, content)` pairs; parent directories are made).
    pub fn new(files: &[(&str, &str)]) -> Self {
        let fixture = Self::empty();
        fixture.commit(files, "Initial commit");
        fixture
    }

    /// A new repository on branch `main` with no commit yet.
    pub fn empty() -> Self {
        let dir = tempfile::Builder::new().prefix("kraken-fixture-").tempdir().expect("temporary directory");
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &options).expect("git init");
        Self { dir, repo }
    }

    /// Writes `files` and commits the whole work tree on the current branch
    /// with `message`; returns the new commit's full hex id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        self.commit_bytes(&files, message)
    }

    /// As [`FixtureRepo::commit`], with raw bytes as contents.
    pub fn commit_bytes(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (path, content) in files {
            let full = self.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("create parent directory");
            }
            std::fs::write(&full, content).expect("write fixture file");
        }
        self.commit_work_tree(message)
    }

    /// Deletes `paths` from the work tree and commits; returns the commit id.
    pub fn remove(&self, paths: &[&str], message: &str) -> String {
        for path in paths {
            std::fs::remove_file(self.path().join(path)).expect("remove fixture file");
        }
        self.commit_work_tree(message)
    }

    /// Creates branch `name` at the current commit, without switching to it.
    pub fn branch(&self, name: &str) {
        let head = self.repo.head().and_then(|h| h.peel_to_commit()).expect("HEAD commit");
        self.repo.branch(name, &head, false).expect("create branch");
    }

    /// Switches to the existing branch `name` (work tree included).
    pub fn checkout(&self, name: &str) {
        let refname = format!("refs/heads/{name}");
        let target =
            self.repo.find_reference(&refname).and_then(|r| r.peel_to_commit()).expect("branch commit");
        self.repo
            .checkout_tree(
                target.as_object(),
                Some(git2::build::CheckoutBuilder::new().force().remove_untracked(true)),
            )
            .expect("checkout tree");
        self.repo.set_head(&refname).expect("set HEAD");
    }

    /// Moves branch `name` to `commit` (a hex id), as a force-push would.
    pub fn reset_branch(&self, name: &str, commit: &str) {
        let oid = git2::Oid::from_str(commit).expect("commit id");
        let target = self.repo.find_commit(oid).expect("commit");
        self.repo.reference(&format!("refs/heads/{name}"), oid, true, "reset branch").expect("move branch");
        if self.repo.head().ok().and_then(|h| h.shorthand().map(str::to_string)).as_deref() == Some(name) {
            self.repo
                .checkout_tree(
                    target.as_object(),
                    Some(git2::build::CheckoutBuilder::new().force().remove_untracked(true)),
                )
                .expect("checkout tree");
        }
    }

    /// The newest commit of branch `name`, as a full hex id.
    pub fn head_of(&self, name: &str) -> String {
        self.repo
            .find_reference(&format!("refs/heads/{name}"))
            .and_then(|r| r.peel_to_commit())
            .expect("branch commit")
            .id()
            .to_string()
    }

    /// The repository's work-tree directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The repository's directory as a `file://` URL.
    pub fn url(&self) -> String {
        file_url(self.path())
    }

    /// The repository's directory as a string (a local-path "URL").
    pub fn path_str(&self) -> String {
        self.path().to_str().expect("temporary path is UTF-8").to_string()
    }

    /// The underlying `git2` repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    fn commit_work_tree(&self, message: &str) -> String {
        let mut index = self.repo.index().expect("index");
        index.add_all(["*"].iter(), IndexAddOption::DEFAULT, None).expect("git add");
        index.update_all(["*"].iter(), None).expect("git add -u");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("tree");
        let signature = Signature::now("Kraken Tests", "tests@kraken.invalid").expect("signature");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &signature, &signature, message, &tree, &parents)
            .expect("commit")
            .to_string()
    }
}

/// `path` as a `file://` URL.
pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.to_str().expect("path is UTF-8"))
}

/// A `git daemon` serving every repository under a directory over `git://`
/// on 127.0.0.1 and a free port; stopped when dropped.
pub struct GitDaemon {
    child: std::process::Child,
    port: u16,
    base: PathBuf,
}

impl GitDaemon {
    /// Starts `git daemon` for the repositories under `base` and waits (up to
    /// ten seconds) until it accepts connections.
    pub fn start(base: &Path) -> Self {
        let port = free_port();
        // Run the `git-daemon` program itself rather than `git daemon`, so that
        // the process killed on drop is the daemon and not a wrapper around it.
        let exec_path =
            std::process::Command::new("git").arg("--exec-path").output().expect("run git --exec-path");
        assert!(exec_path.status.success(), "git --exec-path failed");
        let exec_path = String::from_utf8(exec_path.stdout).expect("UTF-8 exec path");
        let child = std::process::Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg(base)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start git daemon");
        let mut daemon = Self { child, port, base: base.to_path_buf() };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(status) = daemon.child.try_wait().expect("poll git daemon") {
                panic!("git daemon exited early with {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen on port {port} within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }

    /// The `git://` URL of the repository at `relative` under the base directory.
    pub fn url(&self, relative: &str) -> String {
        format!("git://127.0.0.1:{}/{}", self.port, relative.trim_start_matches('/'))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory it serves.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use kraken_test_support::free_port;
