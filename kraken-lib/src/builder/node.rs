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
