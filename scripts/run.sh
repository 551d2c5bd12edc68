#!/usr/bin/env bash
# The main job on a fresh Debian machine: installs and starts Docker when it is
# missing, builds Kraken, and runs `kraken up` (UI and API on port 8000).
# Extra arguments go to `kraken up`, e.g. scripts/run.sh --listen 0.0.0.0:9000
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[run] %s\n' "$*" >&2; }

if ! command -v dockerd >/dev/null; then
  log "installing Docker (Debian's docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! timeout 10 docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl start docker 2>/dev/null; then
    :
  else
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    log "starting dockerd"
    nohup dockerd >/var/log/kraken-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 120); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# `kraken` and the program it fetches git repositories with, side by side.
cargo build --release -p kraken-bin -p kraken-lib --bins
exec target/release/kraken up "$@"
