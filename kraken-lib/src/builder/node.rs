//! The `node` builder: a Node.js app with a `package.json` at its root.
//!
//! The plan copies the app to `/app`, runs `npm install --omit=dev` only when
//! `package.json` declares dependencies, and starts the app with `config.run`.

use super::{
    env_instructions, required_run, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan, Builder,
};
use crate::shipwreck::Manifest;

/// Builds Node.js apps on the base image configured under `node`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeBuilder;

/// Whether `package.json` declares at least one runtime dependency.
fn has_dependencies(package: &serde_json::Value) -> Result<bool, BuildError> {
    match package.get("dependencies") {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Object(deps)) => Ok(!deps.is_empty()),
        Some(other) => Err(BuildError::Invalid(format!(
            "package.json: `dependencies` should be an object of \"name\": \"version\" pairs, found {other}"
        ))),
    }
}

impl Builder for NodeBuilder {
    fn name(&self) -> &str {
        "node"
    }

    fn description(&self) -> &str {
        "a Node.js app with a package.json at the root"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-node-app\"\n\n[config]\nport = 3000\nlang = \"node\"\nrun = \"node server.js\"\n"
            .to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        app.includes_file("package.json").then(|| "package.json found at the root".to_string())
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let image = images.require("node")?;
        let run = required_run(manifest, "node", "node server.js")?;
        let install = if app.includes_file("package.json") {
            has_dependencies(&app.read_json("package.json")?)?
        } else {
            false
        };
        let mut dockerfile = format!("FROM {image}\nWORKDIR /app\nCOPY . /app\n");
        if install {
            dockerfile.push_str("RUN npm install --omit=dev\n");
        }
        dockerfile.push_str("ENV NODE_ENV=\"production\"\n");
        dockerfile.push_str(&env_instructions(manifest)?);
        dockerfile.push_str(&format!("EXPOSE {}\n{}\n", manifest.config.port, shell_cmd(run)));
        Ok(BuildPlan { builder: self.name().to_string(), context_dir: app.root().to_path_buf(), dockerfile })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{app, manifest};
    use super::*;

    fn images() -> BaseImages {
        let mut images = BaseImages::uniform("other:1");
        images.set("node", "local/node:18");
        images
    }

    fn plan(files: &[(&str, &str)], run: Option<&str>) -> Result<BuildPlan, BuildError> {
        let dir = app(files);
        let mut m = manifest(3000, Some("node"), run);
        m.config.env.insert("GREETING".into(), "hi \"there\"".into());
        let plan = NodeBuilder.plan(&AppFiles::new(dir.path()), &m, &images());
        if let Ok(p) = &plan {
            assert_eq!(p.context_dir, dir.path());
        }
        plan
    }

    #[test]
    fn plan_without_dependencies_skips_npm() {
        let p = plan(&[("package.json", r#"{"name": "a", "dependencies": {}}"#)], Some("node server.js"))
            .unwrap();
        let lines: Vec<&str> = p.dockerfile.lines().collect();
        assert_eq!(p.builder, "node");
        assert_eq!(lines[0], "FROM local/node:18");
        assert!(lines.contains(&"WORKDIR /app") && lines.contains(&"COPY . /app"), "{}", p.dockerfile);
        assert!(!p.dockerfile.contains("npm install"), "{}", p.dockerfile);
        assert!(lines.contains(&"EXPOSE 3000"), "{}", p.dockerfile);
        assert!(lines.contains(&"ENV PORT=\"3000\""), "{}", p.dockerfile);
        assert!(lines.contains(&r#"ENV GREETING="hi \"there\"""#), "{}", p.dockerfile);
        assert_eq!(lines.last(), Some(&r#"CMD ["sh","-c","node server.js"]"#));
    }

    #[test]
    fn plan_with_dependencies_installs_them() {
        let p =
            plan(&[("package.json", r#"{"dependencies": {"express": "^4"}}"#)], Some("node s.js")).unwrap();
        let lines: Vec<&str> = p.dockerfile.lines().collect();
        let install = lines.iter().position(|l| *l == "RUN npm install --omit=dev").expect("install line");
        let copy = lines.iter().position(|l| *l == "COPY . /app").expect("copy line");
        assert!(copy < install);
    }

    #[test]
    fn run_with_quotes_is_escaped() {
        let p = plan(&[("package.json", "{}")], Some(r#"node -e "console.log('up')""#)).unwrap();
        assert!(
            p.dockerfile.ends_with("CMD [\"sh\",\"-c\",\"node -e \\\"console.log('up')\\\"\"]\n"),
            "{}",
            p.dockerfile
        );
    }

    #[test]
    fn missing_run_is_explained() {
        let err = plan(&[("package.json", "{}")], None).unwrap_err();
        assert!(err.to_string().contains("`config.run` is missing; the node builder"), "{err}");
    }

    #[test]
    fn bad_package_json_is_reported() {
        let err = plan(&[("package.json", "{ oops")], Some("node s.js")).unwrap_err();
        assert!(err.to_string().starts_with("package.json:1:3: not valid JSON"), "{err}");
        let err = plan(&[("package.json", r#"{"dependencies": ["x"]}"#)], Some("node s.js")).unwrap_err();
        assert!(err.to_string().contains("`dependencies` should be an object"), "{err}");
    }
}
