//! The `python` builder: a Python app on a current Python.
//!
//! Recognised by `requirements.txt`, `pyproject.toml`, `Pipfile`, `setup.py`
//! or `manage.py`, or by a `*.py` file when `config.run` mentions python. The
//! plan: the version from the app's pins ([`version`]) picks the base image; a
//! virtual environment `/opt/venv`; the dependency files copied and installed
//! before the source ([`install`]); the start command from `run`, the
//! `Procfile`, or the usual entry points ([`start`]); `PYTHONUNBUFFERED=1` so
//! the app's output reaches the logs at once.

pub mod install;
pub mod start;
pub mod version;

use super::{
    copy_instruction, env_instructions, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan, Builder, Step,
};
use crate::shipwreck::Manifest;
pub use install::requirements_listed;

/// Builds Python apps on the base image configured under `python`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonBuilder;

/// The files that mark a Python app.
const MARKERS: &[&str] = &["requirements.txt", "pyproject.toml", "Pipfile", "setup.py", "manage.py"];

/// Which Python a plan builds on.
#[derive(Debug, Clone)]
pub(crate) struct PythonImage {
    /// The image reference.
    pub image: String,
    /// Why.
    pub reason: String,
}

/// The plan shared by the Python builders, on `base`.
pub(crate) fn python_plan(
    builder: &str,
    base: PythonImage,
    app: &AppFiles,
    manifest: &Manifest,
) -> Result<BuildPlan, BuildError> {
    let install = install::plan_install(app)?;
    let start = start::infer_start(app, manifest, &install.declared)?;
    let mut plan = BuildPlan::new(builder, Step::new(&base.image, base.reason), app.root(), String::new());
    // The app's own dependency files come right after WORKDIR, so the layers
    // that follow belong to this app alone: two apps built at the same time
    // never make twin layers that a later build could take the wrong one of.
    let mut d = format!("FROM {}\nWORKDIR /app\n", base.image);
    if let Some(text) = &install.generated {
        plan.files.insert(install::GENERATED.to_string(), text.as_bytes().to_vec());
    }
    let mut source_copied = false;
    if !install.steps.is_empty() {
        if install.needs_source {
            d.push_str("COPY . .\n");
            source_copied = true;
        } else {
            let files: Vec<&str> = install.copy_first.iter().map(String::as_str).collect();
            d.push_str(&copy_instruction(&files, "./"));
            d.push('\n');
        }
    }
    d.push_str(&format!("RUN python3 -m venv {}\n", install::VENV));
    d.push_str("ENV PYTHONUNBUFFERED=\"1\" PIP_DISABLE_PIP_VERSION_CHECK=\"1\"\n");
    d.push_str(&format!("ENV VIRTUAL_ENV=\"{venv}\" PATH=\"{venv}/bin:$PATH\"\n", venv = install::VENV));
    if !install.steps.is_empty() {
        for step in &install.steps {
            d.push_str(&format!("RUN {}\n", step.command));
        }
        let mut steps = install.steps.clone();
        if let Some(last) = steps.last_mut().filter(|_| !install.needs_source) {
            last.reason.push_str(&format!(
                "; {} copied first, so a change of source only reuses this layer",
                install.copy_first.join(", ")
            ));
        }
        plan.install = steps;
    }
    if let Some(server) = start.server {
        let command = format!("pip install --no-cache-dir {server}");
        d.push_str(&format!("RUN {command}\n"));
        plan.install.push(Step::new(
            command,
            format!("the start command needs {server}, which the app's dependencies do not name"),
        ));
    }
    d.push_str(&env_instructions(manifest)?);
    if !source_copied {
        d.push_str("COPY . .\n");
    }
    d.push_str(&format!("EXPOSE {}\n{}\n", manifest.config.port, shell_cmd(&start.step.command)));
    plan.start = Some(start.step);
    plan.dockerfile = d;
    Ok(plan)
}

impl Builder for PythonBuilder {
    fn name(&self) -> &str {
        "python"
    }

    fn description(&self) -> &str {
        "a Python app with requirements.txt, pyproject.toml (poetry, uv, pdm, setuptools, flit), a Pipfile, \
         setup.py or manage.py, or a .py file that `run` starts with python"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-python-app\"\n\n[config]\nport = 8000\nlang = \"python\"\n".to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        if let Some(marker) = app.first_file(MARKERS) {
            return Some(format!("{marker} found"));
        }
        let run = app.manifest()?.config.run.as_deref()?;
        if !run.to_lowercase().contains("python") {
            return None;
        }
        let script =
            app.list_root().ok()?.into_iter().find(|n| n.ends_with(".py") && app.includes_file(n))?;
        Some(format!("{script} found and `config.run` starts it with python"))
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let default = images.default_version("python").unwrap_or("3.13").to_string();
        let version = version::python_version(app, &default)?;
        let image = images.image_for("python", &version.version)?;
        let reason = images.version_reason("python", &image, &version.reason);
        python_plan(self.name(), PythonImage { image, reason }, app, manifest)
    }
}

#[cfg(test)]
mod tests;
