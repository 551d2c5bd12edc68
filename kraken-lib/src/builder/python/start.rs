//! How a Python app starts, when `run` does not say: the `Procfile`'s `web:`
//! line, a Django project (`manage.py`) served by gunicorn, an ASGI app object
//! (FastAPI, Starlette, Quart, Litestar) served by uvicorn, a WSGI one (Flask)
//! served by gunicorn, else `main.py`, `app.py` or `server.py` run with python.
//! A server the app does not list among its dependencies is installed too.

use super::super::detect::procfile_web;
use super::super::{given_run, AppFiles, BuildError, Step};
use crate::shipwreck::Manifest;

/// Files searched for an app object, in order (module path follows the file).
const APP_FILES: &[&str] = &[
    "main.py",
    "app.py",
    "server.py",
    "application.py",
    "api.py",
    "wsgi.py",
    "asgi.py",
    "app/main.py",
    "app/__init__.py",
    "src/main.py",
    "src/app.py",
];

/// Scripts run with python when nothing else says how to start.
const SCRIPTS: &[&str] = &["main.py", "app.py", "server.py"];

/// The frameworks recognised by their app object: (class, ASGI?).
const FRAMEWORKS: &[(&str, bool)] =
    &[("FastAPI", true), ("Starlette", true), ("Quart", true), ("Litestar", true), ("Flask", false)];

/// How the app starts, and a server to install when the app does not list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The command and why.
    pub step: Step,
    /// A package to install for the command (`gunicorn`, `uvicorn`), when the
    /// app's dependencies do not name it.
    pub server: Option<&'static str>,
}

/// How the app starts. `declared` is the text of its dependency files.
///
/// # Errors
/// [`BuildError::Invalid`] saying what was looked for and what to add.
pub fn infer_start(app: &AppFiles, manifest: &Manifest, declared: &str) -> Result<Start, BuildError> {
    if let Some(run) = given_run(manifest) {
        return Ok(Start { step: Step::new(run, "`run` in shipwreck.toml"), server: None });
    }
    if let Some(web) = procfile_web(app) {
        return Ok(Start { step: Step::new(web, "the web process of the Procfile"), server: None });
    }
    let missing = |package: &'static str| (!declares(declared, package)).then_some(package);
    if app.includes_file("manage.py") {
        let module = django_wsgi_module(app).ok_or_else(|| {
            BuildError::Invalid(
                "found manage.py (a Django project) but no <project>/wsgi.py with get_wsgi_application(); \
                 add it (django-admin startproject makes one), or set `run` in [config]"
                    .to_string(),
            )
        })?;
        let server = missing("gunicorn");
        return Ok(Start {
            step: Step::new(
                format!("gunicorn {module}:application --bind 0.0.0.0:$PORT"),
                format!(
                    "manage.py found: a Django project, served by gunicorn through {module}{}",
                    if server.is_some() { " (gunicorn is installed for it)" } else { "" }
                ),
            ),
            server,
        });
    }
    for file in APP_FILES {
        let Ok(text) = app.read_to_string(file) else { continue };
        let Some((var, class, asgi)) = app_object(&text) else { continue };
        let module = file.trim_end_matches(".py").trim_end_matches("/__init__").replace('/', ".");
        let (package, command) = if asgi {
            ("uvicorn", format!("uvicorn {module}:{var} --host 0.0.0.0 --port $PORT"))
        } else {
            ("gunicorn", format!("gunicorn {module}:{var} --bind 0.0.0.0:$PORT"))
        };
        let server = missing(package);
        let kind = if asgi { "an ASGI" } else { "a WSGI" };
        return Ok(Start {
            step: Step::new(
                command,
                format!(
                    "{file} makes {kind} app `{var} = {class}(…)`, served by {package}{}",
                    if server.is_some() {
                        format!(" ({package} is installed for it)")
                    } else {
                        String::new()
                    }
                ),
            ),
            server,
        });
    }
    if let Some(script) = app.first_file(SCRIPTS) {
        return Ok(Start {
            step: Step::new(format!("python {script}"), format!("{script} found")),
            server: None,
        });
    }
    Err(BuildError::Invalid(format!(
        "could not tell how to start this Python app: no Procfile with a web process, no manage.py, no app object \
         (FastAPI, Flask, …) in {}, and no {}; set `run` in [config] of shipwreck.toml, e.g. run = \"python \
         server.py\"",
        APP_FILES.join(", "),
        SCRIPTS.join(", ")
    )))
}

/// Whether `declared` (dependency files' text) names `package`.
fn declares(declared: &str, package: &str) -> bool {
    declared
        .to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|w| w == package)
}

/// The module of a Django project's WSGI application (`mysite.wsgi`).
fn django_wsgi_module(app: &AppFiles) -> Option<String> {
    let mut dirs = app.list_root().ok()?;
    dirs.retain(|d| app.includes_dir(d));
    dirs.iter().find_map(|d| {
        let text = app.read_to_string(&format!("{d}/wsgi.py")).ok()?;
        text.contains("get_wsgi_application").then(|| format!("{d}.wsgi"))
    })
}

/// A top-level `name = Framework(` in a module: the name, the class, and
/// whether it is ASGI.
fn app_object(text: &str) -> Option<(String, &'static str, bool)> {
    for line in text.lines() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some((target, value)) = line.split_once('=') else { continue };
        let var = target.split(':').next().unwrap_or("").trim();
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = value.trim_start();
        for (class, asgi) in FRAMEWORKS {
            let called = value
                .strip_prefix(class)
                .or_else(|| value.split_once('.').and_then(|(_, rest)| rest.strip_prefix(class)));
            if called.is_some_and(|rest| rest.trim_start().starts_with('(')) {
                return Some((var.to_string(), class, *asgi));
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::test_support::{app, manifest};
    use super::*;

    fn start(files: &[(&str, &str)], declared: &str) -> Result<Start, BuildError> {
        let dir = app(files);
        infer_start(&AppFiles::new(dir.path()), &manifest(8000, None, None), declared)
    }

    #[test]
    fn run_and_procfile_come_first() {
        let dir = app(&[("Procfile", "web: gunicorn x:y"), ("main.py", "")]);
        let s = infer_start(&AppFiles::new(dir.path()), &manifest(8000, None, Some("python3 main.py")), "")
            .unwrap();
        assert_eq!(
            (s.step.command.as_str(), s.step.reason.as_str()),
            ("python3 main.py", "`run` in shipwreck.toml")
        );
        let s = start(&[("Procfile", "web: gunicorn x:y"), ("main.py", "")], "").unwrap();
        assert_eq!(
            (s.step.command.as_str(), s.step.reason.as_str()),
            ("gunicorn x:y", "the web process of the Procfile")
        );
    }

    #[test]
    fn django_is_served_by_gunicorn() {
        let files = [
            ("manage.py", ""),
            ("mysite/wsgi.py", "application = get_wsgi_application()\n"),
            ("mysite/settings.py", ""),
        ];
        let s = start(&files, "Django==5.0\n").unwrap();
        assert_eq!(s.step.command, "gunicorn mysite.wsgi:application --bind 0.0.0.0:$PORT");
        assert_eq!(s.server, Some("gunicorn"));
        assert_eq!(s.step.reason, "manage.py found: a Django project, served by gunicorn through mysite.wsgi (gunicorn is installed for it)");
        let s = start(&files, "Django==5.0\ngunicorn==22\n").unwrap();
        assert_eq!(s.server, None);
        let err = start(&[("manage.py", "")], "").unwrap_err().to_string();
        assert!(err.starts_with("found manage.py (a Django project) but no <project>/wsgi.py"), "{err}");
    }

    #[test]
    fn app_objects_pick_their_server() {
        let s = start(
            &[("main.py", "from fastapi import FastAPI\n\napp = FastAPI(title=\"x\")\n")],
            "fastapi\nuvicorn[standard]\n",
        )
        .unwrap();
        assert_eq!(s.step.command, "uvicorn main:app --host 0.0.0.0 --port $PORT");
        assert_eq!(s.server, None);
        assert_eq!(s.step.reason, "main.py makes an ASGI app `app = FastAPI(…)`, served by uvicorn");
        let s =
            start(&[("app.py", "import flask\nserver: flask.Flask = flask.Flask(__name__)\n")], "flask\n")
                .unwrap();
        assert_eq!(s.step.command, "gunicorn app:server --bind 0.0.0.0:$PORT");
        assert_eq!(s.server, Some("gunicorn"));
        assert!(
            s.step.reason.ends_with("served by gunicorn (gunicorn is installed for it)"),
            "{}",
            s.step.reason
        );
        let s = start(&[("app/__init__.py", "api = Starlette()\n")], "").unwrap();
        assert_eq!(s.step.command, "uvicorn app:api --host 0.0.0.0 --port $PORT");
        assert_eq!(s.server, Some("uvicorn"));
        let s = start(&[("src/main.py", "    app = Flask(__name__)\n# app = FastAPI()\n")], "");
        assert!(s.is_err(), "indented or commented objects are not taken");
    }

    #[test]
    fn scripts_and_the_refusal() {
        let s = start(&[("server.py", "print('hi')\n")], "").unwrap();
        assert_eq!(
            (s.step.command.as_str(), s.step.reason.as_str()),
            ("python server.py", "server.py found")
        );
        let err = start(&[("tool.py", "")], "").unwrap_err().to_string();
        assert!(err.starts_with("could not tell how to start this Python app"), "{err}");
        assert!(
            err.ends_with("set `run` in [config] of shipwreck.toml, e.g. run = \"python server.py\""),
            "{err}"
        );
    }

    #[test]
    fn declared_packages_are_whole_words() {
        assert!(declares("Gunicorn==22\n", "gunicorn"));
        assert!(declares("uvicorn[standard]>=0.29", "uvicorn"));
        assert!(!declares("gunicorn-extras", "gunicorn"));
    }
}
