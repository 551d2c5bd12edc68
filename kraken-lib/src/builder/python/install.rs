//! How a Python app's dependencies are installed, from the files it has, in
//! this order: `requirements.txt`; `Pipfile.lock`/`Pipfile` (turned into a
//! requirements list for pip); `pyproject.toml` with `poetry.lock` or
//! `[tool.poetry]` (poetry), `uv.lock` (uv exports, pip installs), `pdm.lock`
//! (pdm exports, pip installs), static `[project] dependencies` (pip), or a
//! build backend (`pip install .`); `setup.py` (`pip install .`).
//!
//! Everything installs into the app's virtual environment `/opt/venv`; tools
//! (poetry, uv, pdm) get one of their own, `/opt/kraken-tools`, so their
//! dependencies never mix with the app's.

use super::super::{AppFiles, BuildError, Step};

/// The app's virtual environment.
pub const VENV: &str = "/opt/venv";

/// Where the export of a lockfile is written in the image.
const EXPORTED: &str = "/tmp/kraken-requirements.txt";

/// The requirements list Kraken writes (from a Pipfile or `[project]`), in
/// the build context.
pub const GENERATED: &str = ".kraken-requirements.txt";

/// What installing the dependencies takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Install {
    /// Files copied before the install (relative to the app).
    pub copy_first: Vec<String>,
    /// Whether the install needs the whole source (then it runs after it is copied).
    pub needs_source: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// A requirements list Kraken wrote, added to the build context as [`GENERATED`].
    pub generated: Option<String>,
    /// The text of the dependency files, to see whether a server is among them.
    pub declared: String,
}

/// A command installing a tool into its own environment.
fn tool(package: &str) -> String {
    format!("python3 -m venv /opt/kraken-tools && /opt/kraken-tools/bin/pip install --no-cache-dir {package}")
}

/// How the app's dependencies are installed.
///
/// # Errors
/// [`BuildError::Invalid`] when a dependency file cannot be read or holds
/// what pip cannot install (a Pipfile package from git, for example).
pub fn plan_install(app: &AppFiles) -> Result<Install, BuildError> {
    let mut out = Install::default();
    if app.includes_file("requirements.txt") {
        let text = app.read_to_string("requirements.txt")?;
        out.declared = text.clone();
        if !requirements_listed(&text) {
            return Ok(out);
        }
        out.copy_first.push("requirements.txt".to_string());
        for line in text.lines().map(str::trim) {
            let local = line.starts_with("-e") || line.starts_with('.') || line.starts_with("file:");
            if local {
                out.needs_source = true;
            }
            for flag in ["-r", "-c", "--requirement", "--constraint"] {
                if let Some(rest) = line.strip_prefix(flag).filter(|r| r.starts_with([' ', '='])) {
                    let file = rest.trim_start_matches('=').trim();
                    if app.includes_file(file) {
                        out.copy_first.push(file.to_string());
                        out.declared.push_str(&app.read_to_string(file)?);
                    } else {
                        out.needs_source = true;
                    }
                }
            }
        }
        let mut reason = "requirements.txt found".to_string();
        if out.needs_source {
            reason.push_str("; it installs from the app's own folder, so the source is copied first");
        }
        out.steps.push(Step::new("pip install --no-cache-dir -r requirements.txt", reason));
        return Ok(out);
    }
    if app.includes_file("Pipfile") || app.includes_file("Pipfile.lock") {
        return pipfile(app, out);
    }
    if app.includes_file("pyproject.toml") {
        return pyproject(app, out);
    }
    if app.includes_file("setup.py") {
        out.declared = app.read_to_string("setup.py")?;
        out.needs_source = true;
        out.steps.push(Step::new(
            "pip install --no-cache-dir .",
            "setup.py found: pip installs the project and its dependencies",
        ));
    }
    Ok(out)
}

/// Whether `requirements.txt` has a line that is neither blank nor a comment.
pub fn requirements_listed(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#'))
}

fn pipfile(app: &AppFiles, mut out: Install) -> Result<Install, BuildError> {
    let mut lines = Vec::new();
    let reason = if app.includes_file("Pipfile.lock") {
        let lock = app.read_json("Pipfile.lock")?;
        let default = lock.get("default").and_then(|d| d.as_object()).cloned().unwrap_or_default();
        for (name, entry) in &default {
            let version = entry.get("version").and_then(|v| v.as_str());
            let markers = entry.get("markers").and_then(|v| v.as_str());
            let Some(version) = version else {
                return Err(BuildError::Invalid(format!(
                    "Pipfile.lock: `{name}` has no released version (from git or a path); Kraken installs Pipfile \
                     packages with pip from the package index: pin a released version, or add a requirements.txt"
                )));
            };
            lines.push(match markers {
                Some(m) => format!("{name}{version} ; {m}"),
                None => format!("{name}{version}"),
            });
        }
        "Pipfile.lock found: its pinned packages (section default) are installed with pip"
    } else {
        let pipfile = app.read_toml("Pipfile")?;
        let packages = pipfile.get("packages").and_then(|p| p.as_table()).cloned().unwrap_or_default();
        for (name, spec) in &packages {
            let line = match spec {
                toml::Value::String(s) if s.trim() == "*" => name.clone(),
                toml::Value::String(s) => format!("{name}{s}"),
                toml::Value::Table(t) if t.contains_key("git") || t.contains_key("path") || t.contains_key("file") => {
                    return Err(BuildError::Invalid(format!(
                        "Pipfile: `{name}` comes from git or a path; Kraken installs Pipfile packages with pip from \
                         the package index: pin a released version, or add a requirements.txt"
                    )))
                }
                toml::Value::Table(t) => {
                    let extras = t
                        .get("extras")
                        .and_then(|e| e.as_array())
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                        .filter(|e| !e.is_empty())
                        .map(|e| format!("[{e}]"))
                        .unwrap_or_default();
                    let version = t.get("version").and_then(|v| v.as_str()).filter(|v| *v != "*").unwrap_or("");
                    format!("{name}{extras}{version}")
                }
                other => {
                    return Err(BuildError::Invalid(format!(
                        "Pipfile: `{name}` should be a version string such as \"*\" or \">=2.0\", found {other}"
                    )))
                }
            };
            lines.push(line);
        }
        "Pipfile found (no Pipfile.lock): its [packages] are installed with pip"
    };
    out.declared = lines.join("\n");
    if lines.is_empty() {
        return Ok(out);
    }
    out.generated = Some(lines.join("\n") + "\n");
    out.copy_first.push(GENERATED.to_string());
    out.steps.push(Step::new(format!("pip install --no-cache-dir -r {GENERATED}"), reason));
    Ok(out)
}

fn pyproject(app: &AppFiles, mut out: Install) -> Result<Install, BuildError> {
    let doc = app.read_toml("pyproject.toml")?;
    out.declared = app.read_to_string("pyproject.toml")?;
    let backend =
        doc.get("build-system").and_then(|b| b.get("build-backend")).and_then(|b| b.as_str()).unwrap_or("");
    let has_tool = |name: &str| doc.get("tool").and_then(|t| t.get(name)).is_some();
    out.copy_first.push("pyproject.toml".to_string());
    if app.includes_file("poetry.lock") || has_tool("poetry") || backend.starts_with("poetry") {
        let lock = app.includes_file("poetry.lock");
        if lock {
            out.copy_first.push("poetry.lock".to_string());
            out.declared.push_str(&app.read_to_string("poetry.lock")?);
        }
        out.steps.push(Step::new(
            tool("poetry"),
            "a poetry project: poetry installs it (in an environment of its own)",
        ));
        out.steps.push(Step::new(
            "/opt/kraken-tools/bin/poetry install --only main --no-root --no-interaction",
            if lock {
                "poetry.lock found: poetry installs the locked main dependencies into the app's environment"
            } else {
                "[tool.poetry] found (no poetry.lock): poetry resolves and installs the main dependencies"
            },
        ));
        return Ok(out);
    }
    if app.includes_file("uv.lock") {
        out.copy_first.push("uv.lock".to_string());
        out.declared.push_str(&app.read_to_string("uv.lock")?);
        out.steps.push(Step::new(tool("uv"), "uv.lock found: uv reads it (in an environment of its own)"));
        out.steps.push(Step::new(
            format!(
                "/opt/kraken-tools/bin/uv export --frozen --no-dev --no-emit-project -o {EXPORTED} && \
                 pip install --no-cache-dir -r {EXPORTED}"
            ),
            "uv exports the locked dependencies (without dev ones) and pip installs them",
        ));
        return Ok(out);
    }
    if app.includes_file("pdm.lock") {
        out.copy_first.push("pdm.lock".to_string());
        out.declared.push_str(&app.read_to_string("pdm.lock")?);
        out.steps.push(Step::new(tool("pdm"), "pdm.lock found: pdm reads it (in an environment of its own)"));
        out.steps.push(Step::new(
            format!("/opt/kraken-tools/bin/pdm export --prod -o {EXPORTED} && pip install --no-cache-dir -r {EXPORTED}"),
            "pdm exports the locked production dependencies and pip installs them",
        ));
        return Ok(out);
    }
    let project = doc.get("project");
    let dynamic = project
        .and_then(|p| p.get("dynamic"))
        .and_then(|d| d.as_array())
        .is_some_and(|d| d.iter().any(|v| v.as_str() == Some("dependencies")));
    let static_deps = project.and_then(|p| p.get("dependencies")).and_then(|d| d.as_array());
    match static_deps {
        Some(deps) if !dynamic => {
            let list: Vec<&str> = deps.iter().filter_map(|d| d.as_str()).collect();
            if list.len() != deps.len() {
                return Err(BuildError::Invalid(
                    "pyproject.toml: `project.dependencies` should be a list of requirement strings such as \
                     \"flask>=3\""
                        .to_string(),
                ));
            }
            out.copy_first = Vec::new();
            if list.is_empty() {
                return Ok(out);
            }
            out.generated = Some(list.join("\n") + "\n");
            out.copy_first.push(GENERATED.to_string());
            out.steps.push(Step::new(
                format!("pip install --no-cache-dir -r {GENERATED}"),
                format!(
                    "pyproject.toml lists [project] dependencies ({}): pip installs them before the source is copied",
                    list.join(", ")
                ),
            ));
        }
        _ => {
            out.needs_source = true;
            out.steps.push(Step::new(
                "pip install --no-cache-dir .",
                "pyproject.toml has no static [project] dependencies: pip installs the project through its build backend",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::test_support::app;
    use super::*;

    fn install(files: &[(&str, &str)]) -> Result<Install, BuildError> {
        let dir = app(files);
        plan_install(&AppFiles::new(dir.path()))
    }

    fn commands(i: &Install) -> Vec<&str> {
        i.steps.iter().map(|s| s.command.as_str()).collect()
    }

    #[test]
    fn requirements_txt() {
        let i =
            install(&[("requirements.txt", "# web\nflask==3.0\n-r base.txt\n"), ("base.txt", "gunicorn\n")])
                .unwrap();
        assert_eq!(commands(&i), ["pip install --no-cache-dir -r requirements.txt"]);
        assert_eq!(i.copy_first, ["requirements.txt", "base.txt"]);
        assert!(!i.needs_source && i.declared.contains("gunicorn"));
        let i = install(&[("requirements.txt", "-e .\n")]).unwrap();
        assert!(i.needs_source);
        assert!(i.steps[0].reason.contains("the source is copied first"));
        let i = install(&[("requirements.txt", "# nothing yet\n\n")]).unwrap();
        assert!(i.steps.is_empty() && i.copy_first.is_empty());
    }

    #[test]
    fn pipfile_lock_and_pipfile_become_a_requirements_list() {
        let lock = r#"{"default": {"flask": {"version": "==3.0.3"}, "gunicorn": {"version": "==22.0.0", "markers": "python_version >= '3.7'"}}, "develop": {"pytest": {"version": "==8"}}}"#;
        let i = install(&[("Pipfile", "[packages]\nflask = \"*\"\n"), ("Pipfile.lock", lock)]).unwrap();
        assert_eq!(
            i.generated.as_deref(),
            Some("flask==3.0.3\ngunicorn==22.0.0 ; python_version >= '3.7'\n")
        );
        assert_eq!(commands(&i), ["pip install --no-cache-dir -r .kraken-requirements.txt"]);
        assert_eq!(i.copy_first, [GENERATED]);
        let i = install(&[(
            "Pipfile",
            "[packages]\nflask = \"*\"\nrequests = {version = \">=2\", extras = [\"socks\"]}\ndjango = \"==5.0\"\n",
        )])
        .unwrap();
        assert_eq!(i.generated.as_deref(), Some("django==5.0\nflask\nrequests[socks]>=2\n"));
        let err = install(&[("Pipfile", "[packages]\nmine = {git = \"https://x/y.git\"}\n")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Pipfile: `mine` comes from git or a path")
                && err.contains("add a requirements.txt"),
            "{err}"
        );
        let err = install(&[("Pipfile", "[packages]\nbad = 3\n")]).unwrap_err().to_string();
        assert!(err.contains("should be a version string"), "{err}");
        let err =
            install(&[("Pipfile.lock", r#"{"default": {"x": {"git": "u"}}}"#)]).unwrap_err().to_string();
        assert!(err.contains("has no released version"), "{err}");
    }

    #[test]
    fn pyproject_flavours() {
        let i = install(&[("pyproject.toml", "[tool.poetry]\nname = \"x\"\n"), ("poetry.lock", "")]).unwrap();
        assert_eq!(i.copy_first, ["pyproject.toml", "poetry.lock"]);
        assert_eq!(
            commands(&i)[1],
            "/opt/kraken-tools/bin/poetry install --only main --no-root --no-interaction"
        );
        assert!(commands(&i)[0].ends_with("/opt/kraken-tools/bin/pip install --no-cache-dir poetry"));
        let i = install(&[("pyproject.toml", "[project]\nname = \"x\"\n"), ("uv.lock", "")]).unwrap();
        assert!(
            commands(&i)[1].starts_with("/opt/kraken-tools/bin/uv export --frozen --no-dev"),
            "{:?}",
            commands(&i)
        );
        let i = install(&[("pyproject.toml", "[project]\nname = \"x\"\n"), ("pdm.lock", "")]).unwrap();
        assert!(commands(&i)[1].starts_with("/opt/kraken-tools/bin/pdm export --prod"));
        let i = install(&[(
            "pyproject.toml",
            "[project]\nname = \"x\"\ndependencies = [\"fastapi>=0.110\", \"uvicorn[standard]\"]\n[build-system]\nbuild-backend = \"flit_core.buildapi\"\n",
        )])
        .unwrap();
        assert_eq!(i.generated.as_deref(), Some("fastapi>=0.110\nuvicorn[standard]\n"));
        assert_eq!(i.copy_first, [GENERATED]);
        assert!(!i.needs_source);
        assert!(i.steps[0].reason.contains("(fastapi>=0.110, uvicorn[standard])"), "{}", i.steps[0].reason);
        let i = install(&[("pyproject.toml", "[project]\nname = \"x\"\ndynamic = [\"dependencies\"]\n")])
            .unwrap();
        assert!(i.needs_source);
        assert_eq!(commands(&i), ["pip install --no-cache-dir ."]);
        let err = install(&[("pyproject.toml", "[project]\ndependencies = [1]\n")]).unwrap_err().to_string();
        assert!(err.contains("list of requirement strings"), "{err}");
        let i = install(&[("setup.py", "setup()")]).unwrap();
        assert!(i.needs_source && commands(&i) == ["pip install --no-cache-dir ."]);
    }
}
