"""Certificates of a user's own PKI, made with cryptography, for upload tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common import identifiers


@dataclasses.dataclass
class Issued:
    certificate: x509.Certificate
    key: Any

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return identifiers.fingerprint(self.certificate)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(
    name: str = "Example Org Root",
    issuer: Issued | None = None,
    key: Any = None,
    key_cert_sign: bool | None = True,
) -> Issued:
    """An organisation CA made with cryptography: a root, or an intermediate
    under ``issuer``; ``key_cert_sign`` None leaves keyUsage out."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.certificate.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(days=1))
        .not_valid_after(now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            False,
        )
    )
    if key_cert_sign is not None:
        builder = builder.add_extension(ca_key_usage(key_cert_sign), True)
    if issuer is not None:
        builder = builder.add_extension(_crl_points(), False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def ca_key_usage(key_cert_sign: bool = True) -> x509.KeyUsage:
    """A CA's keyUsage: certificates (unless ``key_cert_sign`` is False),
    CRLs and digital signatures."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _crl_points() -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://pki.example.org/ca.crl")],
                None,
                None,
                None,
            )
        ]
    )


def make_client(
    ca: Issued | None,
    name: str = "client.example.org",
    key: Any = None,
    usages: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    revocation_information: bool = True,
    serial_number: int | None = None,
    more_names: Sequence[str] = (),
) -> Issued:
    """A client certificate signed by ``ca``, or self-signed when None;
    ``more_names`` are DNS names after ``name`` in its subjectAltName."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key = ca.key if ca else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(not_before or now() - dt.timedelta(hours=1))
        .not_valid_after(not_after or now() + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in (name, *more_names)]),
            False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            False,
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), False)
    if ca is not None and revocation_information:
        builder = builder.add_extension(_crl_points(), False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)
