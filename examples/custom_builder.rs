//! Run with: `cargo run -p kraken-examples --example custom_builder`
//!
//! Teaches Kraken a language it does not ship: Ruby. A builder is one type that
//! implements `Builder` (a name, a way to recognise the app, and a build plan:
//! the base image and steps with their reasons, and the Dockerfile written
//! from them) and one `register` call. Its base image is configuration, like the
//! built-ins' (set `KRAKEN_RUBY_IMAGE` to try another one).
//!
//! The example writes a small Ruby app to a temporary directory, lets the
//! registry detect it and prints the build plan. It needs no Docker: builders
//! only produce data; the runtime is what builds images.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kraken_lib::builder::{
    copy_instruction, env_instructions, required_run, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan,
    Builder, BuilderRegistry, Step,
};
use kraken_lib::shipwreck::{self, Manifest};

/// Builds Ruby apps: a `Gemfile` at the root, or a `.rb` file that `run` starts with ruby.
struct RubyBuilder;

impl RubyBuilder {
    /// The key of the base image in [`BaseImages`].
    const IMAGE_KEY: &'static str = "ruby";
}

impl Builder for RubyBuilder {
    fn name(&self) -> &str {
        "ruby"
    }

    fn description(&self) -> &str {
        "a Ruby app with a Gemfile at the root"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-ruby-app\"\n\n[config]\nport = 4567\nlang = \"ruby\"\nrun = \"ruby app.rb\"\n"
            .to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        if app.includes_file("Gemfile") {
            return Some("Gemfile found at the root".to_string());
        }
        let run = app.manifest()?.config.run.as_deref()?;
        let script = app.list_root().ok()?.into_iter().find(|name| name.ends_with(".rb"))?;
        run.contains("ruby")
            .then(|| format!("{script} found at the root and `config.run` starts it with ruby"))
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let image = images.require(Self::IMAGE_KEY)?;
        let run = required_run(manifest, self.name(), "ruby app.rb")?;
        // Install gems only when the Gemfile asks for some.
        let gems = app.includes_file("Gemfile")
            && app.read_to_string("Gemfile")?.lines().any(|l| l.trim_start().starts_with("gem "));
        let base = Step::new(image, "the image configured under `ruby`");
        let mut plan = BuildPlan::new(self.name(), base, app.root(), String::new());
        let mut dockerfile = format!("FROM {image}\nWORKDIR /app\n");
        if gems {
            // The Gemfile first, so a change of source only reuses the installed gems.
            let install = "bundle config set --local without 'development test' && bundle install";
            let lock = app.includes_file("Gemfile.lock");
            let files: &[&str] = if lock { &["Gemfile", "Gemfile.lock"] } else { &["Gemfile"] };
            dockerfile.push_str(&format!("{}\nRUN {install}\n", copy_instruction(files, "./")));
            plan.install.push(Step::new(install, "the Gemfile lists gems"));
        }
        dockerfile.push_str("COPY . .\n");
        dockerfile.push_str(&env_instructions(manifest)?);
        dockerfile.push_str(&format!("EXPOSE {}\n{}\n", manifest.config.port, shell_cmd(run)));
        plan.start = Some(Step::new(run, "`run` in shipwreck.toml"));
        plan.dockerfile = dockerfile;
        Ok(plan)
    }
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempApp(PathBuf);

impl TempApp {
    fn new(files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let dir = std::env::temp_dir().join(format!("kraken-custom-builder-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let app = Self(dir);
        for (name, content) in files {
            std::fs::write(app.path().join(name), content).with_context(|| format!("writing {name}"))?;
        }
        Ok(app)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempApp {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temporary folder is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const APP_RB: &str = r#"require "socket"
port = Integer(ENV.fetch("PORT", "4567"))
server = TCPServer.new("0.0.0.0", port)
puts "listening on #{port}"
loop do
  client = server.accept
  client.gets
  client.print "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello, ruby\n"
  client.close
end
"#;

const MANIFEST: &str = r#"[app]
name = "hello-ruby"
version = "0.1.0"

[config]
port = 4567
run = "ruby app.rb"

[config.env]
GREETING = "hello"
"#;

fn main() -> anyhow::Result<()> {
    let mut images = BaseImages::defaults();
    let ruby_image = std::env::var("KRAKEN_RUBY_IMAGE").unwrap_or_else(|_| "ruby:3.3-slim".to_string());
    images.set(RubyBuilder::IMAGE_KEY, &ruby_image);

    let mut registry = BuilderRegistry::with_builtins(images);
    registry.register(RubyBuilder);
    println!("builders, in detection order: {}", registry.names().join(", "));

    let app = TempApp::new(&[
        ("Gemfile", "source \"https://rubygems.org\"\ngem \"rack\"\n"),
        ("app.rb", APP_RB),
        (shipwreck::FILE_NAME, MANIFEST),
    ])?;
    let text = std::fs::read_to_string(app.path().join(shipwreck::FILE_NAME))?;
    let manifest = Manifest::parse(shipwreck::FILE_NAME, &text, &registry.names())?;

    let (plan, detection) = registry.plan(app.path(), &manifest)?;
    println!("\nchose `{}`: {}", detection.builder, detection.reason);
    println!("build context: {}", plan.context_dir.display());
    for (kind, step) in plan.steps() {
        println!("{kind}: {} (because: {})", step.command, step.reason);
    }
    println!("Dockerfile:\n{}", plan.dockerfile);

    // `lang` now accepts the new builder, and a typo is caught with a hint.
    let typo = MANIFEST.replace("run = ", "lang = \"rubby\"\nrun = ");
    if let Err(e) = Manifest::parse(shipwreck::FILE_NAME, &typo, &registry.names()) {
        println!("a manifest with a typo is refused:\n  {e}");
    }
    Ok(())
}
