"""Tessera's certificates pass pkilint's RFC 5280 certificate lints: no
finding of severity ERROR or FATAL for client certificates, frontdoor
intermediates or the platform root."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from services.suite import start_suite
from tessera.issuer.v1 import issuer_pb2
from tests.support import Clients, make_csr, suite_settings

pytest.importorskip(
    "pkilint", reason="pkilint is not installed; the dev extra of pyproject installs it"
)

from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

FRONTDOOR = "payments"


def rfc5280_findings(der: bytes) -> list[tuple[ValidationFindingSeverity, str]]:
    """Every finding of the validators ``lint_pkix_cert`` runs, as (severity,
    "node path: finding") pairs."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(
        der, "certificate"
    )
    return [
        (found.finding.severity, f"{result.node.path}: {found}")
        for result in validator.validate(document.root)
        for found in result.finding_descriptions
    ]


def assert_lints_clean(der: bytes) -> None:
    """No ERROR or FATAL finding; WARNINGs are listed when anything fails."""
    findings = rfc5280_findings(der)
    serious = [
        text
        for severity, text in findings
        if severity <= ValidationFindingSeverity.ERROR
    ]
    warnings = [
        text
        for severity, text in findings
        if severity == ValidationFindingSeverity.WARNING
    ]
    assert not serious, f"errors: {serious}; warnings: {warnings}"


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    """A suite with the frontdoor "payments" on default settings."""
    suite = start_suite(suite_settings(tmp_path_factory.mktemp("pkilint") / "data"))
    connected = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    connected.create_frontdoor(FRONTDOOR)
    yield connected
    connected.close()
    suite.stop()


def test_linter_finds_errors_in_a_bad_certificate() -> None:
    """The lints do run: a certificate with an invalid dNSName is an ERROR."""
    bad = make_bad_certificate()

    findings = rfc5280_findings(bad)

    assert any(
        severity == ValidationFindingSeverity.ERROR and "invalid_domain_name" in text
        for severity, text in findings
    ), findings


def make_bad_certificate() -> bytes:
    """A self-signed certificate whose dNSName breaks RFC 5280."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string("CN=bad")
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("not a host name")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


@pytest.mark.parametrize(
    ("subject", "sans", "key"),
    [
        pytest.param(
            "CN=payments-api,O=Example Corp",
            [
                x509.DNSName("payments.internal"),
                x509.RFC822Name("payments-team@example.org"),
                x509.IPAddress(ipaddress.IPv4Address("10.1.2.3")),
                x509.UniformResourceIdentifier("https://payments.example.org/api"),
            ],
            lambda: ec.generate_private_key(ec.SECP256R1()),
            id="ec-p256-subject-and-sans",
        ),
        pytest.param(
            "CN=legacy-client,OU=batch,O=Example Corp,C=DE",
            [],
            lambda: rsa.generate_private_key(65537, 2048),
            id="rsa-2048-subject-only",
        ),
        pytest.param(
            None,
            [x509.DNSName("payments.internal")],
            lambda: ec.generate_private_key(ec.SECP384R1()),
            id="ec-p384-san-only",
        ),
    ],
)
def test_client_certificate_passes_rfc5280_lints(
    clients: Clients, subject: str | None, sans: list[x509.GeneralName], key: Any
) -> None:
    issued = clients.issue(FRONTDOOR, make_csr(subject, sans, key=key()))

    assert_lints_clean(issued.certificate)


def test_intermediate_passes_rfc5280_lints(clients: Clients) -> None:
    frontdoor = clients.issuer.GetFrontdoor(
        issuer_pb2.GetFrontdoorRequest(name=FRONTDOOR)
    )

    assert_lints_clean(frontdoor.intermediates[0].certificate)


def test_platform_root_passes_rfc5280_lints(clients: Clients) -> None:
    root = clients.issuer.GetPlatformRoot(issuer_pb2.GetPlatformRootRequest())

    assert_lints_clean(root.certificate)
