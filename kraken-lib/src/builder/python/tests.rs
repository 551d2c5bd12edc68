//! Tests of the python builder's plans.

#![allow(clippy::unwrap_used)]

use super::super::test_support::{app, manifest};
use super::*;

fn plan_with(files: &[(&str, &str)], run: Option<&str>) -> Result<BuildPlan, BuildError> {
    let dir = app(files);
    PythonBuilder.plan(
        &AppFiles::new(dir.path()),
        &manifest(8000, Some("python"), run),
        &BaseImages::defaults(),
    )
}

fn plan(files: &[(&str, &str)]) -> BuildPlan {
    plan_with(files, None).unwrap()
}

fn position(p: &BuildPlan, line: &str) -> usize {
    p.dockerfile
        .lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{}", p.dockerfile))
}

#[test]
fn a_flask_app_with_requirements() {
    let p = plan(&[
        ("requirements.txt", "flask==3.0.3\ngunicorn==22.0.0\n"),
        ("app.py", "from flask import Flask\napp = Flask(__name__)\n"),
        (".python-version", "3.12\n"),
    ]);
    assert_eq!(p.builder, "python");
    assert_eq!(p.base_image.command, "python:3.12-slim");
    assert_eq!(p.base_image.reason, ".python-version asks for \"3.12\": Python 3.12");
    position(&p, "RUN python3 -m venv /opt/venv");
    position(&p, "ENV VIRTUAL_ENV=\"/opt/venv\" PATH=\"/opt/venv/bin:$PATH\"");
    let copy = position(&p, r#"COPY ["requirements.txt","./"]"#);
    let install = position(&p, "RUN pip install --no-cache-dir -r requirements.txt");
    let source = position(&p, "COPY . .");
    assert!(copy < install && install < source, "{}", p.dockerfile);
    assert!(copy < position(&p, "RUN python3 -m venv /opt/venv"), "the app's own files come first");
    assert_eq!(p.install.len(), 1, "gunicorn is there already");
    assert!(p.install[0]
        .reason
        .ends_with("requirements.txt copied first, so a change of source only reuses this layer"));
    assert!(p.dockerfile.contains("ENV PYTHONUNBUFFERED=\"1\""));
    assert!(
        p.dockerfile
            .ends_with("EXPOSE 8000\nCMD [\"sh\",\"-c\",\"gunicorn app:app --bind 0.0.0.0:$PORT\"]\n"),
        "{}",
        p.dockerfile
    );
}

#[test]
fn a_fastapi_app_with_only_pyproject() {
    let p = plan(&[
        (
            "pyproject.toml",
            "[project]\nname = \"api\"\nrequires-python = \">=3.10\"\ndependencies = [\"fastapi\"]\n",
        ),
        ("main.py", "from fastapi import FastAPI\napp = FastAPI()\n"),
    ]);
    assert_eq!(p.base_image.command, "python:3.13-slim");
    assert_eq!(p.files.get(install::GENERATED).map(Vec::as_slice), Some(&b"fastapi\n"[..]));
    position(&p, r#"COPY [".kraken-requirements.txt","./"]"#);
    position(&p, "RUN pip install --no-cache-dir -r .kraken-requirements.txt");
    position(&p, "RUN pip install --no-cache-dir uvicorn");
    assert_eq!(
        p.install[1].reason,
        "the start command needs uvicorn, which the app's dependencies do not name"
    );
    assert_eq!(p.start.unwrap().command, "uvicorn main:app --host 0.0.0.0 --port $PORT");
}

#[test]
fn a_django_app() {
    let p = plan(&[
        ("requirements.txt", "Django>=5,<6\n"),
        ("manage.py", ""),
        (
            "hello/wsgi.py",
            "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
        ),
    ]);
    position(&p, "RUN pip install --no-cache-dir gunicorn");
    assert_eq!(p.start.unwrap().command, "gunicorn hello.wsgi:application --bind 0.0.0.0:$PORT");
}

#[test]
fn installs_that_need_the_source_come_after_it() {
    let p = plan(&[("setup.py", "from setuptools import setup\nsetup(name='x')\n"), ("main.py", "")]);
    let source = position(&p, "COPY . .");
    let install = position(&p, "RUN pip install --no-cache-dir .");
    assert!(source < install);
    assert_eq!(p.dockerfile.matches("COPY . .").count(), 1);
}

#[test]
fn nothing_to_install_and_no_start_is_refused() {
    let p = plan_with(&[("app.py", "")], Some("python3 app.py")).unwrap();
    assert!(!p.dockerfile.contains("pip install"), "{}", p.dockerfile);
    let err = plan_with(&[("requirements.txt", "requests\n")], None).unwrap_err().to_string();
    assert!(err.starts_with("could not tell how to start this Python app"), "{err}");
}

#[test]
fn the_python_version_refusal_reaches_the_plan() {
    let err = plan_with(&[("runtime.txt", "python-3.6.15"), ("app.py", "")], None).unwrap_err().to_string();
    assert!(err.contains("set lang = \"python3.6\""), "{err}");
}
