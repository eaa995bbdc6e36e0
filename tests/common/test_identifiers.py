"""Serial numbers, key identifiers and fingerprints: one canonical text for
each, and input accepted the way people copy it from openssl."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from services.common import identifiers
from tests.support import common_name

_KEY = ec.generate_private_key(ec.SECP256R1())
_ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())


def certificate(*extensions: x509.ExtensionType) -> x509.Certificate:
    """A small self-issued certificate with exactly the given extensions."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(common_name("subject"))
        .issuer_name(common_name("issuer"))
        .public_key(_KEY.public_key())
        .serial_number(0x1F2E)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(_ISSUER_KEY, hashes.SHA256())


# Serial numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial_number", "text"),
    [(1, "1"), (255, "ff"), (0x0102, "102"), (2**159 - 1, "7" + "f" * 39)],
)
def test_format_serial_is_lowercase_hex_without_leading_zeros(
    serial_number: int, text: str
) -> None:
    assert identifiers.format_serial(serial_number) == text


@pytest.mark.parametrize(
    ("text", "serial_number"),
    [
        ("1f", 0x1F),
        ("1F", 0x1F),
        ("0x1f", 0x1F),
        ("0X1F", 0x1F),
        ("00:1F", 0x1F),
        ("01:02:03", 0x010203),
        (" 01 02\t03 ", 0x010203),
        ("0x00ff", 0xFF),
    ],
)
def test_parse_serial_accepts_openssl_spellings(text: str, serial_number: int) -> None:
    assert identifiers.parse_serial(text) == serial_number


def test_serial_round_trips_through_its_text() -> None:
    serial_number = 0x7A3B9C00000000000001

    text = identifiers.format_serial(serial_number)

    assert identifiers.parse_serial(text) == serial_number


@pytest.mark.parametrize("text", ["", "0x", ":", "xyz", "-1", "1g", "12.5", "+1f"])
def test_rejects_serial_that_is_not_hex(text: str) -> None:
    with pytest.raises(ValueError, match="serial number must be written in hex"):
        identifiers.parse_serial(text)


@pytest.mark.parametrize("text", ["0", "00", "0x0", "00:00"])
def test_rejects_zero_serial(text: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        identifiers.parse_serial(text)


def test_accepts_serial_of_twenty_octets() -> None:
    """The largest positive INTEGER that encodes in 20 octets: 159 bits."""
    text = "7f" + "ff" * 19

    assert identifiers.parse_serial(text) == 2**159 - 1


def test_rejects_serial_of_twenty_octets_with_high_bit_set() -> None:
    """ASN.1 INTEGER is signed: 0x80... needs a leading zero, so 21 octets."""
    with pytest.raises(ValueError, match="20 octets"):
        identifiers.parse_serial("80" + "00" * 19)


def test_rejects_serial_longer_than_twenty_octets() -> None:
    with pytest.raises(ValueError, match="20 octets"):
        identifiers.parse_serial("01" + "00" * 20)


def test_long_bad_input_is_shortened_in_the_message() -> None:
    text = "z" * 500

    with pytest.raises(ValueError, match="must be written in hex") as caught:
        identifiers.parse_serial(text)

    assert len(str(caught.value)) < 200
    assert "..." in str(caught.value)


# Fingerprints ---------------------------------------------------------------

_DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_parse_fingerprint_accepts_openssl_output() -> None:
    """openssl x509 -fingerprint -sha256 prints upper case with colons."""
    openssl = ":".join(_DIGEST[index : index + 2].upper() for index in range(0, 64, 2))

    assert identifiers.parse_fingerprint(openssl) == _DIGEST
    assert identifiers.parse_fingerprint(_DIGEST) == _DIGEST


@pytest.mark.parametrize("length", [40, 63, 65, 128])
def test_rejects_fingerprint_of_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match=f"has {length}"):
        identifiers.parse_fingerprint("a" * length)


def test_rejects_fingerprint_with_non_hex_digits() -> None:
    with pytest.raises(ValueError, match="fingerprint must be written in hex"):
        identifiers.parse_fingerprint("g" * 64)


def test_fingerprint_is_sha256_of_the_der() -> None:
    issued = certificate()

    expected = hashlib.sha256(issued.public_bytes(Encoding.DER)).hexdigest()
    assert identifiers.fingerprint(issued) == expected
    assert identifiers.fingerprint(issued) == issued.fingerprint(hashes.SHA256()).hex()


# Key ids --------------------------------------------------------------------


def test_parse_key_id_normalises() -> None:
    assert identifiers.parse_key_id("AB:CD:EF:01") == "abcdef01"


def test_accepts_key_id_of_sixty_four_octets() -> None:
    assert identifiers.parse_key_id("ab" * 64) == "ab" * 64


@pytest.mark.parametrize("text", ["abc", "ab" * 64 + "a", "ab" * 65])
def test_rejects_key_id_of_odd_or_excessive_length(text: str) -> None:
    with pytest.raises(ValueError, match="even number of hex digits"):
        identifiers.parse_key_id(text)


def test_rejects_key_id_that_is_not_hex() -> None:
    with pytest.raises(ValueError, match="key id must be written in hex"):
        identifiers.parse_key_id("not a key id")


def test_subject_key_id_comes_from_the_extension() -> None:
    issued = certificate(x509.SubjectKeyIdentifier(b"\x01\x02\x03\x04"))

    assert identifiers.subject_key_id(issued) == "01020304"


def test_subject_key_id_is_computed_when_the_extension_is_absent() -> None:
    """RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey."""
    expected = x509.SubjectKeyIdentifier.from_public_key(_KEY.public_key())

    assert identifiers.subject_key_id(certificate()) == expected.digest.hex()


def test_authority_key_id_reads_the_key_identifier() -> None:
    extension = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        _ISSUER_KEY.public_key()
    )
    issued = certificate(extension)

    assert extension.key_identifier is not None
    assert identifiers.authority_key_id(issued) == extension.key_identifier.hex()


def test_authority_key_id_is_none_without_the_extension() -> None:
    assert identifiers.authority_key_id(certificate()) is None


def test_authority_key_id_is_none_when_only_issuer_and_serial_are_named() -> None:
    extension = x509.AuthorityKeyIdentifier(
        key_identifier=None,
        authority_cert_issuer=[x509.DirectoryName(common_name("root"))],
        authority_cert_serial_number=7,
    )

    assert identifiers.authority_key_id(certificate(extension)) is None
