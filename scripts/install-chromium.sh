#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/browser/), only when it is missing.
#
# Playwright's own browser download does not work on our machines (closed network), so the
# tests drive Debian's /usr/bin/chromium instead. Idempotent and quiet: exits 0 at once when
# Chromium is already there; otherwise runs apt-get update + install (as root, or through sudo
# when it is available) and exits non-zero if that fails, so scripts/test.sh can warn that the
# browser tests will be skipped.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: apt-get not found; install Chromium by hand ($CHROMIUM)" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install-chromium: not root and no password-less sudo; cannot install Chromium" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success; on failure the apt output is what explains it.
if ! { "${SUDO[@]}" apt-get update -qq \
       && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  echo "install-chromium: apt-get failed:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
  echo "install-chromium: the chromium package installed, but $CHROMIUM is missing" >&2
  exit 1
fi
