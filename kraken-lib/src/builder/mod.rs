//! The builder registry: turning a checked-out app into a Docker build context.
//!
//! A [`Builder`] recognises an app from its files and produces a [`BuildPlan`]
//! (a Dockerfile and the directory to send as the build context). Builders never
//! talk to Docker; only [`crate::runtime`] does. A [`BuilderRegistry`] holds the
//! builders a node knows, in the order detection tries them, and the
//! [`BaseImages`] they build on (configuration, not constants).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::shipwreck::Manifest;

/// A read-only view of a checked-out app, the only way builders see its files.
#[derive(Debug, Clone)]
pub struct AppFiles {
    root: PathBuf,
}

impl AppFiles {
    /// A view of the app checked out at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The checkout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the relative path `rel` is a regular file inside the app.
    pub fn includes_file(&self, rel: &str) -> bool {
        self.root.join(rel).is_file()
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

    /// A registry with the built-in builders.
    pub fn with_builtins(images: BaseImages) -> Self {
        let mut r = Self::empty(images);
        let _ = &mut r;
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
        for b in &self.builders {
            if let Some(reason) = b.detect(app) {
                return Ok(Detection { builder: b.name().to_string(), reason });
            }
        }
        Err(BuildError::NotDetected(format!(
            "shipwreck.toml has no `config.lang` and no builder recognised the files; set lang to one of: {}",
            self.names().join(", ")
        )))
    }

    /// Chooses the builder and makes the build plan for the app checked out at `root`.
    ///
    /// # Errors
    /// See [`BuilderRegistry::choose`] and [`Builder::plan`].
    pub fn plan(&self, root: &Path, manifest: &Manifest) -> Result<(BuildPlan, Detection), BuildError> {
        let app = AppFiles::new(root);
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
