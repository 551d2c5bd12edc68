#!/usr/bin/env bash
# Installs and starts everything Kraken's test suite needs on a fresh Debian 12
# machine, and is quick when it is all there already:
#   - Debian's docker.io (dockerd), debootstrap, busybox-static, iproute2,
#     rabbitmq-server, chromium and chromium-driver
#   - a running dockerd (a stale pid file left by a killed daemon is cleared)
#   - the local base image the builders are pointed at in tests
#     (no registry is reachable, so it is made with debootstrap and cached):
#     Debian bookworm with nodejs and npm, python3 with pip and venv, busybox
#     and ca-certificates, so builds really install dependencies
#   - schemathesis (from PyPI, in a venv under the cache directory), which
#     checks the API against its OpenAPI document
# Usage: scripts/test-env.sh        (run as root)
set -euo pipefail

BASE_IMAGE="${KRAKEN_TEST_BASE_IMAGE:-kraken-test-base:bookworm-v2}"
CACHE_DIR="${KRAKEN_CACHE_DIR:-/var/cache/kraken}"
log() { printf '[test-env] %s\n' "$*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # With the recommended packages (fonts for Chromium among them), as verified.
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }
if ! docker_ok; then
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    log "clearing stale /var/run/docker.pid"
    rm -f /var/run/docker.pid
  fi
  rm -f /var/run/docker.sock /var/run/docker/containerd/containerd.pid 2>/dev/null || true
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/kraken-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do docker_ok && break; sleep 0.5; done
  docker_ok || { log "dockerd did not start; see /var/log/kraken-dockerd.log"; tail -20 /var/log/kraken-dockerd.log >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  mkdir -p "$CACHE_DIR"
  tarball="$CACHE_DIR/base-bookworm-v2.tar"
  if [ ! -s "$tarball" ]; then
    root="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    log "making the base image root file system with debootstrap (a few minutes)"
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    debootstrap --variant=minbase --include=nodejs,python3,busybox,ca-certificates bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$CACHE_DIR/debootstrap.log" 2>&1 \
      || { log "debootstrap failed; see $CACHE_DIR/debootstrap.log"; tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
    # npm's many dependencies are more than debootstrap resolves: apt installs
    # them inside the new root.
    log "installing npm, pip and venv in the base image root file system"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    if ! chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm python3-pip python3-venv' >>"$CACHE_DIR/debootstrap.log" 2>&1; then
      umount "$root/proc"
      log "installing packages in the base image failed; see $CACHE_DIR/debootstrap.log"; tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1
    fi
    umount "$root/proc"
    chroot "$root" apt-get clean
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* 
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $BASE_IMAGE"
  docker import "$tarball" "$BASE_IMAGE" >/dev/null
fi

# A local RabbitMQ image (Debian's rabbitmq-server) for the test of a platform
# that starts its own broker: it honours RABBITMQ_DEFAULT_USER/PASS as the
# official image does.
BROKER_IMAGE="${KRAKEN_TEST_BROKER_IMAGE:-kraken-test-rabbitmq:bookworm}"
if ! docker image inspect "$BROKER_IMAGE" >/dev/null 2>&1; then
  mkdir -p "$CACHE_DIR"
  tarball="$CACHE_DIR/rabbitmq-bookworm.tar"
  if [ ! -s "$tarball" ]; then
    root="$(mktemp -d "$CACHE_DIR/rabbit-root.XXXXXX")"
    log "making the broker image root file system with debootstrap (about a minute)"
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    debootstrap --variant=minbase --include=rabbitmq-server bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$CACHE_DIR/debootstrap-rabbit.log" 2>&1 \
      || { log "debootstrap failed; see $CACHE_DIR/debootstrap-rabbit.log"; tail -20 "$CACHE_DIR/debootstrap-rabbit.log" >&2; exit 1; }
    cat >"$root/usr/local/bin/kraken-test-broker" <<'SH'
#!/bin/sh
# Starts RabbitMQ in the foreground with the credentials given as
# RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (as the official image does).
set -e
mkdir -p /etc/rabbitmq
{
  echo "loopback_users = none"
  echo "listeners.tcp.default = 5672"
  if [ -n "$RABBITMQ_DEFAULT_USER" ]; then echo "default_user = $RABBITMQ_DEFAULT_USER"; fi
  if [ -n "$RABBITMQ_DEFAULT_PASS" ]; then echo "default_pass = $RABBITMQ_DEFAULT_PASS"; fi
} > /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq 2>/dev/null || true
export HOME=/var/lib/rabbitmq
exec /usr/sbin/rabbitmq-server
SH
    chmod +x "$root/usr/local/bin/kraken-test-broker"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $BROKER_IMAGE"
  docker import --change 'CMD ["/usr/local/bin/kraken-test-broker"]' --change 'EXPOSE 5672' "$tarball" "$BROKER_IMAGE" >/dev/null
fi

# schemathesis checks the running API against its OpenAPI document
# (kraken-bin/tests/api_schema_e2e.rs finds it here).
SCHEMATHESIS_VERSION=4.32.5
venv="$CACHE_DIR/schemathesis"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  mkdir -p "$CACHE_DIR"
  /usr/bin/python3 -m venv "$venv"
  cert=()
  # TLS to PyPI may go through a proxy that only the system's CA bundle trusts.
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cert=(--cert /etc/ssl/certs/ca-certificates.crt)
  "$venv/bin/pip" install -q "${cert[@]}" "schemathesis==$SCHEMATHESIS_VERSION" >"$CACHE_DIR/schemathesis-install.log" 2>&1 \
    || { log "installing schemathesis failed; see $CACHE_DIR/schemathesis-install.log"; tail -20 "$CACHE_DIR/schemathesis-install.log" >&2; exit 1; }
fi

if [ "${KRAKEN_NEED_RABBITMQ:-0}" = 1 ]; then
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting rabbitmq-server"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 120); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 0.5; done
  fi
fi
log "ready"
