//! The port proxy: the agent itself holds each app's published port and
//! forwards every TCP connection to the app's current container, on the
//! container's own address. Any protocol passes (HTTP, WebSockets, raw TCP)
//! since bytes are copied both ways as they come.
//!
//! The address people use never changes while the container behind it
//! does: an update starts the new container, waits until it is ready, and
//! [`PortProxy::switch`]es to it at once; connections already open stay on
//! the old container until they end, and [`Drain::wait`] lets the caller stop
//! the old container once they did (or a deadline passed). A container the
//! engine restarted may have a new address: a connection that cannot reach
//! the remembered one looks the container up again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::runtime::Runtime;

/// How long connecting to a container may take.
const CONNECT: Duration = Duration::from_secs(5);

/// Why a port could not be held.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The address to listen on is not an IP address.
    #[error("cannot publish apps on {0:?}: give an IP address such as 0.0.0.0 or 192.168.1.20")]
    BadAddress(String),
    /// Neither the wanted port nor any free one could be bound.
    #[error("cannot listen on {address} for an app")]
    Bind {
        /// The address tried last.
        address: SocketAddr,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
}

/// Where an app's connections go: a container and the app's port in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The container's engine id.
    pub container_id: String,
    /// The app's port inside the container.
    pub port: u16,
    /// The container's address, when known; looked up when it is not, or
    /// when it no longer answers.
    pub address: Option<IpAddr>,
}

/// The connections still open on a backend that was switched away from.
#[derive(Debug)]
pub struct Drain(TaskTracker);

impl Drain {
    /// Waits until every connection to the old backend ended, or `deadline`
    /// passed; returns whether they all ended.
    pub async fn wait(self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.0.wait()).await.is_ok()
    }
}

/// The backend connections go to now, and the tracker of their tasks.
struct Current {
    backend: Option<Backend>,
    connections: TaskTracker,
}

/// One held port.
struct Held {
    port: u16,
    current: Arc<Mutex<Current>>,
    accept: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The ports this agent holds for its apps, one per deployment. Cheap to
/// clone: clones share the ports.
#[derive(Clone)]
pub struct PortProxy {
    runtime: Arc<dyn Runtime>,
    // Guards the map of held ports; held only for map operations, never
    // across an await.
    held: Arc<Mutex<HashMap<String, Held>>>,
}

impl std::fmt::Debug for PortProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: HashMap<String, u16> = self.held().iter().map(|(d, h)| (d.clone(), h.port)).collect();
        f.debug_struct("PortProxy").field("ports", &ports).finish_non_exhaustive()
    }
}

/// Locks `m`, taking the data of a poisoned lock as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PortProxy {
    /// A proxy that looks containers up on `runtime`.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use kraken_lib::proxy::{Backend, PortProxy};
    /// use kraken_lib::runtime::DockerRuntime;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = PortProxy::new(Arc::new(DockerRuntime::connect().await?));
    /// // Hold port 8080 (or another one when it is taken) for the app…
    /// let port = proxy.open("my-app", "0.0.0.0", 8080).await?;
    /// // …send its connections to a container once that container is ready…
    /// let first = Backend { container_id: "c1".into(), port: 80, address: None };
    /// proxy.switch("my-app", first);
    /// // …and to the next one on an update, letting the first one's finish.
    /// let next = Backend { container_id: "c2".into(), port: 80, address: None };
    /// if let Some(drain) = proxy.switch("my-app", next) {
    ///     drain.wait(Duration::from_secs(3)).await;
    /// }
    /// println!("my-app answers on port {port}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        Self { runtime, held: Arc::default() }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        lock(&self.held)
    }

    /// The port held for `deployment`, if one is.
    pub fn port(&self, deployment: &str) -> Option<u16> {
        self.held().get(deployment).map(|h| h.port)
    }

    /// Holds a port on `ip` for `deployment`: `preferred` when it is free,
    /// otherwise one the operating system chooses (`preferred` 0 asks for
    /// that at once); returns it. The port held already for the deployment
    /// is kept. Until [`switch`](Self::switch) names a backend, connections
    /// are closed at once.
    ///
    /// # Errors
    /// [`ProxyError::BadAddress`] when `ip` is not an IP address,
    /// [`ProxyError::Bind`] when no port at all can be bound on it.
    pub async fn open(&self, deployment: &str, ip: &str, preferred: u16) -> Result<u16, ProxyError> {
        if let Some(port) = self.port(deployment) {
            return Ok(port);
        }
        let ip: IpAddr = ip.trim().parse().map_err(|_| ProxyError::BadAddress(ip.to_string()))?;
        let listener = match TcpListener::bind((ip, preferred)).await {
            Ok(l) => l,
            Err(e) if preferred != 0 => {
                debug!(port = preferred, error = %e, "the app's port is taken; another is chosen");
                bind_any(ip).await?
            }
            Err(source) => return Err(ProxyError::Bind { address: (ip, preferred).into(), source }),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(preferred);
        let current = Arc::new(Mutex::new(Current { backend: None, connections: TaskTracker::new() }));
        let accept = tokio::spawn(accept_loop(listener, current.clone(), self.runtime.clone()));
        let mut held = self.held();
        // Two opens raced: the first one's port stays.
        if let Some(existing) = held.get(deployment) {
            return Ok(existing.port);
        }
        held.insert(deployment.to_string(), Held { port, current, accept });
        Ok(port)
    }

    /// Sends `deployment`'s new connections to `backend` from now on;
    /// returns the connections still open on the previous backend, if there
    /// was one. Nothing happens (`None`) when no port is held for it.
    pub fn switch(&self, deployment: &str, backend: Backend) -> Option<Drain> {
        let held = self.held();
        let mut current = lock(&held.get(deployment)?.current);
        let previous = current.backend.replace(backend);
        let old = std::mem::take(&mut current.connections);
        old.close();
        previous.map(|_| Drain(old))
    }

    /// Stops holding `deployment`'s port (connections already open go on
    /// until they end).
    pub fn close(&self, deployment: &str) {
        self.held().remove(deployment);
    }
}

/// Binds any free port on `ip`.
async fn bind_any(ip: IpAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind((ip, 0)).await.map_err(|source| ProxyError::Bind { address: (ip, 0).into(), source })
}

/// Accepts connections on `listener` and forwards each to the current backend.
async fn accept_loop(listener: TcpListener, current: Arc<Mutex<Current>>, runtime: Arc<dyn Runtime>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of file descriptors and the like: try again shortly
                // rather than spin.
                warn!(error = %e, "accepting an app connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let guard = lock(&current);
        let Some(backend) = guard.backend.clone() else { continue };
        // Spawned while the lock is held, so a switch sees every connection
        // made to the backend it replaces.
        guard.connections.spawn(forward(client, backend, current.clone(), runtime.clone()));
    }
}

/// Copies bytes between `client` and the backend until either side closes.
async fn forward(
    mut client: TcpStream,
    backend: Backend,
    current: Arc<Mutex<Current>>,
    runtime: Arc<dyn Runtime>,
) {
    let Some(mut upstream) = connect(&backend, &current, runtime.as_ref()).await else { return };
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        debug!(container = %backend.container_id, error = %e, "an app connection ended with an error");
    }
}

/// Connects to the backend at its remembered address, or at the address the
/// engine gives now (remembered for the next connections).
async fn connect(backend: &Backend, current: &Mutex<Current>, runtime: &dyn Runtime) -> Option<TcpStream> {
    let dial = |ip: IpAddr| tokio::time::timeout(CONNECT, TcpStream::connect((ip, backend.port)));
    if let Some(ip) = backend.address {
        if let Ok(Ok(stream)) = dial(ip).await {
            return Some(stream);
        }
    }
    let found = match runtime.inspect(&backend.container_id).await {
        Ok(state) => state.address?,
        Err(e) => {
            debug!(container = %backend.container_id, error = %e, "the app's container cannot be looked up");
            return None;
        }
    };
    if backend.address != Some(found) {
        let mut current = lock(current);
        if let Some(now) = current.backend.as_mut().filter(|b| b.container_id == backend.container_id) {
            now.address = Some(found);
        }
    }
    match dial(found).await {
        Ok(Ok(stream)) => Some(stream),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::runtime::MockRuntime;

    /// A server on loopback that greets every connection with `name` and
    /// then echoes until the client closes.
    async fn greeter(name: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    conn.write_all(name.as_bytes()).await.unwrap();
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    fn backend(port: u16) -> Backend {
        Backend { container_id: format!("c{port}"), port, address: Some(Ipv4Addr::LOCALHOST.into()) }
    }

    /// Connects to the proxy and reads the greeting.
    async fn greeting(port: u16) -> (TcpStream, String) {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 3];
        conn.read_exact(&mut buf).await.unwrap();
        (conn, String::from_utf8_lossy(&buf).into_owned())
    }

    #[tokio::test]
    async fn new_connections_follow_a_switch_while_open_ones_stay_until_they_end() {
        let (old, new) = (greeter("old").await, greeter("new").await);
        let proxy = PortProxy::new(Arc::new(MockRuntime::new()));
        assert!(proxy.switch("d1", backend(old)).is_none(), "nothing is held yet");
        let port = proxy.open("d1", "127.0.0.1", 0).await.unwrap();
        assert_eq!(proxy.open("d1", "127.0.0.1", 0).await.unwrap(), port, "the held port is kept");
        assert!(proxy.switch("d1", backend(old)).is_none(), "no previous backend to drain");
        let (mut open_on_old, said) = greeting(port).await;
        assert_eq!(said, "old");

        let drain = proxy.switch("d1", backend(new)).expect("the old backend to drain");
        assert_eq!(greeting(port).await.1, "new");
        // The connection made before the switch still reaches the old app.
        open_on_old.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        open_on_old.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        let waiting = tokio::spawn(drain.wait(Duration::from_secs(30)));
        drop(open_on_old);
        assert!(waiting.await.unwrap(), "the drain ends once the old connection closed");

        proxy.close("d1");
        assert_eq!(proxy.port("d1"), None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "port {port} is still held after close");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_taken_port_gives_another_and_a_bad_address_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let wanted = taken.local_addr().unwrap().port();
        let proxy = PortProxy::new(Arc::new(MockRuntime::new()));
        let port = proxy.open("d1", "127.0.0.1", wanted).await.unwrap();
        assert_ne!(port, wanted);
        assert_ne!(port, 0);
        let err = proxy.open("d2", "my-laptop", 80).await.unwrap_err();
        assert!(matches!(err, ProxyError::BadAddress(_)), "{err}");
        assert!(err.to_string().contains("my-laptop"), "{err}");
    }

    #[tokio::test]
    async fn a_container_that_moved_is_looked_up_again() {
        let app = greeter("app").await;
        let mut runtime = MockRuntime::new();
        runtime.expect_inspect().returning(|_| {
            Ok(crate::runtime::ContainerState {
                running: true,
                exit_code: None,
                error: None,
                started_at: None,
                restart_count: 0,
                address: Some(Ipv4Addr::LOCALHOST.into()),
            })
        });
        let proxy = PortProxy::new(Arc::new(runtime));
        let port = proxy.open("d1", "127.0.0.1", 0).await.unwrap();
        // An address nothing listens on (the app's old one, say).
        let stale = Backend { address: Some(Ipv4Addr::new(127, 0, 0, 77).into()), ..backend(app) };
        proxy.switch("d1", stale);
        assert_eq!(greeting(port).await.1, "app");
    }
}
