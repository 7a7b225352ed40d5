#!/usr/bin/env bash
# Install everything the tests need (Debian's DCMTK and Chromium, Python test extras, the web
# build) and run the checks: ruff, import-linter and pytest. Needs PostgreSQL on
# 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (started here when installed but stopped).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v storescu >/dev/null || missing+=(dcmtk)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! (command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1) \
    && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
if command -v npm >/dev/null && [ -f frontend/package.json ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi

.venv/bin/ruff check src tests
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
