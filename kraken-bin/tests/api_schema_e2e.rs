//! The API checked against its own OpenAPI document with schemathesis (a
//! property-based HTTP fuzzer from PyPI, installed by `scripts/test-env.sh`
//! into a venv under the cache directory): a real `kraken up` and
//! schemathesis run together in a network namespace of their own (only
//! loopback), so the repositories the fuzzer makes up are never looked for on
//! a real network. A bounded number of cases per operation, a fixed seed;
//! every check schemathesis has but `use_after_free` (`--checks all` turns
//! on every check, whatever the configuration file says, so it is left out
//! here; `tests/fixtures/schemathesis.toml` says why), tuned only where that
//! file says why. Nothing may fail, and the
//! agent's log may hold no panic.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{base_image, free_port, TOKEN};

/// Where `scripts/test-env.sh` installs schemathesis.
fn schemathesis() -> PathBuf {
    if let Ok(path) = std::env::var("KRAKEN_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("KRAKEN_CACHE_DIR").unwrap_or_else(|_| "/var/cache/kraken".to_string());
    PathBuf::from(cache).join("schemathesis/bin/schemathesis")
}

/// Starts the agent, waits for its port, runs schemathesis, stops the agent;
/// exits with schemathesis's status. Runs inside `unshare --net`.
const SCRIPT: &str = r#"
set -u
ip link set lo up
"$KRAKEN" up --listen "127.0.0.1:$PORT" --publish-ip 127.0.0.1 --data-dir "$DATA" --token "$TOKEN" \
  --base-image "$BASE" --no-discovery --fetch-idle-timeout 2 --fetch-timeout 20 > "$AGENT_LOG" 2>&1 &
agent=$!
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cd "$WORK"
"$SCHEMATHESIS" --no-color --config-file "$CONFIG" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  -H "Authorization: Bearer $TOKEN" --checks all --exclude-checks use_after_free --exclude-path /api/v1/events \
  --max-examples 25 --seed 1 --workers 1 --request-timeout 15 --generation-database none
status=$?
kill -TERM "$agent"
wait "$agent"
exit $status
"#;

#[test]
fn the_api_matches_its_openapi_document() {
    let tool = schemathesis();
    assert!(
        tool.exists(),
        "schemathesis is not installed at {}; run scripts/test-env.sh (it installs it into a venv under the cache directory)",
        tool.display()
    );
    let dir = tempfile::Builder::new().prefix("kraken-schema-").tempdir().expect("tempdir");
    let agent_log = dir.path().join("agent.log");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
    let out = Command::new("unshare")
        .args(["--net", "--", "bash", "-c", SCRIPT])
        .env("KRAKEN", env!("CARGO_BIN_EXE_kraken"))
        .env("PORT", free_port().to_string())
        .env("DATA", dir.path().join("data"))
        .env("TOKEN", TOKEN)
        .env("BASE", base_image())
        .env("AGENT_LOG", &agent_log)
        .env("WORK", dir.path())
        .env("SCHEMATHESIS", &tool)
        .env("CONFIG", &config)
        .output()
        .expect("unshare runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let agent = std::fs::read_to_string(&agent_log).unwrap_or_default();
    let tail = |text: &str, n: usize| {
        text.lines().rev().take(n).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    eprintln!("{}", tail(&report, 25));
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}\n--- agent log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&agent, 60)
    );
    assert!(report.contains("passed"), "schemathesis ran no case:\n{report}");
    assert!(!agent.contains("panicked"), "the agent panicked:\n{}", tail(&agent, 60));
    // Remove what the fuzzed deployments may have left (none start: nothing can be fetched).
    let node = std::fs::read_to_string(dir.path().join("data/node-id")).unwrap_or_default();
    if !node.trim().is_empty() {
        for id in
            support::docker_lines(&["ps", "-aq", "--filter", &format!("label=kraken.node={}", node.trim())])
        {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}
