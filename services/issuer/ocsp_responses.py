"""Signed OCSP responses about one certificate, the responder's hot path.

cryptography's OCSP builder writes every response: the CertID, status and
times of its SingleResponse, the ResponderID and the signature algorithm.
What it does slowly is the part of a response with a nonce that changes
from one request to the next: each ``sign()`` encodes the delegated
responder's certificate (RFC 6960 section 4.2.2.2 wants it in the
response), parses the whole response back, and ``public_bytes`` encodes
it all once more, some 50 microseconds of a response's 85.

So the builder writes a *template* once per certificate, status and second
(thisUpdate and producedAt have whole seconds), signed without a nonce and
without certificates. A response with a nonce reuses the template's
ResponseData fields as they are, adds the nonce extension, signs that
ResponseData with the responder's key, and wraps it, the responder's
certificate and the signature in BasicOCSPResponse and OCSPResponse, all
encoded by cryptography's declarative ASN.1 module (``hazmat.asn1``) from
the RFC 6960 types below. Only the outer structures are declared here; the
SingleResponses stay the builder's own bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import OCSPExtensionOID

# RFC 6960 section 4.2.1, as far as Tessera writes them. TLV fields carry
# bytes the builder encoded, passed through unchanged.


@asn1.sequence
class _Extension:
    extn_id: x509.ObjectIdentifier
    critical: Annotated[bool, asn1.Default(False)]
    extn_value: bytes


@asn1.sequence
class _ResponseData:
    # version [0] EXPLICIT DEFAULT v1 is never written (DER omits the
    # default, and the builder writes only v1).
    responder_id: asn1.TLV
    produced_at: asn1.TLV
    responses: asn1.TLV
    response_extensions: Annotated[list[_Extension] | None, asn1.Explicit(1)]


@asn1.sequence
class _TemplateBasic:
    tbs_response_data: _ResponseData
    signature_algorithm: asn1.TLV
    signature: asn1.TLV


@asn1.sequence
class _BasicResponse:
    tbs_response_data: _ResponseData
    signature_algorithm: asn1.TLV
    signature: asn1.BitString
    certs: Annotated[list[x509.Certificate] | None, asn1.Explicit(0)]


@asn1.sequence
class _ResponseBytes:
    response_type: x509.ObjectIdentifier
    response: bytes


@asn1.sequence
class _Response:
    response_status: asn1.TLV
    response_bytes: Annotated[_ResponseBytes | None, asn1.Explicit(0)]


_BASIC = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1")


@dataclasses.dataclass(frozen=True)
class ResponseTemplate:
    """What every response about one certificate, status and second
    shares, and the response without a nonce."""

    data: _ResponseData
    signature_algorithm: asn1.TLV
    response_status: asn1.TLV
    responder: x509.Certificate
    # The response without a nonce: the template's own signature.
    plain: bytes


def template(
    builder: x509_ocsp.OCSPResponseBuilder,
    responder: x509.Certificate,
    private_key: CertificateIssuerPrivateKeyTypes,
    signature_hash: hashes.HashAlgorithm,
) -> ResponseTemplate:
    """The template of ``builder``'s response (its SingleResponse and
    ResponderID set, no certificates, no nonce), signed once with
    ``private_key``."""
    signed = builder.sign(private_key, signature_hash)
    outer = asn1.decode_der(_Response, signed.public_bytes(Encoding.DER))
    assert outer.response_bytes is not None
    basic = asn1.decode_der(_TemplateBasic, outer.response_bytes.response)
    found = ResponseTemplate(
        data=basic.tbs_response_data,
        signature_algorithm=basic.signature_algorithm,
        response_status=outer.response_status,
        responder=responder,
        plain=b"",
    )
    plain = _assemble(found, basic.tbs_response_data, signed.signature)
    return dataclasses.replace(found, plain=plain)


def with_nonce(
    found: ResponseTemplate,
    nonce: bytes,
    private_key: CertificateIssuerPrivateKeyTypes,
    signature_hash: hashes.HashAlgorithm,
) -> bytes:
    """The template's response echoing ``nonce`` (RFC 8954: extnValue is
    the DER of an OCTET STRING holding it), freshly signed."""
    data = _ResponseData(
        responder_id=found.data.responder_id,
        produced_at=found.data.produced_at,
        responses=found.data.responses,
        response_extensions=[
            _Extension(
                extn_id=OCSPExtensionOID.NONCE,
                critical=False,
                extn_value=asn1.encode_der(nonce),
            )
        ],
    )
    tbs = asn1.encode_der(data)
    return _assemble(found, data, _sign(private_key, tbs, signature_hash))


def _sign(
    private_key: CertificateIssuerPrivateKeyTypes,
    data: bytes,
    signature_hash: hashes.HashAlgorithm,
) -> bytes:
    """The signature the builder would make: ECDSA, or RSA PKCS#1 v1.5."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(signature_hash))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), signature_hash)
    raise TypeError(f"{type(private_key).__name__} keys do not sign OCSP responses")


def _assemble(found: ResponseTemplate, data: _ResponseData, signature: bytes) -> bytes:
    basic = _BasicResponse(
        tbs_response_data=data,
        signature_algorithm=found.signature_algorithm,
        signature=asn1.BitString(signature, 0),
        certs=[found.responder],
    )
    return asn1.encode_der(
        _Response(
            response_status=found.response_status,
            response_bytes=_ResponseBytes(
                response_type=_BASIC, response=asn1.encode_der(basic)
            ),
        )
    )
