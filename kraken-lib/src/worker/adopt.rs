//! What a worker finds when it starts: containers to adopt and leftovers of
//! work that was interrupted.
//!
//! An agent stopped in the middle of a deployment (`kill -TERM`, `kill -9`,
//! a reboot) leaves things behind: the checkout under `work/`, the
//! throw-away container of a `test` command, the layers of a build that never
//! finished, an image built but never run. At its first start a worker
//! removes them all ([`clean_leftovers`]); the orchestrator hands the
//! interrupted work over again. Then the app containers of this node are
//! adopted ([`adopt`]): only containers labelled as apps, never a test
//! container, even though it carries the deployment's labels too. The
//! port proxy is rebuilt from them: each app is served again on the port
//! its container's label names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{Active, Shared, LABEL_GENERATION, LABEL_PUBLIC_PORT};
use crate::proxy::Backend;
use crate::runtime::{ManagedContainer, LABEL_DEPLOYMENT, LABEL_PORT, ROLE_APP};

/// The file next to a work directory that lists the layers its build made so
/// far (one id a line), so that an interrupted build's layers can be removed.
pub(super) fn layers_file(work_dir: &Path) -> PathBuf {
    work_dir.with_extension("layers")
}

/// Notes that the build of `work_dir` made `layer`.
pub(super) fn note_layer(work_dir: &Path, layer: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layers_file(work_dir))
        .and_then(|mut f| writeln!(f, "{layer}"));
    if let Err(e) = written {
        warn!(error = %e, "could not note a build layer; it stays if the build is interrupted");
    }
}

/// Removes what interrupted work left on this node and returns the app
/// containers (the rest of `containers`). The checkouts go at once (new work
/// may soon write there); containers and images are removed by a task of its
/// own, so that the node's first report is not held up (a test container can
/// take seconds to stop).
pub(super) async fn clean_leftovers(
    shared: &Shared,
    containers: Vec<ManagedContainer>,
) -> Vec<ManagedContainer> {
    let runtime = shared.runtime.clone();
    let (apps, others): (Vec<_>, Vec<_>) = containers.into_iter().partition(|c| c.role() == ROLE_APP);
    shared.forget_log_positions(&apps.iter().map(|c| c.id.as_str()).collect::<Vec<_>>());

    let mut layers = Vec::new();
    let work = shared.node.config.data_dir.join("work");
    let entries =
        std::fs::read_dir(&work).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>());
    for path in entries.unwrap_or_default() {
        if path.extension().is_some_and(|e| e == "layers") {
            let noted = std::fs::read_to_string(&path).unwrap_or_default();
            layers.extend(noted.lines().rev().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
            let _ = std::fs::remove_file(&path);
        } else {
            info!(checkout = %path.display(), "removing the checkout of an interrupted build");
            let removed =
                if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = removed {
                warn!(path = %path.display(), error = %e, "could not remove a leftover checkout");
            }
        }
    }
    let images = match runtime.list_images(Some(shared.node.id.clone())).await {
        Ok(images) => images
            .into_iter()
            .filter(|image| !apps.iter().any(|c| c.image_id == image.id || image.tags.contains(&c.image)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "could not list this node's images; leftovers stay");
            Vec::new()
        }
    };
    tokio::spawn(async move {
        for c in others {
            info!(container = %c.id, role = %c.role(), deployment = ?c.labels.get(LABEL_DEPLOYMENT), "removing a container of interrupted work");
            if let Err(e) = runtime.remove_container(&c.id).await {
                warn!(container = %c.id, error = %e, "could not remove a leftover container");
            }
        }
        for layer in &layers {
            if let Err(e) = runtime.remove_image(layer).await {
                tracing::debug!(%layer, error = %e, "a layer of an interrupted build stays");
            }
        }
        if !layers.is_empty() {
            info!(layers = layers.len(), "removed the layers of interrupted builds");
        }
        for image in images {
            info!(image = %image.id, tags = ?image.tags, "removing an image nothing runs (built by interrupted work)");
            let names = if image.tags.is_empty() { vec![image.id.clone()] } else { image.tags.clone() };
            for name in names {
                if let Err(e) = runtime.remove_image(&name).await {
                    warn!(image = %name, error = %e, "could not remove a leftover image");
                }
            }
        }
    });
    apps
}

/// Adopts the app containers this node already runs (after a restart): the
/// newest generation of each deployment; older ones are removed.
pub(super) async fn adopt(shared: &Shared, containers: Vec<ManagedContainer>) {
    let generation = |c: &ManagedContainer| {
        c.labels.get(LABEL_GENERATION).and_then(|g| g.parse::<u64>().ok()).unwrap_or(0)
    };
    let mut newest: BTreeMap<String, ManagedContainer> = BTreeMap::new();
    let mut stale = Vec::new();
    for c in containers.into_iter().filter(|c| c.role() == ROLE_APP) {
        let Some(dep) = c.labels.get(LABEL_DEPLOYMENT).cloned() else { continue };
        match newest.get(&dep) {
            Some(existing) if generation(existing) >= generation(&c) => stale.push(c),
            _ => {
                if let Some(old) = newest.insert(dep, c) {
                    stale.push(old);
                }
            }
        }
    }
    for c in stale {
        info!(container = %c.id, "removing a superseded container");
        if let Err(e) = shared.runtime.remove_container(&c.id).await {
            warn!(error = %e, "could not remove a superseded container");
        }
    }
    for (dep, c) in newest {
        let known = shared.active().get(&dep).cloned();
        // Work under way owns its container; one adopted already is followed already.
        if known.as_ref().is_some_and(|a| a.in_progress || a.container_id.as_deref() == Some(c.id.as_str())) {
            continue;
        }
        let generation = generation(&c);
        info!(deployment = %dep, container = %c.id, running = c.running, "adopting a container");
        if c.running {
            // It may have been started just before the agent stopped, before
            // the engine was told to bring it back after a reboot.
            if let Err(e) = shared.runtime.keep_restarting(&c.id).await {
                warn!(container = %c.id, error = %e, "could not set the restart policy of an adopted container");
            }
        }
        let host_port = match serve_again(shared, &dep, &c).await {
            Some(port) => Some(port),
            None => c.host_port,
        };
        shared.active().insert(
            dep.clone(),
            Active {
                generation,
                in_progress: false,
                container_id: Some(c.id.clone()),
                image: Some(c.image.clone()),
                host_port,
                running: c.running,
                stats: None,
            },
        );
        shared.follow_logs(&dep, generation, &c.id, true);
    }
}

/// Holds the port an adopted container's app was served on again (the
/// container's [`LABEL_PUBLIC_PORT`]) and forwards it to the container;
/// returns the port. `None` for a container from before the agent held ports
/// (it publishes its port itself), or when no port could be held.
async fn serve_again(shared: &Shared, dep: &str, c: &ManagedContainer) -> Option<u16> {
    let wanted = c.labels.get(LABEL_PUBLIC_PORT)?.parse::<u16>().ok()?;
    let app_port = c.labels.get(LABEL_PORT).and_then(|p| p.parse::<u16>().ok())?;
    let port = match shared.proxy.open(dep, &shared.node.config.publish_ip, wanted).await {
        Ok(port) => port,
        Err(e) => {
            warn!(deployment = %dep, port = wanted, error = %e, "cannot serve an adopted app");
            return None;
        }
    };
    if port != wanted {
        warn!(deployment = %dep, wanted, port, "the app's port was taken meanwhile; it is served on another");
    }
    shared.proxy.switch(dep, Backend { container_id: c.id.clone(), port: app_port, address: None });
    Some(port)
}
