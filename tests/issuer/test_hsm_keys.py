"""The CA hierarchy with its keys in a SoftHSM2 token: the platform root and
a frontdoor intermediate live in the token, certificates are issued,
validated and revoked through the running suite, openssl accepts them, and
every misconfiguration stops start-up with a clear message that never shows
a PIN or passphrase, in the error or in the logs."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.config import ConfigError
from services.common.logging import configure_logging
from services.suite import Suite, start_suite
from signers.api import SignerError
from signers.pkcs11.module import Module
from tests.support import (
    TESSERA,
    Clients,
    SoftHsmToken,
    make_csr,
    require_tool,
    run,
    suite_settings,
    tessera_env,
)

PASSPHRASE = "correct-horse-battery"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Service logging, as `tessera serve` configures it, at debug level,
    rendered as JSON into a buffer the test reads."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_config = structlog.get_config()
    configure_logging("json", "debug")
    buffer = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_config)


def hsm_suite(data_dir: Path, softhsm: SoftHsmToken, **issuer: Any) -> Suite:
    """A suite whose root key and new intermediate keys are in the token."""
    return start_suite(
        suite_settings(
            data_dir,
            issuer={
                "root_key_uri": softhsm.key_uri("platform-root"),
                "key_store": softhsm.store_uri,
                **issuer,
            },
        )
    )


def connect(suite: Suite) -> Clients:
    return Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )


def pem(*certificates: bytes) -> bytes:
    return b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in certificates
    )


def ca_list(data_dir: Path, *args: str) -> tuple[int, str]:
    result = run(
        [TESSERA, "--data-dir", str(data_dir), "ca", "list", *args], env=tessera_env()
    )
    return result.returncode, result.stdout + result.stderr


# Issuance with HSM keys -----------------------------------------------------


def test_issue_validate_revoke_with_root_and_intermediate_in_the_token(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    data_dir = tmp_path / "data"
    suite = hsm_suite(data_dir, softhsm)
    clients = connect(suite)
    try:
        frontdoor = clients.create_frontdoor("payments")
        issued = clients.issue("payments", make_csr("CN=payments-api"))
        certificate, intermediate, root = (
            issued.certificate,
            issued.chain[0],
            issued.chain[1],
        )
        (tmp_path / "root.pem").write_bytes(pem(root))
        (tmp_path / "chain.pem").write_bytes(pem(intermediate))
        (tmp_path / "client.pem").write_bytes(pem(certificate))

        verified = run(
            [
                openssl,
                "verify",
                "-purpose",
                "sslclient",
                "-CAfile",
                str(tmp_path / "root.pem"),
                "-untrusted",
                str(tmp_path / "chain.pem"),
                str(tmp_path / "client.pem"),
            ]
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

        assert clients.validate([certificate], "payments").valid
        clients.revoke(issued.record.fingerprint_sha256)
        verdict = clients.validate([certificate], "payments")
        assert not verdict.valid
        assert "revoked" in verdict.message
        assert frontdoor.intermediates[0].certificate == intermediate
    finally:
        clients.close()
        suite.stop()

    code, output = ca_list(data_dir, "--check")
    assert code == 0, output
    assert f"pkcs11:token={softhsm.label};object=platform-root" in output
    assert f"pkcs11:token={softhsm.label};object=intermediate-payments-1" in output
    assert output.count("pkcs11 EC") == 2
    assert softhsm.pin not in output


def test_eight_threads_issue_through_the_intermediate_in_the_token(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """Concurrent IssueCertificate calls sign in parallel through one
    PKCS#11 signer; every call succeeds and every signature is valid."""
    suite = hsm_suite(tmp_path / "data", softhsm)
    clients = connect(suite)
    try:
        clients.create_frontdoor("payments")
        intermediate = x509.load_der_x509_certificate(
            clients.issue("payments").chain[0]
        )
        issued: list[bytes] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def issue() -> None:
            try:
                start.wait()
                for _ in range(5):
                    issued.append(clients.issue("payments").certificate)
            except BaseException as error:  # collected for the assertion below
                errors.append(error)

        threads = [threading.Thread(target=issue) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        clients.close()
        suite.stop()

    assert errors == []
    assert len(issued) == 40
    for der in issued:
        x509.load_der_x509_certificate(der).verify_directly_issued_by(intermediate)


def test_next_request_succeeds_after_the_token_sessions_are_closed_underneath(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """Restarting the PKCS#11 module closes every session and the login
    behind the running issuer's back; the next issuance reconnects."""
    suite = hsm_suite(tmp_path / "data", softhsm)
    clients = connect(suite)
    try:
        clients.create_frontdoor("payments")
        before = clients.issue("payments")
        Module.load(softhsm.module_path).reinitialize()

        after = clients.issue("payments")
    finally:
        clients.close()
        suite.stop()

    intermediate = x509.load_der_x509_certificate(before.chain[0])
    for issued in (before, after):
        certificate = x509.load_der_x509_certificate(issued.certificate)
        certificate.verify_directly_issued_by(intermediate)


def test_ca_init_puts_the_root_and_an_intermediate_key_in_the_token(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """The operator's path: `tessera ca init` creates the root with its key
    generated in the token, reserves a frontdoor's intermediate key there,
    and the suite started afterwards signs with both."""
    data_dir = tmp_path / "data"
    root_uri = softhsm.key_uri("offline-root")
    made = run(
        [
            TESSERA,
            "--data-dir",
            str(data_dir),
            "ca",
            "init",
            "--key",
            root_uri,
            "--key-type",
            "ec-p384",
            "--out",
            str(tmp_path / "root.pem"),
        ],
        env=tessera_env(),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "created the platform root" in made.stdout
    assert "EC 384 (pkcs11)" in made.stdout
    reserved = run(
        [
            TESSERA,
            "--data-dir",
            str(data_dir),
            "ca",
            "init",
            "--frontdoor",
            "payments",
            "--key",
            softhsm.key_uri("payments-ca"),
        ],
        env=tessera_env(),
    )
    assert reserved.returncode == 0, reserved.stdout + reserved.stderr
    again = run(
        [TESSERA, "--data-dir", str(data_dir), "ca", "init", "--key", root_uri],
        env=tessera_env(),
    )
    assert again.returncode == 2
    assert "the platform root already exists" in again.stderr

    # No root_key_uri in the configuration: the issuer's database knows it.
    suite = start_suite(suite_settings(data_dir))
    clients = connect(suite)
    try:
        clients.create_frontdoor("payments")
        issued = clients.issue("payments")
    finally:
        clients.close()
        suite.stop()

    root = x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes())
    intermediate = x509.load_der_x509_certificate(issued.chain[0])
    assert issued.chain[1] == root.public_bytes(serialization.Encoding.DER)
    intermediate.verify_directly_issued_by(root)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    code, output = ca_list(data_dir)
    assert code == 0, output
    assert "object=offline-root" in output
    assert "object=payments-ca" in output


def test_software_keys_keep_working_without_hsm_settings(tmp_path: Path) -> None:
    """The embedded default is unchanged: software keys under the data
    directory, 0600, and `ca list` shows them as file: signers."""
    data_dir = tmp_path / "data"
    suite = start_suite(suite_settings(data_dir))
    clients = connect(suite)
    try:
        clients.create_frontdoor("payments")
        clients.issue("payments")
    finally:
        clients.close()
        suite.stop()

    assert (data_dir / "keys" / "root-1.pem").stat().st_mode & 0o077 == 0
    code, output = ca_list(data_dir, "--check")
    assert code == 0, output
    assert "file:keys/root-1.pem" in output
    assert "file:keys/intermediate-payments-1.pem" in output


# Start-up refusals ----------------------------------------------------------


def _encrypted_root(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    path.chmod(0o600)


@pytest.mark.parametrize(
    "case",
    [
        "wrong-pin",
        "missing-token",
        "missing-key",
        "unknown-scheme",
        "encrypted-key-without-passphrase",
        "wrong-passphrase",
    ],
)
def test_misconfigured_ca_key_stops_start_up_without_leaking_secrets(
    softhsm: SoftHsmToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logs: io.StringIO,
    case: str,
) -> None:
    data_dir = tmp_path / "data"
    secrets = [softhsm.pin, PASSPHRASE, "wrong-pin-5309", "not-the-passphrase"]
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("wrong-pin-5309\n")
    root_pem = tmp_path / "root.pem"
    _encrypted_root(root_pem)
    token = f"pkcs11:token={softhsm.label}"
    if case == "missing-key":
        # A root that exists, whose key then cannot be found.
        hsm_suite(data_dir, softhsm).stop()
    root_key_uri, message = {
        "wrong-pin": (
            f"{token};object=platform-root?pin-source={wrong_pin}",
            "the PIN is incorrect",
        ),
        "missing-token": (
            f"pkcs11:token=absent;object=platform-root?pin-source={softhsm.pin_file}",
            "has no token 'absent'",
        ),
        "missing-key": (
            f"{token};object=deleted-root?pin-source={softhsm.pin_file}",
            "holds no private key 'deleted-root'",
        ),
        "unknown-scheme": (
            "vault:transit/keys/root",
            "no signer plugin handles the URI scheme 'vault'",
        ),
        "encrypted-key-without-passphrase": (
            f"file:{root_pem}",
            "is encrypted and no passphrase was configured",
        ),
        "wrong-passphrase": (
            f"file:{root_pem}?passphrase-env=ROOT_PASSPHRASE",
            "does not decrypt it",
        ),
    }[case]
    monkeypatch.setenv("ROOT_PASSPHRASE", "not-the-passphrase")
    # Log something at start so the capture is known to work.
    structlog.get_logger("tests").info("starting", root_key_uri=root_key_uri)

    with pytest.raises(SignerError, match=message) as caught:
        start_suite(
            suite_settings(data_dir, issuer={"root_key_uri": root_key_uri})
        ).stop()

    rendered = logs.getvalue() + str(caught.value)
    assert rendered
    for secret in secrets:
        assert secret not in rendered


def test_pin_value_in_the_configuration_is_refused_naming_why(
    softhsm: SoftHsmToken, logs: io.StringIO
) -> None:
    uri = f"pkcs11:token={softhsm.label};object=root?pin-value={softhsm.pin}"
    structlog.get_logger("tests").info("loading", root_key_uri=uri)

    with pytest.raises(ConfigError) as caught:
        suite_settings(Path("/nonexistent"), issuer={"root_key_uri": uri})

    message = str(caught.value)
    assert "issuer.root_key_uri" in message
    assert "must not hold a PIN or passphrase" in message
    assert "use pin-source=FILE or pin-env=VARIABLE" in message
    assert softhsm.pin not in message + logs.getvalue()


@pytest.mark.parametrize("case", ["wrong-pin", "pin-value"])
def test_tessera_serve_reports_a_bad_hsm_key_and_exits_without_the_pin(
    softhsm: SoftHsmToken, tmp_path: Path, case: str
) -> None:
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("wrong-pin-5309\n")
    key = f"pkcs11:token={softhsm.label};object=root"
    uri = {
        "wrong-pin": f"{key}?pin-source={wrong_pin}",
        "pin-value": f"{key}?pin-value=wrong-pin-5309",
    }[case]

    result = run(
        [TESSERA, "--data-dir", str(tmp_path / "data"), "serve"],
        env=tessera_env(
            TESSERA_ISSUER__ROOT_KEY_URI=uri,
            TESSERA_METRICS_LISTEN="",
            TESSERA_ISSUER__LISTEN="127.0.0.1:0",
            TESSERA_REGISTRY__LISTEN="127.0.0.1:0",
            TESSERA_VALIDATOR__LISTEN="127.0.0.1:0",
            TESSERA_LOG_LEVEL="debug",
        ),
    )

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert output.startswith("tessera: ")
    assert ("PIN is incorrect" if case == "wrong-pin" else "pin-value") in output
    assert "wrong-pin-5309" not in output
    assert softhsm.pin not in output
