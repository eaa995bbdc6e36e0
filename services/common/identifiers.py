"""How Tessera writes serial numbers, key identifiers and fingerprints.

Serial numbers and key ids travel as lowercase hex strings; fingerprints are
SHA-256 of the DER, lowercase hex. Input is accepted with colons, spaces,
upper case and a ``0x`` prefix, as people copy it from openssl.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

_HEX_SEPARATORS = re.compile(r"[\s:]")
_HEX = re.compile(r"[0-9a-f]+")

# RFC 5280 section 4.1.2.2: at most 20 octets.
MAX_SERIAL_OCTETS = 20


def format_serial(serial_number: int) -> str:
    """The canonical text of a serial number: lowercase hex, no leading zeros."""
    return format(serial_number, "x")


def parse_serial(text: str) -> int:
    """Read a serial number written in hex; raise ValueError when it is not one."""
    digits = _clean_hex(text, "serial number")
    serial_number = int(digits, 16)
    if serial_number <= 0:
        raise ValueError("serial numbers are positive; 0 is not a serial number")
    if (serial_number.bit_length() + 8) // 8 > MAX_SERIAL_OCTETS:
        raise ValueError("serial number is longer than the 20 octets RFC 5280 allows")
    return serial_number


def parse_fingerprint(text: str) -> str:
    """Normalise a SHA-256 fingerprint; raise ValueError when it is not one."""
    digits = _clean_hex(text, "fingerprint")
    if len(digits) != 64:
        raise ValueError(
            f"a SHA-256 fingerprint is 64 hex digits; this one has {len(digits)}"
        )
    return digits


def parse_key_id(text: str) -> str:
    """Normalise a key identifier written in hex; raise ValueError otherwise."""
    digits = _clean_hex(text, "key id")
    if len(digits) % 2 or len(digits) > 128:
        raise ValueError("a key id is an even number of hex digits, at most 64 octets")
    return digits


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex."""
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def subject_key_id(certificate: x509.Certificate) -> str:
    """The certificate's subject key identifier, or one computed from its key."""
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        )
        return extension.value.key_identifier.hex()
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(
            certificate.public_key()
        ).key_identifier.hex()


def authority_key_id(certificate: x509.Certificate) -> str | None:
    """The keyIdentifier of the certificate's AKI extension, if it has one."""
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        )
    except x509.ExtensionNotFound:
        return None
    key_identifier = extension.value.key_identifier
    return key_identifier.hex() if key_identifier is not None else None


def _clean_hex(text: str, what: str) -> str:
    digits = _HEX_SEPARATORS.sub("", text).lower()
    digits = digits.removeprefix("0x")
    if not digits or not _HEX.fullmatch(digits):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"{what} must be written in hex digits, got {shown!r}")
    return digits
