//! Which package manager installs a Node.js app, and its commands: what
//! `packageManager` in `package.json` names, else what the lockfile shows
//! (`package-lock.json`/`npm-shrinkwrap.json` → npm, `pnpm-lock.yaml` → pnpm,
//! `yarn.lock` → yarn classic or berry, `bun.lock`/`bun.lockb` → bun), else
//! npm.

use super::super::{AppFiles, BuildError};

/// A package manager Kraken installs Node.js apps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// npm, which comes with Node.js.
    Npm,
    /// pnpm.
    Pnpm,
    /// Yarn 1.
    YarnClassic,
    /// Yarn 2 and later.
    YarnBerry,
    /// Bun, used to install only (the app runs on Node.js).
    Bun,
}

/// The package manager chosen for an app and what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageManager {
    /// Which one.
    pub kind: Kind,
    /// The version to use, when known (`packageManager`, a lockfile's format).
    pub version: Option<String>,
    /// The lockfile found, if any.
    pub lockfile: Option<&'static str>,
    /// Why this one, for people.
    pub reason: String,
    /// For yarn berry: the release the repository carries (`yarnPath`).
    pub yarn_path: Option<String>,
    /// For yarn berry: whether `.yarnrc.yml` chooses a `nodeLinker` itself.
    pub linker_set: bool,
}

/// The lockfiles, in the order they decide when several are there.
const LOCKFILES: &[(&str, Kind)] = &[
    ("pnpm-lock.yaml", Kind::Pnpm),
    ("yarn.lock", Kind::YarnClassic),
    ("bun.lock", Kind::Bun),
    ("bun.lockb", Kind::Bun),
    ("package-lock.json", Kind::Npm),
    ("npm-shrinkwrap.json", Kind::Npm),
];

impl PackageManager {
    /// The package manager of the app whose `package.json` is `package`.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when `packageManager` names a manager Kraken
    /// does not know or is not `name@version`.
    pub fn detect(app: &AppFiles, package: &serde_json::Value) -> Result<Self, BuildError> {
        let lockfiles: Vec<(&'static str, Kind)> =
            LOCKFILES.iter().copied().filter(|(f, _)| app.includes_file(f)).collect();
        let berry_signs = app.includes_file(".yarnrc.yml")
            || app.read_to_string("yarn.lock").is_ok_and(|t| t.contains("__metadata:"));
        let yarnrc = app.read_to_string(".yarnrc.yml").unwrap_or_default();
        let yarn_path = yarnrc_value(&yarnrc, "yarnPath").filter(|p| app.includes_file(p));
        let linker_set = yarnrc_value(&yarnrc, "nodeLinker").is_some();
        let mut pm = if let Some(field) = package.get("packageManager") {
            let text = field.as_str().unwrap_or_default();
            let (name, version) = text.split_once('@').ok_or_else(|| {
                BuildError::Invalid(format!(
                    "package.json: `packageManager` should be \"name@version\" (e.g. \"pnpm@9.12.0\"), found {field}"
                ))
            })?;
            let version = version.split('+').next().unwrap_or(version).to_string();
            let major: u64 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            let kind = match name {
                "npm" => Kind::Npm,
                "pnpm" => Kind::Pnpm,
                "yarn" if major >= 2 => Kind::YarnBerry,
                "yarn" => Kind::YarnClassic,
                "bun" => Kind::Bun,
                other => {
                    return Err(BuildError::Invalid(format!(
                    "package.json: `packageManager` names {other:?}; Kraken installs Node.js apps with npm, \
                         pnpm, yarn or bun: name one of those, or remove the field to use npm"
                )))
                }
            };
            let lockfile = lockfiles.iter().find(|(_, k)| same_family(*k, kind)).map(|(f, _)| *f);
            Self {
                kind,
                version: Some(version),
                lockfile,
                reason: format!("packageManager in package.json is {text:?}"),
                yarn_path: None,
                linker_set,
            }
        } else if let Some((file, kind)) = lockfiles.first().copied() {
            let kind = if kind == Kind::YarnClassic && berry_signs { Kind::YarnBerry } else { kind };
            let version = match kind {
                Kind::Pnpm => pnpm_for_lockfile(&app.read_to_string(file).unwrap_or_default()),
                _ => None,
            };
            let mut reason = format!("{file} found");
            if kind == Kind::YarnBerry {
                reason.push_str(" (yarn 2 or later: .yarnrc.yml or the lockfile's format)");
            }
            if lockfiles.len() > 1 {
                let others: Vec<&str> = lockfiles[1..].iter().map(|(f, _)| *f).collect();
                reason
                    .push_str(&format!("; also found {}, which it takes precedence over", others.join(", ")));
            }
            Self { kind, version, lockfile: Some(file), reason, yarn_path: None, linker_set }
        } else {
            Self {
                kind: Kind::Npm,
                version: None,
                lockfile: None,
                reason: "no lockfile and no packageManager in package.json: npm".to_string(),
                yarn_path: None,
                linker_set,
            }
        };
        if pm.kind == Kind::YarnBerry {
            pm.yarn_path = yarn_path;
        }
        Ok(pm)
    }

    /// The name people and commands use: `npm`, `pnpm`, `yarn`, `bun`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Npm => "npm",
            Kind::Pnpm => "pnpm",
            Kind::YarnClassic | Kind::YarnBerry => "yarn",
            Kind::Bun => "bun",
        }
    }

    fn major(&self) -> Option<u64> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }

    /// The command that makes the manager available in an image that has
    /// Node.js and npm: corepack where the image has it, else npm; `None`
    /// for npm itself.
    pub fn setup(&self) -> Option<String> {
        let (package, spec) = match self.kind {
            Kind::Npm => return None,
            Kind::Pnpm => ("pnpm", self.version.clone().unwrap_or_else(|| "9".to_string())),
            Kind::YarnClassic => {
                let version = self.version.clone().unwrap_or_else(|| "1".to_string());
                return Some(format!("command -v yarn >/dev/null 2>&1 || npm install -g yarn@{version}"));
            }
            Kind::YarnBerry => {
                if self.yarn_path.is_some() {
                    // The repository carries its release; yarn 1 hands over to it.
                    return Some("command -v yarn >/dev/null 2>&1 || npm install -g yarn@1".to_string());
                }
                ("yarn", self.version.clone().unwrap_or_else(|| "4".to_string()))
            }
            Kind::Bun => {
                let version = self.version.clone().unwrap_or_else(|| "1".to_string());
                return Some(format!("npm install -g bun@{version}"));
            }
        };
        let fallback = if package == "yarn" {
            format!("npm install -g --force @yarnpkg/cli-dist@{spec}")
        } else {
            format!("npm install -g {package}@{spec}")
        };
        // The official images ship yarn 1 as a plain link, which `corepack
        // enable` will not replace.
        let clear =
            if package == "yarn" { "rm -f /usr/local/bin/yarn /usr/local/bin/yarnpkg && " } else { "" };
        Some(format!(
            "if command -v corepack >/dev/null 2>&1; then {clear}corepack enable && corepack prepare {package}@{spec} --activate; \
             else {fallback}; fi"
        ))
    }

    /// Why [`PackageManager::setup`] is needed, for people.
    pub fn setup_reason(&self) -> String {
        match self.kind {
            Kind::YarnBerry if self.yarn_path.is_some() => format!(
                "{}: the repository carries its yarn release ({}), which yarn 1 starts",
                self.reason,
                self.yarn_path.as_deref().unwrap_or_default()
            ),
            Kind::Npm => String::new(),
            _ => format!(
                "{}: {} {} is set up (through corepack when the image has it, else installed with npm)",
                self.reason,
                self.name(),
                self.version.as_deref().unwrap_or(match self.kind {
                    Kind::Pnpm => "9",
                    Kind::YarnBerry => "4",
                    _ => "1",
                })
            ),
        }
    }

    /// The install command: with devDependencies (`dev`, for a build) or without.
    pub fn install(&self, dev: bool) -> String {
        let locked = self.lockfile.is_some();
        match (self.kind, dev) {
            (Kind::Npm, true) if locked => "npm ci".to_string(),
            (Kind::Npm, false) if locked => "npm ci --omit=dev".to_string(),
            (Kind::Npm, true) => "npm install".to_string(),
            (Kind::Npm, false) => "npm install --omit=dev".to_string(),
            (Kind::Pnpm, dev) => {
                let frozen = if locked { " --frozen-lockfile" } else { "" };
                format!("pnpm install{frozen}{}", if dev { "" } else { " --prod" })
            }
            (Kind::YarnClassic, dev) => {
                let frozen = if locked { " --frozen-lockfile" } else { "" };
                format!("yarn install{frozen}{}", if dev { "" } else { " --production" })
            }
            (Kind::YarnBerry, false) if self.can_focus() => {
                "yarn workspaces focus --all --production".to_string()
            }
            (Kind::YarnBerry, _) => {
                if locked { "yarn install --immutable" } else { "yarn install" }.to_string()
            }
            (Kind::Bun, dev) => {
                let frozen = if locked { " --frozen-lockfile" } else { "" };
                format!("bun install{frozen}{}", if dev { "" } else { " --production" })
            }
        }
    }

    /// Whether yarn berry can install production dependencies only (`workspaces
    /// focus` is built in from yarn 4).
    fn can_focus(&self) -> bool {
        self.kind == Kind::YarnBerry && self.yarn_path.is_none() && self.major().is_none_or(|m| m >= 4)
    }

    /// The command that removes devDependencies after a build, if the manager has one.
    pub fn prune(&self) -> Option<String> {
        match self.kind {
            Kind::Npm => Some("npm prune --omit=dev".to_string()),
            Kind::Pnpm => Some("pnpm prune --prod".to_string()),
            Kind::YarnClassic => Some(format!(
                "yarn install{} --production --ignore-scripts --prefer-offline",
                if self.lockfile.is_some() { " --frozen-lockfile" } else { "" }
            )),
            Kind::YarnBerry => {
                self.can_focus().then(|| "yarn workspaces focus --all --production".to_string())
            }
            Kind::Bun => Some(format!(
                "rm -rf node_modules && bun install{} --production",
                if self.lockfile.is_some() { " --frozen-lockfile" } else { "" }
            )),
        }
    }

    /// The command that runs the script `name` of `package.json`.
    pub fn run_script(&self, name: &str) -> String {
        match self.kind {
            Kind::Npm if name == "start" => "npm start".to_string(),
            Kind::Npm => format!("npm run {name}"),
            Kind::Pnpm => format!("pnpm run {name}"),
            Kind::YarnClassic | Kind::YarnBerry => format!("yarn run {name}"),
            // The app runs on Node.js; bun installed its dependencies.
            Kind::Bun => format!("npm run {name}"),
        }
    }

    /// The command that starts `file` with Node.js (through yarn for a
    /// Plug'n'Play install, which plain node cannot resolve).
    pub fn node(&self, file: &str) -> String {
        if self.kind == Kind::YarnBerry && self.linker_set {
            format!("yarn node {file}")
        } else {
            format!("node {file}")
        }
    }
}

/// Whether a lockfile of kind `lock` belongs to the manager `kind`.
fn same_family(lock: Kind, kind: Kind) -> bool {
    matches!(
        (lock, kind),
        (Kind::YarnClassic, Kind::YarnBerry | Kind::YarnClassic)
            | (Kind::Npm, Kind::Npm)
            | (Kind::Pnpm, Kind::Pnpm)
            | (Kind::Bun, Kind::Bun)
    )
}

/// The pnpm major that writes a lockfile of this text's `lockfileVersion`.
fn pnpm_for_lockfile(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("lockfileVersion"))?;
    let value = line.split_once(':')?.1.trim().trim_matches(['\'', '"']);
    let major: f64 = value.parse().ok()?;
    Some(
        if major >= 9.0 {
            "9"
        } else if major >= 6.0 {
            "8"
        } else {
            "7"
        }
        .to_string(),
    )
}

/// A top-level `key: value` of a `.yarnrc.yml`.
fn yarnrc_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key && !l.starts_with(' ')).then(|| v.trim().trim_matches(['\'', '"']).to_string())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::test_support::app;
    use super::*;

    fn detect(files: &[(&str, &str)]) -> Result<PackageManager, BuildError> {
        let dir = app(files);
        let files = AppFiles::new(dir.path());
        let package = files.read_json("package.json").unwrap_or(serde_json::json!({}));
        PackageManager::detect(&files, &package)
    }

    #[test]
    fn lockfiles_choose_the_manager_and_its_commands() {
        let pm = detect(&[("package.json", "{}"), ("package-lock.json", "{}")]).unwrap();
        assert_eq!((pm.kind, pm.reason.as_str()), (Kind::Npm, "package-lock.json found"));
        assert_eq!((pm.install(true), pm.install(false)), ("npm ci".into(), "npm ci --omit=dev".into()));
        assert_eq!(pm.prune().as_deref(), Some("npm prune --omit=dev"));
        assert_eq!(
            (pm.run_script("build"), pm.run_script("start")),
            ("npm run build".into(), "npm start".into())
        );
        assert_eq!(pm.setup(), None);

        let pm = detect(&[("package.json", "{}"), ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n")]).unwrap();
        assert_eq!((pm.kind, pm.version.as_deref()), (Kind::Pnpm, Some("9")));
        assert_eq!(pm.install(true), "pnpm install --frozen-lockfile");
        assert_eq!(pm.install(false), "pnpm install --frozen-lockfile --prod");
        assert_eq!(pm.prune().as_deref(), Some("pnpm prune --prod"));
        assert_eq!(
            pm.setup().unwrap(),
            "if command -v corepack >/dev/null 2>&1; then corepack enable && corepack prepare pnpm@9 --activate; \
             else npm install -g pnpm@9; fi"
        );
        let pm = detect(&[("package.json", "{}"), ("pnpm-lock.yaml", "lockfileVersion: '6.0'\n")]).unwrap();
        assert_eq!(pm.version.as_deref(), Some("8"));

        let pm = detect(&[("package.json", "{}"), ("yarn.lock", "# yarn lockfile v1\n")]).unwrap();
        assert_eq!(pm.kind, Kind::YarnClassic);
        assert_eq!(pm.install(true), "yarn install --frozen-lockfile");
        assert_eq!(pm.install(false), "yarn install --frozen-lockfile --production");
        assert_eq!(pm.setup().unwrap(), "command -v yarn >/dev/null 2>&1 || npm install -g yarn@1");
        assert_eq!(pm.run_script("build"), "yarn run build");

        let pm = detect(&[("package.json", "{}"), ("yarn.lock", "__metadata:\n  version: 8\n")]).unwrap();
        assert_eq!(pm.kind, Kind::YarnBerry);
        assert_eq!(pm.install(true), "yarn install --immutable");
        assert_eq!(pm.install(false), "yarn workspaces focus --all --production");
        assert!(pm
            .setup()
            .unwrap()
            .contains("then rm -f /usr/local/bin/yarn /usr/local/bin/yarnpkg && corepack enable && corepack prepare yarn@4 --activate; else npm install -g --force @yarnpkg/cli-dist@4"));

        let pm = detect(&[("package.json", "{}"), ("bun.lockb", "")]).unwrap();
        assert_eq!((pm.kind, pm.install(true)), (Kind::Bun, "bun install --frozen-lockfile".to_string()));
        assert_eq!(pm.setup().as_deref(), Some("npm install -g bun@1"));
        assert_eq!(pm.run_script("start"), "npm run start");
    }

    #[test]
    fn package_manager_field_wins_and_is_checked() {
        let pm = detect(&[
            ("package.json", r#"{"packageManager": "pnpm@8.15.4+sha256.abc"}"#),
            ("package-lock.json", "{}"),
        ])
        .unwrap();
        assert_eq!((pm.kind, pm.version.as_deref(), pm.lockfile), (Kind::Pnpm, Some("8.15.4"), None));
        assert_eq!(pm.reason, "packageManager in package.json is \"pnpm@8.15.4+sha256.abc\"");
        assert_eq!(pm.install(true), "pnpm install");
        let pm =
            detect(&[("package.json", r#"{"packageManager": "yarn@3.6.0"}"#), ("yarn.lock", "")]).unwrap();
        assert_eq!((pm.kind, pm.lockfile), (Kind::YarnBerry, Some("yarn.lock")));
        assert_eq!(pm.install(false), "yarn install --immutable", "yarn 3 has no built-in focus");
        assert_eq!(pm.prune(), None);
        let err = detect(&[("package.json", r#"{"packageManager": "deno@2"}"#)]).unwrap_err().to_string();
        assert_eq!(
            err,
            "package.json: `packageManager` names \"deno\"; Kraken installs Node.js apps with npm, pnpm, yarn or \
             bun: name one of those, or remove the field to use npm"
        );
        let err = detect(&[("package.json", r#"{"packageManager": "pnpm"}"#)]).unwrap_err().to_string();
        assert!(err.contains("should be \"name@version\" (e.g. \"pnpm@9.12.0\"), found \"pnpm\""), "{err}");
    }

    #[test]
    fn several_lockfiles_and_none() {
        let pm =
            detect(&[("package.json", "{}"), ("package-lock.json", "{}"), ("pnpm-lock.yaml", "")]).unwrap();
        assert_eq!(pm.kind, Kind::Pnpm);
        assert_eq!(
            pm.reason,
            "pnpm-lock.yaml found; also found package-lock.json, which it takes precedence over"
        );
        let pm = detect(&[("package.json", "{}")]).unwrap();
        assert_eq!(
            (pm.kind, pm.install(true), pm.install(false)),
            (Kind::Npm, "npm install".into(), "npm install --omit=dev".into())
        );
        assert_eq!(pm.reason, "no lockfile and no packageManager in package.json: npm");
    }

    #[test]
    fn yarn_berry_release_in_the_repository_and_pnp() {
        let pm = detect(&[
            ("package.json", "{}"),
            ("yarn.lock", "__metadata:\n"),
            (".yarnrc.yml", "yarnPath: .yarn/releases/yarn-4.5.0.cjs\nnodeLinker: pnp\n"),
            (".yarn/releases/yarn-4.5.0.cjs", ""),
        ])
        .unwrap();
        assert_eq!(pm.yarn_path.as_deref(), Some(".yarn/releases/yarn-4.5.0.cjs"));
        assert_eq!(pm.setup().unwrap(), "command -v yarn >/dev/null 2>&1 || npm install -g yarn@1");
        assert!(pm.setup_reason().contains("carries its yarn release (.yarn/releases/yarn-4.5.0.cjs)"));
        assert!(pm.linker_set);
        assert_eq!(pm.node("index.js"), "yarn node index.js");
        assert_eq!(pm.install(false), "yarn install --immutable");
    }
}
