//! The `static` builder: a plain HTML site with an `index.html` at its root.
//!
//! The plan copies the site to `/site` and serves it with BusyBox's `httpd`
//! (found on `PATH`, so it works on the BusyBox image and on any image that has
//! `busybox`), after printing a start-up line to the logs. A `config.run`, if
//! given, replaces that command.

use super::{env_instructions, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan, Builder};
use crate::shipwreck::Manifest;

/// Serves static sites on the base image configured under `static`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticSiteBuilder;

impl StaticSiteBuilder {
    /// The command that serves `/site` on `port` when `config.run` is absent.
    pub fn default_command(port: u16) -> String {
        format!("echo 'kraken static site serving /site on port {port}' && exec busybox httpd -f -v -p {port} -h /site")
    }
}

impl Builder for StaticSiteBuilder {
    fn name(&self) -> &str {
        "static"
    }

    fn description(&self) -> &str {
        "a static HTML site with an index.html at the root"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-site\"\n\n[config]\nport = 8080\nlang = \"static\"\n".to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        app.includes_file("index.html").then(|| "index.html found at the root".to_string())
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let image = images.require("static")?;
        let port = manifest.config.port;
        let command = match manifest.config.run.as_deref() {
            Some(run) if !run.trim().is_empty() => run.to_string(),
            _ => Self::default_command(port),
        };
        let mut dockerfile = format!("FROM {image}\nWORKDIR /site\nCOPY . /site\n");
        dockerfile.push_str(&env_instructions(manifest)?);
        dockerfile.push_str(&format!("EXPOSE {port}\n{}\n", shell_cmd(&command)));
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
        images.set("static", "local/busybox:1");
        images
    }

    #[test]
    fn plan_serves_the_site_with_busybox() {
        let dir = app(&[("index.html", "<h1>hi</h1>")]);
        let p = StaticSiteBuilder
            .plan(&AppFiles::new(dir.path()), &manifest(8080, None, None), &images())
            .unwrap();
        let lines: Vec<&str> = p.dockerfile.lines().collect();
        assert_eq!(p.builder, "static");
        assert_eq!(lines[0], "FROM local/busybox:1");
        assert!(lines.contains(&"COPY . /site"), "{}", p.dockerfile);
        assert!(lines.contains(&"EXPOSE 8080"), "{}", p.dockerfile);
        assert_eq!(
            lines.last(),
            Some(
                &r#"CMD ["sh","-c","echo 'kraken static site serving /site on port 8080' && exec busybox httpd -f -v -p 8080 -h /site"]"#
            )
        );
    }

    #[test]
    fn run_replaces_the_default_command() {
        let dir = app(&[("index.html", "")]);
        let m = manifest(9000, Some("static"), Some("exec busybox httpd -f -p 9000 -h /site/public"));
        let p = StaticSiteBuilder.plan(&AppFiles::new(dir.path()), &m, &images()).unwrap();
        assert!(p
            .dockerfile
            .ends_with("CMD [\"sh\",\"-c\",\"exec busybox httpd -f -p 9000 -h /site/public\"]\n"));
        assert!(!p.dockerfile.contains("kraken static site serving"));
    }
}
