"""What Tessera's certificates contain: the platform root, frontdoor
intermediates and client certificates (RFC 5280 section 4).

Only the issuer's profile decides extensions; a CSR contributes its subject,
its subject alternative names and its public key, nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
)

# Certificates start a minute in the past so that a relying party whose
# clock is a little behind does not see them as not yet valid.
BACKDATE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class PublicationUrls:
    """Where relying parties fetch what a CA publishes, named by its key id."""

    base_url: str

    def crl(self, key_id: str) -> str:
        return f"{self.base_url}/crl/{key_id}.crl"

    def ocsp(self, key_id: str) -> str:
        return f"{self.base_url}/ocsp/{key_id}"

    def ca_certificate(self, key_id: str) -> str:
        return f"{self.base_url}/ca/{key_id}.crt"


@dataclasses.dataclass(frozen=True)
class Validity:
    """A certificate's validity period."""

    not_valid_before: dt.datetime
    not_valid_after: dt.datetime

    @classmethod
    def starting(
        cls, now: dt.datetime, days: int, cap: dt.datetime | None = None
    ) -> Validity:
        """``days`` from now, never past ``cap`` (the issuer's own notAfter)."""
        not_valid_after = now + dt.timedelta(days=days)
        if cap is not None:
            not_valid_after = min(not_valid_after, cap)
        return cls(now - BACKDATE, not_valid_after)


def signature_hash(
    public_key: CertificateIssuerPublicKeyTypes,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The hash a CA key signs with: matched to the curve, SHA-256 for RSA."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.key_size > 384:
            return hashes.SHA512()
        if public_key.key_size > 256:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(public_key, rsa.RSAPublicKey):
        return hashes.SHA256()
    raise ValueError(f"{type(public_key).__name__} keys cannot be CA keys here")


# RFC 5280 Appendix A: ub-common-name, ub-organization-name and
# ub-organizational-unit-name are all 64 characters.
_UB_NAME = 64


def _fitted(label: str, suffix: str) -> str:
    """``label`` followed by ``suffix``, the label shortened so that the
    whole stays within the 64 characters a name attribute may hold."""
    return label[: _UB_NAME - len(suffix)].rstrip() + suffix


def root_name(organization: str, key_id: str) -> x509.Name:
    """The platform root's subject; the key id keeps installations apart."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                _fitted(organization, f" Platform Root CA {key_id[:8]}"),
            ),
        ]
    )


def intermediate_name(organization: str, frontdoor: str, key_id: str) -> x509.Name:
    """A frontdoor intermediate's subject, unique per frontdoor and key.

    The OU holds the frontdoor's whole name (at most 63 characters); the
    common name shortens a long one to fit beside the key id.
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, frontdoor),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                _fitted(frontdoor, f" frontdoor CA {key_id[:8]}"),
            ),
        ]
    )


def _ca_key_usage(digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def root_template(
    subject: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    serial_number: int,
    validity: Validity,
) -> x509.CertificateBuilder:
    """The self-signed platform root: it signs intermediates and its CRL only."""
    key_identifier = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(validity.not_valid_before)
        .not_valid_after(validity.not_valid_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(digital_signature=False), critical=True)
        .add_extension(key_identifier, critical=False)
    )


def intermediate_template(
    subject: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    serial_number: int,
    validity: Validity,
    root: x509.Certificate,
    root_key_id: str,
    urls: PublicationUrls,
) -> x509.CertificateBuilder:
    """A frontdoor intermediate signed by the root; it issues client
    certificates only (pathLen 0)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(validity.not_valid_before)
        .not_valid_after(validity.not_valid_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # digitalSignature as well: RFC 5280 section 4.2.1.3 asks for it when
        # the CA itself signs OCSP responses, which a frontdoor may configure.
        .add_extension(_ca_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(_authority_key_identifier(root_key_id), critical=False)
        .add_extension(_crl_distribution_points(urls.crl(root_key_id)), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(
                            urls.ca_certificate(root_key_id)
                        ),
                    )
                ]
            ),
            critical=False,
        )
    )


def _end_entity(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial_number: int,
    validity: Validity,
    issuer: x509.Certificate,
    issuer_key_id: str,
    extended_key_usage: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    """What every end-entity certificate Tessera signs has: CA:FALSE,
    digitalSignature only (both critical), one extended key usage, SKI and
    AKI."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(validity.not_valid_before)
        .not_valid_after(validity.not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([extended_key_usage]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key),
            critical=False,
        )
        .add_extension(_authority_key_identifier(issuer_key_id), critical=False)
    )


def client_template(
    subject: x509.Name,
    subject_alt_names: list[x509.GeneralName],
    public_key: CertificatePublicKeyTypes,
    serial_number: int,
    validity: Validity,
    issuer: x509.Certificate,
    issuer_key_id: str,
    urls: PublicationUrls,
) -> x509.CertificateBuilder:
    """A TLS client certificate: digitalSignature, clientAuth, CA:FALSE."""
    builder = (
        _end_entity(
            subject,
            public_key,
            serial_number,
            validity,
            issuer,
            issuer_key_id,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        .add_extension(
            _crl_distribution_points(urls.crl(issuer_key_id)), critical=False
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(urls.ocsp(issuer_key_id)),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(
                            urls.ca_certificate(issuer_key_id)
                        ),
                    ),
                ]
            ),
            critical=False,
        )
    )
    if subject_alt_names:
        # RFC 5280 section 4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(subject_alt_names),
            critical=len(subject) == 0,
        )
    return builder


def ocsp_responder_template(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial_number: int,
    validity: Validity,
    issuer: x509.Certificate,
    issuer_key_id: str,
) -> x509.CertificateBuilder:
    """A delegated OCSP responder of an intermediate (RFC 6960 section
    4.2.2.2): id-kp-OCSPSigning, and id-pkix-ocsp-nocheck so that relying
    parties do not ask for the responder's own status (section 4.2.2.2.1);
    its short life stands in for revocation."""
    return _end_entity(
        subject,
        public_key,
        serial_number,
        validity,
        issuer,
        issuer_key_id,
        ExtendedKeyUsageOID.OCSP_SIGNING,
    ).add_extension(x509.OCSPNoCheck(), critical=False)


def ocsp_responder_name(organization: str, issuer_key_id: str) -> x509.Name:
    """The subject of an intermediate's delegated OCSP responder."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"OCSP responder {issuer_key_id[:16]}"
            ),
        ]
    )


def _authority_key_identifier(issuer_key_id: str) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier(
        key_identifier=bytes.fromhex(issuer_key_id),
        authority_cert_issuer=None,
        authority_cert_serial_number=None,
    )


def _crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
