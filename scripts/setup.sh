#!/usr/bin/env bash
# Install what Tessera needs on a Debian (or Ubuntu) machine, then the Python
# packages into .venv. Safe to run again: it installs only what is missing.
#
#   scripts/setup.sh          what running the suite needs
#   scripts/setup.sh --test   also what the tests need (openssl, redis-server,
#                             curl, SoftHSM2 and OpenSC's pkcs11-tool, nginx, wrk,
#                             and the development Python packages)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
[ "${1:-}" = "--test" ] && mode=test

# Commands the machine needs, and the Debian package that provides each.
declare -A packages=([python3]=python3 [openssl]=openssl)
if [ "$mode" = test ]; then
    packages+=([redis-server]=redis-server [curl]=curl [git]=git)
    # The PKCS#11 signer's tests run against a real SoftHSM2 token;
    # pkcs11-tool is there to inspect tokens by hand.
    packages+=([softhsm2-util]=softhsm2 [pkcs11-tool]=opensc)
    # The CRL tests start a real nginx as the relying party.
    packages+=([nginx]=nginx)
    # The OCSP benchmark's load client (benchmarks/ocsp.py).
    packages+=([wrk]=wrk)
fi

missing=()
for command in "${!packages[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
# venv needs ensurepip, which Debian ships separately.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        }
        sudo=sudo
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Tessera needs Python 3.11 or newer; this is {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when the project's requirements changed since the last run.
stamp=".venv/.installed-$mode-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    if [ "$mode" = test ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    else
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            -e '.[postgres]'
    fi
    rm -f .venv/.installed-"$mode"-*
    touch "$stamp"
fi
