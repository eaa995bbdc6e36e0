"""``tessera cert upload``: the lint report on the terminal, exit codes, and
a clear refusal of files that are too large or hold a private key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.cli.main import main
from services.suite import Suite
from tessera.registry.v1 import registry_pb2
from tests.registry.pki import make_ca, make_client
from tests.support import Clients


def _upload(suite: Suite, path: Path, *extra: str) -> list[str]:
    return [
        "cert",
        "upload",
        str(path),
        "--frontdoor",
        "payments",
        "--registry",
        suite.address("registry"),
        *extra,
    ]


def test_upload_prints_the_report_and_stores_after_a_dry_run(
    suite: Suite,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients.create_frontdoor("payments")
    ca = make_ca()
    path = tmp_path / "org-root.pem"
    path.write_bytes(ca.pem)

    dry = main(_upload(suite, path, "--dry-run"))
    dry_output = capsys.readouterr().out
    stored = main(_upload(suite, path))
    stored_output = capsys.readouterr().out

    assert dry == 0
    assert "CN=Example Org Root" in dry_output
    assert f"fingerprint {ca.fingerprint}" in dry_output
    assert "CA, joins the trust store" in dry_output
    assert "dry run: nothing stored" in dry_output
    assert stored == 0
    assert stored_output.endswith("stored\n")
    anchors = clients.registry.GetTrustStore(
        registry_pb2.GetTrustStoreRequest(frontdoor="payments")
    ).anchors
    assert ca.der in {a.certificate for a in anchors}


def test_upload_with_errors_exits_1_and_names_them(
    suite: Suite,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients.create_frontdoor("payments")
    path = tmp_path / "client.pem"
    path.write_bytes(make_client(make_ca("Unknown CA")).pem)

    code = main(_upload(suite, path))
    output = capsys.readouterr().out

    assert code == 1
    assert "error: certificate 1: no CA in the upload" in output
    assert "[incomplete-chain]" in output
    assert "not stored: 1 error(s)" in output


def test_upload_refuses_large_files_before_sending(
    suite: Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x30" * (10 * 1024 * 1024))

    code = main(_upload(suite, path))

    assert code == 2
    assert "at most 1048576 bytes (1 MiB)" in capsys.readouterr().err


def test_upload_of_a_private_key_is_refused_without_echoing_it(
    suite: Suite,
    clients: Clients,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients.create_frontdoor("payments")
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "client.key"
    path.write_bytes(key)

    code = main(_upload(suite, path))
    output = capsys.readouterr()

    assert code == 2
    assert "Tessera never accepts private keys" in output.err
    assert key.splitlines()[1].decode() not in output.out + output.err
