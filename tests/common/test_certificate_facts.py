"""What Tessera reads out of certificates for records and verdicts."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from services.common.certificate_facts import subject_text


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def test_subject_text_is_rfc4514() -> None:
    assert subject_text(_name("payments-api")) == "CN=payments-api"
    assert subject_text(x509.Name([])) == ""


def test_control_and_format_characters_are_hex_escaped() -> None:
    """An escape sequence or bidi override in a foreign name reaches no
    terminal or log raw; RFC 4514 hex escapes stand in for it."""
    text = subject_text(_name("Z\x1b[31mQQ\u202e"))

    assert text == "CN=Z\\1B[31mQQ\\E2\\80\\AE"
    assert "\x1b" not in text
    assert "\u202e" not in text


def test_other_unicode_is_kept() -> None:
    assert subject_text(_name("Zahlungsverkehr-ü")) == "CN=Zahlungsverkehr-ü"
