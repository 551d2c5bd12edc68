//! Building images: the build context packed from the app's folder and the
//! plan's Dockerfile, the engine's build output streamed line by line, the
//! layers of a failed build removed, and one more attempt when a cached
//! layer vanished during the build.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::docker::DockerRuntime;
use super::error::map_err;
use super::{BuildLayers, RuntimeError};
use crate::builder::BuildPlan;

/// The name the plan's Dockerfile gets inside the build context.
const CONTEXT_DOCKERFILE: &str = ".kraken.Dockerfile";

/// Whether a failed build's `message` says a cached layer it built on was
/// deleted meanwhile (an image removal running at the same time pruned an
/// untagged parent the build was about to use); building again then succeeds.
fn lost_cache_layer(message: &str) -> bool {
    message.contains("unknown parent image ID") || message.contains("No such image: sha256:")
}

/// Packs `dir` (without any `.git`), `dockerfile` (as [`CONTEXT_DOCKERFILE`])
/// and the plan's extra `files` into an uncompressed tar archive in memory.
///
/// File modes are kept; symbolic links are stored as links and never followed,
/// so nothing outside `dir` enters the archive. Sockets, FIFOs and devices are
/// left out.
fn build_context(
    dir: &Path,
    dockerfile: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // Same files, same archive: no times or owners of this checkout, so the
    // engine's layer cache sees an unchanged file as unchanged (a fresh
    // checkout has new modification times every build).
    tar.mode(tar::HeaderMode::Deterministic);
    append_dir_entries(&mut tar, dir, Path::new(""), files)?;
    let generated = std::iter::once((CONTEXT_DOCKERFILE, dockerfile.as_bytes()))
        .chain(files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
    for (name, bytes) in generated {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)?;
    }
    tar.into_inner()
}

/// Adds the entries of `dir` (at `rel` inside the archive) to `tar`, recursively.
fn append_dir_entries(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    rel: &Path,
    generated: &BTreeMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let at_root = rel.as_os_str().is_empty();
        let replaced =
            at_root && (name == CONTEXT_DOCKERFILE || generated.contains_key(&*name.to_string_lossy()));
        if name == ".git" || replaced {
            continue;
        }
        let path = entry.path();
        let rel_path = rel.join(&name);
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            tar.append_dir(&rel_path, &path)?;
            append_dir_entries(tar, &path, &rel_path, generated)?;
        } else if kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(&path, &rel_path)?;
        }
    }
    Ok(())
}

impl DockerRuntime {
    /// One build attempt: streams the engine's output to `log` and returns the image id.
    async fn build_once(
        &self,
        options: bollard::image::BuildImageOptions<String>,
        context: bytes::Bytes,
        tag: &str,
        log: &mpsc::UnboundedSender<String>,
    ) -> Result<String, RuntimeError> {
        let mut image_id = None;
        let mut layers = BuildLayers::new();
        let mut stream = self.docker.build_image(options, None, Some(context));
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    let _ = log.send(error.clone());
                    self.remove_layers(layers.made()).await;
                    return Err(RuntimeError::BuildFailed(error));
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code, message })
                    if (400..500).contains(&status_code) =>
                {
                    let _ = log.send(message.clone());
                    self.remove_layers(layers.made()).await;
                    return Err(RuntimeError::BuildFailed(message));
                }
                Err(e) => {
                    self.remove_layers(layers.made()).await;
                    return Err(map_err(&format!("building image {tag}"), e));
                }
            };
            if let Some(text) = &info.stream {
                for line in
                    text.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty())
                {
                    layers.read(line);
                    let _ = log.send(line.to_string());
                }
            }
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                let _ = log.send(message.clone());
                self.remove_layers(layers.made()).await;
                return Err(RuntimeError::BuildFailed(message));
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
        }
        match image_id {
            Some(id) => Ok(id),
            None => {
                let image =
                    self.docker.inspect_image(tag).await.map_err(|e| map_err(&format!("image {tag}"), e))?;
                image
                    .id
                    .ok_or_else(|| RuntimeError::Unexpected(format!("image {tag} was built but has no id")))
            }
        }
    }

    /// Removes the layers a failed build made, newest first (a layer with a
    /// child, say one another build has built on since, stays).
    async fn remove_layers(&self, layers: &[String]) {
        for layer in layers.iter().rev() {
            if let Err(e) = super::images::remove_image(self, layer).await {
                tracing::debug!(%layer, error = %e, "a layer of a failed build stays");
            }
        }
    }
}

pub(super) async fn build_image(
    rt: &DockerRuntime,
    plan: &BuildPlan,
    tag: &str,
    log: mpsc::UnboundedSender<String>,
) -> Result<String, RuntimeError> {
    let dir = plan.context_dir.clone();
    let dockerfile = plan.dockerfile.clone();
    let files = plan.files.clone();
    let context = tokio::task::spawn_blocking(move || build_context(&dir, &dockerfile, &files))
        .await
        .map_err(|e| RuntimeError::Io(std::io::Error::other(e)))?
        .map_err(|source| RuntimeError::BuildContext { dir: plan.context_dir.clone(), source })?;
    let options = bollard::image::BuildImageOptions::<String> {
        dockerfile: CONTEXT_DOCKERFILE.to_string(),
        t: tag.to_string(),
        // No labels: the classic builder would add a `LABEL` step (one more
        // intermediate container) for them. The tag says whose the image is.
        rm: true,
        forcerm: true,
        pull: false,
        buildargs: plan.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    };
    let context = bytes::Bytes::from(context);
    let mut attempt = 1;
    loop {
        match rt.build_once(options.clone(), context.clone(), tag, &log).await {
            Err(RuntimeError::BuildFailed(message)) if attempt == 1 && lost_cache_layer(&message) => {
                attempt += 1;
                tracing::info!(%tag, %message, "a cached layer vanished during the build; building again");
                let _ = log
                    .send("a cached layer was removed while the build used it; building again".to_string());
            }
            other => return other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn build_context_packs_the_app_without_git_and_keeps_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("app.py"), "print('hi')\n").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(root.join("src/lib")).unwrap();
        std::fs::write(root.join("src/lib/util.py"), "x = 1\n").unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(root.join(CONTEXT_DOCKERFILE), "FROM stale\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("outside")).unwrap();

        let mut extra = BTreeMap::new();
        extra.insert(".kraken-build-ca.pem".to_string(), b"PEM".to_vec());
        let bytes = build_context(root, "FROM base\nCOPY . /app\n", &extra).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let header = entry.header().clone();
            let mut body = String::new();
            if header.entry_type().is_file() {
                entry.read_to_string(&mut body).unwrap();
            }
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            seen.insert(path, (header.entry_type(), header.mode().unwrap() & 0o777, body, link));
        }

        assert!(seen.keys().all(|p| !p.starts_with(".git")), "{:?}", seen.keys());
        assert_eq!(seen["run.sh"].1, 0o755);
        assert_eq!(seen["app.py"].2, "print('hi')\n");
        assert_eq!(seen["src/lib/util.py"].2, "x = 1\n");
        assert!(seen["src"].0.is_dir());
        assert_eq!(seen[CONTEXT_DOCKERFILE].2, "FROM base\nCOPY . /app\n");
        assert!(seen["outside"].0.is_symlink());
        assert_eq!(seen["outside"].3.as_deref(), Some("/etc/passwd"));
        assert_eq!(seen["outside"].2, "", "a link's target is never read");
        assert_eq!(seen[".kraken-build-ca.pem"].2, "PEM", "the plan's files are added");
        // A file of the app with a generated file's name is replaced, not doubled.
        std::fs::write(root.join(".kraken-build-ca.pem"), "stale").unwrap();
        let bytes = build_context(root, "FROM base\n", &extra).unwrap();
        let names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .filter(|n| n == ".kraken-build-ca.pem")
            .collect();
        assert_eq!(names.len(), 1);
        // A new checkout of the same files packs to the same archive.
        let again = |mtime: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            std::fs::File::options().write(true).open(root.join("app.py")).unwrap().set_modified(t).unwrap();
            build_context(root, "FROM base\n", &extra).unwrap()
        };
        assert_eq!(again(1_000_000), again(2_000_000));
    }

    #[test]
    fn a_vanished_cache_layer_is_told_apart_from_a_failing_build() {
        assert!(lost_cache_layer(
            "failed to export image: failed to set parent sha256:addaaa9c: unknown parent image ID sha256:addaaa9c"
        ));
        assert!(!lost_cache_layer("The command '/bin/sh -c false' returned a non-zero code: 1"));
        assert!(!lost_cache_layer("No such image: node:18-bookworm-slim"));
    }
}
