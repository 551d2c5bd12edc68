//! Writing Dockerfile instructions safely: `ENV` values escaped, `CMD` and
//! `COPY` in their JSON forms, and the manifest's `run` read with a message
//! that says what to write. The built-in builders write their Dockerfiles
//! with these, and builders of other languages can too.

use super::BuildError;
use crate::shipwreck::Manifest;

/// The `ENV` instructions for an app: each `config.env` entry, then `PORT` set
/// to `config.port` (last, so the app always sees the port Kraken publishes).
///
/// # Errors
/// [`BuildError::Invalid`] for a name that is not `[A-Za-z_][A-Za-z0-9_]*` or a
/// value with a line break or NUL (a manifest from [`Manifest::parse`] has none).
pub fn env_instructions(manifest: &Manifest) -> Result<String, BuildError> {
    let mut out = String::new();
    for (name, value) in &manifest.config.env {
        if name == "PORT" {
            continue;
        }
        out.push_str(&env_instruction(name, value)?);
        out.push('\n');
    }
    out.push_str(&env_instruction("PORT", &manifest.config.port.to_string())?);
    out.push('\n');
    Ok(out)
}

/// One `ENV name="value"` instruction, with `\`, `"` and `$` escaped so the
/// value reaches the container exactly as written.
///
/// # Errors
/// [`BuildError::Invalid`] for a bad name or a value with a line break or NUL.
pub fn env_instruction(name: &str, value: &str) -> Result<String, BuildError> {
    if !crate::shipwreck::is_valid_env_name(name) {
        return Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.env.{name}` is not a valid environment variable name; \
             use letters, digits and '_', not starting with a digit"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.env.{name}` has a line break or NUL; environment values must be one line"
        )));
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(format!("ENV {name}=\"{escaped}\""))
}

/// A `CMD` instruction in exec form that runs `command` with `sh -c`, the
/// command JSON-escaped (so quotes, backslashes and line breaks survive).
pub fn shell_cmd(command: &str) -> String {
    let args = serde_json::json!(["sh", "-c", command]);
    format!("CMD {args}")
}

/// A `COPY` instruction in JSON form (names with spaces or quotes survive):
/// `sources` (relative to the context) into `dest`.
pub fn copy_instruction(sources: &[&str], dest: &str) -> String {
    let mut args: Vec<&str> = sources.to_vec();
    args.push(dest);
    format!("COPY {}", serde_json::json!(args))
}

/// The manifest's `config.run`, or an error saying the builder needs it.
/// `example` is a typical command, e.g. `node server.js`.
///
/// # Errors
/// [`BuildError::Invalid`] when `run` is missing or blank.
pub fn required_run<'m>(manifest: &'m Manifest, builder: &str, example: &str) -> Result<&'m str, BuildError> {
    match manifest.config.run.as_deref() {
        Some(run) if !run.trim().is_empty() => Ok(run),
        _ => Err(BuildError::Invalid(format!(
            "shipwreck.toml: `config.run` is missing; the {builder} builder needs the command that starts the app, \
             e.g. run = {example:?}"
        ))),
    }
}

/// The manifest's `config.run` when it is given and not blank.
pub fn given_run(manifest: &Manifest) -> Option<&str> {
    manifest.config.run.as_deref().filter(|r| !r.trim().is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::manifest;
    use super::*;

    #[test]
    fn env_instructions_escape_and_end_with_port() {
        let mut m = manifest(8080, None, None);
        m.config.env.insert("GREETING".into(), r#"say "hi" \ $HOME"#.into());
        m.config.env.insert("PORT".into(), "1".into());
        let text = env_instructions(&m).unwrap();
        assert_eq!(text, "ENV GREETING=\"say \\\"hi\\\" \\\\ \\$HOME\"\nENV PORT=\"8080\"\n");
        m.config.env.insert("BAD NAME".into(), "x".into());
        assert!(matches!(env_instructions(&m), Err(BuildError::Invalid(_))));
        assert!(env_instruction("A", "two\nlines").is_err());
    }

    #[test]
    fn shell_cmd_is_json() {
        let cmd = shell_cmd("echo \"a\\b\"\nnext");
        assert_eq!(cmd, r#"CMD ["sh","-c","echo \"a\\b\"\nnext"]"#);
        let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
        assert_eq!(args, ["sh", "-c", "echo \"a\\b\"\nnext"]);
    }

    #[test]
    fn copy_is_json() {
        assert_eq!(
            copy_instruction(&["package.json", "my \"lock\""], "./"),
            r#"COPY ["package.json","my \"lock\"","./"]"#
        );
    }

    #[test]
    fn required_run_message() {
        let err = required_run(&manifest(80, None, None), "node", "node server.js").unwrap_err();
        assert_eq!(
            err.to_string(),
            "shipwreck.toml: `config.run` is missing; the node builder needs the command that starts the app, \
             e.g. run = \"node server.js\""
        );
        assert_eq!(required_run(&manifest(80, None, Some("go")), "node", "x").unwrap(), "go");
        assert_eq!(given_run(&manifest(80, None, Some("  "))), None);
    }
}
