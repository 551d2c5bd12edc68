//! Smoke test of the benchmark harness: each benchmark runs once in its tiny
//! configuration against a real agent (the workspace's debug `kraken`) and
//! must print its report. Figures are not checked: the tests never judge time.

use std::path::PathBuf;
use std::process::Command;

/// The debug `kraken` binary, built if needed (it belongs to another package,
/// so Cargo does not build it for this one's tests).
fn kraken() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "kraken-bin", "--bin", "kraken"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building kraken failed");
    PathBuf::from(env!("CARGO_BIN_EXE_kraken-bench")).with_file_name("kraken")
}

/// Runs `kraken-bench --tiny <bench>` and returns its report.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kraken-bench"))
        .arg("--kraken")
        .arg(kraken())
        .arg("--tiny")
        // A benchmark that hangs fails the test instead of the whole suite.
        .args(["--deadline-secs", "600"])
        .args(args)
        .output()
        .expect("kraken-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kraken-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("machine: "), "no machine line:\n{stdout}");
    stdout
}

#[test]
fn deploy_reports_both_paths_and_the_overhead() {
    let out = bench(&["deploy"]);
    assert!(out.contains("| git clone + docker build + docker run | "), "{out}");
    assert!(out.contains("| kraken POST /api/v1/deployments | "), "{out}");
    assert!(out.contains("overhead: "), "{out}");
}

#[test]
fn acted_reports_percentiles() {
    let out = bench(&["acted"]);
    assert!(out.contains("## Request stored → acted on (2 requests"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("| ") && l.ends_with(" ms |")), "{out}");
}

#[test]
fn api_reports_the_page_the_full_list_and_one_deployment_idle_and_under_a_log_flood() {
    let out = bench(&["api"]);
    for agent in ["idle", "an app flooding its log"] {
        for endpoint in [
            "GET /api/v1/deployments |",
            "GET /api/v1/deployments?limit=1000 |",
            "GET /api/v1/deployments/{id} |",
        ] {
            assert!(out.contains(&format!("| {agent} | {endpoint}")), "no {agent} {endpoint}:\n{out}");
        }
    }
    assert!(out.contains("log lines in"), "{out}");
}

#[test]
fn idle_reports_memory_cpu_and_size() {
    let out = bench(&["idle"]);
    for what in ["| binary size |", "| resident memory after the window |", "| CPU over the window |"] {
        assert!(out.contains(what), "no {what}:\n{out}");
    }
}

#[test]
fn logs_reports_the_rate_the_memory_and_each_stage() {
    let out = bench(&["logs"]);
    for what in [
        "| lines stored | ",
        "| agent's resident memory while flooding | ",
        "| engine → a second `docker logs --follow` | ",
        "| engine → a reader attached (`docker attach`) | ",
        "| the agent's path alone (split, log sink, in-process bus, state) | ",
        "| the state alone (`append_logs`",
    ] {
        assert!(out.contains(what), "no {what}:\n{out}");
    }
    assert!(out.contains(" lines/s** |"), "{out}");
}

#[test]
fn place_reports_placements_per_second() {
    let out = bench(&["place"]);
    assert!(out.contains("## Placement throughput"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("| 5 | 20 | ")), "{out}");
}

#[test]
fn update_reports_the_time_and_the_failed_requests() {
    let out = bench(&["update"]);
    assert!(out.contains("## Update after a one-file commit (rounds: 1)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("| 1 | ")), "{out}");
}
