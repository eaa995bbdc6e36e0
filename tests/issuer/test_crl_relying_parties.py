"""Real relying parties judge Tessera's CRLs: openssl verifies the CRL
fetched from the URL in the certificate and refuses a revoked certificate
with it, pkilint finds no error, and nginx configured by 'tessera export
nginx' admits a client, refuses another frontdoor's, and refuses the
client once it is revoked and the CRLs are refreshed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.cli.main import main as tessera_main
from services.suite import Suite, start_suite
from tessera.issuer.v1 import issuer_pb2
from tests.support import (
    Clients,
    eventually,
    free_port,
    make_csr,
    require_tool,
    run,
    suite_settings,
)

FRONTDOOR = "payments"
OTHER = "billing"


@pytest.fixture
def published_suite(tmp_path: Path) -> Iterator[Suite]:
    """A suite whose certificates name its own publication listener, with a
    CRL job that polls quickly."""
    port = free_port()
    running = start_suite(
        suite_settings(
            tmp_path / "data",
            issuer={
                "publication_listen": f"127.0.0.1:{port}",
                "public_base_url": f"http://127.0.0.1:{port}",
                "crl_poll_seconds": 0.2,
                "crl_coalesce_seconds": 0.5,
            },
        )
    )
    yield running
    running.stop()


@pytest.fixture
def rp_clients(published_suite: Suite) -> Iterator[Clients]:
    connected = Clients.connect(
        published_suite.address("issuer"),
        published_suite.address("registry"),
        published_suite.address("validator"),
    )
    yield connected
    connected.close()


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _crl_url(certificate_der: bytes) -> str:
    certificate = x509.load_der_x509_certificate(certificate_der)
    points = certificate.extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    ).value
    name = points[0].full_name
    assert name is not None
    return str(name[0].value)


def _download(url: str) -> bytes:
    # The URL comes from a certificate Tessera wrote: http:// on loopback.
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        assert response.headers["Content-Type"] == "application/pkix-crl"
        return bytes(response.read())


def _lists(url: str, serial_number: str) -> bool:
    try:
        crl = x509.load_der_x509_crl(_download(url))
    except OSError:
        return False
    return any(entry.serial_number == int(serial_number, 16) for entry in crl)


def _wait_built(url: str) -> bytes:
    found: list[bytes] = []

    def built() -> bool:
        try:
            found.append(_download(url))
        except OSError:
            return False
        return True

    assert eventually(built, timeout=20)
    return found[-1]


def test_openssl_verifies_the_crl_and_refuses_a_revoked_certificate(
    published_suite: Suite, rp_clients: Clients, tmp_path: Path
) -> None:
    """`openssl crl -verify` accepts the CRL fetched from the certificate's
    distribution point; `openssl verify -crl_check` accepts the certificate
    before revocation and refuses it with the CRL fetched afterwards."""
    openssl = require_tool("openssl")
    rp_clients.create_frontdoor(FRONTDOOR)
    issued = rp_clients.issue(FRONTDOOR)
    (intermediate_der, root_der) = issued.chain
    (tmp_path / "client.pem").write_bytes(_pem(issued.certificate))
    (tmp_path / "intermediate.pem").write_bytes(_pem(intermediate_der))
    (tmp_path / "root.pem").write_bytes(_pem(root_der))
    url = _crl_url(issued.certificate)
    root_url = _crl_url(intermediate_der)

    (tmp_path / "crl.der").write_bytes(_wait_built(url))
    (tmp_path / "root-crl.der").write_bytes(_wait_built(root_url))
    for crl, issuer in (("crl.der", "intermediate.pem"), ("root-crl.der", "root.pem")):
        checked = run(
            [openssl, "crl", "-inform", "DER", "-in", str(tmp_path / crl), "-noout",
             "-CAfile", str(tmp_path / issuer), "-verify"]
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert "verify OK" in checked.stdout + checked.stderr

    def verify() -> subprocess.CompletedProcess[str]:
        crls = []
        for name in ("crl", "root-crl"):
            pem_path = tmp_path / f"{name}.pem"
            run([openssl, "crl", "-inform", "DER", "-in", str(tmp_path / f"{name}.der"),
                 "-out", str(pem_path)])  # fmt: skip
            crls += ["-CRLfile", str(pem_path)]
        return run(
            [openssl, "verify", "-crl_check_all", "-CAfile", str(tmp_path / "root.pem"),
             "-untrusted", str(tmp_path / "intermediate.pem"), *crls,
             str(tmp_path / "client.pem")]
        )  # fmt: skip

    def verify_leaf() -> subprocess.CompletedProcess[str]:
        """`-crl_check`: the client certificate against its issuer's CRL."""
        return run(
            [openssl, "verify", "-crl_check", "-CAfile", str(tmp_path / "root.pem"),
             "-untrusted", str(tmp_path / "intermediate.pem"),
             "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "client.pem")]
        )  # fmt: skip

    before = verify()
    assert before.returncode == 0, before.stdout + before.stderr
    before_leaf = verify_leaf()
    assert before_leaf.returncode == 0, before_leaf.stdout + before_leaf.stderr

    rp_clients.revoke(issued.record.fingerprint_sha256, reason=1)
    assert eventually(lambda: _lists(url, issued.record.serial_number), timeout=30)
    (tmp_path / "crl.der").write_bytes(_download(url))

    after = verify()
    assert after.returncode != 0
    assert "certificate revoked" in after.stdout + after.stderr
    after_leaf = verify_leaf()
    assert after_leaf.returncode != 0
    assert "certificate revoked" in after_leaf.stdout + after_leaf.stderr


pkilint = pytest.importorskip(
    "pkilint", reason="pkilint is not installed; the dev extra of pyproject installs it"
)


def _crl_findings(der: bytes, name: str) -> list[str]:
    """ERROR and FATAL findings of the validators pkilint's lint_crl runs
    for the PKIX profile."""
    from pkilint import loader, pkix
    from pkilint.pkix import crl, extension
    from pkilint.pkix import name as names
    from pkilint.validation import ValidationFindingSeverity

    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(names.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(
        der, name
    )
    serious = (ValidationFindingSeverity.ERROR, ValidationFindingSeverity.FATAL)
    return [
        f"{result.node.path}: {found}"
        for result in validator.validate(document.root)
        for found in result.finding_descriptions
        if found.finding.severity in serious
    ]


def test_crls_pass_pkilint(published_suite: Suite, rp_clients: Clients) -> None:
    """The intermediate's CRL (with entries carrying reasons and an
    invalidity date) and the root's CRL (listing a revoked intermediate)
    have no pkilint finding of severity ERROR or FATAL."""
    rp_clients.create_frontdoor(FRONTDOOR)
    other = rp_clients.create_frontdoor(OTHER)
    issued = [rp_clients.issue(FRONTDOOR) for _ in range(3)]
    request = issuer_pb2.RevokeCertificateRequest(
        fingerprint_sha256=issued[0].record.fingerprint_sha256, reason=1
    )
    request.invalidity_date.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    rp_clients.issuer.RevokeCertificate(request)
    rp_clients.revoke(issued[1].record.fingerprint_sha256, reason=0)
    other_intermediate = other.intermediates[0]
    rp_clients.revoke(
        x509.load_der_x509_certificate(other_intermediate.certificate)
        .fingerprint(hashes.SHA256())
        .hex(),
        reason=5,
    )
    url = _crl_url(issued[0].certificate)
    root_url = _crl_url(issued[0].chain[0])
    assert eventually(lambda: _lists(url, issued[1].record.serial_number), timeout=30)
    other_certificate = x509.load_der_x509_certificate(other_intermediate.certificate)
    serial = f"{other_certificate.serial_number:x}"
    assert eventually(lambda: _lists(root_url, serial), timeout=30)

    assert _crl_findings(_download(url), "intermediate CRL") == []
    assert _crl_findings(_download(root_url), "root CRL") == []


# nginx -----------------------------------------------------------------------


def _client_files(
    clients: Clients, frontdoor: str, directory: Path, name: str
) -> tuple[Path, Path, Any]:
    """A client key and its certificate with the issuing intermediate."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = clients.issue(frontdoor, csr=make_csr(f"CN={name}", key=key))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificate_path = directory / f"{name}.pem"
    certificate_path.write_bytes(_pem(issued.certificate) + _pem(issued.chain[0]))
    return certificate_path, key_path, issued


def _server_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for nginx's own side of TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certificate_path = directory / "server.pem"
    key_path = directory / "server.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


def _nginx_conf(prefix: Path, port: int, snippet: Path) -> Path:
    server_certificate, server_key = _server_certificate(prefix)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {server_certificate};
        ssl_certificate_key {server_key};
        include {snippet};
        location / {{ return 200 "admitted\\n"; }}
    }}
}}
"""
    )
    return conf


@pytest.mark.slow
def test_nginx_configured_by_export_enforces_tessera_revocations(
    published_suite: Suite, rp_clients: Clients, tmp_path: Path
) -> None:
    """curl with the frontdoor's client certificate gets 200, with another
    frontdoor's certificate is refused (by path validation, and by the
    issuer-DN check once nginx holds every CRL), and after revocation, a new export
    and an nginx reload, the first certificate is refused too."""
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack; it runs
    # as any user here, with its own prefix in the test's directory.
    nginx = shutil.which("nginx", path="/usr/sbin:/sbin") or require_tool("nginx")
    curl = require_tool("curl")
    rp_clients.create_frontdoor(FRONTDOOR)
    rp_clients.create_frontdoor(OTHER)
    certificate, key, issued = _client_files(rp_clients, FRONTDOOR, tmp_path, "good")
    stranger, stranger_key, _ = _client_files(rp_clients, OTHER, tmp_path, "stranger")
    _wait_built(_crl_url(issued.certificate))
    _wait_built(_crl_url(issued.chain[0]))
    export = tmp_path / "export"

    def export_bundles() -> None:
        code = tessera_main(
            ["export", "nginx", "--issuer", published_suite.address("issuer"),
             "--registry", published_suite.address("registry"),
             "--frontdoor", FRONTDOOR, "--out", str(export)]
        )  # fmt: skip
        assert code == 0

    export_bundles()
    snippet = export / f"tessera-{FRONTDOOR}.conf"
    assert "ssl_verify_client on;" in snippet.read_text()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = _nginx_conf(prefix, port, snippet)
    checked = run([nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"])
    assert checked.returncode == 0, checked.stderr
    server_certificate = prefix / "server.pem"
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def status(client: Path, client_key: Path) -> str:
        result = run(
            [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
             "--cacert", str(server_certificate), "--cert", str(client),
             "--key", str(client_key), f"https://127.0.0.1:{port}/"]
        )  # fmt: skip
        return result.stdout.strip()

    try:
        assert eventually(lambda: status(certificate, key) == "200", timeout=15), (
            prefix / "error.log"
        ).read_text()
        refused = status(stranger, stranger_key)
        # Refused by path validation: nginx has no CRL of the other
        # intermediate the client sent along.
        assert refused == "400", refused

        # With that CRL added (one nginx fronting both frontdoors, say), the
        # path validates and the issuer-DN check is what refuses.
        with urllib.request.urlopen(
            f"http://{published_suite.publication}/bundle/{OTHER}/crl.pem", timeout=10
        ) as response:
            other_crls = response.read()
        with (export / "crl.pem").open("ab") as bundle:
            bundle.write(other_crls)
        process.send_signal(signal.SIGHUP)
        assert eventually(lambda: status(stranger, stranger_key) == "403", timeout=15)
        assert status(certificate, key) == "200"

        # Exported at once: the export waits for the CRL that lists it.
        rp_clients.revoke(issued.record.fingerprint_sha256, reason=1)
        export_bundles()
        process.send_signal(signal.SIGHUP)

        assert eventually(lambda: status(certificate, key) == "400", timeout=15)
    finally:
        process.terminate()
        process.wait(timeout=15)
