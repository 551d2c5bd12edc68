//! Tests of the node builder's plans.

#![allow(clippy::unwrap_used)]

use super::super::test_support::{app, manifest};
use super::*;

fn images() -> BaseImages {
    let mut images = BaseImages::defaults();
    images.set("static", "local/busybox:1");
    images
}

fn plan_with(files: &[(&str, &str)], run: Option<&str>) -> Result<BuildPlan, BuildError> {
    let dir = app(files);
    let mut m = manifest(3000, Some("node"), run);
    m.config.env.insert("GREETING".into(), "hi \"there\"".into());
    let plan = NodeBuilder.plan(&AppFiles::new(dir.path()), &m, &images());
    if let Ok(p) = &plan {
        assert_eq!(p.context_dir, dir.path());
    }
    plan
}

fn plan(files: &[(&str, &str)]) -> BuildPlan {
    plan_with(files, None).unwrap()
}

fn lines(p: &BuildPlan) -> Vec<&str> {
    p.dockerfile.lines().collect()
}

fn position(p: &BuildPlan, line: &str) -> usize {
    lines(p)
        .iter()
        .position(|l| *l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{}", p.dockerfile))
}

#[test]
fn an_express_app_with_a_lockfile_installs_before_the_source() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"start": "node server.js"}, "dependencies": {"express": "^4"}}"#),
        ("package-lock.json", "{}"),
        ("server.js", ""),
    ]);
    assert_eq!(p.builder, "node");
    assert_eq!(p.base_image.command, "node:22-bookworm-slim");
    assert!(p.base_image.reason.starts_with("no Node.js version pinned"), "{}", p.base_image.reason);
    assert_eq!(lines(&p)[..2], ["FROM node:22-bookworm-slim", "WORKDIR /app"]);
    let copy = position(&p, r#"COPY ["package.json","package-lock.json","./"]"#);
    let install = position(&p, "RUN npm ci --omit=dev");
    let source = position(&p, "COPY . .");
    assert!(copy < install && install < source, "{}", p.dockerfile);
    assert_eq!(p.install.len(), 1);
    assert_eq!(
        p.install[0].reason,
        "package-lock.json found: without devDependencies (no build script); package.json, package-lock.json \
         copied first, so a change of source only reuses this layer"
    );
    assert!(p.build.is_empty());
    let start = p.start.as_ref().unwrap();
    assert_eq!(
        (start.command.as_str(), start.reason.as_str()),
        ("npm start", "scripts.start in package.json (\"node server.js\")")
    );
    assert!(lines(&p).contains(&"ENV NODE_ENV=\"production\""));
    assert!(lines(&p).contains(&r#"ENV GREETING="hi \"there\"""#));
    assert!(lines(&p).contains(&"ENV PORT=\"3000\""));
    assert_eq!(lines(&p)[lines(&p).len() - 2..], ["EXPOSE 3000", r#"CMD ["sh","-c","npm start"]"#]);
}

#[test]
fn a_typescript_app_builds_with_dev_dependencies_then_prunes() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"build": "tsc", "start": "node dist/index.js"}, "dependencies": {"express": "^4"}, "devDependencies": {"typescript": "^5"}, "engines": {"node": ">=18"}}"#,
        ),
        ("package-lock.json", "{}"),
        (".npmrc", "fund=false\n"),
    ]);
    let copy = position(&p, r#"COPY ["package.json","package-lock.json",".npmrc","./"]"#);
    let install = position(&p, "RUN npm ci");
    let source = position(&p, "COPY . .");
    let build = position(&p, "RUN npm run build");
    let prune = position(&p, "RUN npm prune --omit=dev");
    assert!(copy < install && install < source && source < build && build < prune, "{}", p.dockerfile);
    assert!(p.install[0]
        .reason
        .starts_with("package-lock.json found: with devDependencies, which the build script needs"));
    assert_eq!(p.build[0].reason, "scripts.build in package.json (\"tsc\")");
    assert_eq!(p.build[1].reason, "the build is done: devDependencies are removed from the image");
    assert_eq!(p.base_image.reason, "engines.node in package.json asks for \">=18\": Node 22");
}

#[test]
fn the_version_pin_picks_the_image() {
    let p = plan(&[("package.json", r#"{"main": "a.js"}"#), ("a.js", ""), (".nvmrc", "18")]);
    assert_eq!(p.base_image.command, "node:18-bookworm-slim");
    assert!(p.dockerfile.starts_with("FROM node:18-bookworm-slim\n"));
    let err =
        plan_with(&[("package.json", r#"{"engines": {"node": "<16"}}"#)], Some("node a.js")).unwrap_err();
    assert!(err.to_string().starts_with("engines.node in package.json asks for Node \"<16\""), "{err}");
}

#[test]
fn pnpm_and_yarn_are_set_up_and_used() {
    let p = plan(&[
        ("package.json", r#"{"scripts": {"start": "node index.js"}, "dependencies": {"express": "^4"}}"#),
        ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
        ("pnpm-workspace.yaml", "packages: []\n"),
    ]);
    assert!(p.install[0]
        .command
        .contains("corepack prepare pnpm@9 --activate; else npm install -g pnpm@9; fi"));
    assert_eq!(p.install[1].command, "pnpm install --frozen-lockfile --prod");
    // A workspace's install needs the packages' files: the source comes first.
    assert!(
        p.install[1].reason.contains("the whole source is copied first because it is a workspace"),
        "{}",
        p.install[1].reason
    );
    assert_eq!(p.start.as_ref().unwrap().command, "pnpm run start");
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"start": "node index.js", "build": "tsc"}, "dependencies": {"a": "1"}}"#,
        ),
        ("yarn.lock", "# yarn lockfile v1\n"),
    ]);
    assert_eq!(position(&p, "RUN command -v yarn >/dev/null 2>&1 || npm install -g yarn@1"), 2);
    position(&p, r#"COPY ["package.json","yarn.lock","./"]"#);
    position(&p, "RUN yarn install --frozen-lockfile");
    position(&p, "RUN yarn run build");
    position(&p, "RUN yarn install --frozen-lockfile --production --ignore-scripts --prefer-offline");
    let p = plan(&[
        (
            "package.json",
            r#"{"packageManager": "yarn@4.5.0", "scripts": {"start": "node index.js"}, "dependencies": {"a": "1"}}"#,
        ),
        ("yarn.lock", "__metadata:\n"),
        (".yarnrc.yml", "enableTelemetry: false\n"),
    ]);
    position(&p, "ENV YARN_NODE_LINKER=\"node-modules\"");
    position(&p, r#"COPY ["package.json","yarn.lock",".yarnrc.yml","./"]"#);
    position(&p, "RUN yarn workspaces focus --all --production");
}

#[test]
fn install_scripts_get_the_source_first() {
    let p = plan(&[(
        "package.json",
        r#"{"scripts": {"postinstall": "prisma generate", "start": "node index.js"}, "dependencies": {"@prisma/client": "5"}}"#,
    )]);
    let source = position(&p, "COPY . .");
    let install = position(&p, "RUN npm install --omit=dev");
    assert!(source < install, "{}", p.dockerfile);
    assert_eq!(lines(&p).iter().filter(|l| **l == "COPY . .").count(), 1);
    assert!(
        p.install[0].reason.contains("package.json has postinstall scripts, which may need the source"),
        "{}",
        p.install[0].reason
    );
}

#[test]
fn no_dependencies_install_nothing() {
    let p = plan(&[("package.json", r#"{"name": "a"}"#), ("server.js", "")]);
    assert!(p.install.is_empty() && !p.dockerfile.contains("npm "), "{}", p.dockerfile);
    let start = p.start.unwrap();
    assert_eq!(
        (start.command.as_str(), start.reason.as_str()),
        ("node server.js", "server.js found (package.json has no scripts.start and no main that exists)")
    );
}

#[test]
fn start_commands_in_order() {
    let pkg = r#"{"main": "lib/app.js", "scripts": {"start": "node x.js"}}"#;
    let p = plan_with(
        &[("package.json", pkg), ("Procfile", "web: node web.js\n"), ("lib/app.js", "")],
        Some("node run.js"),
    )
    .unwrap();
    assert_eq!(p.start.unwrap().reason, "`run` in shipwreck.toml");
    let p = plan(&[("package.json", pkg), ("Procfile", "web: node web.js\n"), ("lib/app.js", "")]);
    assert_eq!(p.start.unwrap().command, "node web.js");
    let p = plan(&[("package.json", pkg), ("lib/app.js", "")]);
    assert_eq!(p.start.unwrap().command, "npm start");
    let p = plan(&[("package.json", r#"{"main": "lib/app"}"#), ("lib/app.js", ""), ("index.js", "")]);
    let start = p.start.unwrap();
    assert_eq!(
        (start.command.as_str(), start.reason.as_str()),
        ("node lib/app.js", "main in package.json names \"lib/app\"")
    );
    // A main that does not exist is skipped.
    let p = plan(&[("package.json", r#"{"main": "gone.js"}"#), ("app.js", "")]);
    assert_eq!(p.start.unwrap().command, "node app.js");
}

#[test]
fn a_start_script_that_needs_a_dev_dependency_keeps_them() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"build": "tsc", "start": "NODE_ENV=production ts-node src/index.ts"}, "dependencies": {"a": "1"}, "devDependencies": {"ts-node": "10"}}"#,
        ),
        ("package-lock.json", "{}"),
    ]);
    assert!(!p.dockerfile.contains("prune"), "{}", p.dockerfile);
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"start": "nodemon index.js"}, "dependencies": {"a": "1"}, "devDependencies": {"nodemon": "3"}}"#,
        ),
        ("package-lock.json", "{}"),
    ]);
    position(&p, "RUN npm ci");
    assert!(
        p.install[0].reason.contains("since scripts.start runs nodemon, one of them"),
        "{}",
        p.install[0].reason
    );
}

#[test]
fn a_single_page_app_is_built_and_served_as_static_files() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts": {"dev": "vite", "build": "vite build"}, "devDependencies": {"vite": "^5"}}"#,
        ),
        ("package-lock.json", "{}"),
        ("index.html", ""),
    ]);
    assert_eq!(lines(&p)[0], "FROM node:22-bookworm-slim AS build");
    let build = position(&p, "RUN npm run build");
    let serve = position(&p, "FROM local/busybox:1");
    let copy = position(&p, "COPY --from=build /app/dist /site");
    assert!(build < serve && serve < copy, "{}", p.dockerfile);
    assert!(!p.dockerfile.contains("prune"));
    let start = p.start.unwrap();
    assert!(start.command.contains("busybox httpd -f -v -p 3000 -h /site"), "{}", start.command);
    assert!(start.reason.contains("a single-page app, built and served as static files (vite builds into dist/); served from local/busybox:1"), "{}", start.reason);
    let p = plan(&[(
        "package.json",
        r#"{"scripts": {"build": "react-scripts build"}, "dependencies": {"react-scripts": "5"}}"#,
    )]);
    position(&p, "COPY --from=build /app/build /site");
}

#[test]
fn refusals_say_what_to_add() {
    let err = plan_with(&[("package.json", r#"{"name": "lib"}"#)], None).unwrap_err().to_string();
    assert!(
        err.starts_with("could not tell how to start this Node.js app: package.json has no scripts.start"),
        "{err}"
    );
    assert!(err.ends_with("or set `run` in [config] of shipwreck.toml"), "{err}");
    // Without a package.json (lang = "node"), `run` or an entry file starts the app.
    let p = plan_with(&[("a.js", "")], Some("node a.js")).unwrap();
    assert!(p.install.is_empty() && !p.dockerfile.contains("npm"), "{}", p.dockerfile);
    assert_eq!(plan_with(&[("server.js", "")], None).unwrap().start.unwrap().command, "node server.js");
    let err = plan_with(&[("README.md", "")], None).unwrap_err().to_string();
    assert!(err.starts_with("could not tell how to start this Node.js app"), "{err}");
    let err = plan_with(&[("package.json", "{ oops")], Some("node s.js")).unwrap_err();
    assert!(err.to_string().starts_with("package.json:1:3: not valid JSON"), "{err}");
    let err = plan_with(&[("package.json", r#"{"dependencies": ["x"]}"#)], Some("node s.js")).unwrap_err();
    assert!(err.to_string().contains("`dependencies` should be an object"), "{err}");
    let err = plan_with(&[("package.json", r#"{"scripts": {"start": 1}}"#)], None).unwrap_err();
    assert!(err.to_string().contains("`scripts.start` should be a string"), "{err}");
}

#[test]
fn run_with_quotes_is_escaped() {
    let p = plan_with(&[("package.json", "{}")], Some(r#"node -e "console.log('up')""#)).unwrap();
    assert!(
        p.dockerfile.ends_with("CMD [\"sh\",\"-c\",\"node -e \\\"console.log('up')\\\"\"]\n"),
        "{}",
        p.dockerfile
    );
}

#[test]
fn weak_claims() {
    let weak = |files: &[(&str, &str)]| {
        let dir = app(files);
        NodeBuilder.claim_is_weak(&AppFiles::new(dir.path()).with_manifest(&manifest(80, None, None)))
    };
    assert!(weak(&[("package.json", r#"{"scripts": {"build": "vite build"}}"#)]));
    assert!(!weak(&[("package.json", r#"{"scripts": {"start": "node a"}}"#)]));
    assert!(!weak(&[("package.json", "{}"), ("index.js", "")]));
    assert!(!weak(&[("package.json", "{}"), ("Procfile", "web: node a.js")]));
}
