//! Unit tests of one reconciliation pass: placement, drain, rescheduling
//! after a node dies, destroy and its resend, node health and priorities.

use super::*;
use crate::orchestrator::testing::{deployment, node, with_app_data};

const ME: &str = "orch";

/// A pass over `deployments` and `nodes` (with this orchestrator's own
/// node first, at priority 0, so priorities need no change), nothing sent,
/// node health judged with a 10 s grace.
fn pass(deployments: Vec<Deployment>, nodes: Vec<NodeRecord>) -> Decision {
    pass_with(deployments, nodes, &HashMap::new(), Instant::now())
}

fn pass_with(
    deployments: Vec<Deployment>,
    nodes: Vec<NodeRecord>,
    sent: &HashMap<DeploymentId, Sent>,
    instant: Instant,
) -> Decision {
    let now = Utc::now();
    let health =
        Health { grace: chrono::Duration::seconds(10), listening_since: now - chrono::Duration::hours(1) };
    reconcile(Observed {
        orchestrator: ME,
        deployments,
        nodes,
        sent,
        now,
        instant,
        health: Some(health),
        allow_local_sources: false,
    })
}

/// Nodes `orch` (runs no apps), then `ids` in order of their priority.
fn platform(ids: &[&str]) -> Vec<NodeRecord> {
    let mut me = node(ME);
    me.runs_apps = false;
    std::iter::once(me)
        .chain(ids.iter().enumerate().map(|(i, id)| {
            let mut n = node(id);
            n.rollover_priority = i as u32 + 1;
            n
        }))
        .collect()
}

fn on(mut d: Deployment, node: &str) -> Deployment {
    d.node = Some(node.into());
    d
}

fn transition(id: &str, status: Status, message: &str) -> Action {
    Action::Transition { deployment: id.into(), status, message: message.into() }
}

fn placed_on(actions: &[Action]) -> Vec<(&str, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Place { deployment, node, .. } => Some((deployment.as_str(), node.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_request_is_checked_then_fetched() {
    let d = deployment("d1", Status::DeploymentRequested);
    let decision = pass(vec![d], platform(&["a"]));
    assert_eq!(
        decision.actions,
        vec![
            transition("d1", Status::ValidatingDeploymentData, "checking the URL and branch"),
            transition(
                "d1",
                Status::RetrievingApplicationData,
                "fetching https://example.org/d1.git (main) and reading its shipwreck.toml"
            ),
            Action::Retrieve {
                deployment: "d1".into(),
                url: "https://example.org/d1.git".into(),
                branch: "main".into(),
                update: false
            },
        ]
    );
}

#[test]
fn a_bad_request_errors_with_the_reason_and_is_not_fetched() {
    let mut d = deployment("d1", Status::DeploymentRequested);
    d.url = "/srv/app".into();
    let actions = pass(vec![d], platform(&["a"])).actions;
    assert_eq!(actions.len(), 2, "{actions:?}");
    match &actions[1] {
        Action::Transition { status: Status::Errored, message, .. } => {
            assert!(message.contains("--allow-local-sources"), "{message}")
        }
        other => panic!("expected the request to be refused, got {other:?}"),
    }
}

#[test]
fn work_read_is_placed_on_the_least_loaded_nodes_counting_what_this_pass_placed() {
    let mut nodes = platform(&["a", "b"]);
    nodes[1].stats.cpu_percent = 10.0;
    let ready = |id| with_app_data(deployment(id, Status::DelegatingDeployment));
    let decision = pass(vec![ready("d1"), ready("d2"), ready("d3")], nodes);
    // b is idle: d1 goes there; then a (10% CPU) beats b with one deployment;
    // then b (one deployment) beats a (one deployment and 10% CPU).
    assert_eq!(placed_on(&decision.actions), vec![("d1", "b"), ("d2", "a"), ("d3", "b")]);
    match &decision.actions[0] {
        Action::Place { message, .. } => assert_eq!(
            message,
            "placed on b-name (least loaded of 2 nodes (cpu 0%, memory 0%, 0 deployments))"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn work_with_no_node_to_run_it_waits_once_and_is_placed_when_one_comes() {
    let d = with_app_data(on(deployment("d1", Status::DelegatingDeployment), "gone"));
    let decision = pass(vec![d.clone()], platform(&[]));
    assert_eq!(
        decision.actions,
        vec![Action::AwaitNode { deployment: "d1".into(), message: "waiting for a node to run it".into() }]
    );
    // Waiting already, on no node: nothing more to say.
    let mut waiting = d.clone();
    waiting.node = None;
    assert_eq!(pass(vec![waiting.clone()], platform(&[])).actions, vec![]);
    assert_eq!(placed_on(&pass(vec![waiting], platform(&["a"])).actions), vec![("d1", "a")]);
}

#[test]
fn work_handed_over_without_its_app_data_is_fetched_again() {
    let d = deployment("d1", Status::DelegatingDeployment);
    let actions = pass(vec![d], platform(&["a"])).actions;
    assert_eq!(
        actions[0],
        transition("d1", Status::RetrievingApplicationData, "fetching the repository again")
    );
    assert!(matches!(actions[1], Action::Retrieve { update: false, .. }), "{actions:?}");
}

#[test]
fn work_on_its_live_node_is_left_alone() {
    for status in [
        Status::DelegatingDeployment,
        Status::BuildingDeployment,
        Status::TestingDeployment,
        Status::Deploying,
        Status::Running,
        Status::Errored,
    ] {
        let d = with_app_data(on(deployment("d1", status), "a"));
        assert_eq!(pass(vec![d], platform(&["a", "b"])).actions, vec![], "{status}");
    }
}

#[test]
fn a_drained_node_s_apps_move_to_another_node_if_there_is_one() {
    let d = with_app_data(on(deployment("d1", Status::Running), "a"));
    let mut nodes = platform(&["a", "b"]);
    nodes[1].drained = true;
    let actions = pass(vec![d.clone()], nodes.clone()).actions;
    assert_eq!(placed_on(&actions), vec![("d1", "b")]);
    match &actions[0] {
        Action::Place { message, .. } => {
            assert!(message.starts_with("node a-name is drained; placed on b-name"))
        }
        other => panic!("{other:?}"),
    }
    // With nowhere to go it keeps running where it is.
    nodes[2].drained = true;
    assert_eq!(pass(vec![d], nodes).actions, vec![]);
}

#[test]
fn a_node_silent_past_the_grace_is_marked_down_and_its_work_placed_elsewhere() {
    let now = Utc::now();
    let mut nodes = platform(&["a", "b"]);
    nodes[0].last_heartbeat = Some(now);
    nodes[1].last_heartbeat = Some(now - chrono::Duration::seconds(30));
    nodes[2].last_heartbeat = Some(now - chrono::Duration::milliseconds(9_500));
    let building = with_app_data(on(deployment("d1", Status::BuildingDeployment), "a"));
    let running = with_app_data(on(deployment("d2", Status::Running), "a"));
    let decision = reconcile(Observed {
        orchestrator: ME,
        deployments: vec![building, running],
        nodes,
        sent: &HashMap::new(),
        now,
        instant: Instant::now(),
        health: Some(Health {
            grace: chrono::Duration::seconds(10),
            listening_since: now - chrono::Duration::hours(1),
        }),
        allow_local_sources: false,
    });
    assert_eq!(decision.actions[0], Action::MarkDown { node: "a".into(), silent_ms: 30_000 });
    // The candidate that went down gives its place to one that is up.
    assert!(decision.actions.contains(&Action::SetPriority { node: "b".into(), priority: 1 }));
    assert!(decision.actions.contains(&Action::SetPriority { node: "a".into(), priority: 2 }));
    assert_eq!(placed_on(&decision.actions), vec![("d1", "b"), ("d2", "b")]);
    assert!(decision.actions.iter().any(
        |a| matches!(a, Action::Place { message, .. } if message.starts_with("node a-name is down; placed on b-name"))
    ));
    // The next pass comes just after b would be overdue (in half a
    // second), sooner than the regular pass.
    assert_eq!(decision.requeue_after, Duration::from_millis(510));
}

#[test]
fn silence_says_nothing_while_the_bus_is_down_or_before_nodes_could_report() {
    let mut nodes = platform(&["a"]);
    nodes[1].last_heartbeat = Some(Utc::now() - chrono::Duration::seconds(30));
    let d = with_app_data(on(deployment("d1", Status::Running), "a"));
    let now = Utc::now();
    let nothing_sent = HashMap::new();
    let observed = |health| Observed {
        orchestrator: ME,
        deployments: vec![d.clone()],
        nodes: nodes.clone(),
        sent: &nothing_sent,
        now,
        instant: Instant::now(),
        health,
        allow_local_sources: false,
    };
    let bus_down = reconcile(observed(None));
    assert_eq!(bus_down.actions, vec![]);
    assert_eq!(bus_down.requeue_after, PASS_EVERY);
    let just_started = Health { grace: chrono::Duration::seconds(10), listening_since: now };
    assert_eq!(reconcile(observed(Some(just_started))).actions, vec![]);
}

#[test]
fn destruction_is_asked_of_the_node_that_holds_it_or_is_done_at_once() {
    let d = on(deployment("d1", Status::DestructionRequested), "a");
    let generation = d.generation;
    assert_eq!(
        pass(vec![d.clone()], platform(&["a"])).actions,
        vec![
            transition("d1", Status::DelegatingDestruction, "asking a-name to remove it"),
            Action::Destroy { node: "a".into(), deployment: "d1".into(), generation },
        ]
    );
    let mut nodes = platform(&["a"]);
    nodes[1].up = false;
    assert_eq!(pass(vec![d], nodes).actions, vec![transition("d1", Status::Destroyed, NODE_DOWN_ON_DESTROY)]);
    let never_placed = deployment("d2", Status::DestructionRequested);
    assert_eq!(
        pass(vec![never_placed], platform(&["a"])).actions,
        vec![transition("d2", Status::Destroyed, "it was never started; nothing to remove")]
    );
}

#[test]
fn a_removal_the_node_does_not_confirm_is_asked_for_again_after_a_while() {
    let d = on(deployment("d1", Status::DelegatingDestruction), "a");
    let destroy = Action::Destroy { node: "a".into(), deployment: "d1".into(), generation: d.generation };
    let base = Instant::now();
    let sent = HashMap::from([(
        "d1".to_string(),
        Sent { at: base, wall: Utc::now(), target: "a".into(), instance: None },
    )]);
    let soon = pass_with(vec![d.clone()], platform(&["a"]), &sent, base + Duration::from_secs(5));
    assert_eq!(soon.actions, vec![]);
    let late = pass_with(vec![d.clone()], platform(&["a"]), &sent, base + RESEND_AFTER);
    assert_eq!(late.actions, vec![destroy.clone()]);
    // Nothing recorded as sent (this orchestrator just took over): ask now.
    assert_eq!(pass(vec![d.clone()], platform(&["a"])).actions, vec![destroy]);
    // Its node died meanwhile: the container goes when the node returns.
    let mut nodes = platform(&["a"]);
    nodes[1].up = false;
    let d = on(deployment("d1", Status::DestructionInProgress), "a");
    assert_eq!(pass(vec![d], nodes).actions, vec![transition("d1", Status::Destroyed, NODE_DOWN_ON_DESTROY)]);
}

#[test]
fn an_update_request_fetches_the_newest_commit() {
    let d = with_app_data(on(deployment("d1", Status::UpdateRequested), "a"));
    assert_eq!(
        pass(vec![d], platform(&["a"])).actions,
        vec![Action::Retrieve {
            deployment: "d1".into(),
            url: "https://example.org/d1.git".into(),
            branch: "main".into(),
            update: true
        }]
    );
}

#[test]
fn rollover_priorities_stay_dense_with_the_nodes_that_are_up_first() {
    let mut nodes = platform(&["a", "b", "c"]);
    nodes[0].rollover_priority = 4;
    nodes[1].up = false;
    nodes[3].rollover_priority = 7;
    let actions = pass(vec![], nodes).actions;
    assert_eq!(
        actions,
        vec![
            Action::SetPriority { node: ME.into(), priority: 0 },
            Action::SetPriority { node: "b".into(), priority: 1 },
            Action::SetPriority { node: "c".into(), priority: 2 },
            Action::SetPriority { node: "a".into(), priority: 3 },
        ]
    );
    assert_eq!(pass(vec![], platform(&["a", "b"])).actions, vec![], "dense already");
}

/// What the loop's apply does to the state, for the actions a pass decides
/// about deployments and nodes (fetching and sending have no effect on
/// them; a sent removal is recorded in `sent`).
fn apply(
    actions: &[Action],
    deployments: &mut [Deployment],
    nodes: &mut [NodeRecord],
    sent: &mut HashMap<DeploymentId, Sent>,
    at: Instant,
) {
    let now = Utc::now();
    let find = |deployments: &mut [Deployment], id: &str| -> usize {
        deployments.iter().position(|d| d.id == id).expect("a known deployment")
    };
    for action in actions.iter().cloned() {
        match action {
            Action::MarkDown { node, .. } => {
                nodes.iter_mut().filter(|n| n.id == node).for_each(|n| n.up = false)
            }
            Action::SetPriority { node, priority } => {
                nodes.iter_mut().filter(|n| n.id == node).for_each(|n| n.rollover_priority = priority)
            }
            Action::Transition { deployment, status, message } => {
                let i = find(deployments, &deployment);
                deployments[i].transition(status, message, now);
            }
            Action::Place { deployment, node, message } => {
                let d = &mut deployments[find(deployments, &deployment)];
                d.generation += 1;
                d.node = Some(node);
                d.container_id = None;
                d.transition(Status::DelegatingDeployment, message, now);
            }
            Action::AwaitNode { deployment, message } => {
                let d = &mut deployments[find(deployments, &deployment)];
                d.node = None;
                d.transition(Status::DelegatingDeployment, message, now);
            }
            Action::Destroy { node, deployment, .. } => {
                sent.insert(deployment, Sent { at, wall: now, target: node, instance: None });
            }
            Action::Retrieve { .. } => {}
            other => panic!("a pass does not decide {other:?}"),
        }
    }
}

#[test]
fn a_second_pass_over_what_the_first_decided_asks_for_nothing_new() {
    let now = Utc::now();
    let mut nodes = platform(&["a", "b", "c", "dead"]);
    nodes[2].drained = true;
    nodes[4].last_heartbeat = Some(now - chrono::Duration::seconds(60));
    for n in &mut nodes[..4] {
        n.last_heartbeat = Some(now);
    }
    let mut deployments = vec![
        deployment("requested", Status::DeploymentRequested),
        deployment("validating", Status::ValidatingDeploymentData),
        with_app_data(deployment("read", Status::DelegatingDeployment)),
        deployment("read-lost", Status::DelegatingDeployment),
        with_app_data(on(deployment("on-drained", Status::Running), "b")),
        with_app_data(on(deployment("on-dead", Status::Deploying), "dead")),
        with_app_data(on(deployment("running", Status::Running), "a")),
        on(deployment("destroy", Status::DestructionRequested), "c"),
        on(deployment("destroy-on-dead", Status::DestructionInProgress), "dead"),
    ];
    let mut sent = HashMap::new();
    let at = Instant::now();
    let health = Some(Health {
        grace: chrono::Duration::seconds(10),
        listening_since: now - chrono::Duration::hours(1),
    });
    fn observe<'a>(
        deployments: &[Deployment],
        nodes: &[NodeRecord],
        sent: &'a HashMap<DeploymentId, Sent>,
        (now, instant, health): (DateTime<Utc>, Instant, Option<Health>),
    ) -> Observed<'a> {
        let (deployments, nodes) = (deployments.to_vec(), nodes.to_vec());
        Observed {
            orchestrator: ME,
            deployments,
            nodes,
            sent,
            now,
            instant,
            health,
            allow_local_sources: false,
        }
    }
    let clock = (now, at, health);
    let first = reconcile(observe(&deployments, &nodes, &sent, clock)).actions;
    assert!(first.len() > 10, "{first:#?}");
    apply(&first, &mut deployments, &mut nodes, &mut sent, at);
    let second = reconcile(observe(&deployments, &nodes, &sent, clock)).actions;
    // Only the fetches under way are asked for again (the loop starts each once).
    let fetching: Vec<&str> = second
        .iter()
        .map(|a| match a {
            Action::Retrieve { deployment, .. } => deployment.as_str(),
            other => panic!("a second pass asked for {other:?}"),
        })
        .collect();
    assert_eq!(fetching, vec!["requested", "validating", "read-lost"]);
    // And everything ended where it should.
    let status = |id: &str| deployments.iter().find(|d| d.id == id).map(|d| (d.status, d.node.clone()));
    assert_eq!(status("read").map(|s| s.0), Some(Status::DelegatingDeployment));
    assert_ne!(status("on-drained").and_then(|s| s.1), Some("b".into()));
    assert_ne!(status("on-dead").and_then(|s| s.1), Some("dead".into()));
    assert_eq!(status("destroy").map(|s| s.0), Some(Status::DelegatingDestruction));
    assert_eq!(status("destroy-on-dead").map(|s| s.0), Some(Status::Destroyed));
    assert!(!nodes[4].up, "the dead node is marked down");
}
