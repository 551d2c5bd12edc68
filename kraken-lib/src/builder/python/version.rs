//! The Python version an app asks for: `.python-version`, `runtime.txt`,
//! `Pipfile`'s `[requires]`, `pyproject.toml`'s `requires-python` (or
//! poetry's `python` dependency), `setup.py`'s `python_requires`; none means
//! the configured default. A range picks the default when it allows it, else
//! the newest known version it allows.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};

use super::super::{AppFiles, BuildError};

/// The Python versions Kraken builds on with the `python` builder.
pub const KNOWN: &[&str] = &["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"];

/// The version chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonVersion {
    /// `major.minor`, e.g. `"3.12"`.
    pub version: String,
    /// Why, for people.
    pub reason: String,
}

/// An exact version (`3.11`, `3.11.4`) or a range of versions.
enum Request {
    Exact(String),
    Range(VersionSpecifiers),
}

/// The Python version for the app; `default` is the configured default.
///
/// # Errors
/// [`BuildError::Invalid`] when a pin cannot be read, allows none of the
/// [`KNOWN`] versions, or asks for Python 3.6 (which has its own builder).
pub fn python_version(app: &AppFiles, default: &str) -> Result<PythonVersion, BuildError> {
    let Some((source, text, request)) = find_pin(app)? else {
        return Ok(PythonVersion {
            version: default.to_string(),
            reason: format!(
                "no Python version pinned (.python-version, runtime.txt, Pipfile, requires-python): the default, Python {default}"
            ),
        });
    };
    let refuse = |why: String| BuildError::Invalid(format!("{source} asks for Python {text:?}, {why}"));
    let version = match request {
        Request::Exact(minor) if minor == "3.6" => return Err(refuse(
            "which the python builder does not build; set lang = \"python3.6\" in [config] to build on the \
                 Python 3.6 image"
                .to_string(),
        )),
        Request::Exact(minor) if KNOWN.contains(&minor.as_str()) => minor,
        Request::Exact(_) => {
            return Err(refuse(format!("which Kraken does not build; pin one of {}", KNOWN.join(", "))))
        }
        Request::Range(specifiers) => {
            let allows = |minor: &str| {
                ["0", "99"].iter().any(|patch| {
                    Version::from_str(&format!("{minor}.{patch}")).is_ok_and(|v| specifiers.contains(&v))
                })
            };
            if allows(default) {
                default.to_string()
            } else {
                KNOWN.iter().rev().find(|m| allows(m)).map(|m| m.to_string()).ok_or_else(|| {
                    refuse(format!(
                        "which allows none of the versions Kraken builds on ({})",
                        KNOWN.join(", ")
                    ))
                })?
            }
        }
    };
    Ok(PythonVersion { reason: format!("{source} asks for {text:?}: Python {version}"), version })
}

/// The first pin found, with its source and text.
fn find_pin(app: &AppFiles) -> Result<Option<(String, String, Request)>, BuildError> {
    let exact = |source: &str, text: &str| -> Result<Option<(String, String, Request)>, BuildError> {
        let minor = minor_of(text).ok_or_else(|| {
            BuildError::Invalid(format!(
                "{source}: {text:?} is not a Python version; write e.g. \"3.12\" (for runtime.txt: \"python-3.12.4\")"
            ))
        })?;
        Ok(Some((source.to_string(), text.to_string(), Request::Exact(minor))))
    };
    if app.includes_file(".python-version") {
        let text = app.read_to_string(".python-version")?;
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')) {
            return exact(".python-version", line);
        }
    }
    if app.includes_file("runtime.txt") {
        let text = app.read_to_string("runtime.txt")?;
        let line = text.trim();
        return exact("runtime.txt", line.strip_prefix("python-").unwrap_or(line));
    }
    if app.includes_file("Pipfile") {
        let pipfile = app.read_toml("Pipfile")?;
        let requires = pipfile.get("requires");
        for key in ["python_full_version", "python_version"] {
            if let Some(v) = requires.and_then(|r| r.get(key)).and_then(|v| v.as_str()) {
                return exact(&format!("Pipfile [requires] {key}"), v);
            }
        }
    }
    if app.includes_file("pyproject.toml") {
        let pyproject = app.read_toml("pyproject.toml")?;
        if let Some(spec) =
            pyproject.get("project").and_then(|p| p.get("requires-python")).and_then(|v| v.as_str())
        {
            return range("requires-python in pyproject.toml", spec, spec);
        }
        let poetry = pyproject.get("tool").and_then(|t| t.get("poetry")).and_then(|p| p.get("dependencies"));
        if let Some(spec) = poetry.and_then(|d| d.get("python")).and_then(|v| v.as_str()) {
            return range("tool.poetry.dependencies.python in pyproject.toml", spec, &poetry_to_pep440(spec));
        }
    }
    if app.includes_file("setup.py") {
        let text = app.read_to_string("setup.py")?;
        if let Some(spec) = setup_py_python_requires(&text) {
            return range("python_requires in setup.py", &spec, &spec);
        }
    }
    Ok(None)
}

/// A range pin: `shown` as written, `spec` in PEP 440 form.
fn range(source: &str, shown: &str, spec: &str) -> Result<Option<(String, String, Request)>, BuildError> {
    let specifiers = VersionSpecifiers::from_str(spec).map_err(|e| {
        BuildError::Invalid(format!(
            "{source}: {shown:?} is not a version range ({e}); write e.g. \">=3.10\""
        ))
    })?;
    Ok(Some((source.to_string(), shown.to_string(), Request::Range(specifiers))))
}

/// `major.minor` of a version such as `3.11`, `3.11.4`, `3.12-dev`.
fn minor_of(text: &str) -> Option<String> {
    let mut parts = text.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("{major}.{minor}"))
}

/// Poetry's `^3.10` and `~3.10` in PEP 440 form (other forms pass through).
fn poetry_to_pep440(spec: &str) -> String {
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            if let Some(v) = part.strip_prefix('^') {
                let major = v.split('.').next().unwrap_or(v);
                let next: u32 = major.parse::<u32>().unwrap_or(3) + 1;
                format!(">={v},<{next}")
            } else if let Some(v) = part.strip_prefix('~').filter(|v| !v.starts_with('=')) {
                format!("~={v}.0").replace(".0.0", ".0")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The string given to `python_requires=` in a `setup.py`.
fn setup_py_python_requires(text: &str) -> Option<String> {
    let at = text.find("python_requires")?;
    let rest = text[at + "python_requires".len()..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &rest[1..];
    Some(inner[..inner.find(quote)?].to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::test_support::app;
    use super::*;

    fn version(files: &[(&str, &str)]) -> Result<PythonVersion, BuildError> {
        let dir = app(files);
        python_version(&AppFiles::new(dir.path()), "3.13")
    }

    #[test]
    fn exact_pins() {
        for (file, text, want) in [
            (".python-version", "3.11\n", "3.11"),
            (".python-version", "# pyenv\n3.12.4\n", "3.12"),
            ("runtime.txt", "python-3.10.14\n", "3.10"),
            ("Pipfile", "[requires]\npython_version = \"3.9\"\n", "3.9"),
        ] {
            let v = version(&[(file, text)]).unwrap();
            assert_eq!(v.version, want, "{file}");
        }
        let v = version(&[("runtime.txt", "python-3.10.14")]).unwrap();
        assert_eq!(v.reason, "runtime.txt asks for \"3.10.14\": Python 3.10");
        // .python-version comes first.
        let v = version(&[(".python-version", "3.12"), ("runtime.txt", "python-3.9.1")]).unwrap();
        assert_eq!(v.version, "3.12");
    }

    #[test]
    fn ranges_pick_the_default_or_the_newest_allowed() {
        for (spec, want) in [
            (">=3.9", "3.13"),
            (">=3.8,<3.12", "3.11"),
            ("~=3.10", "3.13"),
            ("==3.10.*", "3.10"),
            (">=3.11.4,<3.12", "3.11"),
        ] {
            let v = version(&[(
                "pyproject.toml",
                &format!("[project]\nname = \"x\"\nrequires-python = \"{spec}\"\n"),
            )])
            .unwrap();
            assert_eq!(v.version, want, "{spec}");
            assert_eq!(
                v.reason,
                format!("requires-python in pyproject.toml asks for {spec:?}: Python {want}")
            );
        }
        let v = version(&[("pyproject.toml", "[tool.poetry.dependencies]\npython = \"^3.10\"\n")]).unwrap();
        assert_eq!(v.version, "3.13");
        let v = version(&[("pyproject.toml", "[tool.poetry.dependencies]\npython = \"~3.10\"\n")]).unwrap();
        assert_eq!(v.version, "3.10");
        let v = version(&[("setup.py", "setup(name='x', python_requires='>=3.8, <3.11')\n")]).unwrap();
        assert_eq!(
            (v.version.as_str(), v.reason.as_str()),
            ("3.10", "python_requires in setup.py asks for \">=3.8, <3.11\": Python 3.10")
        );
    }

    #[test]
    fn no_pin_is_the_default() {
        let v = version(&[("requirements.txt", "flask\n")]).unwrap();
        assert_eq!(v.version, "3.13");
        assert!(v.reason.starts_with("no Python version pinned"), "{}", v.reason);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let err = version(&[(".python-version", "3.6")]).unwrap_err().to_string();
        assert_eq!(
            err,
            ".python-version asks for Python \"3.6\", which the python builder does not build; set lang = \
             \"python3.6\" in [config] to build on the Python 3.6 image"
        );
        let err = version(&[("runtime.txt", "python-2.7.18")]).unwrap_err().to_string();
        assert!(err.contains("which Kraken does not build; pin one of 3.8, 3.9"), "{err}");
        let err = version(&[(".python-version", "pypy")]).unwrap_err().to_string();
        assert!(err.contains("\"pypy\" is not a Python version; write e.g. \"3.12\""), "{err}");
        let err =
            version(&[("pyproject.toml", "[project]\nrequires-python = \">=4\"\n")]).unwrap_err().to_string();
        assert!(err.contains("allows none of the versions Kraken builds on"), "{err}");
        let err = version(&[("pyproject.toml", "[project]\nrequires-python = \"newest\"\n")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a version range"), "{err}");
    }

    #[test]
    fn helpers() {
        assert_eq!(poetry_to_pep440("^3.10"), ">=3.10,<4");
        assert_eq!(poetry_to_pep440(">=3.9,<3.13"), ">=3.9,<3.13");
        assert_eq!(setup_py_python_requires("python_requires = \">=3.7\""), Some(">=3.7".to_string()));
        assert_eq!(minor_of("3.12-dev").as_deref(), Some("3.12"));
        assert_eq!(minor_of("3"), None);
    }
}
