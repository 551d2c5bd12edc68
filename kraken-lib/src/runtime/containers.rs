//! Containers: an app's container run with its labels, limits and port, a
//! `test` command run to completion in a throw-away one, and inspecting,
//! restarting, listing and removing them.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::docker::{env_list, managed_filter, managed_labels, DockerRuntime};
use super::error::{is_conflict, is_not_found, map_err};
use super::logs::log_frame;
use super::{
    AppLimits, ContainerSpec, ContainerState, LogRotation, ManagedContainer, RuntimeError, LABEL_PORT,
    LABEL_ROLE, ROLE_APP, ROLE_TEST, TEST_OUTPUT_BYTES,
};
use crate::output::Tail;

/// A host port to publish an app on: `preferred` if it can be bound on
/// `0.0.0.0` right now, otherwise a free port the operating system picks.
///
/// The answer is only a good guess: another process may take the port between
/// this check and the container's start. Callers that publish on the returned
/// port must therefore be ready for
/// [`Runtime::run_container`](super::Runtime::run_container) to fail, and
/// fall back to `host_port: 0`, which lets the engine choose a free port
/// atomically. Returns 0 (meaning "let the engine choose") when not even an
/// OS-picked port can be bound. A `preferred` of 0 asks for any free port.
///
/// # Examples
///
/// ```
/// use kraken_lib::runtime::pick_host_port;
///
/// let held = std::net::TcpListener::bind("0.0.0.0:0")?;
/// let taken = held.local_addr()?.port();
/// assert_ne!(pick_host_port(taken), taken, "a port in use is not offered");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pick_host_port(preferred: u16) -> u16 {
    use std::net::{Ipv4Addr, TcpListener};
    if preferred != 0 && TcpListener::bind((Ipv4Addr::UNSPECIFIED, preferred)).is_ok() {
        return preferred;
    }
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// How long a removal waits for another removal of the same container to end.
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The engine's log settings for `rotation`: the `local` driver, whose files
/// the engine reads back for `docker logs --follow` 7–8 % faster than
/// `json-file`'s JSON (docs/benchmarks.md, "The engine's `local` log
/// driver"), uncompressed, so that a rotation costs a flooding app no CPU.
fn log_config(rotation: Option<LogRotation>) -> Option<bollard::models::HostConfigLogConfig> {
    let rotation = rotation?;
    let config = [
        ("max-size".to_string(), rotation.max_file_bytes.to_string()),
        ("max-file".to_string(), rotation.max_files.max(1).to_string()),
        ("compress".to_string(), "false".to_string()),
    ];
    Some(bollard::models::HostConfigLogConfig {
        typ: Some("local".to_string()),
        config: Some(config.into_iter().collect()),
    })
}

/// The host port `container_port/tcp` is published on, from an inspect result.
fn published_port(info: &bollard::models::ContainerInspectResponse, container_port: u16) -> Option<u16> {
    let key = format!("{container_port}/tcp");
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&key)?
        .as_ref()?
        .iter()
        .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .find(|p| *p != 0)
}

/// The container's address on the engine's network, from an inspect result.
fn container_address(info: &bollard::models::ContainerInspectResponse) -> Option<std::net::IpAddr> {
    let settings = info.network_settings.as_ref()?;
    let on_networks = settings.networks.iter().flatten().filter_map(|(_, n)| n.ip_address.as_deref());
    settings.ip_address.as_deref().into_iter().chain(on_networks).find_map(|ip| ip.parse().ok())
}

impl DockerRuntime {
    /// Creates (but does not start) a container; returns its id.
    async fn create(
        &self,
        name: Option<&str>,
        config: bollard::container::Config<String>,
    ) -> Result<String, RuntimeError> {
        let options =
            name.map(|n| bollard::container::CreateContainerOptions { name: n.to_string(), platform: None });
        let what = format!("creating container {}", name.unwrap_or("(unnamed)"));
        let created = self.docker.create_container(options, config).await.map_err(|e| map_err(&what, e))?;
        Ok(created.id)
    }

    /// Force-removes a container, ignoring a missing one; used to undo a half-made one.
    async fn force_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = bollard::container::RemoveContainerOptions { force: true, v: true, link: false };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Another removal of it is under way (a destroy while an update
            // retires the container): done once the engine has finished it.
            Err(e) if is_conflict(&e) => {
                let gone = crate::retry::until_deadline(GONE_WITHIN, || async {
                    match self.docker.inspect_container(id, None).await {
                        Err(e) if is_not_found(&e) => Ok(()),
                        _ => Err("the engine still has the container"),
                    }
                })
                .await;
                gone.map_err(|_| map_err(&format!("removing container {id}"), e))
            }
            Err(e) => Err(map_err(&format!("removing container {id}"), e)),
        }
    }

    /// Starts `id`, waits for it to stop and returns its exit code and output.
    async fn start_and_collect(&self, id: &str) -> Result<(i64, String), RuntimeError> {
        self.docker
            .start_container::<String>(id, None)
            .await
            .map_err(|e| map_err(&format!("starting container {id}"), e))?;
        let wait = bollard::container::WaitContainerOptions { condition: "not-running".to_string() };
        let mut waits = self.docker.wait_container(id, Some(wait));
        let mut code = None;
        while let Some(item) = waits.next().await {
            match item {
                Ok(resp) => code = Some(resp.status_code),
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                Err(e) => return Err(map_err(&format!("waiting for container {id}"), e)),
            }
        }
        let code = code.ok_or_else(|| {
            RuntimeError::Unexpected(format!("waiting for container {id}: the engine reported no exit code"))
        })?;
        let options = bollard::container::LogsOptions::<String> {
            stdout: true,
            stderr: true,
            tail: "all".to_string(),
            ..Default::default()
        };
        // Whatever the command printed, only its end is kept.
        let mut output = Tail::new(TEST_OUTPUT_BYTES);
        let mut logs = self.docker.logs(id, Some(options));
        while let Some(frame) = logs.next().await {
            let frame = frame.map_err(|e| map_err(&format!("reading the output of container {id}"), e))?;
            output.push(&log_frame(frame).1);
        }
        Ok((code, output.text()))
    }
}

pub(super) async fn run_to_completion(
    rt: &DockerRuntime,
    image: &str,
    cmd: &str,
    env: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    timeout: std::time::Duration,
) -> Result<(i64, String), RuntimeError> {
    // The caller's labels (deployment, node, generation) make it findable
    // after an interrupted run; the role tells it from the app's container.
    let mut labels = labels.clone();
    labels.insert(LABEL_ROLE.to_string(), ROLE_TEST.to_string());
    let limits = AppLimits::default();
    let host_config = bollard::models::HostConfig {
        pids_limit: Some(limits.pids),
        log_config: log_config(Some(limits.log_rotation)),
        ..Default::default()
    };
    let config = bollard::container::Config {
        image: Some(image.to_string()),
        cmd: Some(vec!["sh".to_string(), "-c".to_string(), cmd.to_string()]),
        env: Some(env_list(env)),
        labels: Some(managed_labels(&labels)),
        host_config: Some(host_config),
        ..Default::default()
    };
    let id = rt.create(None, config).await?;
    let result = match tokio::time::timeout(timeout, rt.start_and_collect(&id)).await {
        Ok(result) => result,
        Err(_) => {
            Err(RuntimeError::TimedOut(format!("`{cmd}` did not finish within {} s", timeout.as_secs())))
        }
    };
    let removed = rt.force_remove(&id).await;
    let result = result?;
    removed?;
    Ok(result)
}

pub(super) async fn run_container(
    rt: &DockerRuntime,
    spec: &ContainerSpec,
) -> Result<(String, u16), RuntimeError> {
    use bollard::models::{HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
    let port_key = format!("{}/tcp", spec.container_port);
    let mut labels = spec.labels.clone();
    labels.entry(LABEL_PORT.to_string()).or_insert_with(|| spec.container_port.to_string());
    labels.entry(LABEL_ROLE.to_string()).or_insert_with(|| ROLE_APP.to_string());
    let binding = PortBinding {
        host_ip: Some(spec.host_ip.clone()).filter(|ip| !ip.is_empty()),
        host_port: Some(if spec.host_port == 0 { String::new() } else { spec.host_port.to_string() }),
    };
    let host_config = HostConfig {
        port_bindings: spec.publish.then(|| [(port_key.clone(), Some(vec![binding]))].into_iter().collect()),
        // No restarts until the caller saw the app start (`keep_restarting`),
        // so an app that exits at once shows its own exit code.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        memory: (spec.memory_limit > 0).then(|| i64::try_from(spec.memory_limit).unwrap_or(i64::MAX)),
        pids_limit: (spec.pids_limit > 0).then_some(spec.pids_limit),
        log_config: log_config(spec.log_rotation),
        init: Some(spec.init),
        ..Default::default()
    };
    let config = bollard::container::Config {
        image: Some(spec.image.clone()),
        stop_timeout: spec.stop_timeout.map(|t| i64::try_from(t.as_secs().max(1)).unwrap_or(i64::MAX)),
        env: Some(env_list(&spec.env)),
        labels: Some(managed_labels(&labels)),
        exposed_ports: Some([(port_key, std::collections::HashMap::new())].into_iter().collect()),
        host_config: Some(host_config),
        ..Default::default()
    };
    let id = rt.create(Some(&spec.name), config).await?;
    let started = async {
        rt.docker
            .start_container::<String>(&id, None)
            .await
            .map_err(|e| map_err(&format!("starting container {}", spec.name), e))?;
        if !spec.publish {
            return Ok(0);
        }
        let info = rt
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| map_err(&format!("container {}", spec.name), e))?;
        let exited = !info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        match published_port(&info, spec.container_port) {
            Some(port) => Ok(port),
            None if spec.host_port != 0 => Ok(spec.host_port),
            // Its process ended before the port was published: the caller
            // sees the exit (code and output) when it looks at the container.
            None if exited => Ok(0),
            None => Err(RuntimeError::Unexpected(format!(
                "container {} started but port {}/tcp is not published; did its process exit at once?",
                spec.name, spec.container_port
            ))),
        }
    }
    .await;
    match started {
        Ok(port) => Ok((id, port)),
        Err(e) => {
            if let Err(cleanup) = rt.force_remove(&id).await {
                tracing::warn!(container = %id, error = %cleanup, "could not remove a container that failed to start");
            }
            Err(e)
        }
    }
}

pub(super) async fn keep_restarting(rt: &DockerRuntime, id: &str) -> Result<(), RuntimeError> {
    use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
    let options = bollard::container::UpdateContainerOptions::<String> {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    rt.docker.update_container(id, options).await.map_err(|e| map_err(&format!("container {id}"), e))
}

pub(super) async fn inspect(rt: &DockerRuntime, id: &str) -> Result<ContainerState, RuntimeError> {
    let info =
        rt.docker.inspect_container(id, None).await.map_err(|e| map_err(&format!("container {id}"), e))?;
    let state = info.state.clone().unwrap_or_default();
    // While the engine waits to restart a crashed container it reports it
    // as running and restarting; the app is not running then.
    let running = state.running.unwrap_or(false) && !state.restarting.unwrap_or(false);
    Ok(ContainerState {
        running,
        exit_code: if running { None } else { state.exit_code },
        error: state.error.filter(|e| !e.is_empty()),
        started_at: state.started_at.filter(|s| !s.is_empty() && !s.starts_with("0001-")),
        restart_count: info.restart_count.unwrap_or(0),
        address: if running { container_address(&info) } else { None },
    })
}
pub(super) async fn remove_container(rt: &DockerRuntime, id: &str) -> Result<(), RuntimeError> {
    // No timeout of our own: the engine uses the one the container was
    // created with (`ContainerSpec::stop_timeout`).
    match rt.docker.stop_container(id, None).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // Already stopped (304) or failing to stop: the forced removal below settles it.
        Err(e) => tracing::debug!(container = %id, error = %e, "stopping before removal failed"),
    }
    rt.force_remove(id).await
}

pub(super) async fn list_managed(
    rt: &DockerRuntime,
    node: Option<String>,
) -> Result<Vec<ManagedContainer>, RuntimeError> {
    let options = bollard::container::ListContainersOptions::<String> {
        all: true,
        filters: managed_filter(node.as_deref()),
        ..Default::default()
    };
    let summaries =
        rt.docker.list_containers(Some(options)).await.map_err(|e| map_err("listing containers", e))?;
    let mut out: Vec<ManagedContainer> = summaries
        .into_iter()
        .map(|c| {
            let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
            let app_port = labels.get(LABEL_PORT).and_then(|p| p.parse::<u16>().ok());
            let host_port = c
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter(|p| app_port.is_none_or(|want| p.private_port == want))
                .find_map(|p| p.public_port.filter(|port| *port != 0));
            let name = c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            ManagedContainer {
                id: c.id.unwrap_or_default(),
                name,
                image: c.image.unwrap_or_default(),
                running: c.state.as_deref() == Some("running"),
                labels,
                host_port,
                image_id: c.image_id.unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    #[test]
    fn pick_host_port_keeps_a_free_preferred_port() {
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap().local_addr().unwrap().port();
        // The listener is dropped, so the port is free again (barring a race
        // with another process, which the function's contract accepts).
        assert_eq!(pick_host_port(free), free);
    }

    #[test]
    fn pick_host_port_avoids_a_taken_port() {
        let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let taken = held.local_addr().unwrap().port();
        let picked = pick_host_port(taken);
        assert_ne!(picked, taken);
        assert_ne!(picked, 0);
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, picked)).expect("the picked port is bindable");
    }

    #[test]
    fn pick_host_port_zero_means_any_free_port() {
        let picked = pick_host_port(0);
        assert_ne!(picked, 0);
    }
}
