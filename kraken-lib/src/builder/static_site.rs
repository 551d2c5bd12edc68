//! The `static` builder: a site of plain files with an `index.html`.
//!
//! The site's folder is where a `Staticfile` says (`root: public`), else the
//! first of the app's root, `public/`, `dist/`, `build/` and `site/` that has
//! an `index.html`. The plan copies that folder to `/site` and serves it with
//! BusyBox's `httpd` (found on `PATH`, so it works on the BusyBox image and on
//! any image that has `busybox`), after printing a start-up line to the logs.
//! A `config.run`, if given, replaces that command.

use super::{
    copy_instruction, env_instructions, given_run, shell_cmd, AppFiles, BaseImages, BuildError, BuildPlan,
    Builder, Step,
};
use crate::shipwreck::Manifest;

/// Serves static sites on the base image configured under `static`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticSiteBuilder;

/// The folders looked in for an `index.html`, in order (`.` is the app's root).
pub const SITE_DIRS: &[&str] = &[".", "public", "dist", "build", "site"];

impl StaticSiteBuilder {
    /// The command that serves `/site` on `port` when `config.run` is absent.
    pub fn default_command(port: u16) -> String {
        format!("echo 'kraken static site serving /site on port {port}' && exec busybox httpd -f -v -p {port} -h /site")
    }

    /// The site's folder and why, or `None` when there is no site.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when a `Staticfile` names a folder that is not
    /// there or leaves the app.
    pub fn site_dir(app: &AppFiles) -> Result<Option<(String, String)>, BuildError> {
        if app.includes_file("Staticfile") {
            let text = app.read_to_string("Staticfile")?;
            let root = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "root")
                    .then(|| v.trim().trim_matches(['"', '\'']).trim_end_matches('/').to_string())
            });
            return match root {
                Some(root) if root.is_empty() || root == "." => {
                    Ok(Some((".".to_string(), "a Staticfile whose root is the app's folder".to_string())))
                }
                Some(root) => {
                    if app.includes_dir(&root) {
                        Ok(Some((root.clone(), format!("the Staticfile says root: {root}"))))
                    } else {
                        Err(BuildError::Invalid(format!(
                            "the Staticfile says root: {root}, but there is no folder {root:?} in the app; \
                             fix the root line or add the folder"
                        )))
                    }
                }
                None => Ok(Some((
                    ".".to_string(),
                    "a Staticfile found (no root line: the app's folder)".to_string(),
                ))),
            };
        }
        Ok(SITE_DIRS.iter().find_map(|dir| {
            let index = if *dir == "." { "index.html".to_string() } else { format!("{dir}/index.html") };
            app.includes_file(&index).then(|| {
                let place = if *dir == "." { "at the root".to_string() } else { format!("in {dir}/") };
                (dir.to_string(), format!("index.html found {place}"))
            })
        }))
    }
}

impl Builder for StaticSiteBuilder {
    fn name(&self) -> &str {
        "static"
    }

    fn description(&self) -> &str {
        "a static site: index.html at the root or in public/, dist/, build/ or site/, or where a Staticfile's root: says"
    }

    fn example_manifest(&self) -> String {
        "[app]\nname = \"my-site\"\n\n[config]\nport = 8080\nlang = \"static\"\n".to_string()
    }

    fn detect(&self, app: &AppFiles) -> Option<String> {
        Self::site_dir(app).ok().flatten().map(|(_, why)| why)
    }

    fn claim_is_weak(&self, _app: &AppFiles) -> bool {
        true
    }

    fn plan(
        &self,
        app: &AppFiles,
        manifest: &Manifest,
        images: &BaseImages,
    ) -> Result<BuildPlan, BuildError> {
        let image = images.image_for("static", "")?;
        let port = manifest.config.port;
        let (dir, why) = Self::site_dir(app)?.unwrap_or_else(|| {
            (".".to_string(), "no index.html found anywhere: the app's folder as it is".to_string())
        });
        let start = match given_run(manifest) {
            Some(run) => Step::new(run, "`run` in shipwreck.toml"),
            None => {
                Step::new(Self::default_command(port), format!("{why}: served by busybox httpd from /site"))
            }
        };
        let mut plan = BuildPlan::new(
            self.name(),
            Step::new(&image, "the image configured for static sites (it has busybox)"),
            app.root(),
            String::new(),
        );
        let mut d = format!("FROM {image}\nWORKDIR /site\n");
        d.push_str(&copy_instruction(&[&dir], "/site"));
        d.push('\n');
        d.push_str(&env_instructions(manifest)?);
        d.push_str(&format!("EXPOSE {port}\n{}\n", shell_cmd(&start.command)));
        plan.start = Some(start);
        plan.dockerfile = d;
        Ok(plan)
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

    fn plan(files: &[(&str, &str)], run: Option<&str>) -> Result<BuildPlan, BuildError> {
        let dir = app(files);
        StaticSiteBuilder.plan(&AppFiles::new(dir.path()), &manifest(8080, Some("static"), run), &images())
    }

    #[test]
    fn plan_serves_the_site_with_busybox() {
        let p = plan(&[("index.html", "<h1>hi</h1>")], None).unwrap();
        let lines: Vec<&str> = p.dockerfile.lines().collect();
        assert_eq!(p.builder, "static");
        assert_eq!(lines[0], "FROM local/busybox:1");
        assert!(lines.contains(&r#"COPY [".","/site"]"#), "{}", p.dockerfile);
        assert!(lines.contains(&"EXPOSE 8080"), "{}", p.dockerfile);
        assert_eq!(
            lines.last(),
            Some(
                &r#"CMD ["sh","-c","echo 'kraken static site serving /site on port 8080' && exec busybox httpd -f -v -p 8080 -h /site"]"#
            )
        );
        assert_eq!(
            p.start.unwrap().reason,
            "index.html found at the root: served by busybox httpd from /site"
        );
    }

    #[test]
    fn site_folders_and_the_staticfile() {
        for (dir, file) in [
            ("public", "public/index.html"),
            ("dist", "dist/index.html"),
            ("build", "build/index.html"),
            ("site", "site/index.html"),
        ] {
            let p = plan(&[(file, "")], None).unwrap();
            assert!(p.dockerfile.contains(&format!("COPY [\"{dir}\",\"/site\"]\n")), "{}", p.dockerfile);
            assert!(p.start.unwrap().reason.starts_with(&format!("index.html found in {dir}/")));
        }
        let p = plan(&[("Staticfile", "root: www/\n"), ("www/home.html", "")], None).unwrap();
        assert!(p.dockerfile.contains("COPY [\"www\",\"/site\"]\n"), "{}", p.dockerfile);
        assert!(p.start.unwrap().reason.starts_with("the Staticfile says root: www"));
        let err = plan(&[("Staticfile", "root: missing\n")], None).unwrap_err().to_string();
        assert_eq!(err, "the Staticfile says root: missing, but there is no folder \"missing\" in the app; fix the root line or add the folder");
        let err = plan(&[("Staticfile", "root: ../outside\n")], None).unwrap_err().to_string();
        assert!(err.contains("no folder \"../outside\""), "{err}");
    }

    #[test]
    fn detection_says_where() {
        let dir = app(&[("public/index.html", "")]);
        assert_eq!(
            StaticSiteBuilder.detect(&AppFiles::new(dir.path())).as_deref(),
            Some("index.html found in public/")
        );
        let dir = app(&[("docs/index.html", "")]);
        assert_eq!(StaticSiteBuilder.detect(&AppFiles::new(dir.path())), None);
    }

    #[test]
    fn run_replaces_the_default_command() {
        let p = plan(&[("index.html", "")], Some("exec busybox httpd -f -p 9000 -h /site/public")).unwrap();
        assert!(p
            .dockerfile
            .ends_with("CMD [\"sh\",\"-c\",\"exec busybox httpd -f -p 9000 -h /site/public\"]\n"));
        assert!(!p.dockerfile.contains("kraken static site serving"));
    }
}
