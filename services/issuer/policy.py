"""CSR policy: what a certification request must be before Tessera signs it.

Malformed requests are InvalidArgument; well-formed requests the policy does
not allow (weak keys, CA requests, too long a validity) are PolicyRefusal.
Each message says what to change.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from services.common.errors import InvalidArgument, PolicyRefusal
from tessera.common.v1 import common_pb2

# A CSR is a few hundred bytes to a few kilobytes; anything far larger is
# not a CSR anyone meant to send.
MAX_CSR_BYTES = 64 * 1024
MAX_SUBJECT_ALT_NAMES = 100

_SUPPORTED_NAMES = (
    x509.DNSName,
    x509.UniformResourceIdentifier,
    x509.RFC822Name,
    x509.IPAddress,
)
_CURVE_KEY_TYPES = {
    "secp256r1": common_pb2.KEY_TYPE_EC_P256,
    "secp384r1": common_pb2.KEY_TYPE_EC_P384,
}
_KEY_TYPE_WORDS = {
    common_pb2.KEY_TYPE_RSA: "RSA",
    common_pb2.KEY_TYPE_EC_P256: "ECDSA P-256",
    common_pb2.KEY_TYPE_EC_P384: "ECDSA P-384",
    common_pb2.KEY_TYPE_ED25519: "Ed25519",
}


@dataclasses.dataclass(frozen=True)
class AcceptedRequest:
    """What a CSR contributes to a certificate once the policy accepted it."""

    subject: x509.Name
    subject_alt_names: list[x509.GeneralName]
    public_key: CertificatePublicKeyTypes


def load_csr(der: bytes) -> x509.CertificateSigningRequest:
    """Parse a DER CSR; InvalidArgument when it is not one."""
    if not der:
        raise InvalidArgument("csr is empty; send a DER-encoded PKCS#10 request")
    if len(der) > MAX_CSR_BYTES:
        raise InvalidArgument(
            f"csr is {len(der)} bytes; a PKCS#10 request is at most "
            f"{MAX_CSR_BYTES} bytes"
        )
    try:
        csr = x509.load_der_x509_csr(der)
        # Touch the lazily parsed parts so that damage shows here.
        csr.subject  # noqa: B018
        csr.extensions  # noqa: B018
        csr.public_key()
    except ValueError:
        raise InvalidArgument(
            "csr is not a DER-encoded PKCS#10 certification request; if you have "
            "PEM, convert it with 'openssl req -outform DER'"
        ) from None
    except x509.UnsupportedGeneralNameType:
        raise InvalidArgument(
            "csr holds a subject alternative name of a type Tessera does not support"
        ) from None
    return csr


def check_csr(
    csr: x509.CertificateSigningRequest, profile: common_pb2.IssuanceProfile
) -> AcceptedRequest:
    """Apply the issuance profile (with defaults filled in) to a parsed CSR."""
    if not csr.is_signature_valid:
        raise InvalidArgument(
            "CSR signature does not verify with the CSR's own public key; "
            "generate the CSR again with the matching private key"
        )

    public_key = csr.public_key()
    _check_key(public_key, profile)
    _refuse_ca_request(csr)
    subject_alt_names = _subject_alt_names(csr)
    if len(csr.subject) == 0 and not subject_alt_names:
        raise InvalidArgument(
            "CSR has neither a subject nor subject alternative names; give it a "
            "subject (for example CN=payments-api) or a SAN"
        )
    return AcceptedRequest(
        subject=csr.subject,
        subject_alt_names=subject_alt_names,
        public_key=public_key,
    )


def key_type_of(public_key: object) -> int:
    """The KeyType of a public key, or KEY_TYPE_UNSPECIFIED when unsupported."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return common_pb2.KEY_TYPE_RSA
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_KEY_TYPES.get(
            public_key.curve.name, common_pb2.KEY_TYPE_UNSPECIFIED
        )
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return common_pb2.KEY_TYPE_ED25519
    return common_pb2.KEY_TYPE_UNSPECIFIED


def _check_key(public_key: object, profile: common_pb2.IssuanceProfile) -> None:
    allowed = list(profile.allowed_key_types)
    allowed_words = ", ".join(_KEY_TYPE_WORDS[kind] for kind in allowed)
    key_type = key_type_of(public_key)
    if key_type not in allowed:
        raise PolicyRefusal(
            f"{_describe_key(public_key)} keys are not accepted here; use one of: "
            f"{allowed_words}"
        )
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < profile.min_rsa_bits:
            raise PolicyRefusal(
                f"RSA keys must be at least {profile.min_rsa_bits} bits; this one has "
                f"{public_key.key_size}"
            )
        if public_key.key_size > 8192:
            raise PolicyRefusal(
                f"RSA keys may be at most 8192 bits; this one has {public_key.key_size}"
            )
        if public_key.public_numbers().e != 65537:
            raise PolicyRefusal("RSA keys must use the public exponent 65537")


def _describe_key(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    return type(public_key).__name__.removeprefix("_").replace("PublicKey", "")


def _refuse_ca_request(csr: x509.CertificateSigningRequest) -> None:
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints)
        if constraints.value.ca:
            raise PolicyRefusal(
                "CSR asks for a CA certificate (basicConstraints CA:TRUE); Tessera "
                "issues client certificates only"
            )
    except x509.ExtensionNotFound:
        pass
    try:
        key_usage = csr.extensions.get_extension_for_class(x509.KeyUsage).value
        if key_usage.key_cert_sign or key_usage.crl_sign:
            raise PolicyRefusal(
                "CSR asks for keyCertSign or cRLSign key usage; Tessera issues client "
                "certificates only"
            )
    except x509.ExtensionNotFound:
        pass


def _subject_alt_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        names = list(
            csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        return []
    if len(names) > MAX_SUBJECT_ALT_NAMES:
        raise InvalidArgument(
            f"CSR has {len(names)} subject alternative names; at most "
            f"{MAX_SUBJECT_ALT_NAMES} are accepted"
        )
    for name in names:
        if not isinstance(name, _SUPPORTED_NAMES):
            raise InvalidArgument(
                f"CSR has a subject alternative name of type {type(name).__name__}; "
                "Tessera accepts DNS names, URIs, email addresses and IP addresses"
            )
    return names
