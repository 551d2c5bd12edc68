#!/usr/bin/env bash
# The test command: installs and starts what the tests need (scripts/test-env.sh),
# then runs the whole workspace's tests against the real Docker engine,
# RabbitMQ and Chromium. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
KRAKEN_NEED_RABBITMQ=1 scripts/test-env.sh
export KRAKEN_TEST_BASE_IMAGE="${KRAKEN_TEST_BASE_IMAGE:-kraken-test-base:bookworm-v2}"
cargo build --workspace --all-targets
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
