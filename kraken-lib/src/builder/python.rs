//! The `python` builder: a Python app on a current Python.
//!
//! Recognised by a `requirements.txt` or `pyproject.toml` at the root, or by a
//! `*.py` file at the root when `config.run` mentions python. The plan
//! installs `requirements.txt` only when it lists something, sets
//! `PYTHONUNBUFFERED=1` so the app's output reaches the logs at once, and starts
//! the app with `config.run`.

use super::{
    env_instructions, required_run, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan, Builder,
};
use crate::shipwreck::Manifest;

/// Builds Python apps on the base image configured under `python`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonBuilder;

/// Whether `requirements.txt` has a line that is neither blank nor a comment.
pub(crate) fn requirements_listed(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The plan shared by the Python builders; `image_key` picks the base image.
pub(crate) fn python_plan(
    builder: &str,
    image_key: &str,
    app: &AppFiles,
    manifest: &Manifest,
    images: &BaseImages,
) -> Result<BuildPlan, BuildError> {
    let image = images.require(image_key)?;
    let run = required_run(manifest, builder, "python3 app.py")?;
    let install = app.includes_file("requirements.txt")
        && requirements_listed(&app.read_to_string("requirements.txt")?);
    let mut dockerfile = format!("FROM {image}\nWORKDIR /app\nCOPY . /app\n");
    if install {
        // Debian-based images mark their Python as externally managed; inside
        // the app's own image installing into it is what is wanted.
        dockerfile.push_str("ENV PIP_BREAK_SYSTEM_PACKAGES=\"1\"\n");
        dockerfile.push_str("RUN python3 -m pip install --no-cache-dir -r requirements.txt\n");
    }
    dockerfile.push_str("ENV PYTHONUNBUFFERED=\"1\"\n");
    dockerfile.push_str(&env_instructions(manifest)?);
    dockerfile.push_str(&format!("EXPOSE {}\n{}\n", manifest.config.port, shell_cmd(run)));
    Ok(BuildPlan { builder: builder.to_string(), context_dir: app.root().to_path_buf(), dockerfile })
}

impl Builder for PythonBuilder {
    fn name(&self) -> &str {
        "python"
    }

    fn description(&self) -> &str {
        "a Python app with requirements.txt or pyproject.toml, or a .py file that `run` starts with python"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-python-app\"\n\n[config]\nport = 8000\nlang = \"python\"\nrun = \"python3 app.py\"\n"
            .to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        for marker in ["requirements.txt", "pyproject.toml"] {
            if app.includes_file(marker) {
                return Some(format!("{marker} found at the root"));
            }
        }
        let run = app.manifest()?.config.run.as_deref()?;
        if !run.to_lowercase().contains("python") {
            return None;
        }
        let script =
            app.list_root().ok()?.into_iter().find(|n| n.ends_with(".py") && app.includes_file(n))?;
        Some(format!("{script} found at the root and `config.run` starts it with python"))
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        python_plan(self.name(), "python", app, manifest, images)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{app, manifest};
    use super::*;

    fn plan(files: &[(&str, &str)], run: Option<&str>) -> Result<BuildPlan, BuildError> {
        let dir = app(files);
        let mut images = BaseImages::uniform("other:1");
        images.set("python", "local/python:3.11");
        PythonBuilder.plan(&AppFiles::new(dir.path()), &manifest(8000, Some("python"), run), &images)
    }

    #[test]
    fn plan_with_requirements_installs_them() {
        let p = plan(&[("requirements.txt", "# web\nflask==3.0\n"), ("app.py", "")], Some("python3 app.py"))
            .unwrap();
        let lines: Vec<&str> = p.dockerfile.lines().collect();
        assert_eq!(p.builder, "python");
        assert_eq!(lines[0], "FROM local/python:3.11");
        assert!(
            lines.contains(&"RUN python3 -m pip install --no-cache-dir -r requirements.txt"),
            "{}",
            p.dockerfile
        );
        assert!(lines.contains(&"ENV PYTHONUNBUFFERED=\"1\""), "{}", p.dockerfile);
        assert!(lines.contains(&"EXPOSE 8000"), "{}", p.dockerfile);
        assert_eq!(lines.last(), Some(&r#"CMD ["sh","-c","python3 app.py"]"#));
    }

    #[test]
    fn comment_only_requirements_install_nothing() {
        let p = plan(&[("requirements.txt", "# nothing yet\n\n   \n")], Some("python3 app.py")).unwrap();
        assert!(!p.dockerfile.contains("pip install"), "{}", p.dockerfile);
        let p = plan(&[("app.py", "")], Some("python3 app.py")).unwrap();
        assert!(!p.dockerfile.contains("pip install"), "{}", p.dockerfile);
        assert!(p.dockerfile.contains("ENV PYTHONUNBUFFERED=\"1\"\n"), "{}", p.dockerfile);
    }

    #[test]
    fn missing_run_is_explained() {
        let err = plan(&[("app.py", "")], None).unwrap_err();
        assert!(err.to_string().contains("`config.run` is missing; the python builder"), "{err}");
    }

    #[test]
    fn requirements_listed_ignores_comments() {
        assert!(!requirements_listed("# a\n\n  # b\n"));
        assert!(requirements_listed("# a\nrequests\n"));
    }
}
