#!/usr/bin/env bash
# Prepares a Debian developer machine to build and test Kraken.
# Run `installers/dev.sh --help` for the details.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
prog="$(basename "$0")"

usage() {
  cat <<EOF
Usage: sudo $prog [--no-rabbitmq]

Prepares this Debian machine for working on Kraken:
  1. installs the build tools Kraken's crates need (build-essential,
     pkg-config, libssl-dev, git, curl, ca-certificates) when missing;
  2. runs scripts/test-env.sh, which installs and starts what the tests need:
     Docker (docker.io), debootstrap, busybox-static, RabbitMQ, Chromium and
     ChromeDriver, and makes the local base image kraken-test-base:bookworm
     (a minimal Debian with nodejs, python3 and busybox; about a minute the
     first time, then cached in /var/cache/kraken);
  3. checks for a Rust toolchain (Rust 1.85 or newer) and says how to get one.

Afterwards, \`scripts/test.sh\` runs every test, and
\`cargo build -p kraken-bin -p kraken-lib --bins\` and then
\`target/debug/kraken up --base-image kraken-test-base:bookworm\`
run Kraken without needing any image from a registry.

It is safe to run again; what is already there is kept.

Options:
  --no-rabbitmq  do not start RabbitMQ (it is still installed)
  -h, --help     show this help
EOF
}

log() { printf '[kraken-dev] %s\n' "$*"; }
die() { printf '[kraken-dev] error: %s\n' "$*" >&2; exit 1; }

need_rabbitmq=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-rabbitmq) need_rabbitmq=0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run this as root, e.g. sudo $prog"
command -v apt-get >/dev/null || die "apt-get not found; this script is for Debian and Debian-based systems"
[ -x "$repo/scripts/test-env.sh" ] || die "$repo/scripts/test-env.sh not found; run $prog from a Kraken source tree"

# 1. Build tools.
missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
{ command -v pkg-config >/dev/null && pkg-config --exists openssl; } || missing+=(libssl-dev)
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "build tools are installed"
fi

# 2. What the tests need.
log "running scripts/test-env.sh"
KRAKEN_NEED_RABBITMQ="$need_rabbitmq" "$repo/scripts/test-env.sh"

# 3. Rust.
cargo_bin=""
if command -v cargo >/dev/null; then
  cargo_bin="$(command -v cargo)"
elif [ -n "${SUDO_USER:-}" ]; then
  user_home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
  if [ -x "$user_home/.cargo/bin/cargo" ]; then
    cargo_bin="$user_home/.cargo/bin/cargo"
  fi
fi
if [ -n "$cargo_bin" ]; then
  log "Rust: $("$cargo_bin" --version 2>/dev/null || echo "$cargo_bin")"
else
  log "no Rust toolchain found. Install one (Rust 1.85 or newer), e.g. with rustup:"
  log "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
fi

log "ready. Run the tests with: scripts/test.sh"
