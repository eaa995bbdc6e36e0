#!/usr/bin/env bash
# Run Tessera's checks and tests. Installs what is missing first (Debian
# packages such as redis-server and openssl, and the Python packages).
#
# The tests start their own redis-server on a free port and use the
# PostgreSQL server at 127.0.0.1:5432 (database "test"; override with
# TESSERA_TEST_POSTGRES_URL) for the registry's PostgreSQL tests, which are
# skipped with a printed reason when no server answers. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== generated code"
.venv/bin/python scripts/gen_protos.py --check
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
