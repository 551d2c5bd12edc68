//! Reading one `shipwreck.toml` document: each table and key checked, byte
//! offsets turned into lines and columns, and suggestions for misspelt keys
//! and app names.

use super::*;

/// One table of the manifest being read, with where it starts.
pub(super) struct Section<'a> {
    /// `app` or `config`.
    name: &'static str,
    table: &'a dyn TableLike,
    /// Byte offset of the table's header (or the key that made it).
    at: usize,
}

/// A string value and the byte offset where it starts.
pub(super) struct Located {
    value: String,
    at: usize,
}

/// Reads one document, turning byte offsets into lines and columns.
pub(super) struct Parser<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Parser<'_> {
    pub(super) fn error(&self, offset: usize, key: Option<String>, message: String) -> ShipwreckError {
        let (line, column) = line_column(self.text, offset);
        ShipwreckError { file: self.file.to_string(), line, column, key, message }
    }

    pub(super) fn manifest(
        &self,
        root: &toml_edit::Table,
        known_langs: &[String],
    ) -> Result<Manifest, ShipwreckError> {
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
pub(super) fn start(span: Option<Range<usize>>) -> Option<usize> {
    span.map(|s| s.start)
}

/// Where a value starts: its own span, else its key's, else `fallback`.
pub(super) fn value_start(key: &Key, item: &Item, fallback: usize) -> usize {
    start(item.span()).or_else(|| start(key.span())).unwrap_or(fallback)
}

/// 1-based line and column (in characters) of a byte offset, clamped into the text.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The parser's message on one line, with what a manifest should look like.
pub(super) fn syntax_message(raw: &str) -> String {
    let detail: Vec<&str> = raw.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!(
        "this is not valid TOML ({}); a shipwreck.toml is made of [table] headers and key = value lines, \
         with strings in double quotes",
        detail.join("; ")
    )
}

/// What an item is, for "expected …, found …" messages.
pub(super) fn describe(item: &Item) -> String {
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
pub(super) fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        let short: String = s.chars().take(MAX).collect();
        format!("{:?}", format!("{short}…"))
    } else {
        format!("{s:?}")
    }
}

/// The candidate closest to `given`, if it is close enough to be a likely typo.
pub(super) fn suggestion<'c>(given: &str, candidates: &[&'c str]) -> Option<&'c str> {
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    if a.chars().count() > 64 || b.chars().count() > 64 {
        return usize::MAX;
    }
    strsim::levenshtein(a, b)
}

/// A valid app name close to `given`, e.g. "My App" → "my-app".
pub(super) fn suggest_app_name(given: &str) -> Option<String> {
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
