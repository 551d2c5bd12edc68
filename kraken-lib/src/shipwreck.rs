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

/// One table of the manifest being read, with where it starts.
struct Section<'a> {
    /// `app` or `config`.
    name: &'static str,
    table: &'a dyn TableLike,
    /// Byte offset of the table's header (or the key that made it).
    at: usize,
}

/// A string value and the byte offset where it starts.
struct Located {
    value: String,
    at: usize,
}

/// Reads one document, turning byte offsets into lines and columns.
struct Parser<'a> {
    file: &'a str,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, offset: usize, key: Option<String>, message: String) -> ShipwreckError {
        let (line, column) = line_column(self.text, offset);
        ShipwreckError { file: self.file.to_string(), line, column, key, message }
    }

    fn manifest(&self, root: &toml_edit::Table, known_langs: &[String]) -> Result<Manifest, ShipwreckError> {
        for (name, _) in root.iter() {
            if name != "app" && name != "config" {
                return Err(self.unknown_top_level(root, name));
            }
        }
        let app = self.section(root, "app", "name = \"my-app\"")?;
        let config = self.section(root, "config", "port = 8080")?;
        Ok(Manifest { app: self.app(&app)?, config: self.config(&config, known_langs)? })
    }

    fn unknown_top_level(&self, root: &toml_edit::Table, name: &str) -> ShipwreckError {
        let (key, item) = match root.get_key_value(name) {
            Some(kv) => kv,
            None => return self.error(0, Some(name.to_string()), "unknown key".to_string()),
        };
        let at = start(key.span()).or_else(|| start(item.span())).unwrap_or(0);
        let tables = "a shipwreck.toml has only the tables [app] and [config]";
        let message = if item.is_table_like() || item.is_array_of_tables() {
            let hint = suggestion(name, &["app", "config"])
                .map(|s| format!("did you mean [{s}]? "))
                .unwrap_or_default();
            format!("unknown table [{name}]; {hint}{tables}")
        } else if APP_KEYS.contains(&name) {
            format!("`{name}` must be inside a table: put it under [app]")
        } else if CONFIG_KEYS.contains(&name) {
            format!("`{name}` must be inside a table: put it under [config]")
        } else {
            format!("unknown key `{name}` outside any table; {tables}")
        };
        self.error(at, Some(name.to_string()), message)
    }

    fn section<'t>(
        &self,
        root: &'t toml_edit::Table,
        name: &'static str,
        example: &str,
    ) -> Result<Section<'t>, ShipwreckError> {
        let Some((key, item)) = root.get_key_value(name) else {
            return Err(self.error(
                0,
                Some(name.to_string()),
                format!("the [{name}] table is missing; add it, e.g.\n[{name}]\n{example}"),
            ));
        };
        let at = start(item.span()).or_else(|| start(key.span())).unwrap_or(0);
        match item.as_table_like() {
            Some(table) => Ok(Section { name, table, at }),
            None => Err(self.error(
                at,
                Some(name.to_string()),
                format!("expected a table [{name}], found {}", describe(item)),
            )),
        }
    }

    fn check_keys(
        &self,
        section: &Section<'_>,
        valid: &[&str],
        other: (&str, &[&str]),
    ) -> Result<(), ShipwreckError> {
        for (name, _) in section.table.iter() {
            if valid.contains(&name) {
                continue;
            }
            let at = section
                .table
                .get_key_value(name)
                .and_then(|(k, item)| start(k.span()).or_else(|| start(item.span())))
                .unwrap_or(section.at);
            let list = valid.join(", ");
            let message = if let Some(s) = suggestion(name, valid) {
                format!("unknown key; did you mean `{s}`? [{}] may hold: {list}", section.name)
            } else if other.1.contains(&name) {
                format!("`{name}` belongs in [{}], not [{}]; move it there", other.0, section.name)
            } else {
                format!("unknown key; [{}] may hold: {list}", section.name)
            };
            return Err(self.error(at, Some(format!("{}.{name}", section.name)), message));
        }
        Ok(())
    }

    /// The key's value as a string, if present; an error for any other type.
    fn string(&self, section: &Section<'_>, name: &str) -> Result<Option<Located>, ShipwreckError> {
        let Some((key, item)) = section.table.get_key_value(name) else {
            return Ok(None);
        };
        let at = value_start(key, item, section.at);
        match item.as_str() {
            Some(s) => Ok(Some(Located { value: s.to_string(), at })),
            None => Err(self.error(
                at,
                Some(format!("{}.{name}", section.name)),
                format!(
                    "expected a string, found {}; write it in quotes, e.g. {name} = \"…\"",
                    describe(item)
                ),
            )),
        }
    }

    fn required_string(
        &self,
        section: &Section<'_>,
        name: &str,
        example: &str,
    ) -> Result<Located, ShipwreckError> {
        self.string(section, name)?.ok_or_else(|| {
            self.error(
                section.at,
                Some(format!("{}.{name}", section.name)),
                format!("`{name}` is missing from [{}]; add it, e.g. {name} = {example}", section.name),
            )
        })
    }

    fn app(&self, section: &Section<'_>) -> Result<AppSection, ShipwreckError> {
        self.check_keys(section, APP_KEYS, ("config", CONFIG_KEYS))?;
        let name = self.required_string(section, "name", "\"my-app\"")?;
        if !is_valid_app_name(&name.value) {
            let hint = suggest_app_name(&name.value)
                .map(|s| format!(", e.g. \"{s}\""))
                .unwrap_or_else(|| ", e.g. \"my-app\"".to_string());
            return Err(self.error(
                name.at,
                Some("app.name".to_string()),
                format!(
                    "{} cannot name a container; use 1–{MAX_NAME_LEN} lowercase letters, digits and '-', \
                     starting with a letter and not ending with '-'{hint}",
                    quoted(&name.value)
                ),
            ));
        }
        let version = self.string(section, "version")?.map(|l| l.value);
        let author = self.string(section, "author")?.map(|l| l.value);
        // Free metadata: any string (the original format puts a link to the
        // app's home here).
        let endpoint = self.string(section, "endpoint")?.map(|l| l.value);
        Ok(AppSection { name: name.value, version, author, endpoint })
    }

    fn config(&self, section: &Section<'_>, known_langs: &[String]) -> Result<ConfigSection, ShipwreckError> {
        self.check_keys(section, CONFIG_KEYS, ("app", APP_KEYS))?;
        let port = self.port(section)?;
        let lang = self.string(section, "lang")?;
        if let Some(lang) = &lang {
            if !known_langs.is_empty() && !known_langs.contains(&lang.value) {
                let names: Vec<&str> = known_langs.iter().map(String::as_str).collect();
                let hint = suggestion(&lang.value, &names)
                    .map(|s| format!("did you mean \"{s}\"? "))
                    .unwrap_or_default();
                return Err(self.error(
                    lang.at,
                    Some("config.lang".to_string()),
                    format!(
                        "{} is not a known lang; {hint}use one of: {}, or leave `lang` out to detect it from the files",
                        quoted(&lang.value),
                        names.join(", ")
                    ),
                ));
            }
        }
        let run = self.command(section, "run", "\"node server.js\"")?;
        let test = self.command(section, "test", "\"npm test\"")?;
        let dockerfile = self.string(section, "dockerfile")?;
        if let Some(path) = &dockerfile {
            if let Err(why) = check_repo_path(&path.value) {
                return Err(self.error(
                    path.at,
                    Some("config.dockerfile".to_string()),
                    format!("{} {why}", quoted(&path.value)),
                ));
            }
        }
        let root = self.string(section, "root")?;
        if let Some(dir) = &root {
            if let Err(why) = check_repo_dir(&dir.value) {
                return Err(self.error(
                    dir.at,
                    Some("config.root".to_string()),
                    format!("{} {why}", quoted(&dir.value)),
                ));
            }
        }
        let health = self.string(section, "health")?;
        if let Some(path) = &health {
            if !path.value.starts_with('/') || path.value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(self.error(
                    path.at,
                    Some("config.health".to_string()),
                    format!(
                        "{} is not a path inside the app; use one that starts with '/' and has no spaces, \
                         e.g. \"/\" or \"/api/health\"",
                        quoted(&path.value)
                    ),
                ));
            }
        }
        let env = self.env(section)?;
        Ok(ConfigSection {
            port,
            lang: lang.map(|l| l.value),
            run,
            test,
            dockerfile: dockerfile.map(|l| l.value),
            root: root.map(|l| l.value),
            health: health.map(|l| l.value),
            env,
        })
    }

    fn port(&self, section: &Section<'_>) -> Result<u16, ShipwreckError> {
        let key_name = Some("config.port".to_string());
        let Some((key, item)) = section.table.get_key_value("port") else {
            return Err(self.error(
                section.at,
                key_name,
                "`port` is missing from [config]; add the port your app listens on, e.g. port = 8080"
                    .to_string(),
            ));
        };
        let at = value_start(key, item, section.at);
        if let Some(n) = item.as_integer() {
            return match u16::try_from(n) {
                Ok(p) if p >= 1 => Ok(p),
                _ => Err(self.error(
                    at,
                    key_name,
                    format!("{n} is outside 1–65535; use a port between 1 and 65535"),
                )),
            };
        }
        let hint = match item.as_str().map(str::trim).and_then(|s| s.parse::<u16>().ok()) {
            Some(p) if p >= 1 => format!("; write it without quotes: port = {p}"),
            _ => "; use a whole number between 1 and 65535, e.g. port = 8080".to_string(),
        };
        Err(self.error(at, key_name, format!("expected an integer, found {}{hint}", describe(item))))
    }

    /// An optional shell command: a string that is not blank.
    fn command(
        &self,
        section: &Section<'_>,
        name: &str,
        example: &str,
    ) -> Result<Option<String>, ShipwreckError> {
        match self.string(section, name)? {
            Some(l) if l.value.trim().is_empty() => Err(self.error(
                l.at,
                Some(format!("config.{name}")),
                format!("is empty; give a shell command, e.g. {name} = {example}, or leave `{name}` out"),
            )),
            other => Ok(other.map(|l| l.value)),
        }
    }

    fn env(&self, section: &Section<'_>) -> Result<BTreeMap<String, String>, ShipwreckError> {
        let mut env = BTreeMap::new();
        let Some((key, item)) = section.table.get_key_value("env") else {
            return Ok(env);
        };
        let at = value_start(key, item, section.at);
        let Some(table) = item.as_table_like() else {
            return Err(self.error(
                at,
                Some("config.env".to_string()),
                format!(
                    "expected a table of NAME = \"value\" pairs, found {}; e.g. env = {{ GREETING = \"hello\" }}",
                    describe(item)
                ),
            ));
        };
        for (name, _) in table.iter() {
            let Some((k, v)) = table.get_key_value(name) else { continue };
            let dotted = Some(format!("config.env.{name}"));
            let key_at = start(k.span()).unwrap_or(at);
            if !is_valid_env_name(name) {
                return Err(self.error(
                    key_at,
                    dotted,
                    format!(
                        "{} is not a valid environment variable name; use letters, digits and '_', \
                         not starting with a digit, e.g. API_URL",
                        quoted(name)
                    ),
                ));
            }
            let value_at = value_start(k, v, key_at);
            let Some(value) = v.as_str() else {
                let plain = match v.as_value() {
                    Some(Value::Integer(i)) => Some(i.value().to_string()),
                    Some(Value::Float(f)) => Some(f.value().to_string()),
                    Some(Value::Boolean(b)) => Some(b.value().to_string()),
                    _ => None,
                };
                let hint = match plain {
                    Some(p) => format!("; quote it: {name} = \"{p}\""),
                    None => format!("; e.g. {name} = \"value\""),
                };
                return Err(self.error(
                    value_at,
                    dotted,
                    format!("expected a string, found {}{hint}", describe(v)),
                ));
            };
            if value.contains(['\n', '\r', '\0']) {
                return Err(self.error(
                    value_at,
                    dotted,
                    "the value has a line break or NUL character; environment values must be a single line of text"
                        .to_string(),
                ));
            }
            env.insert(name.to_string(), value.to_string());
        }
        Ok(env)
    }
}

/// The start of a span, if there is one.
fn start(span: Option<Range<usize>>) -> Option<usize> {
    span.map(|s| s.start)
}

/// Where a value starts: its own span, else its key's, else `fallback`.
fn value_start(key: &Key, item: &Item, fallback: usize) -> usize {
    start(item.span()).or_else(|| start(key.span())).unwrap_or(fallback)
}

/// 1-based line and column (in characters) of a byte offset, clamped into the text.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The parser's message on one line, with what a manifest should look like.
fn syntax_message(raw: &str) -> String {
    let detail: Vec<&str> = raw.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!(
        "this is not valid TOML ({}); a shipwreck.toml is made of [table] headers and key = value lines, \
         with strings in double quotes",
        detail.join("; ")
    )
}

/// What an item is, for "expected …, found …" messages.
fn describe(item: &Item) -> String {
    match item {
        Item::None => "nothing".to_string(),
        Item::Table(_) => "a table".to_string(),
        Item::ArrayOfTables(_) => "an array of tables".to_string(),
        Item::Value(v) => match v {
            Value::String(s) => format!("the string {}", quoted(s.value())),
            Value::Integer(i) => format!("an integer ({})", i.value()),
            Value::Float(f) => format!("a float ({})", f.value()),
            Value::Boolean(b) => format!("a boolean ({})", b.value()),
            Value::Datetime(d) => format!("a date-time ({})", d.value()),
            Value::Array(_) => "an array".to_string(),
            Value::InlineTable(_) => "an inline table".to_string(),
        },
    }
}

/// A value in double quotes, shortened when long.
fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        let short: String = s.chars().take(MAX).collect();
        format!("{:?}", format!("{short}…"))
    } else {
        format!("{s:?}")
    }
}

/// The candidate closest to `given`, if it is close enough to be a likely typo.
fn suggestion<'c>(given: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let given_lower = given.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&given_lower, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, in characters (`strsim`); gives up (returns a large
/// number) on long inputs, which are never a typo of a known key.
fn edit_distance(a: &str, b: &str) -> usize {
    if a.chars().count() > 64 || b.chars().count() > 64 {
        return usize::MAX;
    }
    strsim::levenshtein(a, b)
}

/// A valid app name close to `given`, e.g. "My App" → "my-app".
fn suggest_app_name(given: &str) -> Option<String> {
    let mut out = String::new();
    for c in given.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut name: String = trimmed.chars().take(MAX_NAME_LEN).collect();
    while name.ends_with('-') {
        name.pop();
    }
    (is_valid_app_name(&name) && name != given).then_some(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn langs() -> Vec<String> {
        ["dockerfile", "node", "python", "static", "python3.6"].iter().map(|s| s.to_string()).collect()
    }

    fn parse(text: &str) -> Result<Manifest, ShipwreckError> {
        Manifest::parse(FILE_NAME, text, &langs())
    }

    fn err(text: &str) -> ShipwreckError {
        match parse(text) {
            Ok(m) => panic!("expected an error, got {m:?}"),
            Err(e) => e,
        }
    }

    const VALID_HEAD: &str = "[app]\nname = \"demo\"\n\n[config]\n";

    #[test]
    fn full_valid_manifest() {
        let text = r#"
# A full manifest
[app]
name = "hello-api"
version = "1.2.0"
author = "Ada"
endpoint = "/api/health"

[config]
port = 8080
lang = "python"
run = "python3 app.py"
test = "python3 -m unittest"
dockerfile = "docker/Dockerfile"

[config.env]
GREETING = "hello \"world\""
_DEBUG = "1"
"#;
        let m = parse(text).unwrap();
        assert_eq!(m.app.name, "hello-api");
        assert_eq!(m.app.version.as_deref(), Some("1.2.0"));
        assert_eq!(m.app.author.as_deref(), Some("Ada"));
        assert_eq!(m.app.endpoint.as_deref(), Some("/api/health"));
        assert_eq!(m.config.port, 8080);
        assert_eq!(m.config.lang.as_deref(), Some("python"));
        assert_eq!(m.config.run.as_deref(), Some("python3 app.py"));
        assert_eq!(m.config.test.as_deref(), Some("python3 -m unittest"));
        assert_eq!(m.config.dockerfile.as_deref(), Some("docker/Dockerfile"));
        let env: Vec<(&str, &str)> = m.config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, vec![("GREETING", "hello \"world\""), ("_DEBUG", "1")]);
    }

    #[test]
    fn minimal_manifest_has_empty_optionals() {
        let m = parse("[app]\nname = \"a\"\n[config]\nport = 1\n").unwrap();
        assert_eq!(m.app.name, "a");
        assert_eq!(m.config.port, 1);
        assert!(m.app.version.is_none() && m.config.lang.is_none() && m.config.run.is_none());
        assert!(m.config.env.is_empty());
    }

    #[test]
    fn inline_and_dotted_tables_are_accepted() {
        let m = parse("app = { name = \"x1\" }\nconfig.port = 65535\nconfig.env.A = \"b\"\n").unwrap();
        assert_eq!(m.app.name, "x1");
        assert_eq!(m.config.port, 65535);
        assert_eq!(m.config.env.get("A").map(String::as_str), Some("b"));
    }

    #[test]
    fn display_format_matches_the_documented_one() {
        let e = err("[app]\nname = \"demo\"\n[config]\nport = 70000\n");
        assert_eq!(
            e.to_string(),
            "shipwreck.toml:4:8: `config.port`: 70000 is outside 1–65535; use a port between 1 and 65535"
        );
    }

    #[test]
    fn invalid_toml_reports_position() {
        let e = err("[app]\nname = \"demo\n[config]\n");
        assert_eq!(e.line, 2);
        assert!(e.column >= 1);
        assert!(e.key.is_none());
        assert!(e.message.contains("not valid TOML"), "{}", e.message);
        let e = err("[app]\nname = demo\n");
        assert_eq!((e.line, e.column), (2, 8));
    }

    #[test]
    fn duplicate_key_is_a_syntax_error() {
        let e = err("[app]\nname = \"a\"\nname = \"b\"\n[config]\nport = 1\n");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn unknown_table_is_refused_with_the_valid_ones() {
        let e = err("[app]\nname = \"demo\"\n[config]\nport = 80\n[build]\nx = 1\n");
        assert_eq!(e.key.as_deref(), Some("build"));
        assert_eq!(e.line, 5);
        assert!(e.message.contains("[app] and [config]"), "{}", e.message);
        let e = err("[ap]\nname = \"demo\"\n[config]\nport = 80\n");
        assert!(e.message.contains("did you mean [app]"), "{}", e.message);
    }

    #[test]
    fn top_level_key_is_pointed_to_its_table() {
        let e = err("port = 80\n[app]\nname = \"demo\"\n");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.contains("put it under [config]"), "{}", e.message);
    }

    #[test]
    fn unknown_key_suggests_nearest() {
        let e = err(&format!("{VALID_HEAD}prot = 80\n"));
        assert_eq!(e.key.as_deref(), Some("config.prot"));
        assert_eq!((e.line, e.column), (5, 1));
        assert!(e.message.contains("did you mean `port`"), "{}", e.message);
        assert!(e.message.contains("port, lang, run, test, dockerfile, root, health, env"), "{}", e.message);
        let e = err("[app]\nname = \"demo\"\nfoo = 1\n[config]\nport = 80\n");
        assert_eq!(e.key.as_deref(), Some("app.foo"));
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        assert!(e.message.contains("name, version, author, endpoint"), "{}", e.message);
    }

    #[test]
    fn key_in_the_wrong_table_is_pointed_to_the_right_one() {
        let e = err("[app]\nname = \"demo\"\nport = 80\n[config]\nport = 80\n");
        assert_eq!(e.key.as_deref(), Some("app.port"));
        assert!(e.message.contains("belongs in [config]"), "{}", e.message);
    }

    #[test]
    fn missing_tables_and_keys() {
        let e = err("");
        assert_eq!((e.line, e.column, e.key.as_deref()), (1, 1, Some("app")));
        let e = err("[app]\nname = \"demo\"\n");
        assert_eq!(e.key.as_deref(), Some("config"));
        assert!(e.message.contains("[config] table is missing"), "{}", e.message);
        let e = err("\n[app]\nversion = \"1\"\n[config]\nport = 80\n");
        assert_eq!((e.line, e.column, e.key.as_deref()), (2, 1, Some("app.name")));
        let e = err("[app]\nname = \"demo\"\n\n[config]\nrun = \"x\"\n");
        assert_eq!((e.line, e.column, e.key.as_deref()), (4, 1, Some("config.port")));
        assert!(e.message.contains("port = 8080"), "{}", e.message);
    }

    #[test]
    fn wrong_types_say_expected_and_found() {
        let e = err(&format!("{VALID_HEAD}port = \"8080\"\n"));
        assert_eq!((e.line, e.column), (5, 8));
        assert!(e.message.contains("expected an integer, found the string \"8080\""), "{}", e.message);
        assert!(e.message.contains("port = 8080"), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80.5\n"));
        assert!(e.message.contains("found a float"), "{}", e.message);
        let e = err("[app]\nname = 42\n[config]\nport = 80\n");
        assert_eq!(e.key.as_deref(), Some("app.name"));
        assert!(e.message.contains("expected a string, found an integer (42)"), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80\nrun = [\"a\"]\n"));
        assert!(e.message.contains("found an array"), "{}", e.message);
        let e = err("app = 3\n[config]\nport = 80\n");
        assert!(e.message.contains("expected a table [app], found an integer (3)"), "{}", e.message);
        let e = err("[[app]]\nname = \"a\"\n[config]\nport = 80\n");
        assert!(e.message.contains("found an array of tables"), "{}", e.message);
    }

    #[test]
    fn port_range() {
        for bad in ["0", "-1", "65536", "9999999999"] {
            let e = err(&format!("{VALID_HEAD}port = {bad}\n"));
            assert_eq!(e.key.as_deref(), Some("config.port"));
            assert!(e.message.contains("outside 1–65535"), "{bad}: {}", e.message);
            assert_eq!((e.line, e.column), (5, 8));
        }
        assert_eq!(parse(&format!("{VALID_HEAD}port = 65535\n")).unwrap().config.port, 65535);
    }

    #[test]
    fn bad_names() {
        for bad in ["", "My-App", "1app", "app-", "a_b", "a.b", &"a".repeat(64), "héllo"] {
            let e = err(&format!("[app]\nname = {bad:?}\n[config]\nport = 80\n"));
            assert_eq!(e.key.as_deref(), Some("app.name"), "{bad}");
            assert_eq!((e.line, e.column), (2, 8), "{bad}");
            assert!(e.message.contains("lowercase letters"), "{bad}: {}", e.message);
        }
        let e = err("[app]\nname = \"My App\"\n[config]\nport = 80\n");
        assert!(e.message.contains("e.g. \"my-app\""), "{}", e.message);
        assert!(parse(&format!("[app]\nname = {:?}\n[config]\nport = 80\n", "a".repeat(63))).is_ok());
    }

    /// The example of Kraken's original documentation, exactly as written.
    pub(crate) const ORIGINAL_FORMAT: &str = "[app]\nname=\"scapenode\"\nversion=\"1.0.0\"\nauthor=\"Ethan Shry\"\nendpoint=\"https://github.com/ethanshry/scapenode\"\n\n[config]\nport=7211\nlang=\"node\"\nrun=\"npm start\"\n";

    #[test]
    fn the_original_format_validates_as_written() {
        let m = parse(ORIGINAL_FORMAT).unwrap();
        assert_eq!(m.app.name, "scapenode");
        assert_eq!(m.app.version.as_deref(), Some("1.0.0"));
        assert_eq!(m.app.author.as_deref(), Some("Ethan Shry"));
        assert_eq!(m.app.endpoint.as_deref(), Some("https://github.com/ethanshry/scapenode"));
        assert_eq!(
            (m.config.port, m.config.lang.as_deref(), m.config.run.as_deref()),
            (7211, Some("node"), Some("npm start"))
        );
        assert_eq!((m.config.root.as_deref(), m.config.health.as_deref()), (None, None));
    }

    #[test]
    fn endpoint_is_free_metadata() {
        for any in ["health", "/", "https://example.org/x y", "mailto:a@b", "javascript:alert(1)", ""] {
            let m =
                parse(&format!("[app]\nname = \"demo\"\nendpoint = {any:?}\n[config]\nport = 80\n")).unwrap();
            assert_eq!(m.app.endpoint.as_deref(), Some(any));
        }
        let e = err("[app]\nname = \"demo\"\nendpoint = 3\n[config]\nport = 80\n");
        assert!(e.message.contains("expected a string"), "{}", e.message);
    }

    #[test]
    fn health_must_be_a_path() {
        let m = parse(&format!("{VALID_HEAD}port = 80\nhealth = \"/api/health\"\n")).unwrap();
        assert_eq!(m.config.health.as_deref(), Some("/api/health"));
        for bad in ["health", "https://x/y", "/a b", ""] {
            let e = err(&format!("{VALID_HEAD}port = 80\nhealth = {bad:?}\n"));
            assert_eq!(e.key.as_deref(), Some("config.health"), "{bad}");
            assert_eq!((e.line, e.column), (6, 10), "{bad}");
            assert!(
                e.message.contains("starts with '/'") && e.message.contains("\"/api/health\""),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn root_stays_in_the_repository() {
        for good in ["apps/web", "./api", "services/api/", ".", "a/../b"] {
            let m = parse(&format!("{VALID_HEAD}port = 80\nroot = {good:?}\n")).unwrap();
            assert_eq!(m.config.root.as_deref(), Some(good));
        }
        for (bad, why) in [
            ("../other", "leaves the repository through `..`"),
            ("a/../../b", "leaves the repository through `..`"),
            ("/srv/app", "is an absolute path"),
            ("", "is empty"),
        ] {
            let e = err(&format!("{VALID_HEAD}port = 80\nroot = {bad:?}\n"));
            assert_eq!(e.key.as_deref(), Some("config.root"), "{bad}");
            assert_eq!((e.line, e.column), (6, 8), "{bad}");
            assert!(e.message.contains(why), "{bad}: {}", e.message);
            assert!(
                e.message.contains("relative to the repository root, e.g. \"apps/web\""),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn unknown_lang_lists_known_ones() {
        let e = err(&format!("{VALID_HEAD}port = 80\nlang = \"pyhton\"\n"));
        assert_eq!(e.key.as_deref(), Some("config.lang"));
        assert_eq!((e.line, e.column), (6, 8));
        assert!(e.message.contains("did you mean \"python\""), "{}", e.message);
        assert!(e.message.contains("dockerfile, node, python, static, python3.6"), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80\nlang = \"cobol\"\n"));
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        // With no list of builders, any lang is left to the registry.
        let m =
            Manifest::parse(FILE_NAME, &format!("{VALID_HEAD}port = 80\nlang = \"cobol\"\n"), &[]).unwrap();
        assert_eq!(m.config.lang.as_deref(), Some("cobol"));
    }

    #[test]
    fn blank_commands_are_refused() {
        let e = err(&format!("{VALID_HEAD}port = 80\nrun = \"  \"\n"));
        assert_eq!(e.key.as_deref(), Some("config.run"));
        let e = err(&format!("{VALID_HEAD}port = 80\ntest = \"\"\n"));
        assert_eq!(e.key.as_deref(), Some("config.test"));
    }

    #[test]
    fn dockerfile_must_stay_in_the_repository() {
        for bad in
            ["", "/etc/Dockerfile", "../Dockerfile", "a/../../Dockerfile", ".", "a/..", "C:\\Dockerfile"]
        {
            let e = err(&format!("{VALID_HEAD}port = 80\ndockerfile = {bad:?}\n"));
            assert_eq!(e.key.as_deref(), Some("config.dockerfile"), "{bad}");
            assert_eq!((e.line, e.column), (6, 14), "{bad}");
            assert!(e.message.contains("relative to the repository root"), "{bad}: {}", e.message);
        }
        for good in ["Dockerfile", "./docker/Dockerfile", "a/../Dockerfile.prod"] {
            assert!(parse(&format!("{VALID_HEAD}port = 80\ndockerfile = {good:?}\n")).is_ok(), "{good}");
        }
    }

    #[test]
    fn env_names_and_values_are_checked() {
        let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\n1BAD = \"x\"\n"));
        assert_eq!(e.key.as_deref(), Some("config.env.1BAD"));
        assert_eq!((e.line, e.column), (7, 1));
        assert!(e.message.contains("not a valid environment variable name"), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80\nenv = {{ \"A-B\" = \"x\" }}\n"));
        assert_eq!(e.key.as_deref(), Some("config.env.A-B"));
        let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\nDEBUG = true\n"));
        assert_eq!((e.line, e.column), (7, 9));
        assert!(e.message.contains("expected a string, found a boolean (true)"), "{}", e.message);
        assert!(e.message.contains("DEBUG = \"true\""), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\nA = \"x\\ny\"\n"));
        assert!(e.message.contains("single line"), "{}", e.message);
        let e = err(&format!("{VALID_HEAD}port = 80\nenv = \"A=B\"\n"));
        assert_eq!(e.key.as_deref(), Some("config.env"));
        assert!(e.message.contains("expected a table"), "{}", e.message);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = err("[app]\nauthor = \"é\"; name = \"x\"\n");
        assert_eq!(e.line, 2);
        // `;` is the 13th character of the line but starts at its 14th byte.
        assert_eq!(e.column, 13);
    }

    #[test]
    fn helpers() {
        assert!(is_valid_env_name("_A1") && !is_valid_env_name("") && !is_valid_env_name("A B"));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
        assert_eq!(suggest_app_name("--My_App 2--").as_deref(), Some("my-app-2"));
        assert_eq!(edit_distance("prot", "port"), 2);
    }
}
