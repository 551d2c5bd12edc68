//! Fixture apps as git repositories: a test copies a folder of
//! `tests/fixtures/apps/` into a temporary directory, puts the local base
//! image's name where the files say `@BASE_IMAGE@`, and commits it on `main`.
//! A file `NAME.shared` in a fixture stands for `tests/fixtures/shared/NAME`,
//! one file several fixtures use.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder holding the fixture apps.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kraken-lib/tests/fixtures/apps")
}

pub use kraken_test_support::base_image;

/// A fixture app checked into a git repository of its own.
pub struct AppRepo {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Kraken Tests",
            "-c",
            "user.email=tests@kraken.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_dir(from: &Path, to: &Path, base: &str) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let (source, target) = match name.strip_suffix(".shared") {
            Some(shared) => (fixtures_dir().join("../shared").join(shared), to.join(shared)),
            None => (entry.path(), to.join(&name)),
        };
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&source, &target, base);
        } else {
            let text = std::fs::read_to_string(&source).expect("fixture files are text");
            std::fs::write(&target, text.replace("@BASE_IMAGE@", base)).expect("write");
        }
    }
}

impl AppRepo {
    /// The fixture `name` committed on branch `main`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("kraken-app-{name}-")).tempdir().expect("tempdir");
        copy_dir(&fixtures_dir().join(name), dir.path(), &base_image());
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "first version"]);
        Self { dir }
    }

    /// The repository's path, usable as the deployment URL.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The repository as a string URL (its absolute path).
    pub fn url(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Writes `files` and commits them on the current branch; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (rel, text) in files {
            let path = self.dir.path().join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, text).expect("write");
        }
        git(self.dir.path(), &["add", "-A"]);
        git(self.dir.path(), &["commit", "-q", "-m", message]);
        self.head()
    }

    /// The commit id at the tip of the current branch.
    pub fn head(&self) -> String {
        git(self.dir.path(), &["rev-parse", "HEAD"])
    }

    /// Creates branch `name` at the current commit, without switching to it.
    pub fn branch(&self, name: &str) {
        git(self.dir.path(), &["branch", name]);
    }
}
