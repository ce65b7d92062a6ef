#!/usr/bin/env bash
# Installs what the tests need and runs every test (the README's second command; CI runs it).
# Browser tests need Chromium: scripts/install-chromium.sh installs Debian's package when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[test]"
if [ -x scripts/install-chromium.sh ] && [ "${NBFEED_SKIP_BROWSER:-0}" != "1" ]; then
  bash scripts/install-chromium.sh || echo "warning: Chromium could not be installed; browser tests will be skipped"
fi
# Tests of the shared feed use a real redis-server (Debian's package), never a fake.
bash scripts/install-debian-packages.sh /usr/bin/redis-server=redis-server \
  || echo "warning: redis-server could not be installed; the shared-feed tests will be skipped"
python -m ruff check --quiet nbfeed tests bench || { echo "ruff found problems"; exit 1; }
exec python -m pytest -p no:cacheprovider "$@"
