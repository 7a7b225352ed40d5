#!/usr/bin/env bash
# Install Qoima into .venv and start it on the embedded default (SQLite + files in ./qoima-data),
# with a few demo studies loaded. Extra arguments go to `qoima serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
if command -v npm >/dev/null && [ -f frontend/package.json ]; then
  # The built web app is committed; rebuild it from the npm registry when Node is available.
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi
exec .venv/bin/qoima serve --demo "$@"
