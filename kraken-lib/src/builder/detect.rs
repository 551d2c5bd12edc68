//! Recognising apps no built-in builder handles, and the refusals that say
//! what was found and what to do.
//!
//! A file that marks another language (`go.mod`, `Cargo.toml`, a `Gemfile`,
//! `composer.json`, …) is evidence a person's app is in that language. It
//! wins over a weak claim of a builder (a `package.json` that only builds
//! front-end assets, a stray `index.html`), and the refusal names the file,
//! the language, and a Dockerfile to start from.

use super::AppFiles;

/// An app in a language no built-in builder handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The language, for people: "Go", "PHP (Laravel)".
    pub language: &'static str,
    /// What was found: "go.mod", "composer.json and artisan".
    pub found: String,
    /// A Dockerfile that builds and starts a typical app of that language.
    pub example: &'static str,
}

/// The marker files of other languages, in the order they are looked for:
/// (file, language, example Dockerfile).
const MARKERS: &[(&str, &str, &str)] = &[
    ("go.mod", "Go", GO),
    ("Cargo.toml", "Rust", RUST),
    ("Gemfile", "Ruby", RUBY),
    ("composer.json", "PHP", PHP),
    ("pom.xml", "Java (Maven)", JAVA_MAVEN),
    ("build.gradle", "Java (Gradle)", JAVA_GRADLE),
    ("build.gradle.kts", "Kotlin (Gradle)", JAVA_GRADLE),
    ("mix.exs", "Elixir", ELIXIR),
    ("deno.json", "Deno", DENO),
    ("deno.jsonc", "Deno", DENO),
    ("pubspec.yaml", "Dart", GENERIC),
    ("Package.swift", "Swift", GENERIC),
    ("build.sbt", "Scala", GENERIC),
    ("stack.yaml", "Haskell", GENERIC),
    ("project.clj", "Clojure", GENERIC),
    ("CMakeLists.txt", "C/C++ (CMake)", GENERIC),
];

const GO: &str = "FROM golang:1.23 AS build\nWORKDIR /src\nCOPY . .\nRUN CGO_ENABLED=0 go build -o /app .\n\
FROM debian:bookworm-slim\nCOPY --from=build /app /app\nCMD [\"/app\"]";
const RUST: &str = "FROM rust:1 AS build\nWORKDIR /src\nCOPY . .\nRUN cargo build --release\n\
FROM debian:bookworm-slim\nCOPY --from=build /src/target/release/<your-binary> /app\nCMD [\"/app\"]";
const RUBY: &str =
    "FROM ruby:3.3-slim\nWORKDIR /app\nCOPY Gemfile Gemfile.lock ./\nRUN bundle install\nCOPY . .\n\
CMD [\"sh\", \"-c\", \"bundle exec rackup --host 0.0.0.0 --port $PORT\"]";
const PHP: &str = "FROM php:8.3-apache\nCOPY --from=composer:2 /usr/bin/composer /usr/bin/composer\nWORKDIR /var/www/html\n\
COPY . .\nRUN composer install --no-dev\nCMD [\"apache2-foreground\"]";
const JAVA_MAVEN: &str = "FROM maven:3-eclipse-temurin-21 AS build\nWORKDIR /src\nCOPY . .\nRUN mvn -q package -DskipTests\n\
FROM eclipse-temurin:21-jre\nCOPY --from=build /src/target/*.jar /app.jar\nCMD [\"java\", \"-jar\", \"/app.jar\"]";
const JAVA_GRADLE: &str = "FROM gradle:8-jdk21 AS build\nWORKDIR /src\nCOPY . .\nRUN gradle -q build -x test\n\
FROM eclipse-temurin:21-jre\nCOPY --from=build /src/build/libs/*.jar /app.jar\nCMD [\"java\", \"-jar\", \"/app.jar\"]";
const ELIXIR: &str =
    "FROM elixir:1.17\nWORKDIR /app\nCOPY . .\nRUN mix local.hex --force && mix deps.get && mix compile\n\
CMD [\"mix\", \"run\", \"--no-halt\"]";
const DENO: &str = "FROM denoland/deno:2\nWORKDIR /app\nCOPY . .\nCMD [\"deno\", \"run\", \"--allow-net\", \"--allow-env\", \"main.ts\"]";
const GENERIC: &str =
    "FROM <an image with the language's tools>\nWORKDIR /app\nCOPY . .\nRUN <the build command>\n\
CMD [\"<the command that starts the app>\"]";

/// The first language marker found at the app's root, with what confirms it.
pub fn foreign_language(app: &AppFiles) -> Option<Foreign> {
    for (file, language, example) in MARKERS {
        if !app.includes_file(file) {
            continue;
        }
        let mut found = (*file).to_string();
        let mut language = *language;
        match *file {
            "composer.json" if app.includes_file("artisan") => {
                found.push_str(" and artisan");
                language = "PHP (Laravel)";
            }
            "Gemfile" => {
                if app.includes_file("config.ru") {
                    found.push_str(" and config.ru");
                }
                if app.includes_file("config/application.rb") {
                    language = "Ruby (Rails)";
                }
                if procfile_web(app).is_some_and(|c| runs_ruby(&c)) {
                    found.push_str(" and a Procfile whose web process runs Ruby");
                }
            }
            _ => {}
        }
        return Some(Foreign { language, found, example });
    }
    let csproj =
        app.list_root().ok()?.into_iter().find(|n| {
            [".csproj", ".fsproj", ".sln"].iter().any(|e| n.ends_with(e)) && app.includes_file(n)
        })?;
    Some(Foreign { language: ".NET", found: csproj, example: GENERIC })
}

/// The command of the `web:` line of the app's `Procfile`, if it has one.
pub fn procfile_web(app: &AppFiles) -> Option<String> {
    let text = app.read_to_string("Procfile").ok()?;
    parse_procfile_web(&text)
}

/// The command of the `web:` process in a `Procfile`'s text.
pub fn parse_procfile_web(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, command) = line.split_once(':')?;
        (name.trim() == "web").then(|| command.trim().to_string()).filter(|c| !c.is_empty())
    })
}

/// Whether a command starts a Ruby server.
fn runs_ruby(command: &str) -> bool {
    let first = command.split_whitespace().next().unwrap_or("");
    ["bundle", "rails", "puma", "rackup", "ruby", "bin/rails", "unicorn", "thin"].contains(&first)
}

/// The refusal for an app in a language no builder handles. `weak` is the
/// builder whose weak claim the language outweighed and what it saw, if any.
pub fn foreign_message(foreign: &Foreign, weak: Option<(&str, &str)>, builders: &[String]) -> String {
    let Foreign { language, found, example } = foreign;
    let also = match weak {
        Some(("node", _)) => " and a package.json with no start script or main file, which looks like the \
                              build of its front-end assets rather than the app"
            .to_string(),
        Some(("static", why)) => format!(" and a static site ({why}), which looks like files the app serves"),
        Some((name, why)) => format!(" and what the {name} builder recognises ({why})"),
        None => String::new(),
    };
    let or_lang = match weak {
        Some((name, _)) => format!(
            "if the {name} part is the app, set lang = \"{name}\" in [config] (and `run` if it cannot be inferred)"
        ),
        None => format!("if this is not a {language} app, set `lang` in [config] to one of: {}", builders.join(", ")),
    };
    format!(
        "found {found}: a {language} app{also}; Kraken has no {language} builder. \
         Add a Dockerfile at the root of the app (it is used as written), for example:\n\n{example}\n\n\
         or, {or_lang}"
    )
}

/// The refusal when nothing recognisable was found: what is there, what was
/// looked for, and what to do.
pub fn not_detected_message(app: &AppFiles, looked_for: &[String], builders: &[String]) -> String {
    let entries = app.list_root().unwrap_or_default();
    let shown: Vec<&str> = entries.iter().map(String::as_str).filter(|n| *n != ".git").take(12).collect();
    let found = if shown.is_empty() {
        "the app's folder is empty".to_string()
    } else {
        let more = if entries.len() > shown.len() + 1 { ", …" } else { "" };
        format!("found only {}{more}", shown.join(", "))
    };
    format!(
        "{found}: nothing a builder recognises. Looked for: {}. \
         Add the file your kind of app is missing, or a Dockerfile, or set `lang` in [config] to one of: {}",
        looked_for.join("; "),
        builders.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::app;
    use super::*;

    fn foreign(files: &[(&str, &str)]) -> Option<Foreign> {
        let dir = app(files);
        foreign_language(&AppFiles::new(dir.path()))
    }

    #[test]
    fn each_marker_names_its_language() {
        for (file, language, _) in MARKERS {
            let f = foreign(&[(file, "")]).unwrap();
            assert_eq!((f.language, f.found.as_str()), (*language, *file));
            assert!(f.example.starts_with("FROM "), "{file}");
        }
        let f = foreign(&[("Api.csproj", "<Project/>")]).unwrap();
        assert_eq!((f.language, f.found.as_str()), (".NET", "Api.csproj"));
        assert_eq!(foreign(&[("package.json", "{}"), ("index.html", "")]), None);
    }

    #[test]
    fn laravel_and_ruby_evidence_is_named() {
        let f = foreign(&[("composer.json", "{}"), ("artisan", ""), ("package.json", "{}")]).unwrap();
        assert_eq!((f.language, f.found.as_str()), ("PHP (Laravel)", "composer.json and artisan"));
        let f = foreign(&[
            ("Gemfile", ""),
            ("config.ru", ""),
            ("config/application.rb", ""),
            ("Procfile", "web: bundle exec puma -C config/puma.rb\nworker: bundle exec sidekiq\n"),
        ])
        .unwrap();
        assert_eq!(f.language, "Ruby (Rails)");
        assert_eq!(f.found, "Gemfile and config.ru and a Procfile whose web process runs Ruby");
    }

    #[test]
    fn procfile_web_line() {
        assert_eq!(
            parse_procfile_web("release: x\nweb: node server.js\n").as_deref(),
            Some("node server.js")
        );
        assert_eq!(
            parse_procfile_web(" web :  gunicorn app:app --log-file -").as_deref(),
            Some("gunicorn app:app --log-file -")
        );
        assert_eq!(parse_procfile_web("worker: x\nweb:\n"), None);
        assert_eq!(parse_procfile_web("webby: x"), None);
    }

    #[test]
    fn foreign_messages_say_what_was_found_and_what_to_do() {
        let builders = vec!["node".to_string(), "python".to_string()];
        let go = Foreign { language: "Go", found: "go.mod".into(), example: GO };
        assert_eq!(
            foreign_message(&go, None, &builders),
            format!(
                "found go.mod: a Go app; Kraken has no Go builder. Add a Dockerfile at the root of the app \
                 (it is used as written), for example:\n\n{GO}\n\nor, if this is not a Go app, set `lang` \
                 in [config] to one of: node, python"
            )
        );
        let php =
            Foreign { language: "PHP (Laravel)", found: "composer.json and artisan".into(), example: PHP };
        let m = foreign_message(&php, Some(("node", "package.json found at the root")), &builders);
        assert!(m.starts_with("found composer.json and artisan: a PHP (Laravel) app and a package.json with no start script or main file"), "{m}");
        assert!(m.contains("Kraken has no PHP (Laravel) builder"), "{m}");
        assert!(m.contains("FROM php:8.3-apache"), "{m}");
        assert!(m.ends_with("or, if the node part is the app, set lang = \"node\" in [config] (and `run` if it cannot be inferred)"), "{m}");
        let m = foreign_message(&go, Some(("static", "index.html found in public/")), &builders);
        assert!(m.contains("a Go app and a static site (index.html found in public/), which looks like files the app serves"), "{m}");
    }

    #[test]
    fn not_detected_lists_what_is_there() {
        let dir = app(&[("README.md", "hi"), ("notes.txt", "")]);
        let m = not_detected_message(
            &AppFiles::new(dir.path()),
            &["node (package.json)".to_string()],
            &["node".to_string(), "static".to_string()],
        );
        assert_eq!(
            m,
            "found only README.md, notes.txt: nothing a builder recognises. Looked for: node (package.json). \
             Add the file your kind of app is missing, or a Dockerfile, or set `lang` in [config] to one of: node, static"
        );
        let empty = app(&[]);
        let m = not_detected_message(&AppFiles::new(empty.path()), &[], &[]);
        assert!(m.starts_with("the app's folder is empty"), "{m}");
    }
}
