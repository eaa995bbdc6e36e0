"""Uploads of certificates from the user's own PKI: reading the file and
the lint report that decides whether anything is stored.

An upload is a client certificate, a CA certificate or a chain, as PEM, DER
or PKCS#7. Private keys are never accepted in any form (PEM blocks of any
kind, DER PKCS#8 or traditional keys, PKCS#12/PFX with or without a
password): the upload is refused with an error that does not quote the
file, and nothing of it is written anywhere, since all reading happens in
memory. This module does not log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import threading
import warnings
from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID
from sqlalchemy.orm import Session

from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.errors import InvalidArgument
from services.registry.models import (
    CertificateRow,
    CompromisedKeyRow,
    FrontdoorRow,
    TrustAnchorRow,
)
from services.validator.chain import (
    AnchorSet,
    client_key_problem,
    client_usage_problem,
    issued_by,
)
from tessera.common.v1 import common_pb2

# A certificate or a chain is a few kilobytes; a megabyte is far beyond any
# real one and still cheap to read.
MAX_UPLOAD_BYTES = 1024 * 1024
# More certificates than this in one file is a bundle, not a chain.
MAX_CERTIFICATES = 20

PRIVATE_KEY_REFUSAL = (
    "the upload contains a private key; Tessera never accepts private keys. "
    "Upload the certificate alone (PEM 'CERTIFICATE' blocks, DER or PKCS#7), and "
    "keep the key where it is"
)

# More subject alternative names than this in one certificate is not a
# client identity; storing and searching them would only cost time.
MAX_SUBJECT_ALT_NAMES = 1000

PKCS12_REFUSAL = (
    "PKCS#12 (PFX) files are not accepted; export the certificates as PEM "
    "(openssl pkcs12 -nokeys) and upload that"
)
ENCRYPTED_PKCS12_REFUSAL = (
    "the upload is a password-protected PKCS#12 (PFX) file, which holds private "
    "keys as a rule; Tessera never accepts private keys. Export the "
    "certificates as PEM (openssl pkcs12 -nokeys) and upload that"
)
OUTSIDE_TEXT_REFUSAL = (
    "the upload contains text outside PEM blocks that looks like base64 data "
    "(a key or certificate without its BEGIN and END lines?); send complete "
    "PEM blocks only"
)

_PEM_LABEL = re.compile(rb"-----BEGIN ([^-\r\n]*)-----")
# Lines of a PEM file, each matched on its own so that scanning stays linear
# in the size of the file.
_BEGIN_LINE = re.compile(rb"\s*-----BEGIN ([^-\r\n]*)-----\s*")
_END_LINE = re.compile(rb"\s*-----END ([^-\r\n]*)-----\s*")
# Text outside blocks is ignored (openssl's -text output, bag attributes,
# comments), except runs of lines made of base64 characters only: a key or
# certificate pasted without its BEGIN and END lines.
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_MIN_BASE64_RUN = 16

_KEY_TYPE_WORDS = {
    common_pb2.KEY_TYPE_RSA: "RSA",
    common_pb2.KEY_TYPE_EC_P256: "EC P-256",
    common_pb2.KEY_TYPE_EC_P384: "EC P-384",
    common_pb2.KEY_TYPE_ED25519: "Ed25519",
}


class Severity(enum.Enum):
    WARNING = "warning"
    ERROR = "error"


class Role(enum.Enum):
    """What an upload does with a certificate."""

    CLIENT = "client"
    CA = "ca"
    PINNED = "pinned"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of the lint report."""

    severity: Severity
    code: str
    message: str
    # Position in the file, 0-based; -1 for the upload as a whole.
    index: int = -1
    fingerprint: str = ""
    subject: str = ""


@dataclasses.dataclass(frozen=True)
class PlannedCertificate:
    """A certificate of the upload and how it would be stored."""

    certificate: x509.Certificate
    role: Role
    fingerprint: str
    subject: str
    # The key id its revocations are logged under: the issuing CA's key id
    # (for a self-signed certificate its own).
    issuer_key_id: str
    # Its own key id; empty for client certificates signed by a CA.
    subject_key_id: str
    self_signed: bool
    # True when the record exists (a CA uploaded for another frontdoor).
    already_recorded: bool = False
    # True for a CA of a chain that is in this frontdoor's trust store
    # already: nothing new is stored for it.
    already_anchored: bool = False


@dataclasses.dataclass(frozen=True)
class UploadPlan:
    """The lint report and what storing the upload would do."""

    findings: tuple[Finding, ...]
    certificates: tuple[PlannedCertificate, ...]

    @property
    def has_errors(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)


@dataclasses.dataclass(frozen=True)
class ExistingCertificate:
    """A record the registry already holds, as the lint needs it."""

    fingerprint: str
    origin: str
    kind: str
    frontdoor: str
    # Whether it is an anchor of the frontdoor the upload is for.
    anchored_here: bool = False
    # When it was deleted from the inventory; None while it is in it.
    deleted_at: dt.datetime | None = None


class KnownCertificates(Protocol):
    """What the registry knows, asked by the lint."""

    def by_fingerprint(self, fingerprint: str) -> ExistingCertificate | None: ...

    def by_public_key(self, spki_sha256: str) -> list[ExistingCertificate]: ...

    def key_compromised(self, spki_sha256: str) -> bool: ...

    def ca_key_id_holders(self, key_id: str) -> list[tuple[str, str]]:
        """(spki_sha256, origin) of every CA or pin recorded under a key id."""
        ...

    def serial_taken(self, issuer_key_id: str, serial_number: str) -> str | None:
        """The fingerprint of the record with that issuer and serial, if any."""
        ...

    def tessera_ca_key_ids(self) -> frozenset[str]: ...


@dataclasses.dataclass(frozen=True)
class FrontdoorPolicy:
    """The parts of a frontdoor that the lint checks against."""

    name: str
    allowed_key_types: tuple[common_pb2.KeyType, ...]
    min_rsa_bits: int
    # The frontdoor's uploaded CAs that are still usable anchors.
    uploaded_cas: tuple[x509.Certificate, ...]


# Reading ------------------------------------------------------------------


def read_upload(data: bytes) -> list[x509.Certificate]:
    """The certificates of an upload, in file order.

    Raises InvalidArgument for an empty or oversized file, for anything that
    holds a private key, and for what is not a certificate at all. The
    messages never quote the file.
    """
    if not data:
        raise InvalidArgument(
            "the upload is empty; send a certificate or chain as PEM, DER or PKCS#7"
        )
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidArgument(
            f"the upload has {len(data)} bytes; at most {MAX_UPLOAD_BYTES} bytes "
            "(1 MiB) are accepted. A certificate chain is a few kilobytes: check "
            "that this is the right file"
        )

    pem = _PEM_LABEL.search(data) is not None
    certificates = _read_pem(data) if pem else _read_der(data)
    if len(certificates) > MAX_CERTIFICATES:
        raise InvalidArgument(
            f"the upload holds {len(certificates)} certificates; at most "
            f"{MAX_CERTIFICATES} are accepted in one file"
        )
    return certificates


def _read_pem(data: bytes) -> list[x509.Certificate]:
    labels = [match.group(1).strip() for match in _PEM_LABEL.finditer(data)]
    if any(b"PRIVATE KEY" in label.upper() for label in labels):
        raise InvalidArgument(PRIVATE_KEY_REFUSAL)
    blocks = _pem_blocks(data)
    if len(blocks) != len(labels):
        raise InvalidArgument(
            "the PEM text has a BEGIN line without its matching END line; send "
            "complete blocks"
        )
    certificates: list[x509.Certificate] = []
    for position, (label, block) in enumerate(blocks, start=1):
        try:
            if label in (b"CERTIFICATE", b"X509 CERTIFICATE"):
                certificates.append(x509.load_pem_x509_certificate(block))
            elif label == b"PKCS7":
                certificates.extend(_load_pkcs7(block, pem=True))
            else:
                shown = label.decode("ascii", "replace")[:40]
                raise InvalidArgument(
                    f"PEM block {position} is a {shown!r}, not a certificate; "
                    "upload CERTIFICATE or PKCS7 blocks only"
                )
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidArgument(
                f"PEM block {position} does not hold a readable X.509 certificate"
            ) from None
    if not certificates:
        raise InvalidArgument("the upload holds no certificate")
    return certificates


# cryptography warns when a PKCS#7 bundle is BER rather than DER, as
# `openssl crl2pkcs7 -outform DER` writes them, and then reads it all the
# same. The bundle is fine, so the warning is kept out of the server log.
# catch_warnings swaps the process-wide filters, so uploads read bundles one
# at a time: two overlapping blocks would restore each other's filters.
_PKCS7_WARNING = "PKCS#7 certificates could not be parsed as DER"
_PKCS7_LOCK = threading.Lock()


def _load_pkcs7(data: bytes, pem: bool) -> list[x509.Certificate]:
    with _PKCS7_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PKCS7_WARNING, category=UserWarning)
        if pem:
            return pkcs7.load_pem_pkcs7_certificates(data)
        return pkcs7.load_der_pkcs7_certificates(data)


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (label, text) of each complete PEM block, found line by line.

    A BEGIN line inside a block, an END line of another label or a block
    left open ends the scan; the caller then finds fewer blocks than BEGIN
    lines. Base64 text outside blocks is refused.
    """
    blocks: list[tuple[bytes, bytes]] = []
    label: bytes | None = None
    start = 0
    base64_run = 0
    lines = data.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if label is None:
            begin = _BEGIN_LINE.fullmatch(line)
            if begin is not None:
                label, start, base64_run = begin.group(1).strip(), number, 0
                continue
            text = line.strip()
            if text and _BASE64_LINE.fullmatch(text):
                base64_run += len(text)
                if base64_run >= _MIN_BASE64_RUN:
                    raise InvalidArgument(OUTSIDE_TEXT_REFUSAL)
            else:
                base64_run = 0
            continue
        if _BEGIN_LINE.fullmatch(line) is not None:
            return blocks
        end = _END_LINE.fullmatch(line)
        if end is not None:
            if end.group(1).strip() != label:
                return blocks
            blocks.append((label, b"".join(lines[start : number + 1])))
            label = None
    return blocks


def _read_der(data: bytes) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        certificates = _load_pkcs7(data, pem=False)
    except (ValueError, UnsupportedAlgorithm):
        certificates = []
    if certificates:
        return list(certificates)
    if _is_private_key(data):
        raise InvalidArgument(PRIVATE_KEY_REFUSAL)
    pkcs12_refusal = _pkcs12_refusal(data)
    if pkcs12_refusal:
        raise InvalidArgument(pkcs12_refusal)
    raise InvalidArgument(
        "the upload is not a certificate: expected PEM (CERTIFICATE or PKCS7 "
        "blocks), DER of an X.509 certificate, or DER of a PKCS#7 bundle"
    )


def _is_private_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        # "Password was not given but private key is encrypted".
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _pkcs12_refusal(data: bytes) -> str:
    """Why a PKCS#12 (PFX) file is refused, or empty for other data."""
    try:
        key, _, _ = pkcs12.load_key_and_certificates(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    else:
        return PKCS12_REFUSAL if key is None else PRIVATE_KEY_REFUSAL
    # A password-protected PFX cannot be opened without its password, so it
    # is recognised by its structure (RFC 7292 section 4): version 3 and an
    # authSafe ContentInfo.
    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        is_pfx = bool(
            pfx["version"].native == "v3"
            and pfx["auth_safe"]["content_type"].native in ("data", "signed_data")
        )
    except (ValueError, TypeError, KeyError):
        return ""
    return ENCRYPTED_PKCS12_REFUSAL if is_pfx else ""


# Lint ---------------------------------------------------------------------


def lint_upload(
    certificates: Sequence[x509.Certificate],
    frontdoor: FrontdoorPolicy,
    known: KnownCertificates,
    now: dt.datetime,
) -> UploadPlan:
    """The lint report for an upload and how it would be stored."""
    findings: list[Finding] = []
    upload_cas = [c for c in certificates if _is_ca(c)]
    tessera_key_ids = known.tessera_ca_key_ids()

    def found(severity: Severity, code: str, message: str, index: int = -1) -> None:
        if index < 0:
            findings.append(Finding(severity, code, message))
            return
        certificate = certificates[index]
        findings.append(
            Finding(
                severity,
                code,
                message,
                index,
                identifiers.fingerprint(certificate),
                facts.subject_text(certificate.subject),
            )
        )

    _lint_structure(certificates, found)

    planned: list[PlannedCertificate] = []
    for index, certificate in enumerate(certificates):
        planned.append(
            _lint_certificate(
                index,
                certificate,
                upload_cas,
                frontdoor,
                known,
                tessera_key_ids,
                now,
                found,
            )
        )
    if all(p.already_anchored for p in planned):
        found(
            Severity.ERROR,
            "already-uploaded",
            "every certificate of the upload is in the trust store of frontdoor "
            f"{frontdoor.name!r} already; nothing would be stored",
        )
    return UploadPlan(tuple(findings), tuple(planned))


class _Found(Protocol):
    def __call__(
        self, severity: Severity, code: str, message: str, index: int = -1
    ) -> None: ...


class _Counting:
    """A ``_Found`` that counts the errors passed through it."""

    def __init__(self, found: _Found) -> None:
        self._found = found
        self.errors = 0

    def __call__(
        self, severity: Severity, code: str, message: str, index: int = -1
    ) -> None:
        if severity is Severity.ERROR:
            self.errors += 1
        self._found(severity, code, message, index)


def _lint_structure(certificates: Sequence[x509.Certificate], found: _Found) -> None:
    """Several certificates must form one chain: each linked to another by
    issuance, with one end-entity certificate at most."""
    if len(certificates) < 2:
        return
    distinct = {identifiers.fingerprint(c) for c in certificates}
    if len(distinct) != len(certificates):
        found(
            Severity.ERROR,
            "repeated-certificate",
            "the upload holds the same certificate more than once; remove the copy",
        )
        return
    end_entities = [i for i, c in enumerate(certificates) if not _is_ca(c)]
    if len(end_entities) > 1:
        found(
            Severity.ERROR,
            "not-a-chain",
            f"the upload holds {len(end_entities)} client (end-entity) "
            "certificates; a chain holds one. Upload each client certificate in "
            "a file of its own",
        )
        return
    # One connected chain: walk issuance links from the first certificate.
    reached = {0}
    changed = True
    while changed:
        changed = False
        for i, certificate in enumerate(certificates):
            if i in reached:
                continue
            if any(
                issued_by(certificate, certificates[j])
                or issued_by(certificates[j], certificate)
                for j in reached
            ):
                reached.add(i)
                changed = True
    for i in range(len(certificates)):
        if i not in reached:
            found(
                Severity.ERROR,
                "unrelated-certificates",
                f"certificate {i + 1} neither issued nor was issued by the other "
                "certificates of the file, so the file is not one chain; upload "
                "unrelated certificates one file at a time",
                i,
            )


def _lint_certificate(
    index: int,
    certificate: x509.Certificate,
    upload_cas: Sequence[x509.Certificate],
    frontdoor: FrontdoorPolicy,
    known: KnownCertificates,
    tessera_key_ids: frozenset[str],
    now: dt.datetime,
    report: _Found,
) -> PlannedCertificate:
    # One finding per problem: the later checks that would only repeat an
    # error already found (the validator's own verdict, its key floor) are
    # skipped once this certificate has one.
    found = _Counting(report)
    fingerprint = identifiers.fingerprint(certificate)
    is_ca = _is_ca(certificate)
    self_signed = _self_signed(certificate)
    role = Role.CA if is_ca else (Role.PINNED if self_signed else Role.CLIENT)

    try:
        public_key = certificate.public_key()
        spki = facts.spki_sha256(public_key)
    except (ValueError, UnsupportedAlgorithm):
        found(
            Severity.ERROR,
            "unreadable-key",
            "the certificate's public key is of a kind Tessera cannot read",
            index,
        )
        return _planned(certificate, role, "", "", self_signed)

    names = subject_alt_name_count(certificate)
    if names > MAX_SUBJECT_ALT_NAMES:
        found(
            Severity.ERROR,
            "too-many-names",
            f"the certificate has {names} subject alternative names; at most "
            f"{MAX_SUBJECT_ALT_NAMES} are accepted. A client certificate names "
            "one identity, or a few",
            index,
        )

    # Validity.
    if now < certificate.not_valid_before_utc:
        found(
            Severity.ERROR,
            "not-yet-valid",
            "the certificate is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}; upload it once it is",
            index,
        )
    elif now >= certificate.not_valid_after_utc:
        found(
            Severity.ERROR,
            "expired",
            f"the certificate expired on {certificate.not_valid_after_utc.isoformat()}"
            "; upload its renewal",
            index,
        )

    # Key strength against the frontdoor's policy.
    before = found.errors
    _lint_key(index, public_key, frontdoor, found)
    key_refused = found.errors > before

    # What it is for.
    if is_ca:
        _lint_ca_usage(index, certificate, found)
    else:
        _lint_client_usage(index, certificate, found, key_checked=key_refused)
    if role is Role.PINNED:
        found(
            Severity.WARNING,
            "self-signed",
            "the certificate is self-signed; it is trusted at frontdoor "
            f"{frontdoor.name!r} by its exact SHA-256 fingerprint only. Use "
            "self-signed certificates for test environments",
            index,
        )

    # Where it chains to.
    issuer = _find_issuer(certificate, upload_cas, frontdoor.uploaded_cas)
    issuer_key_id = ""
    if self_signed:
        issuer_key_id = identifiers.subject_key_id(certificate)
    elif issuer is not None:
        issuer_key_id = identifiers.subject_key_id(issuer)
    else:
        named = identifiers.authority_key_id(certificate) or ""
        if named and named in tessera_key_ids:
            found(
                Severity.ERROR,
                "issued-by-tessera",
                "the certificate was issued by one of Tessera's own CAs; "
                "Tessera records such certificates when it issues them, so they "
                "are not uploaded",
                index,
            )
        elif is_ca:
            found(
                Severity.WARNING,
                "anchor-without-issuer",
                "the CA's issuer is neither in the upload nor uploaded for "
                f"frontdoor {frontdoor.name!r}; the CA becomes a trust anchor on "
                "its own",
                index,
            )
            issuer_key_id = named
        else:
            found(
                Severity.ERROR,
                "incomplete-chain",
                "no CA in the upload or uploaded for frontdoor "
                f"{frontdoor.name!r} issued the certificate (issuer "
                f"{certificate.issuer.rfc4514_string()}); upload its CA "
                "certificate first, or the whole chain in one file",
                index,
            )
    if is_ca and not issuer_key_id:
        # No authority key identifier and no issuer to take it from: log
        # its revocations under its own key id, as for a root.
        issuer_key_id = identifiers.subject_key_id(certificate)
    if role is Role.CLIENT and issuer is not None and not found.errors:
        _lint_path(index, certificate, upload_cas, frontdoor, now, found)

    # Revocation information.
    if not self_signed and not _has_revocation_information(certificate):
        found(
            Severity.WARNING,
            "no-revocation-information",
            "the certificate names neither a CRL distribution point nor an OCSP "
            "responder; only revocations recorded in Tessera will refuse it",
            index,
        )

    # What the registry already holds.
    subject_key_id = (
        identifiers.subject_key_id(certificate) if role is not Role.CLIENT else ""
    )
    existing = known.by_fingerprint(fingerprint)
    already_recorded = already_anchored = False
    if existing is not None:
        if existing.deleted_at is not None:
            # As for issuance (RecordCertificate): the record and its history
            # stay after a deletion, and the certificate is not recorded again.
            found(
                Severity.ERROR,
                "deleted",
                "the certificate was recorded before and deleted on "
                f"{existing.deleted_at.isoformat()}; a deleted certificate is not "
                "recorded again ('tessera cert history' shows why it was deleted)",
                index,
            )
        elif existing.origin != "uploaded":
            found(
                Severity.ERROR,
                "issued-by-tessera",
                "the certificate is one Tessera issued and has recorded already",
                index,
            )
        elif existing.anchored_here and role is Role.CA:
            # Operators keep full-chain files: the CA half of one that is
            # trusted here already is no reason to refuse the rest.
            already_recorded = already_anchored = True
            found(
                Severity.WARNING,
                "already-uploaded",
                "the CA certificate is in the trust store of frontdoor "
                f"{frontdoor.name!r} already; nothing new is stored for it",
                index,
            )
        elif existing.anchored_here or role is Role.CLIENT:
            found(
                Severity.ERROR,
                "already-uploaded",
                "the certificate was uploaded already"
                + (
                    f" for frontdoor {existing.frontdoor!r}"
                    if existing.frontdoor
                    else ""
                ),
                index,
            )
        else:
            already_recorded = True
            found(
                Severity.WARNING,
                "already-uploaded",
                f"the certificate was uploaded for frontdoor {existing.frontdoor!r} "
                f"already; it is added to the trust store of {frontdoor.name!r} too",
                index,
            )
    if known.key_compromised(spki):
        found(
            Severity.ERROR,
            "compromised-key",
            "the certificate's public key was reported compromised by an earlier "
            "revocation; a certificate for that key is never trusted again",
            index,
        )
    else:
        others = [e for e in known.by_public_key(spki) if e.fingerprint != fingerprint]
        if others:
            found(
                Severity.WARNING,
                "duplicate-key",
                f"{len(others)} other recorded certificate(s) have the same public "
                f"key (for example {others[0].fingerprint}); reusing keys across "
                "certificates ties their fate together",
                index,
            )
    if (
        subject_key_id
        and not already_recorded
        and (
            subject_key_id in tessera_key_ids
            or any(
                holder != spki for holder, _ in known.ca_key_id_holders(subject_key_id)
            )
        )
    ):
        found(
            Severity.ERROR,
            "key-id-clash",
            f"the certificate's key id {subject_key_id} is already used by "
            "another CA with a different key; revocations are kept by key id, "
            "so two keys may not share one",
            index,
        )
    if issuer_key_id and not already_recorded:
        serial_number = identifiers.format_serial(certificate.serial_number)
        holder = known.serial_taken(issuer_key_id, serial_number)
        if holder is not None and holder != fingerprint:
            found(
                Severity.ERROR,
                "duplicate-serial",
                f"another certificate with serial number {serial_number} from "
                f"issuer {issuer_key_id} is recorded (fingerprint {holder}); a CA "
                "never issues one serial number twice",
                index,
            )
    return _planned(
        certificate,
        role,
        issuer_key_id,
        subject_key_id,
        self_signed,
        already_recorded,
        already_anchored,
    )


def _planned(
    certificate: x509.Certificate,
    role: Role,
    issuer_key_id: str,
    subject_key_id: str,
    self_signed: bool,
    already_recorded: bool = False,
    already_anchored: bool = False,
) -> PlannedCertificate:
    return PlannedCertificate(
        certificate=certificate,
        role=role,
        fingerprint=identifiers.fingerprint(certificate),
        subject=facts.subject_text(certificate.subject),
        issuer_key_id=issuer_key_id,
        subject_key_id=subject_key_id,
        self_signed=self_signed,
        already_recorded=already_recorded,
        already_anchored=already_anchored,
    )


def _lint_key(
    index: int, public_key: object, frontdoor: FrontdoorPolicy, found: _Found
) -> None:
    key_type = facts.key_type_value(public_key)
    allowed = ", ".join(_KEY_TYPE_WORDS[k] for k in frontdoor.allowed_key_types)
    if key_type not in frontdoor.allowed_key_types:
        found(
            Severity.ERROR,
            "key-type-not-allowed",
            f"the certificate's key ({_describe_key(public_key)}) is not allowed at "
            f"frontdoor {frontdoor.name!r}; allowed: {allowed}",
            index,
        )
        return
    if isinstance(public_key, rsa.RSAPublicKey) and (
        public_key.key_size < frontdoor.min_rsa_bits
    ):
        found(
            Severity.ERROR,
            "weak-key",
            f"the certificate's RSA key has {public_key.key_size} bits; frontdoor "
            f"{frontdoor.name!r} requires at least {frontdoor.min_rsa_bits}",
            index,
        )


def _lint_ca_usage(index: int, certificate: x509.Certificate, found: _Found) -> None:
    """A CA certificate must say it signs certificates (RFC 5280 section
    4.2.1.3): the validator refuses every chain through one that does not,
    so a trust anchor without it would refuse all its certificates."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        problem = "has no keyUsage extension"
    except ValueError:
        problem = "has a keyUsage extension that cannot be read"
    else:
        if usage.key_cert_sign:
            return
        problem = "has a keyUsage without keyCertSign"
    found(
        Severity.ERROR,
        "ca-cannot-sign-certificates",
        f"the CA certificate {problem} (RFC 5280 section 4.2.1.3), so the "
        "validator would refuse every certificate it issued; issue it again "
        "with keyUsage = critical, keyCertSign, cRLSign",
        index,
    )


def _lint_client_usage(
    index: int, certificate: x509.Certificate, found: _Found, key_checked: bool
) -> None:
    # The validator's key floor, unless the frontdoor's policy refused the
    # key already.
    key_problem = "" if key_checked else client_key_problem(certificate)
    if key_problem:
        found(Severity.ERROR, "weak-key", key_problem, index)
    problem = client_usage_problem(certificate)
    if problem:
        found(Severity.ERROR, "wrong-usage", problem, index)
        return
    # client_usage_problem refuses an extendedKeyUsage without clientAuth;
    # one that is missing is allowed (older PKIs) but worth a word.
    try:
        certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        found(
            Severity.WARNING,
            "missing-client-auth",
            "the certificate has no extendedKeyUsage; it is accepted for client "
            "authentication, but a certificate naming clientAuth says so plainly",
            index,
        )


def _lint_path(
    index: int,
    certificate: x509.Certificate,
    upload_cas: Sequence[x509.Certificate],
    frontdoor: FrontdoorPolicy,
    now: dt.datetime,
    found: _Found,
) -> None:
    """Validate the client certificate as the validator will, against the
    frontdoor's uploaded CAs and the upload's own."""
    anchors = AnchorSet([*frontdoor.uploaded_cas, *upload_cas])
    result = anchors.verify(certificate, list(upload_cas), now)
    if not result.valid:
        found(
            Severity.ERROR,
            "invalid-path",
            f"the validator would refuse the certificate: {result.message}",
            index,
        )


def _find_issuer(
    certificate: x509.Certificate,
    upload_cas: Sequence[x509.Certificate],
    uploaded_cas: Sequence[x509.Certificate],
) -> x509.Certificate | None:
    for candidate in (*upload_cas, *uploaded_cas):
        if candidate is certificate or candidate == certificate:
            continue
        if issued_by(certificate, candidate):
            return candidate
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(
            certificate.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value.ca
        )
    except (x509.ExtensionNotFound, ValueError):
        return False


def subject_alt_name_count(certificate: x509.Certificate) -> int:
    """How many subject alternative names a certificate has."""
    try:
        return len(
            certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
        )
    except (x509.ExtensionNotFound, ValueError):
        return 0


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.subject == certificate.issuer and issued_by(
        certificate, certificate
    )


def _has_revocation_information(certificate: x509.Certificate) -> bool:
    try:
        certificate.extensions.get_extension_for_oid(
            ExtensionOID.CRL_DISTRIBUTION_POINTS
        )
        return True
    except x509.ExtensionNotFound:
        pass
    try:
        access = certificate.extensions.get_extension_for_class(
            x509.AuthorityInformationAccess
        ).value
    except x509.ExtensionNotFound:
        return False
    return any(
        description.access_method == AuthorityInformationAccessOID.OCSP
        for description in access
    )


def _describe_key(public_key: object) -> str:
    try:
        return facts.key_type(public_key)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "unknown kind"


# The registry's answers --------------------------------------------------


class SessionKnowledge:
    """``KnownCertificates`` read from the registry's tables in the session
    the upload is stored in, so the checks and the writes see one state."""

    def __init__(self, session: Session, frontdoor_id: int) -> None:
        self._session = session
        self._frontdoor_id = frontdoor_id

    def by_fingerprint(self, fingerprint: str) -> ExistingCertificate | None:
        row = self._session.scalar(
            sa.select(CertificateRow).where(CertificateRow.fingerprint == fingerprint)
        )
        return None if row is None else self._existing(row)

    def by_public_key(self, spki_sha256: str) -> list[ExistingCertificate]:
        rows = self._session.scalars(
            sa.select(CertificateRow).where(CertificateRow.spki_sha256 == spki_sha256)
        )
        return [self._existing(row) for row in rows]

    def key_compromised(self, spki_sha256: str) -> bool:
        return self._session.get(CompromisedKeyRow, spki_sha256) is not None

    def ca_key_id_holders(self, key_id: str) -> list[tuple[str, str]]:
        rows = self._session.execute(
            sa.select(CertificateRow.spki_sha256, CertificateRow.origin).where(
                CertificateRow.subject_key_id == key_id
            )
        )
        return [(spki or "", origin) for spki, origin in rows]

    def serial_taken(self, issuer_key_id: str, serial_number: str) -> str | None:
        return self._session.scalar(
            sa.select(CertificateRow.fingerprint)
            .where(CertificateRow.issuer_key_id == issuer_key_id)
            .where(CertificateRow.serial_number == serial_number)
        )

    def tessera_ca_key_ids(self) -> frozenset[str]:
        return frozenset(
            self._session.scalars(
                sa.select(CertificateRow.subject_key_id)
                .where(CertificateRow.kind.in_(("root", "intermediate")))
                .where(CertificateRow.origin == "issued")
            )
        )

    def _existing(self, row: CertificateRow) -> ExistingCertificate:
        frontdoor = ""
        if row.frontdoor_id is not None:
            frontdoor = (
                self._session.scalar(
                    sa.select(FrontdoorRow.name).where(
                        FrontdoorRow.id == row.frontdoor_id
                    )
                )
                or ""
            )
        anchored = self._session.scalar(
            sa.select(TrustAnchorRow.id)
            .where(TrustAnchorRow.frontdoor_id == self._frontdoor_id)
            .where(TrustAnchorRow.certificate_id == row.id)
        )
        return ExistingCertificate(
            fingerprint=row.fingerprint,
            origin=row.origin,
            kind=row.kind,
            frontdoor=frontdoor,
            anchored_here=anchored is not None,
            deleted_at=row.deleted_at,
        )


def uploaded_cas(
    session: Session, frontdoor_id: int, now: dt.datetime
) -> tuple[x509.Certificate, ...]:
    """The frontdoor's uploaded CAs that are usable anchors: neither revoked,
    on hold nor expired."""
    rows = session.scalars(
        sa.select(CertificateRow)
        .join(TrustAnchorRow, TrustAnchorRow.certificate_id == CertificateRow.id)
        .where(TrustAnchorRow.frontdoor_id == frontdoor_id)
        .where(TrustAnchorRow.kind == "uploaded_ca")
        .where(CertificateRow.status.in_(("active", "superseded")))
        .where(CertificateRow.not_valid_after > now)
        .order_by(CertificateRow.id)
    )
    return tuple(x509.load_der_x509_certificate(row.der) for row in rows)
