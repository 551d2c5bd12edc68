//! The Node.js major version an app asks for: `engines.node` in
//! `package.json`, else `.nvmrc`, else `.node-version`; none means the
//! configured default. A range picks the default when it allows it, else the
//! newest known major it allows.

use nodejs_semver::Range;

use super::super::{AppFiles, BuildError};

/// The Node.js majors Kraken builds on (the official images' lines).
pub const KNOWN_MAJORS: &[u64] = &[18, 20, 22, 24];

/// The LTS code names `.nvmrc` may use, with their majors.
const LTS_NAMES: &[(&str, u64)] = &[
    ("argon", 4),
    ("boron", 6),
    ("carbon", 8),
    ("dubnium", 10),
    ("erbium", 12),
    ("fermium", 14),
    ("gallium", 16),
    ("hydrogen", 18),
    ("iron", 20),
    ("jod", 22),
    ("krypton", 24),
];

/// The version chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// The major, e.g. `"20"`.
    pub major: String,
    /// Why, for people.
    pub reason: String,
}

/// The Node.js major for the app; `default` is the configured default major.
///
/// # Errors
/// [`BuildError::Invalid`] when a pin is not a version or range, or allows
/// none of the [`KNOWN_MAJORS`].
pub fn node_version(
    app: &AppFiles,
    package: &serde_json::Value,
    default: &str,
) -> Result<NodeVersion, BuildError> {
    let mut pins: Vec<(String, String)> = Vec::new();
    if let Some(engines) = package.get("engines").and_then(|e| e.get("node")) {
        match engines.as_str() {
            Some(text) => pins.push(("engines.node in package.json".to_string(), text.trim().to_string())),
            None => {
                return Err(BuildError::Invalid(format!(
                    "package.json: `engines.node` should be a version range string such as \">=18\", found {engines}"
                )))
            }
        }
    }
    for file in [".nvmrc", ".node-version"] {
        if app.includes_file(file) {
            let text = app.read_to_string(file)?;
            let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
            if let Some(first) = first {
                pins.push((file.to_string(), first.to_string()));
            }
        }
    }
    let default_major: u64 = default.trim_start_matches('v').parse().unwrap_or(22);
    let Some((source, request)) = pins.into_iter().next() else {
        return Ok(NodeVersion {
            major: default_major.to_string(),
            reason: format!(
                "no Node.js version pinned (engines.node, .nvmrc, .node-version): the default, Node {default_major}"
            ),
        });
    };
    let major = choose_major(&request, default_major)
        .map_err(|why| BuildError::Invalid(format!("{source} asks for Node {request:?}, {why}")))?;
    Ok(NodeVersion {
        major: major.to_string(),
        reason: format!("{source} asks for {request:?}: Node {major}"),
    })
}

/// The major for one request (a version, a range or an alias).
fn choose_major(request: &str, default: u64) -> Result<u64, String> {
    let known = || KNOWN_MAJORS.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let lower = request.trim().to_lowercase();
    let newest = KNOWN_MAJORS.iter().copied().max().unwrap_or(default);
    match lower.as_str() {
        "lts/*" | "lts" | "" => return Ok(default),
        "node" | "latest" | "current" | "stable" => return Ok(newest),
        _ => {}
    }
    if let Some(name) = lower.strip_prefix("lts/") {
        let Some((_, major)) = LTS_NAMES.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "an LTS line Kraken does not know; use a major version such as \"{default}\""
            ));
        };
        return if KNOWN_MAJORS.contains(major) {
            Ok(*major)
        } else {
            Err(format!("which is Node {major}; Kraken builds on Node {}; pin one of those", known()))
        };
    }
    let range = Range::parse(lower.trim_start_matches('v')).map_err(|_| {
        format!(
            "which is not a version or range; write e.g. \"{default}\", \">={}\" or \"{default}.x\"",
            KNOWN_MAJORS[0]
        )
    })?;
    let allows = |major: u64| Range::parse(format!("{major}.x")).is_ok_and(|line| range.allows_any(&line));
    if allows(default) {
        return Ok(default);
    }
    KNOWN_MAJORS.iter().rev().copied().find(|m| allows(*m)).ok_or_else(|| {
        format!("which allows none of the Node versions Kraken builds on ({}); pin one of those", known())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::test_support::app;
    use super::*;

    fn version(files: &[(&str, &str)]) -> Result<NodeVersion, BuildError> {
        let dir = app(files);
        let files = AppFiles::new(dir.path());
        let package = files.read_json("package.json").unwrap_or(serde_json::json!({}));
        node_version(&files, &package, "22")
    }

    #[test]
    fn ranges_pick_the_default_or_the_newest_allowed() {
        for (range, major) in [
            (">=18", "22"),
            ("^18.17", "18"),
            ("18.x", "18"),
            ("20", "20"),
            ("v20.11.1", "20"),
            ("<=20", "20"),
            ("18 || 20", "20"),
            (">=20 <23", "22"),
            ("*", "22"),
            ("^24", "24"),
        ] {
            let pkg = format!(r#"{{"engines": {{"node": "{range}"}}}}"#);
            let v = version(&[("package.json", &pkg)]).unwrap();
            assert_eq!(v.major, major, "{range}");
            assert_eq!(v.reason, format!("engines.node in package.json asks for {range:?}: Node {major}"));
        }
    }

    #[test]
    fn nvmrc_and_node_version_files() {
        let v = version(&[("package.json", "{}"), (".nvmrc", "v18.19.0\n")]).unwrap();
        assert_eq!((v.major.as_str(), v.reason.as_str()), ("18", ".nvmrc asks for \"v18.19.0\": Node 18"));
        let v = version(&[("package.json", "{}"), (".nvmrc", "lts/iron")]).unwrap();
        assert_eq!(v.major, "20");
        let v = version(&[("package.json", "{}"), (".nvmrc", "lts/*")]).unwrap();
        assert_eq!(v.major, "22");
        let v = version(&[("package.json", "{}"), (".nvmrc", "node")]).unwrap();
        assert_eq!(v.major, "24");
        let v = version(&[("package.json", "{}"), (".node-version", "20.10.0")]).unwrap();
        assert_eq!(v.reason, ".node-version asks for \"20.10.0\": Node 20");
        // engines.node comes first.
        let v = version(&[("package.json", r#"{"engines":{"node":"18.x"}}"#), (".nvmrc", "20")]).unwrap();
        assert_eq!(v.major, "18");
    }

    #[test]
    fn no_pin_is_the_default() {
        let v = version(&[("package.json", "{}")]).unwrap();
        assert_eq!(v.major, "22");
        assert_eq!(
            v.reason,
            "no Node.js version pinned (engines.node, .nvmrc, .node-version): the default, Node 22"
        );
    }

    #[test]
    fn impossible_pins_are_refused_with_what_to_write() {
        let err = version(&[("package.json", r#"{"engines":{"node":">=30"}}"#)]).unwrap_err().to_string();
        assert_eq!(
            err,
            "engines.node in package.json asks for Node \">=30\", which allows none of the Node versions Kraken \
             builds on (18, 20, 22, 24); pin one of those"
        );
        let err = version(&[("package.json", r#"{"engines":{"node":"banana"}}"#)]).unwrap_err().to_string();
        assert!(err.contains("not a version or range; write e.g. \"22\", \">=18\" or \"22.x\""), "{err}");
        let err = version(&[("package.json", "{}"), (".nvmrc", "lts/gallium")]).unwrap_err().to_string();
        assert!(err.contains("which is Node 16; Kraken builds on Node 18, 20, 22, 24"), "{err}");
        let err = version(&[("package.json", "{}"), (".nvmrc", "lts/unknown")]).unwrap_err().to_string();
        assert!(err.contains("an LTS line Kraken does not know"), "{err}");
        let err = version(&[("package.json", r#"{"engines":{"node":18}}"#)]).unwrap_err().to_string();
        assert!(err.contains("`engines.node` should be a version range string"), "{err}");
    }
}
