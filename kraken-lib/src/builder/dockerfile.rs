//! The `dockerfile` builder: the app brings its own Dockerfile.
//!
//! The Dockerfile is `config.dockerfile` (a path inside the repository) or
//! `Dockerfile` at the root. A path that leaves the repository, by `..` or
//! through a symbolic link, is refused. The plan's Dockerfile is the file's
//! text, unchanged (the node's build settings add only the proxy build
//! arguments), and the build context is the app's folder.

use super::{AppFiles, BaseImages, BuildError, BuildPlan, Builder, Step};
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
        let from = dockerfile
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.get(..5).filter(|w| w.eq_ignore_ascii_case("FROM ")).map(|_| l[5..].trim().to_string())
            })
            .unwrap_or_default();
        let base = Step::new(from, format!("the first FROM line of {rel}"));
        let mut plan = BuildPlan::new(self.name(), base, app.root(), dockerfile);
        plan.verbatim = true;
        Ok(plan)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{app, manifest};
    use super::*;

    const OWN: &str = "FROM scratch\nCOPY . /\nCMD [\"/app\"]\n";

    fn plan_with(files: &[(&str, &str)], path: Option<&str>) -> Result<BuildPlan, BuildError> {
        let dir = app(files);
        let mut m = manifest(80, Some("dockerfile"), None);
        m.config.dockerfile = path.map(str::to_string);
        DockerfileBuilder.plan(&AppFiles::new(dir.path()), &m, &BaseImages::defaults())
    }

    #[test]
    fn plan_is_the_apps_own_dockerfile() {
        let p = plan_with(&[("Dockerfile", OWN)], None).unwrap();
        assert_eq!(p.builder, "dockerfile");
        assert_eq!(p.dockerfile, OWN);
        assert!(p.verbatim && p.start.is_none() && p.install.is_empty());
        assert_eq!(
            (p.base_image.command.as_str(), p.base_image.reason.as_str()),
            ("scratch", "the first FROM line of Dockerfile")
        );
        let p = plan_with(
            &[("docker/Prod.Dockerfile", "FROM other\n"), ("Dockerfile", OWN)],
            Some("docker/Prod.Dockerfile"),
        )
        .unwrap();
        assert_eq!(p.dockerfile, "FROM other\n");
    }

    #[test]
    fn missing_or_empty_dockerfile_is_explained() {
        let err = plan_with(&[], None).unwrap_err();
        assert!(err.to_string().contains("no file \"Dockerfile\" in the repository"), "{err}");
        let err = plan_with(&[("Dockerfile", "\n")], None).unwrap_err();
        assert!(err.to_string().contains("Dockerfile is empty"), "{err}");
    }

    #[test]
    fn dot_dot_paths_are_refused() {
        for bad in ["../Dockerfile", "docker/../../Dockerfile", "/etc/passwd"] {
            let err = plan_with(&[("Dockerfile", OWN)], Some(bad)).unwrap_err();
            assert!(matches!(err, BuildError::Invalid(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("config.dockerfile"), "{bad}: {err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_repository_are_refused() {
        let outside = app(&[("Dockerfile", "FROM secret\n")]);
        let dir = app(&[]);
        std::os::unix::fs::symlink(outside.path().join("Dockerfile"), dir.path().join("Dockerfile")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("docker")).unwrap();
        let files = AppFiles::new(dir.path());
        for path in [None, Some("docker/Dockerfile")] {
            let mut m = manifest(80, Some("dockerfile"), None);
            m.config.dockerfile = path.map(str::to_string);
            let err = DockerfileBuilder.plan(&files, &m, &BaseImages::defaults()).unwrap_err();
            assert!(err.to_string().contains("outside the repository"), "{path:?}: {err}");
        }
        // A link that stays inside is fine.
        std::fs::write(dir.path().join("real.Dockerfile"), OWN).unwrap();
        std::os::unix::fs::symlink("real.Dockerfile", dir.path().join("inner")).unwrap();
        let mut m = manifest(80, Some("dockerfile"), None);
        m.config.dockerfile = Some("inner".into());
        assert_eq!(DockerfileBuilder.plan(&files, &m, &BaseImages::defaults()).unwrap().dockerfile, OWN);
    }

    #[test]
    fn detects_the_configured_path() {
        let dir = app(&[("ops/Dockerfile", OWN)]);
        let mut m = manifest(80, None, None);
        let files = AppFiles::new(dir.path()).with_manifest(&m);
        assert_eq!(DockerfileBuilder.detect(&files), None);
        m.config.dockerfile = Some("ops/Dockerfile".into());
        let files = AppFiles::new(dir.path()).with_manifest(&m);
        assert_eq!(
            DockerfileBuilder.detect(&files).as_deref(),
            Some("ops/Dockerfile found, as `config.dockerfile` names it")
        );
    }
}
