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
