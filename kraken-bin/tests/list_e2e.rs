//! The list of deployments through the real `kraken up` and the CLI, with
//! more deployments stored than one page holds: `kraken ps` follows the
//! pages and shows every deployment once, in the list's order, and the API
//! hands out pages that cover the same list.

mod support;

use serde_json::Value;
use support::{get_json, seed_failed_deployments, text, Agent};

/// One more than the largest page, so the list takes two pages at any size.
const STORED: usize = 1001;

#[test]
fn ps_shows_every_deployment_over_several_pages() {
    let dir = tempfile::Builder::new().prefix("kraken-e2e-list-").tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let ids = seed_failed_deployments(&data_dir, STORED);
    let agent = Agent::start_in(&data_dir, support::free_port());

    let out = agent.cli(&["ps", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("ps --json prints JSON");
    let listed: Vec<&str> =
        listed.as_array().expect("a list").iter().map(|d| d["id"].as_str().expect("an id")).collect();
    assert_eq!(listed, ids, "every deployment, oldest first, each once");

    let shown = text(&agent.cli(&["ps"]));
    assert_eq!(shown.lines().filter(|l| l.contains("Errored")).count(), STORED, "one row each:\n{shown}");
    assert!(shown.contains(&ids[0]) && shown.contains(&ids[STORED - 1]), "the first and the last");

    // The API's pages, walked by hand, give the same list.
    let mut walked: Vec<String> = Vec::new();
    let mut path = "/api/v1/deployments".to_string();
    loop {
        let page = get_json(agent.port, &path).expect("a page");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= kraken_lib::api::DEFAULT_PAGE, "{path}: {} items", items.len());
        walked.extend(items.iter().map(|d| d["id"].as_str().expect("an id").to_string()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/deployments?after={next}"),
            None => break,
        }
    }
    assert_eq!(walked, ids);
}
