#!/usr/bin/env bash
# Installs Debian packages the tests need when their program is missing, e.g.
#   bash scripts/install-debian-packages.sh /usr/bin/redis-server=redis-server
# Each argument is PROGRAM=PACKAGE: PACKAGE is installed only if PROGRAM is not executable.
#
# The tests use real programs, never stand-ins: a real redis-server (started per test run on a
# free loopback port, without persistence) and Debian's Chromium for the browser tests. Nothing
# is installed by hand: this script is how a fresh machine gets them. Idempotent and quiet: exits
# 0 at once when every program is there; otherwise runs apt-get update + install (as root, or
# through password-less sudo) and exits non-zero if that fails, so scripts/test.sh can say which
# tests will be skipped.
set -euo pipefail

missing=()
for pair in "$@"; do
  program=${pair%%=*}
  package=${pair#*=}
  if [ ! -x "$program" ]; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-debian-packages: apt-get not found; install ${missing[*]} by hand" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install-debian-packages: not root and no password-less sudo; cannot install ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success; on failure the apt output is what explains it. Concurrent installs (another
# test run on the same machine) wait for dpkg's lock instead of failing.
if ! { "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq \
       && "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "install-debian-packages: apt-get failed for ${missing[*]}:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
for pair in "$@"; do
  program=${pair%%=*}
  if [ ! -x "$program" ]; then
    echo "install-debian-packages: ${pair#*=} installed, but $program is missing" >&2
    exit 1
  fi
done
