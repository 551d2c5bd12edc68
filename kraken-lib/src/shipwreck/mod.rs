//! Parsing and validation of `shipwreck.toml`, the manifest at the root of every
//! app Kraken deploys.
//!
//! A manifest has an `[app]` table (`name`, `version`, `author`, `endpoint`) and
//! a `[config]` table (`port`, `lang`, `run`, `test`, `dockerfile`, `root`,
//! `health`, `env`). `app.endpoint` is free metadata (the original format uses
//! it for a link to the app's home page); the path the platform checks and
//! links inside the app is `config.health`.
//! [`Manifest::parse`] never panics, whatever the bytes; every error names the
//! file, the line and column, the key, and what would have been valid.
//!
//! ```
//! use kraken_lib::shipwreck::Manifest;
//!
//! let text = "[app]\nname = \"hello\"\n\n[config]\nport = 8080\nrun = \"node server.js\"\n";
//! let manifest = Manifest::parse("shipwreck.toml", text, &["node".to_string()]).unwrap();
//! assert_eq!(manifest.config.port, 8080);
//!
//! let err = Manifest::parse("shipwreck.toml", "[app]\nname = \"hello\"\n[config]\nport = 70000\n", &[])
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "shipwreck.toml:4:8: `config.port`: 70000 is outside 1–65535; use a port between 1 and 65535"
//! );
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml_edit::{ImDocument, Item, Key, TableLike, Value};

mod parser;

use parser::*;

/// The file name Kraken looks for at the root of a repository.
pub const FILE_NAME: &str = "shipwreck.toml";

/// The keys the `[app]` table may hold.
pub const APP_KEYS: &[&str] = &["name", "version", "author", "endpoint"];

/// The keys the `[config]` table may hold.
pub const CONFIG_KEYS: &[&str] = &["port", "lang", "run", "test", "dockerfile", "root", "health", "env"];

/// The longest app name accepted (the limit of one DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// A parsed and validated `shipwreck.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// The `[app]` table.
    pub app: AppSection,
    /// The `[config]` table.
    pub config: ConfigSection,
}

/// The `[app]` table: who the app is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppSection {
    /// Required. Usable as a container and DNS name: 1–63 characters of
    /// lowercase ASCII letters, digits and `-`, starting with a letter and not
    /// ending with `-`.
    pub name: String,
    /// Optional free-form version, e.g. `"1.0.0"`.
    pub version: Option<String>,
    /// Optional author.
    pub author: Option<String>,
    /// Optional free metadata about the app, any string: in the original
    /// format a link to its home page (`"https://github.com/…"`). The interface
    /// shows it as a link only when it is an `http://` or `https://` URL.
    pub endpoint: Option<String>,
}

/// The `[config]` table: how the app is built and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigSection {
    /// Required. The one TCP port the app listens on inside its container, 1–65535.
    pub port: u16,
    /// Optional builder name (`node`, `python`, `python3.6`, `static`,
    /// `dockerfile`, or one a node registered). Absent: detected from the files.
    pub lang: Option<String>,
    /// The shell command that starts the app. Optional: when absent the builder
    /// infers it (a `Procfile`, `package.json`, the usual Python entry points)
    /// and says why; an app it cannot infer for is refused with what to write.
    pub run: Option<String>,
    /// Optional shell command run in the built image before deploying; a non-zero
    /// exit fails the deployment.
    pub test: Option<String>,
    /// Optional path, inside the repository, of the Dockerfile used by
    /// `lang = "dockerfile"` (default `Dockerfile`), relative to the app's folder.
    pub dockerfile: Option<String>,
    /// Optional folder of the repository that holds the app (e.g. one package
    /// of a monorepo): the builders look there and it is the build context.
    /// Absent: the repository's root. Never leaves the repository.
    #[serde(default)]
    pub root: Option<String>,
    /// Optional path inside the app that answers when it is healthy and that
    /// the interface links to, starting with `/` (e.g. `"/api/health"`).
    #[serde(default)]
    pub health: Option<String>,
    /// Environment variables for the container.
    pub env: BTreeMap<String, String>,
}

/// Why a `shipwreck.toml` was refused: where, which key, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
#[non_exhaustive]
pub struct ShipwreckError {
    /// The file the error is in, as the caller named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The dotted key concerned (`config.port`), when there is one.
    pub key: Option<String>,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl Manifest {
    /// Parses and validates a manifest. `file` names it in errors; `known_langs`
    /// are the builder names a `lang` may take (an empty list accepts any `lang`
    /// and leaves the check to the builder registry).
    ///
    /// # Errors
    /// A [`ShipwreckError`] for the first problem found: invalid TOML, an unknown
    /// table or key, a missing required key, a value of the wrong type, a port
    /// outside 1–65535, an app name that cannot name a container, an unknown
    /// `lang`, a `dockerfile` path outside the repository, or a bad `env` entry.
    ///
    /// # Examples
    ///
    /// ```
    /// use kraken_lib::shipwreck::{Manifest, FILE_NAME};
    ///
    /// let text = "[app]\nname = \"hello\"\n\n[config]\nport = 8080\nlang = \"python\"\n";
    /// let manifest = Manifest::parse(FILE_NAME, text, &[])?;
    /// assert_eq!(manifest.app.name, "hello");
    /// assert_eq!(manifest.config.port, 8080);
    ///
    /// // A misspelt key is refused with where it is and what was meant.
    /// let misspelt = text.replace("lang", "lnag");
    /// let err = Manifest::parse(FILE_NAME, &misspelt, &[]).unwrap_err();
    /// assert_eq!((err.line, err.column), (6, 1));
    /// assert!(err.to_string().contains("`lang`"), "{err}");
    /// # Ok::<(), kraken_lib::shipwreck::ShipwreckError>(())
    /// ```
    pub fn parse(file: &str, text: &str, known_langs: &[String]) -> Result<Manifest, ShipwreckError> {
        let parser = Parser { file, text };
        let doc = ImDocument::parse(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            parser.error(offset, None, syntax_message(e.message()))
        })?;
        parser.manifest(doc.as_table(), known_langs)
    }
}

/// Whether `name` can name an app: 1–63 lowercase ASCII letters, digits and
/// `-`, starting with a letter and not ending with `-`.
pub fn is_valid_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_NAME_LEN
                && first.is_ascii_lowercase()
                && *last != b'-'
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `name` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    }
}

/// Checks that `path` names a file inside the repository without looking at the
/// disk: not empty, not absolute, and no `..` that climbs above the root.
/// Returns why not, as a sentence fragment that follows the quoted path.
pub(crate) fn check_repo_path(path: &str) -> Result<(), String> {
    const HINT: &str =
        "give a path relative to the repository root, e.g. \"Dockerfile\" or \"docker/Dockerfile\"";
    if path.trim().is_empty() {
        return Err(format!("is empty; {HINT}"));
    }
    if path.contains('\0') {
        return Err(format!("contains a NUL character; {HINT}"));
    }
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with('/') || path.starts_with('\\') || drive {
        return Err(format!("is an absolute path; {HINT}"));
    }
    let mut depth = 0usize;
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Err(format!("leaves the repository through `..`; {HINT}")),
            },
            _ => depth += 1,
        }
    }
    if depth == 0 {
        return Err(format!("names the repository root, not a file; {HINT}"));
    }
    Ok(())
}

/// Checks that `dir` names a folder inside the repository without looking at
/// the disk (`.` is the root itself); returns why not, as a sentence fragment
/// that follows the quoted path.
pub(crate) fn check_repo_dir(dir: &str) -> Result<(), String> {
    const HINT: &str = "give the app's folder relative to the repository root, e.g. \"apps/web\"";
    if dir.trim().is_empty() {
        return Err(format!("is empty; {HINT}, or leave `root` out for the repository root"));
    }
    match check_repo_path(dir) {
        Ok(()) => Ok(()),
        Err(why) if why.starts_with("names the repository root") => Ok(()),
        Err(why) => {
            let reason = why.split(';').next().unwrap_or(&why);
            Err(format!("{reason}; {HINT}"))
        }
    }
}

#[cfg(test)]
mod tests;
