"""Responses about one certificate written from a per-second template
(``services.issuer.ocsp_asn1``): each must say exactly what
cryptography's OCSP builder says for the same certificate, status and
nonce, for every key type a responder can have and for keys behind the
signer contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.issuer import ocsp as responder_module
from signers.api import Signer
from signers.software import SoftwareSigner

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NEXT_UPDATE = NOW + dt.timedelta(hours=1)
REVOKED_AT = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


def _responder(
    key: CertificateIssuerPrivateKeyTypes, name: str = "responder"
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Tessera tests"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .sign(key, hashes.SHA256())
    )


def _signer(
    key: CertificateIssuerPrivateKeyTypes,
    certificate: x509.Certificate,
    signature_hash: hashes.HashAlgorithm,
) -> responder_module.ResponseSigner:
    return responder_module.ResponseSigner(
        issuer_key_id="ab" * 20,
        responder_key_hash=b"",
        signature_algorithm="",
        certificate=None,
        not_valid_after=NOW + dt.timedelta(days=1),
        sign=lambda _tbs, _serials: b"",
        private_key=key,
        responder=certificate,
        signature_hash=signature_hash,
    )


def _verify(certificate: x509.Certificate, response: ocsp.OCSPResponse) -> None:
    public = certificate.public_key()
    algorithm = response.signature_hash_algorithm
    assert algorithm is not None
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(
            response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm)
        )
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(
            response.signature,
            response.tbs_response_bytes,
            padding.PKCS1v15(),
            algorithm,
        )


def _said(response: ocsp.OCSPResponse) -> tuple[object, ...]:
    """Everything a response says but its signature and producedAt."""
    return (
        response.response_status,
        response.responder_key_hash,
        response.responder_name,
        response.signature_algorithm_oid,
        [each.public_bytes(Encoding.DER) for each in response.certificates],
        response.serial_number,
        response.hash_algorithm.name,
        response.issuer_name_hash,
        response.issuer_key_hash,
        response.certificate_status,
        response.revocation_time_utc,
        response.revocation_reason,
        response.this_update_utc,
        response.next_update_utc,
        [(each.oid, each.critical, each.value) for each in response.extensions],
    )


_KEYS: dict[
    str, Callable[[], tuple[CertificateIssuerPrivateKeyTypes, hashes.HashAlgorithm]]
] = {
    "ec-p256": lambda: (ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()),
    "ec-p384": lambda: (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
    "rsa-2048": lambda: (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        hashes.SHA256(),
    ),
}
_STATUSES = {
    "good": responder_module.CertificateStatus(responder_module.GOOD),
    "revoked": responder_module.CertificateStatus(
        responder_module.REVOKED, REVOKED_AT, 1
    ),
    "revoked-without-reason": responder_module.CertificateStatus(
        responder_module.REVOKED, REVOKED_AT
    ),
    "unknown": responder_module.CertificateStatus(responder_module.UNKNOWN),
}


@pytest.mark.parametrize("key_type", sorted(_KEYS))
@pytest.mark.parametrize("status_name", sorted(_STATUSES))
@pytest.mark.parametrize(
    "hash_algorithm",
    [responder_module.SHA1, responder_module.SHA256],
    ids=["sha1", "sha256"],
)
@pytest.mark.parametrize(
    "nonce",
    [None, b"\x01", b"n" * 16, b"\xff" * 32],
    ids=["no-nonce", "nonce-1", "nonce-16", "nonce-32"],
)
def test_template_responses_say_what_the_builder_says(
    key_type: str, status_name: str, hash_algorithm: str, nonce: bytes | None
) -> None:
    key, signature_hash = _KEYS[key_type]()
    certificate = _responder(key)
    signer = _signer(key, certificate, signature_hash)
    size = 20 if hash_algorithm == responder_module.SHA1 else 32
    cert_id = responder_module.CertIdRequest(
        hash_algorithm, b"\x11" * size, b"\x22" * size, 0x7F_FFFF_FFFF_FFFF_FFFF_FFFF
    )
    status = _STATUSES[status_name]
    templates = responder_module._Templates()

    ours = [
        ocsp.load_der_ocsp_response(
            responder_module._sign_one(
                templates, signer, cert_id, status, NOW, NEXT_UPDATE, nonce
            )
        )
        for _ in range(2)
    ]

    builder = responder_module._response_builder(
        certificate, cert_id, status, NOW, NEXT_UPDATE
    ).certificates([certificate])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    reference = builder.sign(key, signature_hash)
    for response in ours:
        assert _said(response) == _said(reference)
        assert abs(response.produced_at_utc - reference.produced_at_utc) < dt.timedelta(
            seconds=2
        )
        _verify(certificate, response)
    if nonce is not None:
        # Each response with a nonce is signed on its own.
        assert ours[0].tbs_response_bytes == ours[1].tbs_response_bytes
        if key_type == "rsa-2048":
            assert (
                ours[0].signature == ours[1].signature
            )  # PKCS#1 v1.5 is deterministic
        else:
            assert ours[0].signature != ours[1].signature


def test_template_signs_through_the_signer_contract() -> None:
    """A responder key behind the signer contract (an HSM's, say) signs
    through the contract's key wrapper, as the builder's responses do."""
    key = ec.generate_private_key(ec.SECP256R1())
    signed: list[bytes] = []

    class Recording(SoftwareSigner):
        def sign(
            self,
            data: bytes,
            hash_algorithm: hashes.HashAlgorithm,
            rsa_padding: padding.AsymmetricPadding | None = None,
        ) -> bytes:
            signed.append(data)
            return super().sign(data, hash_algorithm, rsa_padding)

    wrapper = Signer.private_key(Recording(key, "file:test"))
    assert wrapper is not key
    certificate = _responder(key)
    signer = _signer(wrapper, certificate, hashes.SHA256())
    cert_id = responder_module.CertIdRequest(
        responder_module.SHA1, b"\x11" * 20, b"\x22" * 20, 99
    )
    response = ocsp.load_der_ocsp_response(
        responder_module._sign_one(
            responder_module._Templates(),
            signer,
            cert_id,
            _STATUSES["good"],
            NOW,
            NEXT_UPDATE,
            b"nonce",
        )
    )
    _verify(certificate, response)
    # The template's own signature, then the nonce response's.
    assert len(signed) == 2
    assert signed[1] == response.tbs_response_bytes


def test_templates_keep_responders_apart_within_one_second() -> None:
    """Templates are looked up by the responder certificate's identity: two
    responders (a renewal within the same second) never share one, and each
    response names and is signed by its own responder."""
    templates = responder_module._Templates()
    cert_id = responder_module.CertIdRequest(
        responder_module.SHA1, b"\1" * 20, b"\2" * 20, 12345
    )
    status = _STATUSES["good"]
    responders = []
    for name in ("first", "second"):
        key = ec.generate_private_key(ec.SECP256R1())
        responders.append((key, _responder(key, name)))

    for key, certificate in responders * 2:
        signer = _signer(key, certificate, hashes.SHA256())
        response = ocsp.load_der_ocsp_response(
            responder_module._sign_one(
                templates, signer, cert_id, status, NOW, NEXT_UPDATE, b"x" * 16
            )
        )
        assert response.certificates == [certificate]
        _verify(certificate, response)


def test_a_full_second_of_templates_falls_back_to_the_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the templates kept a second, responses are still right (the
    builder writes them, one signature each) and nothing more is kept."""
    monkeypatch.setattr(responder_module._Templates, "_CAPACITY", 2)
    templates = responder_module._Templates()
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _responder(key)
    signer = _signer(key, certificate, hashes.SHA256())
    for serial_number in range(1, 6):
        cert_id = responder_module.CertIdRequest(
            responder_module.SHA256, b"\3" * 32, b"\4" * 32, serial_number
        )
        for nonce in (None, b"z" * 8):
            response = ocsp.load_der_ocsp_response(
                responder_module._sign_one(
                    templates,
                    signer,
                    cert_id,
                    _STATUSES["good"],
                    NOW,
                    NEXT_UPDATE,
                    nonce,
                )
            )
            assert response.serial_number == serial_number
            assert response.certificates == [certificate]
            _verify(certificate, response)
    assert len(templates._templates) == 2
    # A new second starts afresh.
    later = NOW + dt.timedelta(seconds=1)
    responder_module._sign_one(
        templates, signer, cert_id, _STATUSES["good"], later, NEXT_UPDATE, None
    )
    assert len(templates._templates) == 1
