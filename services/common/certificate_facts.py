"""What Tessera reads out of a certificate for records and verdicts:
subject text, subject alternative names, key type, and protobuf timestamps."""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import InvalidArgument
from tessera.common.v1 import common_pb2

_SAN_TYPES: dict[type[x509.GeneralName], common_pb2.SubjectAltName.Type] = {
    x509.DNSName: common_pb2.SubjectAltName.TYPE_DNS,
    x509.UniformResourceIdentifier: common_pb2.SubjectAltName.TYPE_URI,
    x509.RFC822Name: common_pb2.SubjectAltName.TYPE_EMAIL,
    x509.IPAddress: common_pb2.SubjectAltName.TYPE_IP,
}

_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def timestamp(moment: dt.datetime) -> Timestamp:
    """A protobuf Timestamp for an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def from_timestamp(stamp: Timestamp) -> dt.datetime:
    """An aware UTC datetime from a protobuf Timestamp."""
    return stamp.ToDatetime(tzinfo=dt.UTC)


def request_timestamp(stamp: Timestamp, field: str) -> dt.datetime:
    """An aware UTC datetime from a Timestamp a caller sent; InvalidArgument
    when it lies outside what a Timestamp may hold (years 1 to 9999, nanos
    0 to 999,999,999)."""
    try:
        return stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            f"{field} is not a valid timestamp (seconds {stamp.seconds}, nanos "
            f"{stamp.nanos}); send a time between years 1 and 9999"
        ) from None


def spki_sha256(public_key: PublicKeyTypes) -> str:
    """SHA-256 of a key's DER SubjectPublicKeyInfo, hex: the key's identity
    whatever certificate or CSR carries it."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def subject_text(name: x509.Name) -> str:
    """RFC 4514 text of a name; empty for an empty name.

    Control and format characters (escape sequences, bidi overrides) are
    written as RFC 4514 hex escapes, so that a foreign certificate's name
    cannot rewrite a terminal or a log line that shows it.
    """
    return "".join(
        _escaped(char) if unicodedata.category(char) in ("Cc", "Cf") else char
        for char in name.rfc4514_string()
    )


def _escaped(char: str) -> str:
    return "".join(f"\\{octet:02X}" for octet in char.encode("utf-8"))


def subject_alt_names(
    certificate: x509.Certificate | x509.CertificateSigningRequest,
) -> list[common_pb2.SubjectAltName]:
    """The SAN entries Tessera understands, in the order they appear."""
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    return general_names_to_proto(list(extension.value))


def general_names_to_proto(
    names: list[x509.GeneralName],
) -> list[common_pb2.SubjectAltName]:
    """SAN entries as protobuf messages; other name forms are shown as text."""
    result = []
    for name in names:
        kind = _SAN_TYPES.get(type(name), common_pb2.SubjectAltName.TYPE_UNSPECIFIED)
        value = name.value
        text = value if isinstance(value, str) else str(value)
        result.append(common_pb2.SubjectAltName(type=kind, value=text))
    return result


def key_type(public_key: PublicKeyTypes) -> str:
    """A short description such as "EC P-256", "RSA 3072" or "Ed25519"."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {_CURVE_NAMES.get(public_key.curve.name, public_key.curve.name)}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__


_CURVE_KEY_TYPES = {
    "secp256r1": common_pb2.KEY_TYPE_EC_P256,
    "secp384r1": common_pb2.KEY_TYPE_EC_P384,
}


def key_type_value(public_key: object) -> common_pb2.KeyType:
    """The KeyType of a public key, or KEY_TYPE_UNSPECIFIED when Tessera's
    policies know no such type (other curves, DSA, Ed448)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return common_pb2.KEY_TYPE_RSA
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_KEY_TYPES.get(
            public_key.curve.name, common_pb2.KEY_TYPE_UNSPECIFIED
        )
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return common_pb2.KEY_TYPE_ED25519
    return common_pb2.KEY_TYPE_UNSPECIFIED
