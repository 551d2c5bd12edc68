#!/usr/bin/env bash
# Installs Kraken on a Debian laptop or desktop (Debian 12 or newer, or a
# distribution based on it) and runs it as a systemd service.
# Run `installers/debian.sh --help` for the details.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
prog="${KRAKEN_INSTALLER_NAME:-$(basename "$0")}"
data_dir=/var/lib/kraken
bin_path=/usr/local/bin/kraken
helper_path=/usr/local/bin/kraken-fetch
unit_path=/etc/systemd/system/kraken.service

usage() {
  cat <<EOF
Usage: sudo $prog [--no-service] [KRAKEN_BINARY]

Installs Kraken and starts it as the systemd service \`kraken\`:
  1. installs Docker (Debian's docker.io) if it is missing, enables and starts it;
  2. takes the kraken binary given as KRAKEN_BINARY (with its fetch helper
     kraken-fetch in the same folder), or else builds both from this source
     tree with cargo (when a Rust toolchain is installed);
  3. installs them as $bin_path and $helper_path;
  4. installs $unit_path, enables and (re)starts it
     (\`kraken up --data-dir $data_dir\`);
  5. prints the address of the web interface and the platform token.

It is safe to run again: what is already there is kept; a new binary replaces
the old one and the service is restarted (running apps keep running).

Options:
  --no-service   install Docker and the binary only; no systemd unit
  -h, --help     show this help
EOF
}

log() { printf '[kraken-install] %s\n' "$*"; }
die() { printf '[kraken-install] error: %s\n' "$*" >&2; exit 1; }

binary=""
with_service=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-service) with_service=0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [ -z "$binary" ] || die "only one binary may be given (see --help)"
      binary="$1"
      ;;
  esac
  shift
done

if [ -n "$binary" ]; then
  [ -f "$binary" ] || die "$binary does not exist"
  [ -x "$binary" ] || die "$binary is not executable (chmod +x it, or give another file)"
  helper="$(dirname "$binary")/kraken-fetch"
  [ -x "$helper" ] || die "no executable kraken-fetch beside $binary: kraken fetches git repositories through it; put the kraken-fetch built with this kraken in the same folder"
fi
[ "$(id -u)" -eq 0 ] || die "run this as root, e.g. sudo $prog"
command -v apt-get >/dev/null || die "apt-get not found; this installer is for Debian and Debian-based systems"

apt_install() {
  log "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_systemd() { [ -d /run/systemd/system ]; }

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

# 1. Docker.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  log "Docker is installed"
fi
if has_systemd; then
  systemctl enable --now docker >/dev/null 2>&1 || die "could not start Docker; see: systemctl status docker"
fi
for _ in $(seq 1 60); do docker_ok && break; sleep 1; done
docker_ok || die "Docker does not answer (docker info failed); see: systemctl status docker"
log "Docker is running"

# 2. The binary.
find_cargo() {
  if command -v cargo >/dev/null; then
    command -v cargo
    return 0
  fi
  if [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    printf '%s\n' "${HOME:-/root}/.cargo/bin/cargo"
    return 0
  fi
  # Under sudo, the toolchain is usually in the invoking user's home.
  local user_home
  if [ -n "${SUDO_USER:-}" ]; then
    user_home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
    if [ -n "$user_home" ] && [ -x "$user_home/.cargo/bin/cargo" ]; then
      printf '%s\n' "$user_home/.cargo/bin/cargo"
      return 0
    fi
  fi
  return 1
}

if [ -n "$binary" ]; then
  log "using the binary $binary"
elif [ -f "$repo/Cargo.toml" ] && [ -d "$repo/kraken-bin" ] && cargo_bin="$(find_cargo)"; then
  need=()
  command -v cc >/dev/null || need+=(build-essential)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
  [ "${#need[@]}" -eq 0 ] || apt_install "${need[@]}"
  log "building kraken with $cargo_bin (a few minutes the first time)"
  # The release profile links the whole program at once (fat LTO), which
  # needs about 1.3 GB of memory at its peak; below 2 GiB, link in parts.
  profile=()
  if [ "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" -lt $((2 * 1024 * 1024)) ]; then
    log "less than 2 GiB of memory: building with thin link-time optimisation (a slightly larger binary)"
    profile=(--config 'profile.release.lto="thin"' --config 'profile.release.codegen-units=4')
  fi
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && [ "$(stat -c %U "$repo")" = "$SUDO_USER" ]; then
    # Build as the owner of the source tree, so target/ stays theirs.
    sudo -u "$SUDO_USER" -H "$cargo_bin" build --release "${profile[@]}" -p kraken-bin -p kraken-lib --bins --manifest-path "$repo/Cargo.toml"
  else
    "$cargo_bin" build --release "${profile[@]}" -p kraken-bin -p kraken-lib --bins --manifest-path "$repo/Cargo.toml"
  fi
  binary="$repo/target/release/kraken"
  helper="$repo/target/release/kraken-fetch"
  [ -x "$binary" ] || die "the build did not produce $binary"
  [ -x "$helper" ] || die "the build did not produce $helper"
else
  die "no kraken binary given and no Rust toolchain found.
  Either pass the path of a kraken binary built for this machine ($(uname -m)):
      sudo $prog ./kraken
  or install Rust (https://rustup.rs) and run this script from the source tree."
fi
"$binary" --version >/dev/null 2>&1 || die "$binary does not run on this machine (wrong architecture?)"

# 3. Install it.
if [ -e "$bin_path" ] && cmp -s "$binary" "$bin_path" && [ -e "$helper_path" ] && cmp -s "$helper" "$helper_path"; then
  log "$bin_path and $helper_path are up to date"
  changed=0
else
  # The helper first: a kraken that finds no helper beside it does not start.
  install -D -m 0755 "$helper" "$helper_path"
  install -D -m 0755 "$binary" "$bin_path"
  log "installed $bin_path ($("$bin_path" --version)) and $helper_path"
  changed=1
fi

if [ "$with_service" -eq 0 ]; then
  log "done; start it with: sudo kraken up"
  exit 0
fi

if ! has_systemd; then
  log "systemd is not running here, so no service is installed."
  log "start Kraken by hand: sudo kraken up --data-dir $data_dir"
  exit 0
fi

# 4. The systemd unit.
if [ -e "$unit_path" ] && cmp -s "$here/kraken.service" "$unit_path"; then
  log "$unit_path is up to date"
else
  install -D -m 0644 "$here/kraken.service" "$unit_path"
  systemctl daemon-reload
  log "installed $unit_path"
  changed=1
fi
systemctl enable kraken >/dev/null 2>&1
if systemctl is-active --quiet kraken; then
  if [ "$changed" -eq 1 ]; then
    log "restarting kraken (running apps keep running)"
    systemctl restart kraken
  else
    log "kraken is running"
  fi
else
  log "starting kraken"
  systemctl start kraken
fi

# 5. Wait for it and say where it is.
port=8000
listen="$(systemctl show -p Environment kraken | grep -o 'KRAKEN_LISTEN=[^ ]*' | cut -d= -f2 || true)"
[ -z "$listen" ] || port="${listen##*:}"
up=0
for _ in $(seq 1 30); do
  if "$bin_path" --server "http://127.0.0.1:$port" ps >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 1
done
[ "$up" -eq 1 ] || die "kraken did not answer on port $port within 30 s; see: journalctl -u kraken -n 50"

address="$(hostname -I 2>/dev/null | awk '{print $1}')"
token="$(cat "$data_dir/token" 2>/dev/null || true)"
echo
echo "Kraken is running."
echo "  web interface:  http://${address:-<this machine>}:$port/"
echo "  token:          ${token:-(see $data_dir/token)}"
echo "  logs:           journalctl -u kraken -f"
echo "Deploy with:      sudo kraken deploy <git url> --branch main --follow"
