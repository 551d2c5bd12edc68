//! The apps the benchmarks deploy: git repositories in a temporary folder,
//! served as `file://` URLs. The web app is a FROM-scratch image holding the
//! host's static busybox and a page, with its own Dockerfile; the flood app
//! prints log lines as fast as it can while it serves.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where the static busybox comes from.
const BUSYBOX: &str = "/bin/busybox";

/// A git repository on disk, branch `main`.
pub struct Repo {
    dir: tempfile::TempDir,
    commits: u64,
}

/// The app's kind.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `busybox httpd` serving one page.
    Web,
    /// Serves like `Web`, and prints lines to stdout without pause.
    Flood,
    /// No Dockerfile and nothing a builder recognises: its deployment fails
    /// at the first step, which makes it cheap to request many times.
    Empty,
}

impl Repo {
    /// A new repository with one commit of the app.
    pub fn new(kind: Kind) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("kraken-bench-app-").tempdir()?;
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"])?;
        match kind {
            Kind::Empty => std::fs::write(root.join("README"), "nothing to build here\n")?,
            Kind::Web | Kind::Flood => {
                let busybox = Path::new(BUSYBOX);
                if !busybox.is_file() {
                    bail!("{BUSYBOX} is missing: the benchmark app copies the host's static busybox (apt-get install busybox-static)");
                }
                std::fs::copy(busybox, root.join("busybox")).context("copying busybox")?;
                std::fs::create_dir_all(root.join("www"))?;
                std::fs::write(root.join("www/index.html"), "first\n")?;
                let start = match kind {
                    Kind::Flood => {
                        r#"ENTRYPOINT ["/busybox", "sh", "-c", "/busybox httpd -p 8080 -h /www && exec /busybox yes 'a log line of about sixty characters from the flooding app'"]"#
                    }
                    _ => r#"ENTRYPOINT ["/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#,
                };
                std::fs::write(
                    root.join("Dockerfile"),
                    format!("FROM scratch\nCOPY busybox /busybox\nCOPY www /www\nEXPOSE 8080\n{start}\n"),
                )?;
                let name = format!("bench-{}", kraken_lib::deployment::random_id(3));
                std::fs::write(
                    root.join("shipwreck.toml"),
                    format!("[app]\nname = \"{name}\"\n\n[config]\nport = 8080\nlang = \"dockerfile\"\n"),
                )?;
            }
        }
        git(root, &["add", "-A"])?;
        git(
            root,
            &["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "the app"],
        )?;
        Ok(Self { dir, commits: 1 })
    }

    /// The repository's URL.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Commits a new page (so no build finds its last layer cached); returns its text.
    pub fn new_page(&mut self) -> Result<String> {
        self.commits += 1;
        let page = format!("page {} {}\n", self.commits, kraken_lib::deployment::random_id(4));
        let root = self.dir.path();
        std::fs::write(root.join("www/index.html"), &page)?;
        git(
            root,
            &[
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@localhost",
                "commit",
                "-q",
                "-am",
                "a new page",
            ],
        )?;
        Ok(page)
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git").current_dir(dir).args(args).output().context("running git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
