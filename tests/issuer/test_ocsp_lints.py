"""Tessera's OCSP responses pass pkilint's RFC 6960 lints (those its
lint_ocsp_response command runs): no finding of severity ERROR or FATAL for
good, revoked and unknown responses, with and without a nonce, in both
signing modes; and the responder certificate passes the certificate lints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from services.suite import start_suite
from tests.issuer.ocsp_requests import cert_id, post, request_der
from tests.issuer.test_pkilint import assert_lints_clean
from tests.support import Clients, suite_settings

pytest.importorskip(
    "pkilint", reason="pkilint is not installed; the dev extra of pyproject installs it"
)

from pkilint import loader, pkix
from pkilint.pkix import extension, name
from pkilint.pkix import ocsp as pkilint_ocsp
from pkilint.validation import ValidationFindingSeverity


def ocsp_findings(der: bytes) -> list[tuple[ValidationFindingSeverity, str]]:
    """Every finding of pkilint's OCSP response validators."""
    validator = pkilint_ocsp.create_pkix_ocsp_response_validator_container(
        [
            pkilint_ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
    document = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(
        der, "response"
    )
    return [
        (found.finding.severity, f"{result.node.path}: {found}")
        for result in validator.validate(document.root)
        for found in result.finding_descriptions
    ]


def serious(der: bytes) -> list[str]:
    return [
        text
        for severity, text in ocsp_findings(der)
        if severity <= ValidationFindingSeverity.ERROR
    ]


def test_linter_finds_errors_in_a_bad_response(running: tuple[str, Clients]) -> None:
    """The lints do run: a ResponderID byKey that is not a SHA-1 hash, and
    a nextUpdate before thisUpdate, are ERRORs."""
    address, clients = running
    response = clients.issue("payments")
    intermediate = x509.load_der_x509_certificate(response.chain[0])
    good = post(
        address,
        request_der([cert_id(intermediate, 7)], nonce=b"b" * 16),
    ).body
    parsed = asn1_ocsp.OCSPResponse.load(good)
    basic = parsed["response_bytes"]["response"].parsed
    data = basic["tbs_response_data"]
    data["responder_id"] = asn1_ocsp.ResponderId(name="by_key", value=b"\x01" * 32)
    single = data["responses"][0]
    single["next_update"] = single["this_update"].native - dt.timedelta(hours=1)
    basic["tbs_response_data"] = data
    parsed["response_bytes"]["response"] = basic
    bad = parsed.dump(force=True)

    findings = " ".join(serious(bad))

    assert "pkix.ocsp_responderid_keyhash_is_not_sha1" in findings
    assert "pkix.ocsp_negative_validity_period" in findings


@pytest.fixture(scope="module", params=["delegated", "ca"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Clients]]:
    """A suite signing OCSP responses the way the parameter says."""
    directory: Path = tmp_path_factory.mktemp("ocsp-lints")
    suite = start_suite(
        suite_settings(directory / "data", issuer={"ocsp_signing": request.param})
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    clients.create_frontdoor("payments")
    assert suite.publication is not None
    yield suite.publication, clients
    clients.close()
    suite.stop()


@pytest.mark.parametrize("nonce", [None, b"\x07" * 32], ids=["no-nonce", "nonce"])
def test_good_revoked_and_unknown_responses_lint_clean(
    running: tuple[str, Clients], nonce: bytes | None
) -> None:
    """No ERROR or FATAL finding for each kind of answer."""
    address, clients = running
    good = clients.issue("payments")
    revoked = clients.issue("payments")
    clients.revoke(revoked.record.fingerprint_sha256, reason=1)
    intermediate = x509.load_der_x509_certificate(good.chain[0])
    serials = [
        x509.load_der_x509_certificate(each.certificate).serial_number
        for each in (good, revoked)
    ] + [0x5EED]

    for serial_number in serials:
        for hash_name in ("sha1", "sha256"):
            der = post(
                address,
                request_der([cert_id(intermediate, serial_number, hash_name)], nonce),
            ).body
            assert serious(der) == [], (serial_number, hash_name)
    several = post(
        address,
        request_der([cert_id(intermediate, each) for each in serials], nonce),
    ).body
    assert serious(several) == []


def running_mode(response: x509.ocsp.OCSPResponse) -> str:
    """ "ca" when the intermediate signed (no certificate in the response)."""
    return "delegated" if response.certificates else "ca"


def test_delegated_responder_certificate_lints_clean(
    running: tuple[str, Clients],
) -> None:
    """The responder certificate passes pkilint's RFC 5280 certificate lints;
    in "ca" mode the intermediate's own signature is on the response."""
    address, clients = running
    good = clients.issue("payments")
    intermediate = x509.load_der_x509_certificate(good.chain[0])
    serial_number = x509.load_der_x509_certificate(good.certificate).serial_number
    response = x509.ocsp.load_der_ocsp_response(
        post(address, request_der([cert_id(intermediate, serial_number)])).body
    )
    if running_mode(response) == "ca":
        public_key = intermediate.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert response.signature_hash_algorithm is not None
        public_key.verify(
            response.signature,
            response.tbs_response_bytes,
            ec.ECDSA(response.signature_hash_algorithm),
        )
        return

    (responder,) = response.certificates
    assert_lints_clean(responder.public_bytes(Encoding.DER))
