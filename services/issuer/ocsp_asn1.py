"""RFC 6960 structures on the responder's hot path, read and written with
cryptography's declarative ASN.1 module (``hazmat.asn1``, strict DER).

Requests. The common request names one certificate and carries at most a
nonce. ``read_single`` reads it: DER only (rust-asn1 refuses BER: long or
indefinite lengths, an explicit default version, padded integers), and the
nonce's extnValue exactly as sent, which must itself be the DER of an
OCTET STRING (RFC 8954). Anything else, a requestorName, a signature over
it aside, singleRequestExtensions or other request extensions, is left to
the general reader in ``ocsp`` (asn1crypto), which refuses what is not DER
too.

Responses. cryptography's OCSP builder writes every response: the CertID,
status and times of its SingleResponse, the ResponderID and the signature
algorithm. What it does slowly is the part of a response with a nonce that
changes from one request to the next: each ``sign()`` encodes the delegated
responder's certificate (RFC 6960 section 4.2.2.2 wants it in the
response), parses the whole response back, and ``public_bytes`` encodes it
all once more, some 50 microseconds of a response's 85.

So the builder writes a *template* once per certificate, status and second
(thisUpdate and producedAt have whole seconds), signed without a nonce and
without certificates. A response with a nonce reuses the template's
ResponseData fields as they are, adds the nonce extension, signs that
ResponseData with the responder's key, and wraps it, the responder's
certificate and the signature in BasicOCSPResponse and OCSPResponse.
Only the outer structures are declared here; the SingleResponses stay the
builder's own bytes.
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
class _AlgorithmIdentifier:
    algorithm: x509.ObjectIdentifier
    parameters: asn1.Null | None


@asn1.sequence
class _CertId:
    hash_algorithm: _AlgorithmIdentifier
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@asn1.sequence
class _Request:
    req_cert: _CertId
    single_request_extensions: Annotated[list[_Extension] | None, asn1.Explicit(0)]


@asn1.sequence
class _TbsRequest:
    # requestorName [1] is not declared: a request naming its requestor is
    # read by the general reader.
    version: Annotated[int, asn1.Explicit(0), asn1.Default(0)]
    request_list: list[_Request]
    request_extensions: Annotated[list[_Extension] | None, asn1.Explicit(2)]


@asn1.sequence
class _Signature:
    signature_algorithm: asn1.TLV
    signature: asn1.TLV
    certs: Annotated[list[asn1.TLV] | None, asn1.Explicit(0)]


@asn1.sequence
class _OcspRequest:
    tbs_request: _TbsRequest
    optional_signature: Annotated[_Signature | None, asn1.Explicit(0)]


@dataclasses.dataclass(frozen=True)
class SingleRequest:
    """The one CertID of a request, and its nonce."""

    # The CertID's hash algorithm, dotted.
    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    nonce: bytes | None


def read_single(der: bytes) -> SingleRequest | None:
    """The request, when it is DER naming one certificate with nothing but
    a DER nonce beside it; None for anything else."""
    try:
        request = asn1.decode_der(_OcspRequest, der)
    except ValueError:
        return None
    tbs = request.tbs_request
    if tbs.version != 0 or len(tbs.request_list) != 1:
        return None
    (single,) = tbs.request_list
    if single.single_request_extensions is not None:
        return None
    nonce = None
    for extension in tbs.request_extensions or ():
        if extension.extn_id != OCSPExtensionOID.NONCE or nonce is not None:
            return None
        try:
            nonce = asn1.decode_der(bytes, extension.extn_value)
        except ValueError:
            return None
    cert_id = single.req_cert
    return SingleRequest(
        hash_algorithm=cert_id.hash_algorithm.algorithm.dotted_string,
        issuer_name_hash=cert_id.issuer_name_hash,
        issuer_key_hash=cert_id.issuer_key_hash,
        serial_number=cert_id.serial_number,
        nonce=nonce,
    )


@asn1.sequence
class _ResponseData:
    # version [0] EXPLICIT DEFAULT v1 is never written (DER omits the
    # default, and the builder writes only v1).
    responder_id: asn1.TLV
    produced_at: asn1.TLV
    responses: asn1.TLV
    response_extensions: Annotated[list[_Extension] | None, asn1.Explicit(1)]


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
    basic = asn1.decode_der(_BasicResponse, outer.response_bytes.response)
    found = ResponseTemplate(
        data=basic.tbs_response_data,
        signature_algorithm=basic.signature_algorithm,
        response_status=outer.response_status,
        responder=responder,
        plain=b"",
    )
    plain = _assemble(found, basic.tbs_response_data, basic.signature.as_bytes())
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
