"""Path validation in services/validator/chain.py, without a network: an
anchor CA and client certificates crafted with cryptography, validated at a
fixed moment."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.validator.chain import (
    BAD_SIGNATURE,
    EXPIRED,
    INVALID_PATH,
    NOT_YET_VALID,
    OK,
    UNTRUSTED_ISSUER,
    WEAK_KEY,
    WRONG_USAGE,
    AnchorSet,
    client_usage_problem,
)

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_usage(**granted: bool) -> x509.KeyUsage:
    """A keyUsage with only the named bits set."""
    usages = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**{**usages, **granted})


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA certificate and its key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_ca(
    common_name: str,
    issuer: Authority | None = None,
    not_before: dt.datetime = NOW - 30 * DAY,
    not_after: dt.datetime = NOW + 300 * DAY,
    path_length: int | None = 0,
) -> Authority:
    """A CA like a frontdoor intermediate (or, with ``issuer``, one below it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    return Authority(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    issuer: Authority,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
    usage: x509.KeyUsage | None = key_usage(digital_signature=True),  # noqa: B008
    extended_usage: Sequence[x509.ObjectIdentifier] = (
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ),
    sans: Sequence[x509.GeneralName] = (x509.DNSName("payments.internal"),),
    signed_by: ec.EllipticCurvePrivateKey | None = None,
    public_key: CertificatePublicKeyTypes | None = None,
) -> x509.Certificate:
    """A client certificate naming ``issuer`` (issuer name and AKI), signed by
    its key unless ``signed_by`` says otherwise, for ``public_key`` (a new
    P-256 key by default)."""
    if public_key is None:
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("payments-api"))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if extended_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(extended_usage)), critical=False
        )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(sans)), critical=False
        )
    return builder.sign(signed_by or issuer.key, hashes.SHA256())


@pytest.fixture(scope="module")
def anchor() -> Authority:
    return make_ca("payments frontdoor CA")


@pytest.fixture(scope="module")
def anchors(anchor: Authority) -> AnchorSet:
    return AnchorSet([anchor.certificate])


def test_client_certificate_from_an_anchor_is_valid(
    anchor: Authority, anchors: AnchorSet
) -> None:
    """The result holds the verified path, leaf first, ending at the anchor."""
    leaf = make_leaf(anchor)

    result = anchors.verify(leaf, [], NOW)

    assert result.valid
    assert result.reasons == (OK,)
    assert result.chain == (leaf, anchor.certificate)


def test_expired_certificate_is_expired(anchor: Authority, anchors: AnchorSet) -> None:
    leaf = make_leaf(anchor, not_before=NOW - 10 * DAY, not_after=NOW - DAY)

    result = anchors.verify(leaf, [], NOW)

    assert result.reasons == (EXPIRED,)
    assert not result.valid
    assert result.chain == ()
    assert "the certificate expired on 2030-05-31T12:00:00+00:00" in result.message


def test_certificate_is_valid_up_to_its_last_second(
    anchor: Authority, anchors: AnchorSet
) -> None:
    """notAfter is inclusive (RFC 5280 section 4.1.2.5)."""
    leaf = make_leaf(anchor, not_after=NOW)

    assert anchors.verify(leaf, [], NOW).valid
    assert anchors.verify(leaf, [], NOW + dt.timedelta(seconds=1)).reasons == (EXPIRED,)


def test_certificate_not_yet_valid_is_not_yet_valid(
    anchor: Authority, anchors: AnchorSet
) -> None:
    leaf = make_leaf(anchor, not_before=NOW + DAY)

    result = anchors.verify(leaf, [], NOW)

    assert result.reasons == (NOT_YET_VALID,)
    assert "not valid before 2030-06-02T12:00:00+00:00" in result.message


def test_certificate_from_another_ca_is_untrusted_issuer(anchors: AnchorSet) -> None:
    stranger = make_ca("someone else's CA")

    result = anchors.verify(make_leaf(stranger), [], NOW)

    assert result.reasons == (UNTRUSTED_ISSUER,)
    assert "no trust anchor of this frontdoor issued the certificate" in (
        result.message
    )
    assert "CN=someone else's CA" in result.message


def test_certificate_of_an_anchors_name_signed_by_another_key_is_bad_signature(
    anchor: Authority, anchors: AnchorSet
) -> None:
    """Issuer name and AKI point at the anchor; the signature does not."""
    forger = ec.generate_private_key(ec.SECP256R1())

    result = anchors.verify(make_leaf(anchor, signed_by=forger), [], NOW)

    assert result.reasons == (BAD_SIGNATURE,)
    assert "does not verify with the key of its named issuer" in result.message


def test_server_auth_only_certificate_is_wrong_usage(
    anchor: Authority, anchors: AnchorSet
) -> None:
    leaf = make_leaf(anchor, extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH])

    result = anchors.verify(leaf, [], NOW)

    assert result.reasons == (WRONG_USAGE,)
    assert "extendedKeyUsage does not include clientAuth" in result.message


def test_key_usage_without_digital_signature_is_wrong_usage(
    anchor: Authority, anchors: AnchorSet
) -> None:
    leaf = make_leaf(anchor, usage=key_usage(key_encipherment=True))

    result = anchors.verify(leaf, [], NOW)

    assert result.reasons == (WRONG_USAGE,)
    assert "keyUsage lacks digitalSignature" in result.message


@pytest.mark.parametrize(
    ("make_key", "words"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "1024 bits"),  # noqa: S505 (weak on purpose)
        (lambda: ec.generate_private_key(ec.SECP192R1()), "secp192r1"),
        (lambda: dsa.generate_private_key(2048), "DSA"),
    ],
    ids=["rsa-1024", "p-192", "dsa"],
)
def test_weak_client_key_is_weak_key(
    anchor: Authority, anchors: AnchorSet, make_key: Any, words: str
) -> None:
    """The library checks the keys that verify signatures on the path, not
    the leaf's own key; the validator refuses a weak one itself."""
    leaf = make_leaf(anchor, public_key=make_key().public_key())

    result = anchors.verify(leaf, [], NOW)

    assert result.reasons == (WEAK_KEY,)
    assert words in result.message


def test_certificate_without_san_is_accepted(
    anchor: Authority, anchors: AnchorSet
) -> None:
    """Older PKIs issue client certificates whose identity is the subject."""
    leaf = make_leaf(anchor, sans=())

    assert anchors.verify(leaf, [], NOW).reasons == (OK,)


def test_certificate_without_key_usage_extensions_is_accepted(
    anchor: Authority, anchors: AnchorSet
) -> None:
    """Without keyUsage and extendedKeyUsage nothing restricts the key."""
    leaf = make_leaf(anchor, usage=None, extended_usage=())

    assert anchors.verify(leaf, [], NOW).reasons == (OK,)
    assert client_usage_problem(leaf) == ""


def test_expired_and_untrusted_certificate_reports_both_reasons() -> None:
    stranger = make_ca("someone else's CA")
    leaf = make_leaf(stranger, not_before=NOW - 10 * DAY, not_after=NOW - DAY)

    result = AnchorSet([make_ca("payments frontdoor CA").certificate]).verify(
        leaf, [], NOW
    )

    assert result.reasons == (EXPIRED, UNTRUSTED_ISSUER)
    assert "expired" in result.message
    assert "no trust anchor" in result.message


def test_expired_anchor_makes_its_certificates_expired() -> None:
    old = make_ca("old frontdoor CA", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    leaf = make_leaf(old, not_before=NOW - 10 * DAY)

    result = AnchorSet([old.certificate]).verify(leaf, [], NOW)

    assert result.reasons == (EXPIRED,)
    assert "the issuing CA expired" in result.message


def test_frontdoor_without_anchors_trusts_nothing(anchor: Authority) -> None:
    result = AnchorSet([]).verify(make_leaf(anchor), [], NOW)

    assert result.reasons == (UNTRUSTED_ISSUER,)
    assert "no usable trust anchors" in result.message


def test_presented_intermediate_completes_the_path_to_an_uploaded_root() -> None:
    """An uploaded organisation root as anchor, the client presenting the
    issuing CA below it."""
    root = make_ca("organisation root", path_length=None)
    issuing = make_ca("organisation issuing CA", issuer=root)
    leaf = make_leaf(issuing)

    anchors = AnchorSet([root.certificate])

    assert anchors.verify(leaf, [issuing.certificate], NOW).chain == (
        leaf,
        issuing.certificate,
        root.certificate,
    )
    assert anchors.verify(leaf, [], NOW).reasons == (UNTRUSTED_ISSUER,)


def test_expired_presented_intermediate_is_expired() -> None:
    root = make_ca("organisation root", path_length=None)
    issuing = make_ca(
        "organisation issuing CA",
        issuer=root,
        not_before=NOW - 400 * DAY,
        not_after=NOW - DAY,
    )

    result = AnchorSet([root.certificate]).verify(
        make_leaf(issuing, not_before=NOW - 10 * DAY), [issuing.certificate], NOW
    )

    assert result.reasons == (EXPIRED,)
    assert "an intermediate in the chain expired" in result.message


def test_ca_certificate_presented_as_client_certificate_is_refused() -> None:
    """A CA below an anchor, even with digitalSignature, is no client."""
    root = make_ca("organisation root", path_length=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subordinate = (
        x509.CertificateBuilder()
        .subject_name(_name("subordinate CA"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )

    result = AnchorSet([root.certificate]).verify(subordinate, [], NOW)

    assert not result.valid
    assert result.reasons == (INVALID_PATH,)
    assert "basicConstraints" in result.message
