//! Tests of the registry: choosing a builder, weighing weak claims against
//! other languages, refusals, `config.root`, and custom builders.

#![allow(clippy::unwrap_used)]

use super::test_support::{app, manifest};
use super::*;

fn registry() -> BuilderRegistry {
    BuilderRegistry::with_builtins(BaseImages::uniform("local/base:1"))
}

fn detect(files: &[(&str, &str)], run: Option<&str>) -> Result<Detection, BuildError> {
    let dir = app(files);
    registry().choose(&AppFiles::new(dir.path()), &manifest(8080, None, run))
}

#[test]
fn builtins_in_detection_order() {
    assert_eq!(registry().names(), ["dockerfile", "node", "python", "static", "python3.6"]);
    for b in registry().builders() {
        assert!(!b.description().is_empty());
        let example = b.example_manifest();
        let parsed = crate::shipwreck::Manifest::parse("example", &example, &registry().names());
        assert!(parsed.is_ok(), "{}: {parsed:?}", b.name());
    }
}

/// Files of an app, its `run`, the builder expected and the start of the reason.
type DetectionCase<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);

#[test]
fn each_builtin_is_detected_by_its_marker() {
    let cases: &[DetectionCase<'_>] = &[
        (&[("Dockerfile", "FROM x\n")], None, "dockerfile", "Dockerfile found at the root"),
        (&[("package.json", "{}")], Some("node server.js"), "node", "package.json found"),
        (&[("package.json", r#"{"scripts": {"start": "node s.js"}}"#)], None, "node", "package.json found"),
        (&[("requirements.txt", "")], None, "python", "requirements.txt found"),
        (&[("pyproject.toml", "")], None, "python", "pyproject.toml found"),
        (&[("Pipfile", "")], None, "python", "Pipfile found"),
        (&[("manage.py", "")], None, "python", "manage.py found"),
        (&[("app.py", "")], Some("python3 app.py"), "python", "app.py found"),
        (&[("index.html", "<h1>hi</h1>")], None, "static", "index.html found at the root"),
        (&[("public/index.html", "")], None, "static", "index.html found in public/"),
        (&[("Staticfile", "root: www"), ("www/a.html", "")], None, "static", "the Staticfile says root: www"),
    ];
    for (files, run, builder, reason) in cases {
        let d = detect(files, *run).unwrap();
        assert_eq!(d.builder, *builder, "{files:?}");
        assert!(d.reason.starts_with(reason), "{files:?}: {}", d.reason);
    }
}

#[test]
fn a_py_file_alone_needs_run_to_mention_python() {
    let err = detect(&[("app.py", "")], Some("./start.sh")).unwrap_err();
    assert!(matches!(err, BuildError::NotDetected(_)), "{err}");
}

#[test]
fn detection_priority() {
    let d = detect(&[("Dockerfile", "FROM x\n"), ("package.json", "{}"), ("index.html", "")], None).unwrap();
    assert_eq!(d.builder, "dockerfile");
    let d = detect(&[("package.json", r#"{"main": "s.js"}"#), ("s.js", ""), ("requirements.txt", "")], None)
        .unwrap();
    assert_eq!(d.builder, "node");
    let d = detect(&[("requirements.txt", ""), ("index.html", "")], None).unwrap();
    assert_eq!(d.builder, "python");
    // A Go app with its own Dockerfile is deployed with it.
    let d = detect(&[("go.mod", "module x"), ("Dockerfile", "FROM golang\n")], None).unwrap();
    assert_eq!(d.builder, "dockerfile");
}

#[test]
fn a_front_end_package_json_yields_to_a_python_app() {
    let d = detect(
        &[
            ("package.json", r#"{"scripts": {"build": "webpack"}}"#),
            ("manage.py", ""),
            ("requirements.txt", "django"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(d.builder, "python");
    assert_eq!(
        d.reason,
        "requirements.txt found (and package.json found, which the node builder takes only when nothing else fits)"
    );
    // Alone, the single-page app is node's.
    let d = detect(&[("package.json", r#"{"scripts": {"build": "vite build"}}"#), ("index.html", "")], None)
        .unwrap();
    assert_eq!(d.builder, "node");
}

#[test]
fn laravel_and_rails_with_a_package_json_are_refused_not_guessed() {
    let err = detect(
        &[
            ("composer.json", "{}"),
            ("artisan", ""),
            ("package.json", r#"{"scripts": {"build": "vite build"}}"#),
        ],
        None,
    )
    .unwrap_err();
    let BuildError::Unsupported(m) = &err else { panic!("{err:?}") };
    assert!(m.starts_with("found composer.json and artisan: a PHP (Laravel) app and a package.json with no start script or main file"), "{m}");
    assert!(m.contains("Kraken has no PHP (Laravel) builder. Add a Dockerfile"), "{m}");
    assert!(m.contains("if the node part is the app, set lang = \"node\""), "{m}");
    let err = detect(
        &[
            ("Gemfile", "gem 'rails'"),
            ("Procfile", "web: bundle exec puma"),
            ("package.json", r#"{"private": true}"#),
        ],
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("found Gemfile and a Procfile whose web process runs Ruby: a Ruby app"),
        "{err}"
    );
    // A package.json that starts a server is the app, whatever else is there.
    let d =
        detect(&[("Gemfile", ""), ("package.json", r#"{"scripts": {"start": "node s.js"}}"#)], None).unwrap();
    assert_eq!(d.builder, "node");
}

#[test]
fn other_languages_are_named_with_what_to_do() {
    let err = detect(&[("go.mod", "module x"), ("main.go", "package main")], None).unwrap_err();
    let m = err.to_string();
    assert!(
        m.starts_with(
            "found go.mod: a Go app; Kraken has no Go builder. Add a Dockerfile at the root of the app"
        ),
        "{m}"
    );
    assert!(m.contains("FROM golang:1.23 AS build"), "{m}");
    assert!(m.ends_with("or, if this is not a Go app, set `lang` in [config] to one of: dockerfile, node, python, static, python3.6"), "{m}");
    let err = detect(&[("Cargo.toml", ""), ("public/index.html", "")], None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("found Cargo.toml: a Rust app and a static site (index.html found in public/)"),
        "{err}"
    );
}

#[test]
fn nothing_detected_says_what_is_there_and_what_was_looked_for() {
    let err = detect(&[("README.md", "hello")], None).unwrap_err();
    let BuildError::NotDetected(message) = &err else { panic!("{err:?}") };
    assert!(
        message.starts_with("found only README.md: nothing a builder recognises. Looked for: dockerfile ("),
        "{message}"
    );
    for name in ["node (", "python (", "static (", "python3.6 ("] {
        assert!(message.contains(name), "{message}");
    }
    assert!(
        message.contains("or set `lang` in [config] to one of: dockerfile, node, python, static, python3.6"),
        "{message}"
    );
}

#[test]
fn lang_overrides_detection_and_python36_is_only_chosen_by_lang() {
    let dir = app(&[("requirements.txt", "")]);
    let files = AppFiles::new(dir.path());
    let r = registry();
    assert_eq!(r.choose(&files, &manifest(80, None, None)).unwrap().builder, "python");
    let d = r.choose(&files, &manifest(80, Some("python3.6"), None)).unwrap();
    assert_eq!(d.builder, "python3.6");
    assert_eq!(d.reason, "lang = \"python3.6\" in shipwreck.toml");
    let dir = app(&[("go.mod", ""), ("index.html", "")]);
    let d = r.choose(&AppFiles::new(dir.path()), &manifest(80, Some("static"), None)).unwrap();
    assert_eq!(d.builder, "static");
}

#[test]
fn unknown_lang_lists_known_names() {
    let dir = app(&[]);
    let err = registry().choose(&AppFiles::new(dir.path()), &manifest(80, Some("cobol"), None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown lang `cobol`; this platform knows: dockerfile, node, python, static, python3.6"
    );
}

#[test]
fn the_original_format_makes_a_plan() {
    let text = "[app]\nname=\"scapenode\"\nversion=\"1.0.0\"\nauthor=\"Ethan Shry\"\nendpoint=\"https://github.com/ethanshry/scapenode\"\n\n[config]\nport=7211\nlang=\"node\"\nrun=\"npm start\"\n";
    let m = crate::shipwreck::Manifest::parse("shipwreck.toml", text, &registry().names()).unwrap();
    let dir = app(&[("package.json", r#"{"scripts": {"start": "node index.js"}}"#), ("index.js", "")]);
    let (plan, d) = registry().plan(dir.path(), &m).unwrap();
    assert_eq!((d.builder.as_str(), d.reason.as_str()), ("node", "lang = \"node\" in shipwreck.toml"));
    assert_eq!(plan.start.as_ref().map(|s| s.command.as_str()), Some("npm start"));
    assert!(
        plan.dockerfile.ends_with("EXPOSE 7211\nCMD [\"sh\",\"-c\",\"npm start\"]\n"),
        "{}",
        plan.dockerfile
    );
}

#[test]
fn root_is_the_apps_folder_and_the_context() {
    let dir = app(&[
        ("README.md", ""),
        ("services/api/package.json", r#"{"main": "s.js"}"#),
        ("services/api/s.js", ""),
    ]);
    let mut m = manifest(80, None, None);
    m.config.root = Some("services/api".into());
    let (plan, d) = registry().plan(dir.path(), &m).unwrap();
    assert_eq!(d.builder, "node");
    assert_eq!(plan.context, "services/api");
    assert_eq!(plan.context_dir, dir.path().join("services/api").canonicalize().unwrap());
    assert_eq!(plan.start.unwrap().command, "node s.js");
    // Without root, the repository's root has nothing to build.
    m.config.root = None;
    assert!(matches!(registry().plan(dir.path(), &m), Err(BuildError::NotDetected(_))));
    m.config.root = Some("services/web".into());
    let err = registry().plan(dir.path(), &m).unwrap_err().to_string();
    assert_eq!(
        err,
        "shipwreck.toml: `config.root`: the repository has no folder \"services/web\"; give the folder that holds \
         the app, relative to the repository root (the manifest stays at the root)"
    );
    m.config.root = Some("README.md".into());
    assert!(registry().plan(dir.path(), &m).unwrap_err().to_string().contains("has no folder \"README.md\""));
    m.config.root = Some("../x".into());
    let err = registry().plan(dir.path(), &m).unwrap_err().to_string();
    assert!(
        err.starts_with("shipwreck.toml: `config.root`: \"../x\" leaves the repository through `..`"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn root_through_a_symlink_out_of_the_repository_is_refused() {
    let outside = app(&[("package.json", "{}")]);
    let dir = app(&[]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("app")).unwrap();
    let mut m = manifest(80, None, Some("node s.js"));
    m.config.root = Some("app".into());
    let err = registry().plan(dir.path(), &m).unwrap_err().to_string();
    assert!(err.contains("leads outside the repository through a symbolic link"), "{err}");
}

#[test]
fn the_build_env_is_applied_to_every_plan() {
    let certs = app(&[("ca.crt", "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")]);
    let mut r = registry();
    r.set_build_env(BuildEnv::with_ca_files(&[certs.path().join("ca.crt")], None).unwrap());
    let dir = app(&[("index.html", "")]);
    let (plan, _) = r.plan(dir.path(), &manifest(80, None, None)).unwrap();
    assert!(plan.files.contains_key(build_env::CA_CONTEXT_NAME));
    assert!(plan.dockerfile.contains("ARG PIP_CERT=/etc/kraken/build-ca.pem\n"), "{}", plan.dockerfile);
}

struct Shell;

impl Builder for Shell {
    fn name(&self) -> &str {
        "shell"
    }
    fn description(&self) -> &str {
        "an app started by start.sh"
    }
    fn example_manifest(&self) -> String {
        "[app]\nname = \"sh\"\n[config]\nport = 80\nlang = \"shell\"\n".into()
    }
    fn detect(&self, app: &AppFiles) -> Option<String> {
        app.includes_file("start.sh").then(|| "start.sh found".into())
    }
    fn plan(&self, app: &AppFiles, _: &Manifest, images: &BaseImages) -> Result<BuildPlan, BuildError> {
        let image = images.require("shell")?;
        let start = Step::new("sh start.sh", "start.sh");
        let mut plan = BuildPlan::new(
            "shell",
            Step::new(image, "configured"),
            app.root(),
            format!("FROM {image}\nCMD [\"sh\", \"start.sh\"]\n"),
        );
        plan.start = Some(start);
        Ok(plan)
    }
}

#[test]
fn registered_builder_is_named_detected_and_chosen_by_lang() {
    let mut r = registry();
    r.register(Shell);
    assert_eq!(r.names().last().map(String::as_str), Some("shell"));
    let dir = app(&[("start.sh", "echo hi")]);
    let d = r.choose(&AppFiles::new(dir.path()), &manifest(80, None, None)).unwrap();
    assert_eq!(d.builder, "shell");
    // The base image is configuration: missing, the error names the key.
    let err = r.plan(dir.path(), &manifest(80, Some("shell"), None)).unwrap_err();
    assert!(err.to_string().contains("no base image is configured for `shell`"), "{err}");
    let mut images = BaseImages::uniform("local/base:1");
    images.set("shell", "local/shell:2");
    let mut r2 = BuilderRegistry::with_builtins(images);
    r2.register(Shell);
    let (plan, d) = r2.plan(dir.path(), &manifest(80, Some("shell"), None)).unwrap();
    assert_eq!(d.builder, "shell");
    assert!(plan.dockerfile.starts_with("FROM local/shell:2\n"), "{}", plan.dockerfile);
}

#[test]
fn register_replaces_a_builder_of_the_same_name() {
    struct FakeNode;
    impl Builder for FakeNode {
        fn name(&self) -> &str {
            "node"
        }
        fn description(&self) -> &str {
            "replacement"
        }
        fn example_manifest(&self) -> String {
            String::new()
        }
        fn detect(&self, _: &AppFiles) -> Option<String> {
            None
        }
        fn plan(&self, _: &AppFiles, _: &Manifest, _: &BaseImages) -> Result<BuildPlan, BuildError> {
            Err(BuildError::Invalid("replacement".into()))
        }
    }
    let mut r = registry();
    r.register(FakeNode);
    assert_eq!(r.names(), ["dockerfile", "node", "python", "static", "python3.6"]);
    assert_eq!(r.get("node").map(|b| b.description()), Some("replacement"));
}

#[test]
fn missing_base_image_names_the_key() {
    let mut images = BaseImages::uniform("local/base:1");
    images.remove("node");
    let r = BuilderRegistry::with_builtins(images);
    let dir = app(&[("package.json", "{}")]);
    let err = r.plan(dir.path(), &manifest(80, None, Some("node s.js"))).unwrap_err();
    let BuildError::Invalid(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("`node`") && message.contains("BaseImages::set"), "{message}");
}
