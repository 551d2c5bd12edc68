//! Property tests for `shipwreck.toml` parsing: whatever the input, parsing
//! returns a manifest or an error whose line and column point inside the text.

#![allow(clippy::unwrap_used)]

use kraken_lib::shipwreck::{Manifest, ShipwreckError, FILE_NAME};
use proptest::prelude::*;

fn langs() -> Vec<String> {
    ["dockerfile", "node", "python", "static", "python3.6"].iter().map(|s| s.to_string()).collect()
}

/// Asserts the error's position is a real place in `text`: the line exists
/// (counting the empty line after a final newline) and the column is at most
/// one past that line's last character.
fn assert_points_into(text: &str, e: &ShipwreckError) {
    assert_eq!(e.file, FILE_NAME);
    assert!(e.line >= 1 && e.column >= 1, "{e}");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(e.line <= lines.len(), "line {} of {} in {text:?}: {e}", e.line, lines.len());
    let width = lines[e.line - 1].chars().count();
    assert!(e.column <= width + 1, "column {} of {width} in {text:?}: {e}", e.column);
    assert!(!e.message.is_empty());
}

fn check(text: &str) {
    match Manifest::parse(FILE_NAME, text, &langs()) {
        Ok(m) => {
            assert!(m.config.port >= 1);
            assert!(!m.app.name.is_empty() && m.app.name.len() <= 63);
        }
        Err(e) => assert_points_into(text, &e),
    }
}

/// Values that are sometimes right and sometimes wrong for any key.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        (1u16..=65535).prop_map(|n| n.to_string()),
        Just("true".to_string()),
        Just("1.5".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ A = \"b\" }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"../x\"".to_string()),
        Just("\"/\"".to_string()),
        Just("{ \"1x\" = 2 }".to_string()),
    ]
}

/// Keys: the valid ones, near misses, and odd ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "version",
            "author",
            "endpoint",
            "port",
            "lang",
            "run",
            "test",
            "dockerfile",
            "env",
            "prot",
            "nmae",
            "env.A",
            "env.1",
            "\"quoted key\"",
            "a.b.c",
        ])
        .prop_map(str::to_string),
        "[A-Za-z_][A-Za-z0-9_-]{0,6}",
    ]
}

/// A manifest close to a valid one: some lines kept, some changed, some dropped.
fn near_valid() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        prop::sample::select(vec!["[app]", "[config]", "[config.env]", "[[app]]", "[other]", "# note", ""])
            .prop_map(str::to_string),
        Just("name = \"demo\"".to_string()),
        Just("port = 8080".to_string()),
        Just("run = \"node server.js\"".to_string()),
    ];
    (prop::collection::vec(line, 0..12), any::<bool>()).prop_map(|(lines, crlf)| {
        let mut text = String::from("[app]\n");
        for l in lines {
            text.push_str(&l);
            text.push_str(if crlf { "\r\n" } else { "\n" });
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn near_valid_manifests_never_panic(text in near_valid()) {
        check(&text);
    }

    #[test]
    fn valid_manifests_parse(name in "[a-z][a-z0-9-]{0,20}[a-z0-9]", port in 1u16..=65535, run in "[ -~]{1,30}") {
        prop_assume!(!run.trim().is_empty());
        let text = format!("[app]\nname = {name:?}\n\n[config]\nport = {port}\nrun = {run:?}\n");
        let m = Manifest::parse(FILE_NAME, &text, &langs()).unwrap();
        prop_assert_eq!(m.app.name, name);
        prop_assert_eq!(m.config.port, port);
        prop_assert_eq!(m.config.run.as_deref(), Some(run.as_str()));
    }

    #[test]
    fn out_of_range_ports_point_at_the_value(port in prop_oneof![i64::MIN..=0, 65536..=i64::MAX]) {
        let text = format!("[app]\nname = \"demo\"\n[config]\nport = {port}\n");
        let e = Manifest::parse(FILE_NAME, &text, &langs()).unwrap_err();
        prop_assert_eq!((e.line, e.column), (4, 8));
        prop_assert_eq!(e.key.as_deref(), Some("config.port"));
    }
}
