#![allow(clippy::unwrap_used)]

use super::*;

fn langs() -> Vec<String> {
    ["dockerfile", "node", "python", "static", "python3.6"].iter().map(|s| s.to_string()).collect()
}

fn parse(text: &str) -> Result<Manifest, ShipwreckError> {
    Manifest::parse(FILE_NAME, text, &langs())
}

fn err(text: &str) -> ShipwreckError {
    match parse(text) {
        Ok(m) => panic!("expected an error, got {m:?}"),
        Err(e) => e,
    }
}

const VALID_HEAD: &str = "[app]\nname = \"demo\"\n\n[config]\n";

#[test]
fn full_valid_manifest() {
    let text = r#"
# A full manifest
[app]
name = "hello-api"
version = "1.2.0"
author = "Ada"
endpoint = "/api/health"

[config]
port = 8080
lang = "python"
run = "python3 app.py"
test = "python3 -m unittest"
dockerfile = "docker/Dockerfile"

[config.env]
GREETING = "hello \"world\""
_DEBUG = "1"
"#;
    let m = parse(text).unwrap();
    assert_eq!(m.app.name, "hello-api");
    assert_eq!(m.app.version.as_deref(), Some("1.2.0"));
    assert_eq!(m.app.author.as_deref(), Some("Ada"));
    assert_eq!(m.app.endpoint.as_deref(), Some("/api/health"));
    assert_eq!(m.config.port, 8080);
    assert_eq!(m.config.lang.as_deref(), Some("python"));
    assert_eq!(m.config.run.as_deref(), Some("python3 app.py"));
    assert_eq!(m.config.test.as_deref(), Some("python3 -m unittest"));
    assert_eq!(m.config.dockerfile.as_deref(), Some("docker/Dockerfile"));
    let env: Vec<(&str, &str)> = m.config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, vec![("GREETING", "hello \"world\""), ("_DEBUG", "1")]);
}

#[test]
fn minimal_manifest_has_empty_optionals() {
    let m = parse("[app]\nname = \"a\"\n[config]\nport = 1\n").unwrap();
    assert_eq!(m.app.name, "a");
    assert_eq!(m.config.port, 1);
    assert!(m.app.version.is_none() && m.config.lang.is_none() && m.config.run.is_none());
    assert!(m.config.env.is_empty());
}

#[test]
fn inline_and_dotted_tables_are_accepted() {
    let m = parse("app = { name = \"x1\" }\nconfig.port = 65535\nconfig.env.A = \"b\"\n").unwrap();
    assert_eq!(m.app.name, "x1");
    assert_eq!(m.config.port, 65535);
    assert_eq!(m.config.env.get("A").map(String::as_str), Some("b"));
}

#[test]
fn display_format_matches_the_documented_one() {
    let e = err("[app]\nname = \"demo\"\n[config]\nport = 70000\n");
    assert_eq!(
        e.to_string(),
        "shipwreck.toml:4:8: `config.port`: 70000 is outside 1–65535; use a port between 1 and 65535"
    );
}

#[test]
fn invalid_toml_reports_position() {
    let e = err("[app]\nname = \"demo\n[config]\n");
    assert_eq!(e.line, 2);
    assert!(e.column >= 1);
    assert!(e.key.is_none());
    assert!(e.message.contains("not valid TOML"), "{}", e.message);
    let e = err("[app]\nname = demo\n");
    assert_eq!((e.line, e.column), (2, 8));
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let e = err("[app]\nname = \"a\"\nname = \"b\"\n[config]\nport = 1\n");
    assert_eq!(e.line, 3);
}

#[test]
fn unknown_table_is_refused_with_the_valid_ones() {
    let e = err("[app]\nname = \"demo\"\n[config]\nport = 80\n[build]\nx = 1\n");
    assert_eq!(e.key.as_deref(), Some("build"));
    assert_eq!(e.line, 5);
    assert!(e.message.contains("[app] and [config]"), "{}", e.message);
    let e = err("[ap]\nname = \"demo\"\n[config]\nport = 80\n");
    assert!(e.message.contains("did you mean [app]"), "{}", e.message);
}

#[test]
fn top_level_key_is_pointed_to_its_table() {
    let e = err("port = 80\n[app]\nname = \"demo\"\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("put it under [config]"), "{}", e.message);
}

#[test]
fn unknown_key_suggests_nearest() {
    let e = err(&format!("{VALID_HEAD}prot = 80\n"));
    assert_eq!(e.key.as_deref(), Some("config.prot"));
    assert_eq!((e.line, e.column), (5, 1));
    assert!(e.message.contains("did you mean `port`"), "{}", e.message);
    assert!(e.message.contains("port, lang, run, test, dockerfile, root, health, env"), "{}", e.message);
    let e = err("[app]\nname = \"demo\"\nfoo = 1\n[config]\nport = 80\n");
    assert_eq!(e.key.as_deref(), Some("app.foo"));
    assert!(!e.message.contains("did you mean"), "{}", e.message);
    assert!(e.message.contains("name, version, author, endpoint"), "{}", e.message);
}

#[test]
fn key_in_the_wrong_table_is_pointed_to_the_right_one() {
    let e = err("[app]\nname = \"demo\"\nport = 80\n[config]\nport = 80\n");
    assert_eq!(e.key.as_deref(), Some("app.port"));
    assert!(e.message.contains("belongs in [config]"), "{}", e.message);
}

#[test]
fn missing_tables_and_keys() {
    let e = err("");
    assert_eq!((e.line, e.column, e.key.as_deref()), (1, 1, Some("app")));
    let e = err("[app]\nname = \"demo\"\n");
    assert_eq!(e.key.as_deref(), Some("config"));
    assert!(e.message.contains("[config] table is missing"), "{}", e.message);
    let e = err("\n[app]\nversion = \"1\"\n[config]\nport = 80\n");
    assert_eq!((e.line, e.column, e.key.as_deref()), (2, 1, Some("app.name")));
    let e = err("[app]\nname = \"demo\"\n\n[config]\nrun = \"x\"\n");
    assert_eq!((e.line, e.column, e.key.as_deref()), (4, 1, Some("config.port")));
    assert!(e.message.contains("port = 8080"), "{}", e.message);
}

#[test]
fn wrong_types_say_expected_and_found() {
    let e = err(&format!("{VALID_HEAD}port = \"8080\"\n"));
    assert_eq!((e.line, e.column), (5, 8));
    assert!(e.message.contains("expected an integer, found the string \"8080\""), "{}", e.message);
    assert!(e.message.contains("port = 8080"), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80.5\n"));
    assert!(e.message.contains("found a float"), "{}", e.message);
    let e = err("[app]\nname = 42\n[config]\nport = 80\n");
    assert_eq!(e.key.as_deref(), Some("app.name"));
    assert!(e.message.contains("expected a string, found an integer (42)"), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80\nrun = [\"a\"]\n"));
    assert!(e.message.contains("found an array"), "{}", e.message);
    let e = err("app = 3\n[config]\nport = 80\n");
    assert!(e.message.contains("expected a table [app], found an integer (3)"), "{}", e.message);
    let e = err("[[app]]\nname = \"a\"\n[config]\nport = 80\n");
    assert!(e.message.contains("found an array of tables"), "{}", e.message);
}

#[test]
fn port_range() {
    for bad in ["0", "-1", "65536", "9999999999"] {
        let e = err(&format!("{VALID_HEAD}port = {bad}\n"));
        assert_eq!(e.key.as_deref(), Some("config.port"));
        assert!(e.message.contains("outside 1–65535"), "{bad}: {}", e.message);
        assert_eq!((e.line, e.column), (5, 8));
    }
    assert_eq!(parse(&format!("{VALID_HEAD}port = 65535\n")).unwrap().config.port, 65535);
}

#[test]
fn bad_names() {
    for bad in ["", "My-App", "1app", "app-", "a_b", "a.b", &"a".repeat(64), "héllo"] {
        let e = err(&format!("[app]\nname = {bad:?}\n[config]\nport = 80\n"));
        assert_eq!(e.key.as_deref(), Some("app.name"), "{bad}");
        assert_eq!((e.line, e.column), (2, 8), "{bad}");
        assert!(e.message.contains("lowercase letters"), "{bad}: {}", e.message);
    }
    let e = err("[app]\nname = \"My App\"\n[config]\nport = 80\n");
    assert!(e.message.contains("e.g. \"my-app\""), "{}", e.message);
    assert!(parse(&format!("[app]\nname = {:?}\n[config]\nport = 80\n", "a".repeat(63))).is_ok());
}

/// The example of Kraken's original documentation, exactly as written.
pub(crate) const ORIGINAL_FORMAT: &str = "[app]\nname=\"scapenode\"\nversion=\"1.0.0\"\nauthor=\"Ethan Shry\"\nendpoint=\"https://github.com/ethanshry/scapenode\"\n\n[config]\nport=7211\nlang=\"node\"\nrun=\"npm start\"\n";

#[test]
fn the_original_format_validates_as_written() {
    let m = parse(ORIGINAL_FORMAT).unwrap();
    assert_eq!(m.app.name, "scapenode");
    assert_eq!(m.app.version.as_deref(), Some("1.0.0"));
    assert_eq!(m.app.author.as_deref(), Some("Ethan Shry"));
    assert_eq!(m.app.endpoint.as_deref(), Some("https://github.com/ethanshry/scapenode"));
    assert_eq!(
        (m.config.port, m.config.lang.as_deref(), m.config.run.as_deref()),
        (7211, Some("node"), Some("npm start"))
    );
    assert_eq!((m.config.root.as_deref(), m.config.health.as_deref()), (None, None));
}

#[test]
fn endpoint_is_free_metadata() {
    for any in ["health", "/", "https://example.org/x y", "mailto:a@b", "javascript:alert(1)", ""] {
        let m = parse(&format!("[app]\nname = \"demo\"\nendpoint = {any:?}\n[config]\nport = 80\n")).unwrap();
        assert_eq!(m.app.endpoint.as_deref(), Some(any));
    }
    let e = err("[app]\nname = \"demo\"\nendpoint = 3\n[config]\nport = 80\n");
    assert!(e.message.contains("expected a string"), "{}", e.message);
}

#[test]
fn health_must_be_a_path() {
    let m = parse(&format!("{VALID_HEAD}port = 80\nhealth = \"/api/health\"\n")).unwrap();
    assert_eq!(m.config.health.as_deref(), Some("/api/health"));
    for bad in ["health", "https://x/y", "/a b", ""] {
        let e = err(&format!("{VALID_HEAD}port = 80\nhealth = {bad:?}\n"));
        assert_eq!(e.key.as_deref(), Some("config.health"), "{bad}");
        assert_eq!((e.line, e.column), (6, 10), "{bad}");
        assert!(
            e.message.contains("starts with '/'") && e.message.contains("\"/api/health\""),
            "{bad}: {}",
            e.message
        );
    }
}

#[test]
fn root_stays_in_the_repository() {
    for good in ["apps/web", "./api", "services/api/", ".", "a/../b"] {
        let m = parse(&format!("{VALID_HEAD}port = 80\nroot = {good:?}\n")).unwrap();
        assert_eq!(m.config.root.as_deref(), Some(good));
    }
    for (bad, why) in [
        ("../other", "leaves the repository through `..`"),
        ("a/../../b", "leaves the repository through `..`"),
        ("/srv/app", "is an absolute path"),
        ("", "is empty"),
    ] {
        let e = err(&format!("{VALID_HEAD}port = 80\nroot = {bad:?}\n"));
        assert_eq!(e.key.as_deref(), Some("config.root"), "{bad}");
        assert_eq!((e.line, e.column), (6, 8), "{bad}");
        assert!(e.message.contains(why), "{bad}: {}", e.message);
        assert!(
            e.message.contains("relative to the repository root, e.g. \"apps/web\""),
            "{bad}: {}",
            e.message
        );
    }
}

#[test]
fn unknown_lang_lists_known_ones() {
    let e = err(&format!("{VALID_HEAD}port = 80\nlang = \"pyhton\"\n"));
    assert_eq!(e.key.as_deref(), Some("config.lang"));
    assert_eq!((e.line, e.column), (6, 8));
    assert!(e.message.contains("did you mean \"python\""), "{}", e.message);
    assert!(e.message.contains("dockerfile, node, python, static, python3.6"), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80\nlang = \"cobol\"\n"));
    assert!(!e.message.contains("did you mean"), "{}", e.message);
    // With no list of builders, any lang is left to the registry.
    let m = Manifest::parse(FILE_NAME, &format!("{VALID_HEAD}port = 80\nlang = \"cobol\"\n"), &[]).unwrap();
    assert_eq!(m.config.lang.as_deref(), Some("cobol"));
}

#[test]
fn blank_commands_are_refused() {
    let e = err(&format!("{VALID_HEAD}port = 80\nrun = \"  \"\n"));
    assert_eq!(e.key.as_deref(), Some("config.run"));
    let e = err(&format!("{VALID_HEAD}port = 80\ntest = \"\"\n"));
    assert_eq!(e.key.as_deref(), Some("config.test"));
}

#[test]
fn dockerfile_must_stay_in_the_repository() {
    for bad in ["", "/etc/Dockerfile", "../Dockerfile", "a/../../Dockerfile", ".", "a/..", "C:\\Dockerfile"] {
        let e = err(&format!("{VALID_HEAD}port = 80\ndockerfile = {bad:?}\n"));
        assert_eq!(e.key.as_deref(), Some("config.dockerfile"), "{bad}");
        assert_eq!((e.line, e.column), (6, 14), "{bad}");
        assert!(e.message.contains("relative to the repository root"), "{bad}: {}", e.message);
    }
    for good in ["Dockerfile", "./docker/Dockerfile", "a/../Dockerfile.prod"] {
        assert!(parse(&format!("{VALID_HEAD}port = 80\ndockerfile = {good:?}\n")).is_ok(), "{good}");
    }
}

#[test]
fn env_names_and_values_are_checked() {
    let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\n1BAD = \"x\"\n"));
    assert_eq!(e.key.as_deref(), Some("config.env.1BAD"));
    assert_eq!((e.line, e.column), (7, 1));
    assert!(e.message.contains("not a valid environment variable name"), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80\nenv = {{ \"A-B\" = \"x\" }}\n"));
    assert_eq!(e.key.as_deref(), Some("config.env.A-B"));
    let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\nDEBUG = true\n"));
    assert_eq!((e.line, e.column), (7, 9));
    assert!(e.message.contains("expected a string, found a boolean (true)"), "{}", e.message);
    assert!(e.message.contains("DEBUG = \"true\""), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80\n[config.env]\nA = \"x\\ny\"\n"));
    assert!(e.message.contains("single line"), "{}", e.message);
    let e = err(&format!("{VALID_HEAD}port = 80\nenv = \"A=B\"\n"));
    assert_eq!(e.key.as_deref(), Some("config.env"));
    assert!(e.message.contains("expected a table"), "{}", e.message);
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = err("[app]\nauthor = \"é\"; name = \"x\"\n");
    assert_eq!(e.line, 2);
    // `;` is the 13th character of the line but starts at its 14th byte.
    assert_eq!(e.column, 13);
}

#[test]
fn helpers() {
    assert!(is_valid_env_name("_A1") && !is_valid_env_name("") && !is_valid_env_name("A B"));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("ab", 99), (1, 3));
    assert_eq!(suggest_app_name("--My_App 2--").as_deref(), Some("my-app-2"));
    assert_eq!(edit_distance("prot", "port"), 2);
}
