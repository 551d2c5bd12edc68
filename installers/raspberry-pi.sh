#!/usr/bin/env bash
# Installs Kraken on a Raspberry Pi running Raspberry Pi OS (Debian based):
# checks what a Pi needs, then does what installers/debian.sh does.
# Run `installers/raspberry-pi.sh --help` for the details.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prog="$(basename "$0")"

# Below this much memory Kraken refuses to install (without --skip-checks);
# below the second it warns.
min_mib=450
recommended_mib=900
cgroup_options="cgroup_enable=memory cgroup_memory=1"

usage() {
  cat <<EOF
Usage: sudo $prog [--enable-cgroup-memory] [--skip-checks] [--no-service] [KRAKEN_BINARY]

Installs Kraken on a Raspberry Pi (Raspberry Pi OS, Debian based) and starts
it as the systemd service \`kraken\`. First it checks:
  - memory: at least ${min_mib} MiB (${recommended_mib} MiB or more recommended; image
    builds are the heaviest part);
  - the memory cgroup is enabled in the kernel command line, so Docker can
    measure (and limit) the memory of each app. If it is not, the check says
    how to enable it, or --enable-cgroup-memory does it for you.
Then it runs installers/debian.sh: installs Docker (docker.io), installs the
kraken binary (KRAKEN_BINARY, or built with cargo from this source tree),
installs and starts the systemd unit, and prints the address.

A binary for a Pi must be built for its architecture: aarch64 for 64-bit
Raspberry Pi OS, armv7 (armhf) for 32-bit. This machine is $(uname -m).

It is safe to run again.

Options:
  --enable-cgroup-memory  add "${cgroup_options}" to the kernel command line
                          (a backup of the file is kept); reboot afterwards
  --skip-checks           install even if a check fails
  --no-service            install Docker and the binary only; no systemd unit
  -h, --help              show this help
EOF
}

log() { printf '[kraken-install] %s\n' "$*"; }
warn() { printf '[kraken-install] warning: %s\n' "$*" >&2; }
die() { printf '[kraken-install] error: %s\n' "$*" >&2; exit 1; }

enable_cgroup=0
skip_checks=0
pass=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --enable-cgroup-memory) enable_cgroup=1 ;;
    --skip-checks) skip_checks=1 ;;
    *) pass+=("$1") ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run this as root, e.g. sudo $prog"
[ -x "$here/debian.sh" ] || [ -f "$here/debian.sh" ] || die "$here/debian.sh is missing; keep the installers/ folder together"

failed=0
check_failed() {
  printf '[kraken-install] check failed: %s\n' "$*" >&2
  failed=1
}

# Which machine is this?
model=""
if [ -r /proc/device-tree/model ]; then
  model="$(tr -d '\0' </proc/device-tree/model)"
fi
case "$model" in
  *"Raspberry Pi"*) log "machine: $model ($(uname -m))" ;;
  *) warn "this does not look like a Raspberry Pi (${model:-no model found}); continuing" ;;
esac

# Memory.
mem_kib="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
mem_mib=$((mem_kib / 1024))
if [ "$mem_mib" -lt "$min_mib" ]; then
  check_failed "only ${mem_mib} MiB of memory; Kraken needs at least ${min_mib} MiB (a Pi with 1 GiB or more is recommended)"
elif [ "$mem_mib" -lt "$recommended_mib" ]; then
  warn "${mem_mib} MiB of memory: Kraken runs, but builds are slow and only small apps fit; consider adding swap"
else
  log "memory: ${mem_mib} MiB"
fi

# The memory cgroup.
memory_cgroup_enabled() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers
  else
    awk '$1 == "memory" && $4 == 1 {found = 1} END {exit !found}' /proc/cgroups 2>/dev/null
  fi
}

cmdline_file=""
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
  if [ -f "$f" ]; then
    cmdline_file="$f"
    break
  fi
done

cmdline_has_options() {
  [ -n "$cmdline_file" ] \
    && grep -qw 'cgroup_enable=memory' "$cmdline_file" \
    && grep -qw 'cgroup_memory=1' "$cmdline_file"
}

if memory_cgroup_enabled; then
  log "memory cgroup: enabled"
elif cmdline_has_options; then
  check_failed "the memory cgroup is set in $cmdline_file but not active yet; reboot (sudo reboot), then run $prog again"
elif [ "$enable_cgroup" -eq 1 ]; then
  [ -n "$cmdline_file" ] || die "neither /boot/firmware/cmdline.txt nor /boot/cmdline.txt exists; add \"$cgroup_options\" to the kernel command line by hand"
  cp -p "$cmdline_file" "$cmdline_file.before-kraken"
  # The file is one line: append the options to it.
  sed -i "1 s/\$/ $cgroup_options/" "$cmdline_file"
  log "added \"$cgroup_options\" to $cmdline_file (backup: $cmdline_file.before-kraken)"
  log "reboot now (sudo reboot), then run $prog again"
  exit 0
else
  where="${cmdline_file:-/boot/firmware/cmdline.txt (or /boot/cmdline.txt on older systems)}"
  check_failed "the memory cgroup is not enabled, so Docker cannot measure the memory of apps.
  To enable it, add these words to the end of the single line in $where:
      $cgroup_options
  (keep everything on one line, separated by spaces), then reboot.
  Or run: sudo $prog --enable-cgroup-memory"
fi

if [ "$failed" -eq 1 ]; then
  if [ "$skip_checks" -eq 1 ]; then
    warn "continuing despite the failed checks (--skip-checks)"
  else
    die "fix the problems above and run $prog again (or use --skip-checks)"
  fi
fi

log "checks passed; installing"
KRAKEN_INSTALLER_NAME="$prog" exec bash "$here/debian.sh" "${pass[@]+"${pass[@]}"}"
