//! The `python3.6` builder: a Python app on Python 3.6, for apps that need it.
//!
//! It is never detected from the files; an app asks for it with
//! `lang = "python3.6"`. The plan is the [`python`](super::python) builder's,
//! on the base image configured under `python3.6`.

use super::python::python_plan;
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
        python_plan(self.name(), "python3.6", app, manifest, images)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{app, manifest};
    use super::*;

    #[test]
    fn plan_uses_the_python36_image() {
        let dir = app(&[("requirements.txt", "six\n"), ("app.py", "")]);
        let mut images = BaseImages::uniform("local/python:3.11");
        images.set("python3.6", "local/python:3.6");
        let m = manifest(5000, Some("python3.6"), Some("python3 app.py"));
        let p = Python36Builder.plan(&AppFiles::new(dir.path()), &m, &images).unwrap();
        assert_eq!(p.builder, "python3.6");
        assert!(p.dockerfile.starts_with("FROM local/python:3.6\n"), "{}", p.dockerfile);
        assert!(p.dockerfile.contains("RUN python3 -m pip install --no-cache-dir -r requirements.txt\n"));
        assert!(p.dockerfile.contains("EXPOSE 5000\n"));
        assert!(p.dockerfile.ends_with("CMD [\"sh\",\"-c\",\"python3 app.py\"]\n"), "{}", p.dockerfile);
    }

    #[test]
    fn never_detected_and_needs_run() {
        let dir = app(&[("requirements.txt", ""), ("app.py", "")]);
        let files = AppFiles::new(dir.path()).with_manifest(&manifest(5000, None, Some("python3 app.py")));
        assert_eq!(Python36Builder.detect(&files), None);
        let err = Python36Builder
            .plan(&files, &manifest(5000, Some("python3.6"), None), &BaseImages::defaults())
            .unwrap_err();
        assert!(err.to_string().contains("the python3.6 builder needs"), "{err}");
    }
}
