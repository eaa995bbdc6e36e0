"""OCSP responses signed through SoftHSM2: by the intermediate's key in the
token ("ca" mode), or by a delegated responder whose key the issuer made in
the token and whose certificate the token's intermediate signed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.suite import start_suite
from tests.issuer.test_ocsp import (
    FRONTDOOR,
    issue,
    openssl_status,
    publishing_settings,
)
from tests.support import Clients, SoftHsmToken


@pytest.mark.parametrize("signing", ["ca", "delegated"])
def test_openssl_verifies_responses_signed_in_the_token(
    softhsm: SoftHsmToken, tmp_path: Path, signing: str
) -> None:
    """openssl accepts good, then revoked, with and without a nonce, and
    every key that signed lives in the token."""
    data_dir = tmp_path / "data"
    suite = start_suite(
        publishing_settings(  # type: ignore[arg-type]
            data_dir,
            issuer={
                "root_key_uri": softhsm.key_uri("platform-root"),
                "key_store": softhsm.store_uri,
                "ocsp_signing": signing,
            },
        )
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        issued = issue(clients, tmp_path)

        assert ": good" in openssl_status(issued)
        assert ": good" in openssl_status(issued, "-no_nonce")
        clients.revoke(issued.fingerprint, reason=1)
        assert "Reason: keyCompromise" in openssl_status(issued)
        assert "Reason: keyCompromise" in openssl_status(issued, "-no_nonce")
    finally:
        clients.close()
        suite.stop()

    database = sqlite3.connect(data_dir / "tessera.db")
    responder_keys = [
        row[0] for row in database.execute("SELECT signer_uri FROM ocsp_responders")
    ]
    authority_keys = [
        row[0] for row in database.execute("SELECT signer_uri FROM authorities")
    ]
    database.close()
    assert all(uri.startswith("pkcs11:") for uri in authority_keys + responder_keys)
    if signing == "delegated":
        assert len(responder_keys) == 1
        assert softhsm.pin not in responder_keys[0]
    else:
        assert responder_keys == []
