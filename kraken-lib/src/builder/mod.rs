//! The builder registry: turning a checked-out app into a Docker build context.
//!
//! A [`Builder`] recognises an app from its files and produces a [`BuildPlan`]
//! (a Dockerfile and the directory to send as the build context). Builders never
//! talk to Docker; only [`crate::runtime`] does. A [`BuilderRegistry`] holds the
//! builders a node knows, in the order detection tries them, and the
//! [`BaseImages`] they build on (configuration, not constants).
//!
//! The built-in builders, one file each, in detection order: [`dockerfile`]
//! (the app's own Dockerfile), [`node`], [`python`], [`static_site`] (a plain
//! HTML site), then [`python36`] (chosen only by `lang = "python3.6"`). The
//! helpers at the end of this module ([`env_instructions`], [`shell_cmd`],
//! [`required_run`], [`BaseImages::require`]) are what they write Dockerfiles
//! with, and are there for builders of other languages too.
//!
//! ```
//! use kraken_lib::builder::{BaseImages, BuilderRegistry};
//!
//! let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
//! assert_eq!(registry.names(), ["dockerfile", "node", "python", "static", "python3.6"]);
//! ```

pub mod dockerfile;
pub mod node;
pub mod python;
pub mod python36;
pub mod static_site;

pub use dockerfile::DockerfileBuilder;
pub use node::NodeBuilder;
pub use python::PythonBuilder;
pub use python36::Python36Builder;
pub use static_site::StaticSiteBuilder;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::shipwreck::Manifest;

/// The largest file [`AppFiles::read_to_string`] reads.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;

/// A read-only view of a checked-out app, the only way builders see its files.
///
/// Reads go through [`AppFiles::resolve`], so a symbolic link cannot make a
/// builder read a file outside the checkout.
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

    /// The checkout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the relative path `rel` is a regular file inside the app.
    pub fn includes_file(&self, rel: &str) -> bool {
        self.resolve(rel).is_ok_and(|p| p.is_file())
    }

    /// The real path of `rel`, after following symbolic links, checked to be
    /// inside the checkout.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when `rel` is empty, absolute, climbs out with
    /// `..`, or leads outside the checkout through a symbolic link;
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

    /// The names of the entries (files and directories) at the app's root, sorted.
    ///
    /// # Errors
    /// [`BuildError::Io`] when the root cannot be listed.
    pub fn list_root(&self) -> Result<Vec<String>, BuildError> {
        let io = |source| BuildError::Io { path: self.root.clone(), source };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            names.push(entry.map_err(io)?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// What a builder produces: the Dockerfile text and the directory sent as the
/// build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The builder that made the plan.
    pub builder: String,
    /// The directory whose contents form the Docker build context (`.git` is left out).
    pub context_dir: PathBuf,
    /// The Dockerfile, as text.
    pub dockerfile: String,
}

/// Which builder was chosen for an app, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// The builder's name.
    pub builder: String,
    /// A sentence a person can read: "package.json found", "lang = \"python\" in shipwreck.toml".
    pub reason: String,
}

/// Base images the built-in builders start `FROM`, by builder name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseImages(pub BTreeMap<String, String>);

/// Why a build plan could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The manifest names a builder this registry does not have.
    #[error("unknown lang `{lang}`; this platform knows: {known}")]
    UnknownLang {
        /// The requested name.
        lang: String,
        /// The known names, comma separated.
        known: String,
    },
    /// No builder recognised the app and the manifest names none.
    #[error("could not tell how to build this app: {0}")]
    NotDetected(String),
    /// The app's files do not fit the builder.
    #[error("{0}")]
    Invalid(String),
    /// Reading the app's files failed.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A way of building one kind of app.
pub trait Builder: Send + Sync {
    /// The name `lang` uses for it.
    fn name(&self) -> &str;
    /// One line for people: what it builds.
    fn description(&self) -> &str;
    /// An example `shipwreck.toml` for this kind of app.
    fn example_manifest(&self) -> String;
    /// Whether the app looks like this builder's kind; `Some(reason)` if so.
    fn detect(&self, app: &AppFiles) -> Option<String>;
    /// The Dockerfile and context for the app.
    ///
    /// # Errors
    /// [`BuildError`] when the app does not fit this builder.
    fn plan(&self, app: &AppFiles, manifest: &Manifest, images: &BaseImages)
        -> Result<BuildPlan, BuildError>;
}

/// The builders a node knows, in detection order, with their base images.
#[derive(Clone)]
pub struct BuilderRegistry {
    builders: Vec<Arc<dyn Builder>>,
    images: BaseImages,
}

impl BaseImages {
    /// The public official images: what a machine with internet access pulls.
    pub fn defaults() -> Self {
        let mut m = BTreeMap::new();
        m.insert("node".to_string(), "node:22-bookworm-slim".to_string());
        m.insert("python".to_string(), "python:3.13-slim".to_string());
        m.insert("python3.6".to_string(), "python:3.6-slim".to_string());
        m.insert("static".to_string(), "busybox:stable".to_string());
        Self(m)
    }

    /// Every built-in builder pointed at the one `image` (for example a locally
    /// made image that has `nodejs`, `python3` and `busybox`).
    pub fn uniform(image: &str) -> Self {
        let mut images = Self::defaults();
        for v in images.0.values_mut() {
            *v = image.to_string();
        }
        images
    }

    /// The image for `builder`, if configured.
    pub fn get(&self, builder: &str) -> Option<&str> {
        self.0.get(builder).map(String::as_str)
    }

    /// The image for the key `key`, or an error that says which key to configure.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when no non-empty image is configured for `key`.
    pub fn require(&self, key: &str) -> Result<&str, BuildError> {
        match self.get(key) {
            Some(image) if !image.trim().is_empty() => Ok(image),
            _ => Err(BuildError::Invalid(format!(
                "no base image is configured for `{key}`; set one in the node's base images \
                 (BaseImages::set(\"{key}\", \"<image>\")), e.g. the image {}",
                Self::defaults().get(key).unwrap_or("that has the language's runtime")
            ))),
        }
    }

    /// Sets the image for `builder`.
    pub fn set(&mut self, builder: &str, image: &str) {
        self.0.insert(builder.to_string(), image.to_string());
    }
}

impl Default for BaseImages {
    fn default() -> Self {
        Self::defaults()
    }
}

impl BuilderRegistry {
    /// A registry with no builders.
    pub fn empty(images: BaseImages) -> Self {
        Self { builders: Vec::new(), images }
    }

    /// A registry with the built-in builders, in detection order: `dockerfile`,
    /// `node`, `python`, `static`, then `python3.6` (never detected, only
    /// chosen by `lang`).
    pub fn with_builtins(images: BaseImages) -> Self {
        let mut r = Self::empty(images);
        r.register(DockerfileBuilder);
        r.register(NodeBuilder);
        r.register(PythonBuilder);
        r.register(StaticSiteBuilder);
        r.register(Python36Builder);
        r
    }

    /// Adds a builder; detection tries it after the ones already registered.
    /// A builder with the name of an existing one replaces it.
    pub fn register(&mut self, builder: impl Builder + 'static) {
        let builder: Arc<dyn Builder> = Arc::new(builder);
        if let Some(slot) = self.builders.iter_mut().find(|b| b.name() == builder.name()) {
            *slot = builder;
        } else {
            self.builders.push(builder);
        }
    }

    /// The known builder names, in detection order.
    pub fn names(&self) -> Vec<String> {
        self.builders.iter().map(|b| b.name().to_string()).collect()
    }

    /// The builder called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Builder>> {
        self.builders.iter().find(|b| b.name() == name)
    }

    /// All builders, in detection order.
    pub fn builders(&self) -> impl Iterator<Item = &Arc<dyn Builder>> {
        self.builders.iter()
    }

    /// The configured base images.
    pub fn images(&self) -> &BaseImages {
        &self.images
    }

    /// Chooses the builder for an app: the manifest's `lang`, or else the first
    /// builder whose detection recognises the files.
    ///
    /// # Errors
    /// [`BuildError::UnknownLang`] or [`BuildError::NotDetected`].
    pub fn choose(&self, app: &AppFiles, manifest: &Manifest) -> Result<Detection, BuildError> {
        if let Some(lang) = &manifest.config.lang {
            return match self.get(lang) {
                Some(b) => Ok(Detection {
                    builder: b.name().to_string(),
                    reason: format!("lang = \"{lang}\" in shipwreck.toml"),
                }),
                None => Err(BuildError::UnknownLang { lang: lang.clone(), known: self.names().join(", ") }),
            };
        }
        let with_manifest;
        let app = if app.manifest().is_some() {
            app
        } else {
            with_manifest = app.clone().with_manifest(manifest);
            &with_manifest
        };
        for b in &self.builders {
            if let Some(reason) = b.detect(app) {
                return Ok(Detection { builder: b.name().to_string(), reason });
            }
        }
        let looked_for: Vec<String> =
            self.builders.iter().map(|b| format!("{} ({})", b.name(), b.description())).collect();
        Err(BuildError::NotDetected(format!(
            "shipwreck.toml has no `config.lang` and no builder recognised the files; \
             set `lang` in [config] to one of: {}",
            looked_for.join("; ")
        )))
    }

    /// Chooses the builder and makes the build plan for the app checked out at `root`.
    ///
    /// # Errors
    /// See [`BuilderRegistry::choose`] and [`Builder::plan`].
    pub fn plan(&self, root: &Path, manifest: &Manifest) -> Result<(BuildPlan, Detection), BuildError> {
        let app = AppFiles::new(root).with_manifest(manifest);
        let detection = self.choose(&app, manifest)?;
        let builder = self.get(&detection.builder).ok_or_else(|| BuildError::UnknownLang {
            lang: detection.builder.clone(),
            known: self.names().join(", "),
        })?;
        let plan = builder.plan(&app, manifest, &self.images)?;
        Ok((plan, detection))
    }
}

impl std::fmt::Debug for BuilderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuilderRegistry")
            .field("builders", &self.names())
            .field("images", &self.images)
            .finish()
    }
}

/// The `ENV` instructions for an app: each `config.env` entry, then `PORT` set
/// to `config.port` (last, so the app always sees the port Kraken publishes).
///
/// # Errors
/// [`BuildError::Invalid`] for a name that is not `[A-Za-z_][A-Za-z0-9_]*` or a
/// value with a line break or NUL (a manifest from [`Manifest::parse`] has none).
pub fn env_instructions(manifest: &Manifest) -> Result<String, BuildError> {
    let mut out = String::new();
    for (name, value) in &manifest.config.env {
        if name == "PORT" {
            continue;
        }
        out.push_str(&env_instruction(name, value)?);
        out.push('\n');
    }
    out.push_str(&env_instruction("PORT", &manifest.config.port.to_string())?);
    out.push('\n');
    Ok(out)
}

/// One `ENV name="value"` instruction, with `\`, `"` and `$` escaped so the
/// value reaches the container exactly as written.
///
/// # Errors
/// [`BuildError::Invalid`] for a bad name or a value with a line break or NUL.
pub fn env_instruction(name: &str, value: &str) -> Result<String, BuildError> {
    if !crate::shipwreck::is_valid_env_name(name) {
        return Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.env.{name}` is not a valid environment variable name; \
             use letters, digits and '_', not starting with a digit"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.env.{name}` has a line break or NUL; environment values must be one line"
        )));
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(format!("ENV {name}=\"{escaped}\""))
}

/// A `CMD` instruction in exec form that runs `command` with `sh -c`, the
/// command JSON-escaped (so quotes, backslashes and line breaks survive).
pub fn shell_cmd(command: &str) -> String {
    let args = serde_json::json!(["sh", "-c", command]);
    format!("CMD {args}")
}

/// The manifest's `config.run`, or an error saying the builder needs it.
/// `example` is a typical command, e.g. `node server.js`.
///
/// # Errors
/// [`BuildError::Invalid`] when `run` is missing or blank.
pub fn required_run<'m>(manifest: &'m Manifest, builder: &str, example: &str) -> Result<&'m str, BuildError> {
    match manifest.config.run.as_deref() {
        Some(run) if !run.trim().is_empty() => Ok(run),
        _ => Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.run` is missing; the {builder} builder needs the command that starts the app, \
             e.g. run = {example:?}"
        ))),
    }
}

/// Small apps in temporary directories, for the builders' tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use crate::shipwreck::{AppSection, ConfigSection, Manifest};

    /// A temporary checkout holding `files` (relative path, content).
    pub(crate) fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    /// A manifest with the given port, lang and run command.
    pub(crate) fn manifest(port: u16, lang: Option<&str>, run: Option<&str>) -> Manifest {
        Manifest {
            app: AppSection { name: "demo".into(), version: None, author: None, endpoint: None },
            config: ConfigSection {
                port,
                lang: lang.map(str::to_string),
                run: run.map(str::to_string),
                test: None,
                dockerfile: None,
                env: BTreeMap::new(),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::test_support::{app, manifest};
    use super::*;

    fn registry() -> BuilderRegistry {
        BuilderRegistry::with_builtins(BaseImages::uniform("local/base:1"))
    }

    fn detect(files: &[(&str, &str)], run: Option<&str>) -> Result<Detection, BuildError> {
        let dir = app(files);
        registry().choose(&AppFiles::new(dir.path()), &manifest(8080, None, run))
    }

    #[test]
    fn builtins_in_detection_order() {
        assert_eq!(registry().names(), ["dockerfile", "node", "python", "static", "python3.6"]);
        for b in registry().builders() {
            assert!(!b.description().is_empty());
            let example = b.example_manifest();
            let parsed = Manifest::parse("example", &example, &registry().names());
            assert!(parsed.is_ok(), "{}: {parsed:?}", b.name());
        }
    }

    /// Files of an app, its `run`, the builder expected and the start of the reason.
    type DetectionCase<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);

    #[test]
    fn each_builtin_is_detected_by_its_marker() {
        let cases: &[DetectionCase<'_>] = &[
            (&[("Dockerfile", "FROM x\n")], None, "dockerfile", "Dockerfile found at the root"),
            (&[("package.json", "{}")], Some("node server.js"), "node", "package.json found at the root"),
            (&[("requirements.txt", "")], None, "python", "requirements.txt found at the root"),
            (&[("pyproject.toml", "")], None, "python", "pyproject.toml found at the root"),
            (&[("app.py", "")], Some("python3 app.py"), "python", "app.py found at the root"),
            (&[("index.html", "<h1>hi</h1>")], None, "static", "index.html found at the root"),
        ];
        for (files, run, builder, reason) in cases {
            let d = detect(files, *run).unwrap();
            assert_eq!(d.builder, *builder, "{files:?}");
            assert!(d.reason.starts_with(reason), "{files:?}: {}", d.reason);
        }
    }

    #[test]
    fn a_py_file_alone_needs_run_to_mention_python() {
        let err = detect(&[("app.py", "")], Some("./start.sh")).unwrap_err();
        assert!(matches!(err, BuildError::NotDetected(_)), "{err}");
    }

    #[test]
    fn detection_priority() {
        let d =
            detect(&[("Dockerfile", "FROM x\n"), ("package.json", "{}"), ("index.html", "")], None).unwrap();
        assert_eq!(d.builder, "dockerfile");
        let d =
            detect(&[("package.json", "{}"), ("requirements.txt", ""), ("index.html", "")], None).unwrap();
        assert_eq!(d.builder, "node");
        let d = detect(&[("requirements.txt", ""), ("index.html", "")], None).unwrap();
        assert_eq!(d.builder, "python");
    }

    #[test]
    fn nothing_detected_lists_the_langs() {
        let err = detect(&[("README.md", "hello")], None).unwrap_err();
        let BuildError::NotDetected(message) = &err else { panic!("{err:?}") };
        for name in ["dockerfile", "node", "python", "static", "python3.6"] {
            assert!(message.contains(name), "{message}");
        }
        assert!(message.contains("set `lang`"), "{message}");
    }

    #[test]
    fn lang_overrides_detection_and_python36_is_only_chosen_by_lang() {
        let dir = app(&[("requirements.txt", "")]);
        let files = AppFiles::new(dir.path());
        let r = registry();
        assert_eq!(r.choose(&files, &manifest(80, None, None)).unwrap().builder, "python");
        let d = r.choose(&files, &manifest(80, Some("python3.6"), None)).unwrap();
        assert_eq!(d.builder, "python3.6");
        assert_eq!(d.reason, "lang = \"python3.6\" in shipwreck.toml");
    }

    #[test]
    fn unknown_lang_lists_known_names() {
        let dir = app(&[]);
        let err =
            registry().choose(&AppFiles::new(dir.path()), &manifest(80, Some("cobol"), None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown lang `cobol`; this platform knows: dockerfile, node, python, static, python3.6"
        );
    }

    struct Shell;

    impl Builder for Shell {
        fn name(&self) -> &str {
            "shell"
        }
        fn description(&self) -> &str {
            "an app started by start.sh"
        }
        fn example_manifest(&self) -> String {
            "[app]\nname = \"sh\"\n[config]\nport = 80\nlang = \"shell\"\n".into()
        }
        fn detect(&self, app: &AppFiles) -> Option<String> {
            app.includes_file("start.sh").then(|| "start.sh found".into())
        }
        fn plan(&self, app: &AppFiles, _: &Manifest, images: &BaseImages) -> Result<BuildPlan, BuildError> {
            let image = images.require("shell")?;
            Ok(BuildPlan {
                builder: "shell".into(),
                context_dir: app.root().to_path_buf(),
                dockerfile: format!("FROM {image}\nCMD [\"sh\", \"start.sh\"]\n"),
            })
        }
    }

    #[test]
    fn registered_builder_is_named_detected_and_chosen_by_lang() {
        let mut r = registry();
        r.register(Shell);
        assert_eq!(r.names().last().map(String::as_str), Some("shell"));
        let dir = app(&[("start.sh", "echo hi")]);
        let d = r.choose(&AppFiles::new(dir.path()), &manifest(80, None, None)).unwrap();
        assert_eq!(d.builder, "shell");
        // The base image is configuration: missing, the error names the key.
        let err = r.plan(dir.path(), &manifest(80, Some("shell"), None)).unwrap_err();
        assert!(err.to_string().contains("no base image is configured for `shell`"), "{err}");
        let mut images = BaseImages::uniform("local/base:1");
        images.set("shell", "local/shell:2");
        let mut r2 = BuilderRegistry::with_builtins(images);
        r2.register(Shell);
        let (plan, d) = r2.plan(dir.path(), &manifest(80, Some("shell"), None)).unwrap();
        assert_eq!(d.builder, "shell");
        assert!(plan.dockerfile.starts_with("FROM local/shell:2\n"), "{}", plan.dockerfile);
    }

    #[test]
    fn register_replaces_a_builder_of_the_same_name() {
        struct FakeNode;
        impl Builder for FakeNode {
            fn name(&self) -> &str {
                "node"
            }
            fn description(&self) -> &str {
                "replacement"
            }
            fn example_manifest(&self) -> String {
                String::new()
            }
            fn detect(&self, _: &AppFiles) -> Option<String> {
                None
            }
            fn plan(&self, _: &AppFiles, _: &Manifest, _: &BaseImages) -> Result<BuildPlan, BuildError> {
                Err(BuildError::Invalid("replacement".into()))
            }
        }
        let mut r = registry();
        r.register(FakeNode);
        assert_eq!(r.names(), ["dockerfile", "node", "python", "static", "python3.6"]);
        assert_eq!(r.get("node").map(|b| b.description()), Some("replacement"));
    }

    #[test]
    fn missing_base_image_names_the_key() {
        let mut images = BaseImages::uniform("local/base:1");
        images.0.remove("node");
        let r = BuilderRegistry::with_builtins(images);
        let dir = app(&[("package.json", "{}")]);
        let err = r.plan(dir.path(), &manifest(80, None, Some("node s.js"))).unwrap_err();
        let BuildError::Invalid(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("`node`") && message.contains("BaseImages::set"), "{message}");
    }

    #[test]
    fn env_instructions_escape_and_end_with_port() {
        let mut m = manifest(8080, None, None);
        m.config.env.insert("GREETING".into(), r#"say "hi" \ $HOME"#.into());
        m.config.env.insert("PORT".into(), "1".into());
        let text = env_instructions(&m).unwrap();
        assert_eq!(text, "ENV GREETING=\"say \\\"hi\\\" \\\\ \\$HOME\"\nENV PORT=\"8080\"\n");
        m.config.env.insert("BAD NAME".into(), "x".into());
        assert!(matches!(env_instructions(&m), Err(BuildError::Invalid(_))));
        assert!(env_instruction("A", "two\nlines").is_err());
    }

    #[test]
    fn shell_cmd_is_json() {
        let cmd = shell_cmd("echo \"a\\b\"\nnext");
        assert_eq!(cmd, r#"CMD ["sh","-c","echo \"a\\b\"\nnext"]"#);
        let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
        assert_eq!(args, ["sh", "-c", "echo \"a\\b\"\nnext"]);
    }

    #[test]
    fn required_run_message() {
        let err = required_run(&manifest(80, None, None), "node", "node server.js").unwrap_err();
        assert_eq!(
            err.to_string(),
            "shipwreck.toml: `config.run` is missing; the node builder needs the command that starts the app, \
             e.g. run = \"node server.js\""
        );
        assert_eq!(required_run(&manifest(80, None, Some("go")), "node", "x").unwrap(), "go");
    }

    #[test]
    fn app_files_reads() {
        let dir = app(&[("package.json", "{\"a\": 1}"), ("sub/x.txt", "x"), ("bad.json", "{\n  nope")]);
        let files = AppFiles::new(dir.path());
        assert_eq!(files.read_to_string("sub/x.txt").unwrap(), "x");
        assert_eq!(files.read_json("package.json").unwrap()["a"], 1);
        let err = files.read_json("bad.json").unwrap_err();
        assert!(err.to_string().starts_with("bad.json:2:3: not valid JSON"), "{err}");
        assert_eq!(files.list_root().unwrap(), ["bad.json", "package.json", "sub"]);
        assert!(
            files.includes_file("sub/x.txt") && !files.includes_file("sub") && !files.includes_file("none")
        );
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
