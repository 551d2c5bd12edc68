//! The `python3.6` builder: a Python app on Python 3.6, for apps that need it.
//!
//! It is never detected from the files; an app asks for it with
//! `lang = "python3.6"`. The plan is the [`python`](super::python) builder's
//! (dependencies, start command), on the base image configured under
//! `python3.6`, whatever version the app's files pin.

use super::python::{python_plan, PythonImage};
use super::{AppFiles, BaseImages, BuildError, BuildPlan, Builder};
use crate::shipwreck::Manifest;

/// Builds Python apps on the base image configured under `python3.6`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Python36Builder;

impl Builder for Python36Builder {
    fn name(&self) -> &str {
        "python3.6"
    }

    fn description(&self) -> &str {
        "a Python app that needs Python 3.6 (only with lang = \"python3.6\")"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-legacy-app\"\n\n[config]\nport = 8000\nlang = \"python3.6\"\nrun = \"python3 app.py\"\n"
            .to_string()
    }

    fn detect(&self, _app: &AppFiles) -> Option<String> {
        None
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let image = images.image_for("python3.6", "3.6")?;
        let reason = "lang = \"python3.6\" in shipwreck.toml: the Python 3.6 image".to_string();
        python_plan(self.name(), PythonImage { image, reason }, app, manifest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{app, manifest};
    use super::*;

    #[test]
    fn plan_uses_the_python36_image_and_infers_like_python() {
        let dir = app(&[
            ("requirements.txt", "flask==2.0.3\n"),
            ("app.py", "from flask import Flask\napp = Flask(__name__)\n"),
            (".python-version", "3.12"),
        ]);
        let mut images = BaseImages::uniform("local/python:3.11");
        images.set("python3.6", "local/python:3.6");
        let m = manifest(5000, Some("python3.6"), None);
        let p = Python36Builder.plan(&AppFiles::new(dir.path()), &m, &images).unwrap();
        assert_eq!(p.builder, "python3.6");
        assert_eq!(p.base_image.command, "local/python:3.6");
        assert_eq!(p.base_image.reason, "lang = \"python3.6\" in shipwreck.toml: the Python 3.6 image");
        assert!(p.dockerfile.starts_with("FROM local/python:3.6\n"), "{}", p.dockerfile);
        assert!(
            p.dockerfile.contains("RUN pip install --no-cache-dir -r requirements.txt\n"),
            "{}",
            p.dockerfile
        );
        assert!(p.dockerfile.contains("RUN pip install --no-cache-dir gunicorn\n"), "{}", p.dockerfile);
        assert!(p.dockerfile.contains("EXPOSE 5000\n"));
        assert_eq!(p.start.unwrap().command, "gunicorn app:app --bind 0.0.0.0:$PORT");
        let defaults = Python36Builder.plan(&AppFiles::new(dir.path()), &m, &BaseImages::defaults()).unwrap();
        assert_eq!(defaults.base_image.command, "python:3.6-slim");
    }

    #[test]
    fn never_detected() {
        let dir = app(&[("requirements.txt", ""), ("app.py", "")]);
        let files = AppFiles::new(dir.path()).with_manifest(&manifest(5000, None, Some("python3 app.py")));
        assert_eq!(Python36Builder.detect(&files), None);
    }
}
