//! Tests of the state: persistence across reopening, log limits and offsets,
//! the replica feed, settings, node keys, the database's permissions.

use super::*;
use crate::bus::{LogEntry, NodeReport};
use crate::deployment::Status;
use crate::stats::NodeStats;

fn entry(s: &str) -> LogEntry {
    LogEntry { stream: "stdout".into(), line: s.into() }
}

#[test]
fn deployments_survive_reopening_with_their_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        let d = state.create_deployment("file:///repo", "main").expect("create");
        state
            .update_deployment(&d.id, |d| {
                d.transition(Status::ValidatingDeploymentData, "checking", Utc::now());
                true
            })
            .expect("update");
        d.id
    };
    let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
    let d = state.deployment(&id).expect("still there");
    assert_eq!(d.status, Status::ValidatingDeploymentData);
    assert_eq!(d.status_history.len(), 2);
    assert_eq!(d.url, "file:///repo");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = State::open(dir.path(), StateLimits::default()).expect("open");
    let second = State::open(dir.path(), StateLimits::default());
    assert!(matches!(second, Err(StateError::InUse(_))), "{second:?}");
}

#[test]
fn logs_are_read_from_an_offset_and_bounded_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = StateLimits { log_lines: 5, log_bytes: 1 << 20, log_line_bytes: 10 };
    let state = State::open(dir.path(), limits).expect("open");
    let batch: Vec<_> = (0..8).map(|i| entry(&format!("line {i}"))).collect();
    state.append_logs("d1", batch).expect("append");
    let (lines, next) = state.logs("d1", 0, 100).expect("read");
    let texts: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["line 3", "line 4", "line 5", "line 6", "line 7"]);
    assert_eq!(next, 8);
    let (lines, next) = state.logs("d1", 6, 1).expect("read");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].seq, 6);
    assert_eq!(next, 7);
    state.append_logs("d1", [entry("a very long line indeed")]).expect("append");
    let (lines, _) = state.logs("d1", 8, 10).expect("read");
    assert_eq!(lines[0].line, "a very lon […]");
    drop(state);
    let state = State::open(dir.path(), limits).expect("reopen");
    state.append_logs("d1", [entry("after")]).expect("append");
    let (lines, _) = state.logs("d1", 0, 100).expect("read");
    assert_eq!(lines.len(), 5);
    assert_eq!(lines.last().map(|l| (l.seq, l.line.as_str())), Some((9, "after")));
}

#[test]
fn log_byte_limit_drops_oldest_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = StateLimits { log_lines: 1000, log_bytes: 400, log_line_bytes: 100 };
    let state = State::open(dir.path(), limits).expect("open");
    for i in 0..50 {
        state.append_logs("d", [entry(&format!("{i:>40}"))]).expect("append");
    }
    let (lines, _) = state.logs("d", 0, 1000).expect("read");
    assert!(lines.len() < 10, "kept {}", lines.len());
    assert_eq!(lines.last().map(|l| l.seq), Some(49));
}

#[tokio::test]
async fn changes_are_broadcast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), StateLimits::default()).expect("open");
    let mut rx = state.subscribe();
    let d = state.create_deployment("u", "b").expect("create");
    match rx.recv().await.expect("event") {
        Event::Deployment(s) => assert_eq!(s.id, d.id),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn log_lines_are_broadcast_once_per_batch_on_their_own_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), StateLimits::default()).expect("open");
    let mut changes = state.subscribe();
    let mut logs = state.subscribe_logs();
    let d = state.create_deployment("u", "b").expect("create");
    state.append_logs(&d.id, [entry("hello"), entry("world")]).expect("append");
    state.append_logs(&d.id, [entry("again")]).expect("append");
    let first = logs.recv().await.expect("a batch");
    assert_eq!(first.deployment, d.id);
    let texts: Vec<_> = first.lines.iter().map(|l| (l.seq, l.line.as_str())).collect();
    assert_eq!(texts, [(0, "hello"), (1, "world")]);
    let second = logs.recv().await.expect("a batch");
    assert_eq!(second.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [2]);
    // The deployments' channel carries the deployment only.
    assert!(matches!(changes.recv().await, Ok(Event::Deployment(s)) if s.id == d.id));
    assert!(changes.try_recv().is_err(), "no log lines among the changes");
}

#[test]
fn the_replica_feed_starts_where_its_snapshot_ends_and_keeps_the_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), StateLimits::default()).expect("open");
    let first = state.create_deployment("u", "b").expect("create");
    let mut feed = state.replica_feed();
    assert_eq!((feed.version, feed.deployments.len()), (1, 1));
    let second = state.create_deployment("v", "b").expect("create");
    state
        .update_deployment(&first.id, |d| {
            d.transition(Status::ValidatingDeploymentData, "checking", Utc::now());
            true
        })
        .expect("update");
    // A change that changes nothing is not a version.
    state.update_deployment(&first.id, |_| false).expect("no-op");
    assert_eq!(state.version(), 3);
    let next = feed.changes.try_recv().expect("the second request");
    assert_eq!(next.version, 2);
    assert!(matches!(&next.change, Change::Deployment(d) if d.id == second.id));
    let next = feed.changes.try_recv().expect("the update");
    assert_eq!(next.version, 3);
    assert!(matches!(&next.change, Change::Deployment(d) if d.status == Status::ValidatingDeploymentData));
    assert!(feed.changes.try_recv().is_err(), "nothing else");
}

#[test]
fn meta_values_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let state = State::open(dir.path(), StateLimits::default()).expect("open");
        assert_eq!(state.meta("token").expect("read"), None);
        state.set_meta("token", "abc").expect("write");
    }
    let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
    assert_eq!(state.meta("token").expect("read").as_deref(), Some("abc"));
}

#[test]
fn the_database_is_private_from_its_creation() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("state");
    let state = State::open(&dir, StateLimits::default()).expect("open");
    state.set_meta("token_hash", "x").expect("write");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("state.redb")), 0o600);
    drop(state);
    // A database made with wider permissions (an older version) is tightened.
    std::fs::set_permissions(dir.join("state.redb"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = State::open(&dir, StateLimits::default()).expect("reopen");
    assert_eq!(state.meta("token_hash").expect("read").as_deref(), Some("x"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("state.redb")), 0o600);
}

#[test]
fn meta_values_can_be_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), StateLimits::default()).expect("open");
    state.set_meta("token", "clear").expect("write");
    state.remove_meta("token").expect("remove");
    state.remove_meta("never-set").expect("remove nothing");
    assert_eq!(state.meta("token").expect("read"), None);
}

#[test]
fn a_node_keeps_the_key_it_registered_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path(), StateLimits::default()).expect("open");
    let key = crate::auth::NodeKey::generate().expect("key").public();
    let other = crate::auth::NodeKey::generate().expect("key").public();
    let n = state.register_node_key("n1", "pi", "http://10.0.0.2:8000", Role::Worker, key).expect("register");
    assert!(!n.up, "a node is up once it reports");
    assert_eq!(n.public_key, Some(key));
    assert!(state.register_node_key("n1", "pi", "http://10.0.0.2:8000", Role::Worker, key).is_ok());
    assert!(matches!(
        state.register_node_key("n1", "evil", "http://10.0.0.9:8000", Role::Worker, other),
        Err(KeyConflict::Other)
    ));
    let report = NodeReport {
        node: "n1".into(),
        name: "pi".into(),
        address: "http://10.0.0.2:8000".into(),
        stats: NodeStats::default(),
        deployments: Vec::new(),
        at: Utc::now(),
        runs_apps: true,
        instance: "i1".into(),
    };
    let n = state.record_report(&report, Role::Worker, Utc::now()).expect("report");
    assert!(n.up);
    assert_eq!(n.public_key, Some(key), "a report keeps the key");
    drop(state);
    let state = State::open(dir.path(), StateLimits::default()).expect("reopen");
    assert_eq!(state.node("n1").and_then(|n| n.public_key), Some(key));
}
