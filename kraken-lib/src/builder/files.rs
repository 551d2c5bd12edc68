//! [`AppFiles`]: the read-only view of a checked-out app through which
//! builders see its files, and nothing outside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BuildError;
use crate::shipwreck::Manifest;

/// The largest file [`AppFiles::read_to_string`] reads.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;

/// A read-only view of a checked-out app, the only way builders see its files.
///
/// Reads go through [`AppFiles::resolve`], so a symbolic link cannot make a
/// builder read a file outside the app's folder.
#[derive(Debug, Clone)]
pub struct AppFiles {
    root: PathBuf,
    manifest: Option<Arc<Manifest>>,
}

impl AppFiles {
    /// A view of the app checked out at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), manifest: None }
    }

    /// The same view, with the app's manifest available to detection (a
    /// builder may look at `config.run`, for example).
    #[must_use]
    pub fn with_manifest(mut self, manifest: &Manifest) -> Self {
        self.manifest = Some(Arc::new(manifest.clone()));
        self
    }

    /// The app's manifest, when the view was given one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_deref()
    }

    /// The app's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the relative path `rel` is a regular file inside the app.
    pub fn includes_file(&self, rel: &str) -> bool {
        self.resolve(rel).is_ok_and(|p| p.is_file())
    }

    /// Whether the relative path `rel` is a directory inside the app.
    pub fn includes_dir(&self, rel: &str) -> bool {
        self.resolve(rel).is_ok_and(|p| p.is_dir())
    }

    /// The first of `names` that is a file of the app.
    pub fn first_file<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names.iter().copied().find(|n| self.includes_file(n))
    }

    /// The real path of `rel`, after following symbolic links, checked to be
    /// inside the app.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when `rel` is empty, absolute, climbs out with
    /// `..`, or leads outside the app through a symbolic link;
    /// [`BuildError::Io`] when it does not exist or cannot be read.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, BuildError> {
        if let Err(why) = crate::shipwreck::check_repo_path(rel) {
            return Err(BuildError::Invalid(format!("the path {rel:?} {why}")));
        }
        let root =
            self.root.canonicalize().map_err(|source| BuildError::Io { path: self.root.clone(), source })?;
        let joined = root.join(rel);
        let real = joined.canonicalize().map_err(|source| BuildError::Io { path: joined.clone(), source })?;
        if real.starts_with(&root) {
            Ok(real)
        } else {
            Err(BuildError::Invalid(format!(
                "{rel:?} leads outside the repository (to {}) through a symbolic link; \
                 keep the file inside the repository",
                real.display()
            )))
        }
    }

    /// The text of the file `rel` inside the app (at most [`MAX_READ_BYTES`]:
    /// detection reads small files, and the agent's memory stays bounded
    /// whatever a repository holds).
    ///
    /// # Errors
    /// As [`AppFiles::resolve`], [`BuildError::Io`] when the file cannot be
    /// read as UTF-8 text, [`BuildError::Invalid`] when it is larger.
    pub fn read_to_string(&self, rel: &str) -> Result<String, BuildError> {
        use std::io::Read;
        let path = self.resolve(rel)?;
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_READ_BYTES + 1).read_to_string(&mut text))
            .map_err(|source| BuildError::Io { path, source })?;
        if text.len() as u64 > MAX_READ_BYTES {
            return Err(BuildError::Invalid(format!(
                "{rel:?} is larger than {} MiB; Kraken reads only small files to recognise an app",
                MAX_READ_BYTES / (1024 * 1024)
            )));
        }
        Ok(text)
    }

    /// The file `rel` inside the app, parsed as JSON.
    ///
    /// # Errors
    /// As [`AppFiles::read_to_string`], and [`BuildError::Invalid`] (with the
    /// line and column) when it is not valid JSON.
    pub fn read_json(&self, rel: &str) -> Result<serde_json::Value, BuildError> {
        let text = self.read_to_string(rel)?;
        serde_json::from_str(&text).map_err(|e| {
            BuildError::Invalid(format!("{rel}:{}:{}: not valid JSON: {e}", e.line(), e.column()))
        })
    }

    /// The file `rel` inside the app, parsed as TOML.
    ///
    /// # Errors
    /// As [`AppFiles::read_to_string`], and [`BuildError::Invalid`] when it is
    /// not valid TOML.
    pub fn read_toml(&self, rel: &str) -> Result<toml::Table, BuildError> {
        let text = self.read_to_string(rel)?;
        text.parse::<toml::Table>()
            .map_err(|e| BuildError::Invalid(format!("{rel}: not valid TOML: {}", e.message())))
    }

    /// The names of the entries (files and directories) at the app's root, sorted.
    ///
    /// # Errors
    /// [`BuildError::Io`] when the root cannot be listed.
    pub fn list_root(&self) -> Result<Vec<String>, BuildError> {
        self.list_dir(".")
    }

    /// The names of the entries of the directory `rel` (`.` for the root), sorted.
    ///
    /// # Errors
    /// [`BuildError::Io`] when it cannot be listed; [`BuildError::Invalid`]
    /// for a path outside the app.
    pub fn list_dir(&self, rel: &str) -> Result<Vec<String>, BuildError> {
        let dir = if rel == "." { self.root.clone() } else { self.resolve(rel)? };
        let io = |source| BuildError::Io { path: dir.clone(), source };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            names.push(entry.map_err(io)?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::app;
    use super::*;

    #[test]
    fn app_files_reads() {
        let dir = app(&[
            ("package.json", "{\"a\": 1}"),
            ("sub/x.txt", "x"),
            ("bad.json", "{\n  nope"),
            ("p.toml", "[t]\nk = 1\n"),
            ("bad.toml", "k = \n"),
        ]);
        let files = AppFiles::new(dir.path());
        assert_eq!(files.read_to_string("sub/x.txt").unwrap(), "x");
        assert_eq!(files.read_json("package.json").unwrap()["a"], 1);
        let err = files.read_json("bad.json").unwrap_err();
        assert!(err.to_string().starts_with("bad.json:2:3: not valid JSON"), "{err}");
        assert_eq!(files.read_toml("p.toml").unwrap()["t"]["k"].as_integer(), Some(1));
        assert!(files.read_toml("bad.toml").unwrap_err().to_string().starts_with("bad.toml: not valid TOML"));
        assert_eq!(files.list_root().unwrap(), ["bad.json", "bad.toml", "p.toml", "package.json", "sub"]);
        assert_eq!(files.list_dir("sub").unwrap(), ["x.txt"]);
        assert!(
            files.includes_file("sub/x.txt") && !files.includes_file("sub") && !files.includes_file("none")
        );
        assert!(files.includes_dir("sub") && !files.includes_dir("sub/x.txt"));
        assert_eq!(files.first_file(&["none", "p.toml", "package.json"]), Some("p.toml"));
        assert!(matches!(files.read_to_string("../x"), Err(BuildError::Invalid(_))));
        assert!(matches!(files.read_to_string("missing"), Err(BuildError::Io { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn app_files_refuse_symlinks_out_of_the_checkout() {
        let outside = app(&[("secret", "s")]);
        let dir = app(&[]);
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let files = AppFiles::new(dir.path());
        let err = files.read_to_string("link").unwrap_err();
        assert!(err.to_string().contains("outside the repository"), "{err}");
        assert!(!files.includes_file("link"));
    }
}
