use super::*;
use crate::bus::memory::MemoryBus;
use std::sync::atomic::AtomicUsize;

struct Counting {
    setups: Arc<AtomicUsize>,
    rounds: Arc<AtomicUsize>,
    fail_setup_times: usize,
    finish_after: usize,
}

#[async_trait::async_trait]
impl Executor for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn setup(&mut self, _node: &mut GenericNode) -> Result<(), SetupFailure> {
        let n = self.setups.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_setup_times {
            return Err(SetupFailure::retry("not yet"));
        }
        Ok(())
    }
    async fn execute(&mut self, _node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        let n = self.rounds.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.finish_after {
            return Err(ExecutionFailure::finished("done"));
        }
        tokio::task::yield_now().await;
        Ok(())
    }
}

struct Failing;

#[async_trait::async_trait]
impl Executor for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    async fn setup(&mut self, _node: &mut GenericNode) -> Result<(), SetupFailure> {
        Ok(())
    }
    async fn execute(&mut self, _node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        Err(ExecutionFailure::fatal("disk on fire"))
    }
}

fn node() -> GenericNode {
    let dir = std::env::temp_dir();
    let config = NodeConfig::new(dir, "127.0.0.1:0".parse().expect("addr"));
    GenericNode::new(
        NodeIdentity { id: "n1".into(), name: "test".into() },
        config,
        Arc::new(MemoryBus::new()),
    )
}

#[tokio::test]
async fn setup_is_retried_and_execute_runs_until_finished() {
    let setups = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let runner = NodeRunner::new(node()).with(Counting {
        setups: setups.clone(),
        rounds: rounds.clone(),
        fail_setup_times: 2,
        finish_after: 5,
    });
    let run = runner.run(std::future::pending());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the runner ends once its only executor finished")
        .expect("no error");
    assert_eq!(setups.load(Ordering::SeqCst), 3);
    assert_eq!(rounds.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_fatal_failure_stops_the_node_with_its_reason() {
    let runner = NodeRunner::new(node()).with(Failing);
    let err = tokio::time::timeout(Duration::from_secs(10), runner.run(std::future::pending()))
        .await
        .expect("ends")
        .expect_err("fatal");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    match err {
        NodeError::Executor { executor, source: ExecutionFailure::Fatal { what, .. } } => {
            assert_eq!(executor, "failing");
            assert_eq!(what, "disk on fire");
        }
        other => panic!("the executor's own failure is kept as the source: {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_stops_every_executor() {
    let rounds = Arc::new(AtomicUsize::new(0));
    let runner = NodeRunner::new(node()).with(Counting {
        setups: Arc::new(AtomicUsize::new(0)),
        rounds: rounds.clone(),
        fail_setup_times: 0,
        finish_after: usize::MAX,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(runner.run(async {
        let _ = rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rounds.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    tx.send(()).expect("runner listening");
    tokio::time::timeout(Duration::from_secs(10), handle).await.expect("stops").expect("joins").expect("ok");
}

#[test]
fn identity_is_kept_across_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = NodeIdentity::load_or_create(dir.path(), Some("pi")).expect("create");
    let b = NodeIdentity::load_or_create(dir.path(), None).expect("load");
    assert_eq!(a.id, b.id);
    assert_eq!(a.name, "pi");
}

/// Starts a [`Counting`] executor, as already set up, then finishes.
struct Starting {
    spawner: ExecutorSpawner,
    started: Option<Counting>,
}

#[async_trait::async_trait]
impl Executor for Starting {
    fn name(&self) -> &str {
        "starting"
    }
    async fn setup(&mut self, _node: &mut GenericNode) -> Result<(), SetupFailure> {
        Ok(())
    }
    async fn execute(&mut self, _node: &mut GenericNode) -> Result<(), ExecutionFailure> {
        if let Some(next) = self.started.take() {
            if self.spawner.start_set_up(Box::new(next)).is_err() {
                return Err(ExecutionFailure::fatal("the runner stopped"));
            }
        }
        Err(ExecutionFailure::finished("handed on"))
    }
}

#[tokio::test]
async fn an_executor_started_while_running_runs_without_being_set_up_again() {
    let setups = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let runner = NodeRunner::new(node());
    let started =
        Counting { setups: setups.clone(), rounds: rounds.clone(), fail_setup_times: 0, finish_after: 3 };
    let spawner = runner.spawner();
    let runner = runner.with(Starting { spawner, started: Some(started) });
    tokio::time::timeout(Duration::from_secs(10), runner.run(std::future::pending()))
        .await
        .expect("the runner ends once both executors finished")
        .expect("no error");
    assert_eq!(rounds.load(Ordering::SeqCst), 3, "the started executor ran its rounds");
    assert_eq!(setups.load(Ordering::SeqCst), 0, "and was not set up again");
}
