//! The builder registry: turning a checked-out app into a build plan.
//!
//! A [`Builder`] recognises an app from its files and produces a
//! [`BuildPlan`]: the base image, the install, build and start steps (each
//! with the reason it was chosen), the Dockerfile written from them and the
//! build context. Builders never talk to Docker; only [`crate::runtime`] does.
//! A [`BuilderRegistry`] holds the builders a node knows, in the order
//! detection tries them, the [`BaseImages`] they build on (configuration, not
//! constants) and the node's [`BuildEnv`] (CA certificates and proxy for
//! builds).
//!
//! Layout: [`files`] (the app seen by builders), [`plan`] (the plan as data),
//! [`instructions`] (Dockerfile text written safely), [`images`] (base
//! images), [`build_env`] (proxy and CA), [`detect`] (other languages and
//! refusals), then one module per built-in builder, in detection order:
//! [`dockerfile`] (the app's own Dockerfile), [`node`], [`python`],
//! [`static_site`] (a site of plain files), and [`python36`] (chosen only by
//! `lang = "python3.6"`).
//!
//! ```
//! use kraken_lib::builder::{BaseImages, BuilderRegistry};
//!
//! let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
//! assert_eq!(registry.names(), ["dockerfile", "node", "python", "static", "python3.6"]);
//! ```

pub mod build_env;
pub mod detect;
pub mod dockerfile;
pub mod files;
pub mod images;
pub mod instructions;
pub mod node;
pub mod plan;
pub mod python;
pub mod python36;
pub mod static_site;
#[cfg(test)]
pub(crate) mod test_support;

pub use build_env::{BuildEnv, BuildEnvError};
pub use dockerfile::DockerfileBuilder;
pub use files::{AppFiles, MAX_READ_BYTES};
pub use images::BaseImages;
pub use instructions::{
    copy_instruction, env_instruction, env_instructions, given_run, required_run, shell_cmd,
};
pub use node::NodeBuilder;
pub use plan::{BuildPlan, Step};
pub use python::PythonBuilder;
pub use python36::Python36Builder;
pub use static_site::StaticSiteBuilder;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::shipwreck::Manifest;

/// Which builder was chosen for an app, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// The builder's name.
    pub builder: String,
    /// A sentence a person can read: "package.json found", "lang = \"python\" in shipwreck.toml".
    pub reason: String,
}

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
    /// The builder chosen for the app (by the orchestrator, when the app was
    /// checked) is not one this registry has.
    #[error(
        "the app was to be built by the `{builder}` builder, which this node does not have (it has: {known}); \
         register that builder on every node that runs apps"
    )]
    UnknownBuilder {
        /// The builder chosen.
        builder: String,
        /// The names this registry knows, comma separated.
        known: String,
    },
    /// No builder recognised the app and the manifest names none.
    #[error("could not tell how to build this app: {0}")]
    NotDetected(String),
    /// The app is in a language no builder of this platform handles.
    #[error("{0}")]
    Unsupported(String),
    /// `config.root` names no folder of the repository, or one outside it.
    #[error("shipwreck.toml: `config.root`: {0}")]
    Root(String),
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
    /// Whether a detection of this builder is only weak evidence (a
    /// `package.json` that only builds front-end assets, a stray
    /// `index.html`): a later builder's claim, or the marker of a language no
    /// builder handles, outweighs it. Strong by default.
    fn claim_is_weak(&self, _app: &AppFiles) -> bool {
        false
    }
    /// The build plan for the app.
    ///
    /// # Errors
    /// [`BuildError`] when the app does not fit this builder.
    fn plan(&self, app: &AppFiles, manifest: &Manifest, images: &BaseImages)
        -> Result<BuildPlan, BuildError>;
}

/// The builders a node knows, in detection order, with their base images and
/// the node's build settings.
#[derive(Clone)]
pub struct BuilderRegistry {
    builders: Vec<Arc<dyn Builder>>,
    images: BaseImages,
    build_env: BuildEnv,
}

impl BuilderRegistry {
    /// A registry with no builders.
    pub fn empty(images: BaseImages) -> Self {
        Self { builders: Vec::new(), images, build_env: BuildEnv::none() }
    }

    /// A registry with the built-in builders, in detection order: `dockerfile`,
    /// `node`, `python`, `static`, then `python3.6` (never detected, only
    /// chosen by `lang`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kraken_lib::builder::{BaseImages, BuilderRegistry};
    ///
    /// let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    /// assert_eq!(registry.names(), ["dockerfile", "node", "python", "static", "python3.6"]);
    /// ```
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

    /// Sets what every plan gets from the node (CA bundle, proxy variables).
    pub fn set_build_env(&mut self, env: BuildEnv) {
        self.build_env = env;
    }

    /// The node's build settings.
    pub fn build_env(&self) -> &BuildEnv {
        &self.build_env
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

    /// Chooses the builder for an app: the manifest's `lang`, or else the
    /// first builder whose detection recognises the files with a strong
    /// claim. A weak claim is taken only when no later builder claims the app
    /// and no file marks a language no builder handles.
    ///
    /// # Errors
    /// [`BuildError::UnknownLang`], [`BuildError::Unsupported`] (with what was
    /// found and a Dockerfile to start from) or [`BuildError::NotDetected`]
    /// (with what is there and what was looked for).
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
        let mut weak: Option<Detection> = None;
        for b in &self.builders {
            let Some(reason) = b.detect(app) else { continue };
            if !b.claim_is_weak(app) {
                let reason = match &weak {
                    Some(w) => format!(
                        "{reason} (and {}, which the {} builder takes only when nothing else fits)",
                        w.reason, w.builder
                    ),
                    None => reason,
                };
                return Ok(Detection { builder: b.name().to_string(), reason });
            }
            weak.get_or_insert(Detection { builder: b.name().to_string(), reason });
        }
        let names = self.names();
        if let Some(foreign) = detect::foreign_language(app) {
            let outweighed = weak.as_ref().map(|w| (w.builder.as_str(), w.reason.as_str()));
            return Err(BuildError::Unsupported(detect::foreign_message(&foreign, outweighed, &names)));
        }
        if let Some(weak) = weak {
            return Ok(weak);
        }
        let looked_for: Vec<String> =
            self.builders.iter().map(|b| format!("{} ({})", b.name(), b.description())).collect();
        Err(BuildError::NotDetected(detect::not_detected_message(app, &looked_for, &names)))
    }

    /// The app's folder in the checkout at `checkout`: `config.root`, checked
    /// to be a folder inside it (also through symbolic links), or the checkout.
    ///
    /// # Errors
    /// [`BuildError::Root`] when it is not a folder of the repository.
    pub fn app_dir(checkout: &Path, manifest: &Manifest) -> Result<PathBuf, BuildError> {
        let Some(root) = manifest.config.root.as_deref() else { return Ok(checkout.to_path_buf()) };
        if let Err(why) = crate::shipwreck::check_repo_dir(root) {
            return Err(BuildError::Root(format!("{root:?} {why}")));
        }
        let top = checkout
            .canonicalize()
            .map_err(|source| BuildError::Io { path: checkout.to_path_buf(), source })?;
        let real = match top.join(root).canonicalize() {
            Ok(real) if real.is_dir() => real,
            _ => {
                return Err(BuildError::Root(format!(
                "the repository has no folder {root:?}; give the folder that holds the app, relative to the \
                     repository root (the manifest stays at the root)"
            )))
            }
        };
        if !real.starts_with(&top) {
            return Err(BuildError::Root(format!(
                "{root:?} leads outside the repository through a symbolic link; give a folder inside it"
            )));
        }
        Ok(real)
    }

    /// Chooses the builder and makes the whole build plan for the app
    /// checked out at `checkout` (in `config.root` when the manifest has one),
    /// with the node's build settings applied.
    ///
    /// # Errors
    /// See [`BuilderRegistry::app_dir`], [`BuilderRegistry::choose`] and [`Builder::plan`].
    pub fn plan(&self, checkout: &Path, manifest: &Manifest) -> Result<(BuildPlan, Detection), BuildError> {
        let dir = Self::app_dir(checkout, manifest)?;
        let app = AppFiles::new(&dir).with_manifest(manifest);
        let detection = self.choose(&app, manifest)?;
        let builder = self.get(&detection.builder).ok_or_else(|| BuildError::UnknownLang {
            lang: detection.builder.clone(),
            known: self.names().join(", "),
        })?;
        self.plan_app(builder.as_ref(), &app, manifest, detection)
    }

    /// Makes the whole build plan for the app checked out at `checkout` with
    /// the builder named `builder`, chosen earlier (a worker builds with the
    /// builder its orchestrator chose): nothing is detected again.
    ///
    /// # Errors
    /// [`BuildError::UnknownBuilder`] when this registry has no such builder;
    /// see also [`BuilderRegistry::app_dir`] and [`Builder::plan`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kraken_lib::builder::{BaseImages, BuilderRegistry};
    /// use kraken_lib::shipwreck::Manifest;
    ///
    /// let app = tempfile::tempdir()?;
    /// std::fs::write(app.path().join("index.html"), "<h1>hi</h1>")?;
    /// let text = "[app]\nname = \"site\"\n[config]\nport = 8080\n";
    /// let registry = BuilderRegistry::with_builtins(BaseImages::defaults());
    /// let manifest = Manifest::parse("shipwreck.toml", text, &registry.names()).expect("valid");
    /// let (plan, detection) = registry.plan_with(app.path(), &manifest, "static").expect("a plan");
    /// assert_eq!((plan.builder.as_str(), detection.builder.as_str()), ("static", "static"));
    /// assert!(registry.plan_with(app.path(), &manifest, "cobol").is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn plan_with(
        &self,
        checkout: &Path,
        manifest: &Manifest,
        builder: &str,
    ) -> Result<(BuildPlan, Detection), BuildError> {
        let chosen = self.get(builder).ok_or_else(|| BuildError::UnknownBuilder {
            builder: builder.to_string(),
            known: self.names().join(", "),
        })?;
        let dir = Self::app_dir(checkout, manifest)?;
        let app = AppFiles::new(&dir).with_manifest(manifest);
        let detection = Detection {
            builder: chosen.name().to_string(),
            reason: "chosen when the app was checked".to_string(),
        };
        self.plan_app(chosen.as_ref(), &app, manifest, detection)
    }

    /// The plan of `builder` for `app`, with the node's build settings applied.
    fn plan_app(
        &self,
        builder: &dyn Builder,
        app: &AppFiles,
        manifest: &Manifest,
        detection: Detection,
    ) -> Result<(BuildPlan, Detection), BuildError> {
        let mut plan = builder.plan(app, manifest, &self.images)?;
        plan.context = manifest.config.root.clone().unwrap_or_else(|| ".".to_string());
        self.build_env.apply(&mut plan);
        Ok((plan, detection))
    }
}

impl std::fmt::Debug for BuilderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuilderRegistry")
            .field("builders", &self.names())
            .field("images", &self.images)
            .field("build_env", &self.build_env)
            .finish()
    }
}

#[cfg(test)]
mod tests;
