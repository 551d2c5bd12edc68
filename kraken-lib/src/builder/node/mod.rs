//! The `node` builder: a Node.js app with a `package.json`.
//!
//! The plan, as the best build-plan tools make it:
//! - the Node.js major from `engines.node`, `.nvmrc` or `.node-version`
//!   ([`version`]) picks the base image;
//! - the package manager from `packageManager` or the lockfile
//!   ([`package_manager`]): `npm ci`, pnpm, yarn classic or berry, bun;
//! - `package.json`, the lockfile and the manager's settings are copied and
//!   installed before the source, so a change of source only reuses the
//!   install layer (unless an install script needs the source);
//! - devDependencies are installed when a `build` script runs, then pruned;
//! - the start command is `run`, the `Procfile`'s `web:`, `scripts.start`,
//!   `main`, or a `server.js`/`index.js`/`app.js`/`main.js`;
//! - an app with a `build` script and nothing to start (a single-page app,
//!   e.g. Vite) is built and its output served as static files.

pub mod package_manager;
pub mod version;

use serde_json::Value;

use super::detect::procfile_web;
use super::static_site::StaticSiteBuilder;
use super::{
    copy_instruction, env_instructions, given_run, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan,
    Builder, Step,
};
use crate::shipwreck::Manifest;
use package_manager::{Kind, PackageManager};

/// Builds Node.js apps on the base image configured under `node`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeBuilder;

/// Files tried, in order, when `package.json` names no start script or main.
const ENTRY_FILES: &[&str] = &["server.js", "index.js", "app.js", "main.js"];

/// Settings files of the package managers, copied with `package.json`.
const SETTINGS_FILES: &[&str] = &[".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml"];

/// Lifecycle scripts that npm runs during an install (and may need the source).
const INSTALL_SCRIPTS: &[&str] = &["preinstall", "install", "postinstall", "prepare"];

/// How the app is started.
enum Start {
    /// A command in the Node.js image.
    Command(Step),
    /// The output folder of the build, served as static files.
    Static {
        /// The folder, relative to the app.
        dir: String,
        /// Why this folder.
        reason: String,
    },
}

/// `package.json`'s `scripts`, checked to be an object of strings.
fn scripts(package: &Value) -> Result<serde_json::Map<String, Value>, BuildError> {
    match package.get("scripts") {
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(Value::Object(map)) => {
            if let Some((name, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(BuildError::Invalid(format!(
                    "package.json: `scripts.{name}` should be a string with a shell command"
                )));
            }
            Ok(map.clone())
        }
        Some(other) => Err(BuildError::Invalid(format!(
            "package.json: `scripts` should be an object of \"name\": \"command\" pairs, found {other}"
        ))),
    }
}

/// The names in `package.json`'s `field` (`dependencies`, `devDependencies`).
fn dependency_names(package: &Value, field: &str) -> Result<Vec<String>, BuildError> {
    match package.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(deps)) => Ok(deps.keys().cloned().collect()),
        Some(other) => Err(BuildError::Invalid(format!(
            "package.json: `{field}` should be an object of \"name\": \"version\" pairs, found {other}"
        ))),
    }
}

/// The start command found without a build to serve: `run`, the Procfile,
/// `scripts.start`, `main`, or a usual entry file.
fn server_start(
    app: &AppFiles,
    manifest: Option<&Manifest>,
    package: &Value,
    pm: &PackageManager,
) -> Option<Step> {
    if let Some(run) = manifest.and_then(given_run) {
        return Some(Step::new(run, "`run` in shipwreck.toml"));
    }
    if let Some(web) = procfile_web(app) {
        return Some(Step::new(web, "the web process of the Procfile"));
    }
    if let Some(start) = package.pointer("/scripts/start").and_then(Value::as_str) {
        return Some(Step::new(pm.run_script("start"), format!("scripts.start in package.json ({start:?})")));
    }
    if let Some(main) = package.get("main").and_then(Value::as_str) {
        let file = main.trim_start_matches("./");
        let candidates = [file.to_string(), format!("{file}.js"), format!("{file}/index.js")];
        if let Some(found) = candidates.iter().find(|c| app.includes_file(c)) {
            return Some(Step::new(pm.node(found), format!("main in package.json names {main:?}")));
        }
    }
    let file = app.first_file(ENTRY_FILES)?;
    Some(Step::new(
        pm.node(file),
        format!("{file} found (package.json has no scripts.start and no main that exists)"),
    ))
}

/// The folder a front-end build writes, from the tools the app depends on.
fn build_output(deps: &[String]) -> (String, String) {
    const TOOLS: &[(&str, &str)] = &[
        ("react-scripts", "build"),
        ("@sveltejs/kit", "build"),
        ("next", "out"),
        ("gatsby", "public"),
        ("vite", "dist"),
        ("astro", "dist"),
        ("parcel", "dist"),
        ("@vue/cli-service", "dist"),
        ("@angular/cli", "dist"),
        ("webpack", "dist"),
    ];
    for (tool, dir) in TOOLS {
        if deps.iter().any(|d| d == tool) {
            return (dir.to_string(), format!("{tool} builds into {dir}/"));
        }
    }
    ("dist".to_string(), "no known front-end tool among the dependencies: the usual dist/".to_string())
}

/// The first word of a shell command that is not a `NAME=value` assignment.
fn first_program(command: &str) -> Option<&str> {
    command.split_whitespace().find(|w| !w.contains('='))
}

impl NodeBuilder {
    /// How to start the app, or an error saying what to add.
    fn start(
        app: &AppFiles,
        manifest: &Manifest,
        package: &Value,
        pm: &PackageManager,
        deps: &[String],
    ) -> Result<Start, BuildError> {
        if let Some(step) = server_start(app, Some(manifest), package, pm) {
            return Ok(Start::Command(step));
        }
        if package.pointer("/scripts/build").and_then(Value::as_str).is_some() {
            let (dir, why) = build_output(deps);
            return Ok(Start::Static {
                reason: format!(
                    "package.json has a build script and nothing to start (no scripts.start, no main, no {}): \
                     a single-page app, built and served as static files ({why})",
                    ENTRY_FILES.join(", ")
                ),
                dir,
            });
        }
        Err(BuildError::Invalid(format!(
            "could not tell how to start this Node.js app: package.json has no scripts.start, no main that exists \
             and no build script, there is no {} and no Procfile with a web process; add \"start\": \"node \
             server.js\" to the scripts of package.json (with the file that starts your server), or set `run` in \
             [config] of shipwreck.toml",
            ENTRY_FILES.join(", ")
        )))
    }
}

impl Builder for NodeBuilder {
    fn name(&self) -> &str {
        "node"
    }

    fn description(&self) -> &str {
        "a Node.js app with a package.json (npm, pnpm, yarn or bun; its build script runs; \
         a single-page app is served as static files)"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-node-app\"\n\n[config]\nport = 3000\nlang = \"node\"\n".to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        app.includes_file("package.json").then(|| "package.json found".to_string())
    }

    fn claim_is_weak(&self, app: &AppFiles) -> bool {
        let Ok(package) = app.read_json("package.json") else { return true };
        let Ok(pm) = PackageManager::detect(app, &package) else { return true };
        match server_start(app, app.manifest(), &package, &pm) {
            // A Procfile of another language's server says nothing for Node.js.
            Some(step) if step.reason.starts_with("the web process") => !first_program(&step.command)
                .is_some_and(|p| {
                    ["node", "npm", "npx", "yarn", "pnpm", "bun"].contains(&p) || p.ends_with(".js")
                }),
            Some(_) => false,
            None => true,
        }
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        // An app chosen by `lang = "node"` may have no package.json: nothing to
        // install then, and `run` or an entry file starts it.
        let package = if app.includes_file("package.json") {
            app.read_json("package.json")?
        } else {
            Value::Object(Default::default())
        };
        let scripts = scripts(&package)?;
        let runtime_deps = dependency_names(&package, "dependencies")?;
        let dev_deps = dependency_names(&package, "devDependencies")?;
        let all_deps: Vec<String> = runtime_deps.iter().chain(&dev_deps).cloned().collect();
        let default = images.default_version("node").unwrap_or("22").to_string();
        let version = version::node_version(app, &package, &default)?;
        let image = images.image_for("node", &version.major)?;
        let pm = PackageManager::detect(app, &package)?;
        let start = Self::start(app, manifest, &package, &pm, &all_deps)?;
        let build_script = scripts.get("build").and_then(Value::as_str);

        let why = images.version_reason("node", &image, &version.reason);
        let mut plan = BuildPlan::new(self.name(), Step::new(&image, why), app.root(), String::new());
        let mut d = format!(
            "FROM {image}{}\nWORKDIR /app\n",
            if matches!(start, Start::Static { .. }) { " AS build" } else { "" }
        );
        if let Some(setup) = pm.setup().filter(|_| !all_deps.is_empty()) {
            plan.install.push(Step::new(&setup, pm.setup_reason()));
            d.push_str(&format!("RUN {setup}\n"));
            if pm.kind == Kind::YarnBerry && !pm.linker_set {
                d.push_str("ENV YARN_NODE_LINKER=\"node-modules\"\n");
            }
        }
        let mut source_copied = false;
        let keep_dev = match &start {
            Start::Command(step) => step
                .reason
                .starts_with("scripts.start")
                .then(|| scripts.get("start").and_then(Value::as_str).and_then(first_program))
                .flatten()
                .filter(|p| dev_deps.iter().any(|d| d == p))
                .map(str::to_string),
            Start::Static { .. } => None,
        };
        let with_dev = build_script.is_some() || keep_dev.is_some();
        if !all_deps.is_empty() {
            let needs_source: Vec<&str> =
                INSTALL_SCRIPTS.iter().copied().filter(|s| scripts.contains_key(*s)).collect();
            let workspaces = package.get("workspaces").is_some() || app.includes_file("pnpm-workspace.yaml");
            let install = pm.install(with_dev);
            let mut reason = format!(
                "{}{}",
                pm.reason,
                match (build_script.is_some(), &keep_dev) {
                    (true, _) => ": with devDependencies, which the build script needs".to_string(),
                    (false, Some(p)) =>
                        format!(": with devDependencies, since scripts.start runs {p}, one of them"),
                    (false, None) => ": without devDependencies (no build script)".to_string(),
                }
            );
            if !needs_source.is_empty() || workspaces {
                let why = if workspaces {
                    "it is a workspace whose packages' files the install needs".to_string()
                } else {
                    format!("package.json has {} scripts, which may need the source", needs_source.join(", "))
                };
                reason.push_str(&format!(
                    "; the whole source is copied first because {why}, so every change reinstalls"
                ));
                d.push_str("COPY . .\n");
                source_copied = true;
            } else {
                let mut files = vec!["package.json"];
                files.extend(pm.lockfile);
                files.extend(SETTINGS_FILES.iter().copied().filter(|f| app.includes_file(f)));
                reason.push_str(&format!(
                    "; {} copied first, so a change of source only reuses this layer",
                    files.join(", ")
                ));
                d.push_str(&copy_instruction(&files, "./"));
                d.push('\n');
                if let Some(release) = &pm.yarn_path {
                    let dir = release.rsplit_once('/').map_or("./", |(dir, _)| dir);
                    d.push_str(&copy_instruction(&[release], &format!("{dir}/")));
                    d.push('\n');
                }
            }
            plan.install.push(Step::new(&install, reason));
            d.push_str(&format!("RUN {install}\n"));
        }
        d.push_str("ENV NODE_ENV=\"production\"\n");
        d.push_str(&env_instructions(manifest)?);
        if !source_copied {
            d.push_str("COPY . .\n");
        }
        if let Some(script) = build_script {
            let command = pm.run_script("build");
            plan.build.push(Step::new(&command, format!("scripts.build in package.json ({script:?})")));
            d.push_str(&format!("RUN {command}\n"));
            if matches!(start, Start::Command(_)) && !all_deps.is_empty() {
                if let (None, Some(prune)) = (&keep_dev, pm.prune()) {
                    plan.build.push(Step::new(
                        &prune,
                        "the build is done: devDependencies are removed from the image",
                    ));
                    d.push_str(&format!("RUN {prune}\n"));
                }
            }
        }
        let port = manifest.config.port;
        match start {
            Start::Command(step) => {
                d.push_str(&format!("EXPOSE {port}\n{}\n", shell_cmd(&step.command)));
                plan.start = Some(step);
            }
            Start::Static { dir, reason } => {
                let serve_image = images.image_for("static", "")?;
                let command = StaticSiteBuilder::default_command(port);
                d.push_str(&format!("FROM {serve_image}\nWORKDIR /site\n"));
                d.push_str(&format!("COPY --from=build /app/{dir} /site\n"));
                d.push_str(&env_instructions(manifest)?);
                d.push_str(&format!("EXPOSE {port}\n{}\n", shell_cmd(&command)));
                plan.start = Some(Step::new(command, format!("{reason}; served from {serve_image}")));
            }
        }
        plan.dockerfile = d;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests;
