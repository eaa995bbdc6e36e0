#!/usr/bin/env bash
# Run the whole Tessera suite on its embedded defaults: SQLite, an in-process
# cache and software CA keys under ~/.local/share/tessera (TESSERA_DATA_DIR
# moves it). Installs what is missing first. Arguments go to `tessera serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/tessera serve "$@"
