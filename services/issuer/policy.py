"""CSR policy: what a certification request must be before Tessera signs it.

Malformed requests are InvalidArgument; well-formed requests the policy does
not allow (weak keys, CA requests, too long a validity) are PolicyRefusal.
Each message says what to change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from services.common import certificate_facts as facts
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
_KEY_TYPE_WORDS = {
    common_pb2.KEY_TYPE_RSA: "RSA",
    common_pb2.KEY_TYPE_EC_P256: "ECDSA P-256",
    common_pb2.KEY_TYPE_EC_P384: "ECDSA P-384",
    common_pb2.KEY_TYPE_ED25519: "Ed25519",
}
# RFC 5280 section 4.2.1.6 asks for the preferred name syntax of RFC 1034
# section 3.5 in dNSName, with RFC 1123's relaxation (labels may start with a
# digit). Internationalised names travel as A-labels, so ASCII only.
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_DNS_NAME_LENGTH = 253
# RFC 3986 section 3.1.
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


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
    except x509.DuplicateExtension as error:
        raise InvalidArgument(
            f"csr repeats the extension {error.oid.dotted_string}; RFC 5280 "
            "allows each extension once"
        ) from None
    except UnsupportedAlgorithm:
        raise InvalidArgument(
            "csr holds a public key of a type or curve Tessera cannot read; use "
            "an RSA key or an ECDSA P-256 or P-384 key"
        ) from None
    return csr


# Hashes a CSR may be signed with; Ed25519 signs without a separate hash.
_CSR_SIGNATURE_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def _check_signature_hash(csr: x509.CertificateSigningRequest) -> None:
    """Say so when a CSR is signed with a hash Tessera refuses, rather than
    calling its signature invalid."""
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise InvalidArgument(
            "the CSR is signed with an algorithm Tessera does not accept; sign it "
            "with SHA-256 (for example 'openssl req -sha256')"
        ) from None
    if algorithm is not None and not isinstance(algorithm, _CSR_SIGNATURE_HASHES):
        raise InvalidArgument(
            f"the CSR is signed with {algorithm.name.upper()}, which Tessera does "
            "not accept for signatures; sign it with SHA-256, SHA-384 or SHA-512 "
            "(for example 'openssl req -sha256')"
        )


def check_csr(
    csr: x509.CertificateSigningRequest, profile: common_pb2.IssuanceProfile
) -> AcceptedRequest:
    """Apply the issuance profile (with defaults filled in) to a parsed CSR."""
    _check_signature_hash(csr)
    if not csr.is_signature_valid:
        raise InvalidArgument(
            "CSR signature does not verify with the CSR's own public key; "
            "generate the CSR again with the matching private key"
        )

    public_key = csr.public_key()
    _check_key(public_key, profile)
    _refuse_ca_request(csr)
    _check_subject(csr.subject)
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
    return facts.key_type_value(public_key)


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
        problem = _name_syntax_problem(name)
        if problem:
            raise InvalidArgument(
                f"CSR has an invalid subject alternative name: {problem}"
            )
    return names


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char).startswith("C") for char in text)


def _check_subject(subject: x509.Name) -> None:
    # The subject reaches logs, terminals and the identity headers proxies
    # build from verdicts, where a newline or an escape sequence does harm.
    for attribute in subject:
        if isinstance(attribute.value, str) and _has_control_characters(
            attribute.value
        ):
            raise InvalidArgument(
                f"CSR subject attribute {attribute.rfc4514_attribute_name} contains "
                "control or format characters (newlines, tabs, escape sequences); "
                "remove them"
            )


def _is_dns_name(text: str) -> bool:
    return len(text) <= _MAX_DNS_NAME_LENGTH and all(
        _DNS_LABEL.fullmatch(label) for label in text.split(".")
    )


def _is_visible_ascii(text: str) -> bool:
    return all("!" <= char <= "~" for char in text)


def _is_absolute_uri(text: str) -> bool:
    scheme, colon, rest = text.partition(":")
    if not (colon and rest and _URI_SCHEME.fullmatch(scheme)):
        return False
    if not _is_visible_ascii(text):
        return False
    # RFC 5280 section 4.2.1.6: a URI with an authority names a host in it.
    if rest.startswith("//"):
        authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
        host = authority.rpartition("@")[2]
        return bool(host) and not host.startswith(":")
    return True


def _name_syntax_problem(name: x509.GeneralName) -> str:
    """Why a SAN entry breaks RFC 5280 section 4.2.1.6, or "" if it does not."""
    value = name.value
    if isinstance(name, x509.DNSName):
        if _is_dns_name(value):
            return ""
        return (
            f"DNS name {value!r} is not a host name (dot-separated labels of "
            "letters, digits and hyphens; no wildcards)"
        )
    if isinstance(name, x509.RFC822Name):
        local_part, _, domain = value.rpartition("@")
        if local_part and _is_visible_ascii(local_part) and _is_dns_name(domain):
            return ""
        return f"email address {value!r} is not of the form local-part@host.name"
    if isinstance(name, x509.UniformResourceIdentifier):
        if _is_absolute_uri(value):
            return ""
        return (
            f"URI {value!r} is not an absolute URI (a scheme, a colon and a host "
            "or path, in ASCII without spaces; for example spiffe://example.org/api)"
        )
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ""
    return f"IP address entry {value} is a network, not an address"
