#!/usr/bin/env bash
# Create a SoftHSM2 token for development and tests.
#
#   deploy/softhsm/create-token.sh DIR [LABEL]
#
# DIR gets its own SoftHSM2 configuration (DIR/softhsm2.conf) and token
# store (DIR/tokens), so the token is isolated from any system-wide SoftHSM
# set-up. The token is labelled LABEL ("tessera" by default); its user PIN is
# written to DIR/LABEL.pin and its security-officer PIN to DIR/LABEL.so-pin,
# both mode 0600. The PINs are random unless TESSERA_SOFTHSM_PIN and
# TESSERA_SOFTHSM_SO_PIN give them. Running it again with another label adds
# a second token to the same store.
#
# SoftHSM2 keeps keys in files and is for development only: softhsm2-util
# takes the PINs on its command line, where other local users can see them
# while it runs. A production HSM is initialised with its vendor's tools.
#
# The script prints what Tessera needs: the SOFTHSM2_CONF to export and the
# pkcs11: key-store URI of the token.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 DIR [LABEL]" >&2
    exit 64
fi
command -v softhsm2-util >/dev/null 2>&1 || {
    echo "softhsm2-util is missing; install the softhsm2 package (scripts/setup.sh --test does)" >&2
    exit 69
}

directory=$1
label=${2:-tessera}
case $label in
    *[!A-Za-z0-9._-]*|"")
        echo "token label '$label' may only hold letters, digits, '.', '_' and '-'" >&2
        exit 64
        ;;
esac

umask 077
mkdir -p "$directory/tokens"
directory=$(cd "$directory" && pwd)
config="$directory/softhsm2.conf"
if [ ! -f "$config" ]; then
    cat >"$config" <<CONF
# SoftHSM2 configuration written by Tessera's deploy/softhsm/create-token.sh
directories.tokendir = $directory/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
fi
export SOFTHSM2_CONF=$config

if softhsm2-util --show-slots 2>/dev/null | grep -Eq "^ +Label: +$label *$"; then
    echo "a token labelled '$label' already exists in $directory/tokens" >&2
    exit 73
fi

random_pin() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
pin=${TESSERA_SOFTHSM_PIN:-$(random_pin)}
so_pin=${TESSERA_SOFTHSM_SO_PIN:-$(random_pin)}
printf '%s\n' "$pin" >"$directory/$label.pin"
printf '%s\n' "$so_pin" >"$directory/$label.so-pin"

softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null

echo "export SOFTHSM2_CONF=$config"
echo "pkcs11:token=$label?pin-source=$directory/$label.pin"
