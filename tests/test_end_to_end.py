"""A certificate from CSR to "revoked", over real gRPC, with openssl and the
tessera CLI as the outside parties."""

from __future__ import annotations

from pathlib import Path

from services.suite import Suite
from tests.support import TESSERA, Clients, require_tool, run, tessera_env


def _cli(suite: Suite, *args: str) -> tuple[int, str]:
    result = run(
        [
            TESSERA,
            "--issuer",
            suite.address("issuer"),
            "--registry",
            suite.address("registry"),
            "--validator",
            suite.address("validator"),
            *args,
        ],
        env=tessera_env(),
    )
    return result.returncode, result.stdout + result.stderr


def test_openssl_csr_is_issued_validated_and_revoked(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """openssl's CSR goes through the CLI; openssl verify accepts the result;
    revocation turns the validator's answer and the registry's record."""
    openssl = require_tool("openssl")
    key, csr = tmp_path / "client.key", tmp_path / "client.csr"
    made = run(
        [
            openssl,
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/O=Example/CN=payments-api",
            "-addext",
            "subjectAltName=DNS:payments.internal",
        ]
    )
    assert made.returncode == 0, made.stderr

    code, output = _cli(suite, "frontdoor", "create", "payments")
    assert code == 0, output
    cert, chain, root = (
        tmp_path / "c.pem",
        tmp_path / "chain.pem",
        tmp_path / "root.pem",
    )
    code, output = _cli(
        suite,
        "cert",
        "request",
        "--frontdoor",
        "payments",
        "--csr",
        str(csr),
        "--out",
        str(cert),
        "--chain",
        str(chain),
        "--name",
        "payments api",
    )
    assert code == 0, output
    code, output = _cli(suite, "ca", "root", "--out", str(root))
    assert code == 0, output

    verified = run(
        [
            openssl,
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(root),
            "-untrusted",
            str(chain),
            str(cert),
        ]
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{cert}: OK" in verified.stdout

    code, output = _cli(suite, "cert", "validate", str(cert), "--frontdoor", "payments")
    assert code == 0, output
    assert output.startswith("VALID (OK)")
    assert "CN=payments-api,O=Example" in output
    assert "dns:payments.internal" in output

    code, output = _cli(
        suite, "cert", "revoke", str(cert), "--reason", "key-compromise"
    )
    assert code == 0, output

    code, output = _cli(suite, "cert", "validate", str(cert), "--frontdoor", "payments")
    assert code == 1, output
    assert output.startswith("REFUSED (REVOKED)")
    assert "keyCompromise" in output

    code, output = _cli(suite, "cert", "list", "--status", "revoked", "--json")
    assert code == 0, output
    assert '"subject": "CN=payments-api,O=Example"' in output
    assert '"reason": "REVOCATION_REASON_KEY_COMPROMISE"' in output

    code, output = _cli(suite, "cert", "show", str(cert))
    assert code == 0, output
    assert '"status": "CERTIFICATE_STATUS_REVOKED"' in output

    # The compromised key gets no certificate again.
    code, output = _cli(
        suite,
        "cert",
        "request",
        "--frontdoor",
        "payments",
        "--csr",
        str(csr),
        "--out",
        str(tmp_path / "again.pem"),
    )
    assert code == 2, output
    assert "public key was reported compromised" in output


def test_certificate_of_another_frontdoor_is_refused(clients: Clients) -> None:
    """Frontdoors share the platform root, yet one's certificate is refused at
    the other: anchors are the frontdoor's own intermediates."""
    clients.create_frontdoor("payments")
    clients.create_frontdoor("billing")
    issued = clients.issue("billing")

    at_billing = clients.validate([issued.certificate], "billing")
    at_payments = clients.validate([issued.certificate], "payments")

    assert at_billing.valid
    assert not at_payments.valid
    assert list(at_payments.reasons) == [4]  # VALIDATION_REASON_UNTRUSTED_ISSUER
    assert "no trust anchor of this frontdoor" in at_payments.message
