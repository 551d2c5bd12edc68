//! The `dockerfile` builder: the app brings its own Dockerfile.
//!
//! The Dockerfile is `config.dockerfile` (a path inside the repository) or
//! `Dockerfile` at the root. A path that leaves the repository, by `..` or
//! through a symbolic link, is refused. The plan's Dockerfile is the file's
//! text, unchanged, and the build context is the checkout.

use super::{AppFiles, BaseImages, BuildError, BuildPlan, Builder};
use crate::shipwreck::Manifest;

/// Builds apps from their own Dockerfile.
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerfileBuilder;

/// The default Dockerfile path.
pub const DEFAULT_PATH: &str = "Dockerfile";

impl Builder for DockerfileBuilder {
    fn name(&self) -> &str {
        "dockerfile"
    }

    fn description(&self) -> &str {
        "an app with its own Dockerfile (at the root, or where `config.dockerfile` says)"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-app\"\n\n[config]\nport = 8080\nlang = \"dockerfile\"\ndockerfile = \"Dockerfile\"\n"
            .to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        let configured = app.manifest().and_then(|m| m.config.dockerfile.as_deref());
        match configured {
            Some(path) if path != DEFAULT_PATH && app.includes_file(path) => {
                Some(format!("{path} found, as `config.dockerfile` names it"))
            }
            _ => app.includes_file(DEFAULT_PATH).then(|| "Dockerfile found at the root".to_string()),
        }
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        _images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let rel = manifest.config.dockerfile.as_deref().unwrap_or(DEFAULT_PATH);
        let dockerfile = match app.read_to_string(rel) {
            Ok(text) => text,
            Err(BuildError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(BuildError::Invalid(format!(
                    "shipwreck.toml: `config.dockerfile`: no file {rel:?} in the repository; \
                     add it, or set `dockerfile` to the path of the app's Dockerfile"
                )));
            }
            Err(BuildError::Invalid(why)) => {
                return Err(BuildError::Invalid(format!("shipwreck.toml: `config.dockerfile`: {why}")));
            }
            Err(other) => return Err(other),
        };
        if dockerfile.trim().is_empty() {
            return Err(BuildError::Invalid(format!(
                "{rel} is empty; it needs at least a FROM line and a CMD that starts the app"
            )));
        }
        Ok(BuildPlan { builder: self.name().to_string(), context_dir: app.root().to_path_buf(), dockerfile })
    }
}
