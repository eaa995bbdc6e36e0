"""The registry's records: frontdoors, trust anchors, certificates and the
revocation log, behind one class so the gRPC layer stays thin.

Every write happens in one transaction after all checks passed, so a refused
request leaves the registry exactly as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import field_mask_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session

from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.audit import AuditLog
from services.common.clock import Clock
from services.common.config import KeyPolicyConfig
from services.common.database import Database
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PolicyRefusal,
)
from services.common.frontdoors import (
    apply_update,
    check_frontdoor_name,
    check_settings,
    effective_settings,
)
from services.common.revocation_cache import CachedRevocation
from services.common.revocation_reasons import (
    COMPROMISE_REASONS,
    check_revocation_reason,
)
from services.registry import inventory as inv
from services.registry import uploads
from services.registry.expiry import chain_expiry
from services.registry.models import (
    CA_KINDS,
    PUBLIC_KINDS,
    REVOCATION_COUNTER,
    CertificateRow,
    CompromisedKeyRow,
    CounterRow,
    FrontdoorRow,
    RevocationRow,
    SecretRow,
    TrustAnchorRow,
)
from services.registry.page_tokens import PageTokens
from services.registry.usage import (
    UsageRecords,
    fill_last_uses,
)
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

# Sequences are BIGINT in the log; nothing larger can ever be reached.
MAX_SEQUENCE = 2**63 - 1

_STATUS_NAMES = {
    common_pb2.CERTIFICATE_STATUS_ACTIVE: "active",
    common_pb2.CERTIFICATE_STATUS_ON_HOLD: "on_hold",
    common_pb2.CERTIFICATE_STATUS_REVOKED: "revoked",
    common_pb2.CERTIFICATE_STATUS_SUPERSEDED: "superseded",
}
_STATUS_VALUES = {name: value for value, name in _STATUS_NAMES.items()}
_KIND_NAMES = {
    common_pb2.CERTIFICATE_KIND_CLIENT: "client",
    common_pb2.CERTIFICATE_KIND_INTERMEDIATE: "intermediate",
    common_pb2.CERTIFICATE_KIND_ROOT: "root",
}
_KIND_VALUES = {
    stored: {name: value for value, name in _KIND_NAMES.items()}[shown]
    for stored, shown in PUBLIC_KINDS.items()
}
_ORIGIN_VALUES = {
    "issued": common_pb2.CERTIFICATE_ORIGIN_ISSUED,
    "uploaded": common_pb2.CERTIFICATE_ORIGIN_UPLOADED,
}
_USABLE_ANCHOR_STATUSES = (
    common_pb2.CERTIFICATE_STATUS_ACTIVE,
    common_pb2.CERTIFICATE_STATUS_SUPERSEDED,
)
_ANCHOR_KINDS = {
    "issued_intermediate": registry_pb2.TrustAnchor.KIND_ISSUED_INTERMEDIATE,
    "uploaded_ca": registry_pb2.TrustAnchor.KIND_UPLOADED_CA,
    "pinned_certificate": registry_pb2.TrustAnchor.KIND_PINNED_CERTIFICATE,
}

MAX_NAME_LENGTH = 256
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REVOCATION_PAGE = 10_000
DEFAULT_REVOCATION_PAGE = 1000
# Invalidity dates a little in the future are clock skew; more is a mistake.
_CLOCK_SKEW = dt.timedelta(minutes=5)
# The name of the row holding the key, not a secret itself.
_PAGE_TOKEN_SECRET = "page_token_key"  # noqa: S105


@dataclasses.dataclass(frozen=True)
class CertificateSelector:
    """How a request names one certificate: by fingerprint, by serial number
    and issuing CA, or by serial number within a frontdoor."""

    fingerprint: str | None = None
    issuer_key_id: str | None = None
    frontdoor: str | None = None
    serial_number: str | None = None


@dataclasses.dataclass(frozen=True)
class UploadOutcome:
    """The lint report of an upload and the records it stored, by fingerprint."""

    plan: uploads.UploadPlan
    records: dict[str, common_pb2.CertificateRecord]
    stored: bool


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """A revocation-log entry as the cache sync needs it."""

    sequence: int
    issuer_key_id: str
    serial_number: str
    revocation: CachedRevocation


class RegistryStore:
    """Reads and writes the registry's tables."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        key_policy: KeyPolicyConfig,
        audit: AuditLog | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._key_policy = key_policy
        self._page_tokens = PageTokens(self._page_token_key())
        self.usage = UsageRecords(database, clock)
        self.inventory = inv.Inventory(self, database, clock, self._page_tokens, audit)

    # Frontdoors ---------------------------------------------------------

    def register_frontdoor(
        self,
        name: str,
        settings: common_pb2.FrontdoorSettings,
        intermediate_der: bytes,
    ) -> common_pb2.Frontdoor:
        """Record a frontdoor with its first intermediate as trust anchor.

        Registering the same name with the same intermediate again returns
        the frontdoor, so an issuer may retry after a lost answer.
        """
        check_frontdoor_name(name)
        check_settings(settings, self._key_policy)
        intermediate = _load_ca_certificate(intermediate_der)

        try:
            return self._write_frontdoor(name, settings, intermediate)
        except IntegrityError:
            # A concurrent retry of this call inserted first; a second
            # transaction finds its rows, or the real conflict to report.
            return self._write_frontdoor(name, settings, intermediate)

    def _write_frontdoor(
        self,
        name: str,
        settings: common_pb2.FrontdoorSettings,
        intermediate: x509.Certificate,
    ) -> common_pb2.Frontdoor:
        now = self._clock.now()
        with self._database.writing() as session:
            existing = _frontdoor_row(session, name)
            if existing is not None:
                if not _has_anchor(session, existing.id, intermediate):
                    raise AlreadyExists(f"frontdoor {name!r} already exists")
                return self._frontdoor_message(session, existing)

            _require_issued_by_a_platform_root(session, intermediate)
            row = FrontdoorRow(
                name=name,
                settings=settings.SerializeToString(),
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            certificate = self._insert_certificate(
                session,
                intermediate,
                row.id,
                "intermediate",
                inv.RecordingInventory(
                    metadata=inv.CertificateMetadata(name=f"{name} intermediate")
                ),
            )
            session.add(
                TrustAnchorRow(
                    frontdoor_id=row.id,
                    certificate_id=certificate.id,
                    kind="issued_intermediate",
                    created_at=now,
                )
            )
            session.flush()
            return self._frontdoor_message(session, row)

    def get_frontdoor(self, name: str) -> common_pb2.Frontdoor:
        """One frontdoor; NotFound when there is none of that name."""
        with self._database.reading() as session:
            return self._frontdoor_message(session, _require_frontdoor(session, name))

    def list_frontdoors(self) -> list[common_pb2.Frontdoor]:
        """Every frontdoor, by name."""
        with self._database.reading() as session:
            rows = session.scalars(sa.select(FrontdoorRow).order_by(FrontdoorRow.name))
            return [self._frontdoor_message(session, row) for row in rows]

    def update_settings(
        self,
        name: str,
        update: common_pb2.FrontdoorSettings,
        mask: field_mask_pb2.FieldMask,
    ) -> common_pb2.Frontdoor:
        """Change the settings fields named in ``mask``."""
        with self._database.writing() as session:
            row = _require_frontdoor(session, name)
            current = common_pb2.FrontdoorSettings.FromString(row.settings)
            merged = apply_update(current, update, mask)
            check_settings(merged, self._key_policy)
            row.settings = merged.SerializeToString()
            row.updated_at = self._clock.now()
            session.flush()
            return self._frontdoor_message(session, row)

    def trust_store(self, name: str) -> registry_pb2.TrustStore:
        """The frontdoor's usable anchors, its former anchors, and its
        revocation policy."""
        now = self._clock.now()
        with self._database.reading() as session:
            row = _require_frontdoor(session, name)
            rows = session.execute(
                sa.select(CertificateRow, TrustAnchorRow.kind)
                .join(
                    TrustAnchorRow, TrustAnchorRow.certificate_id == CertificateRow.id
                )
                .where(TrustAnchorRow.frontdoor_id == row.id)
                .order_by(CertificateRow.id.desc())
            ).all()
            store = registry_pb2.TrustStore(
                frontdoor=name,
                revocation=effective_settings(
                    common_pb2.FrontdoorSettings.FromString(row.settings),
                    self._key_policy,
                ).revocation,
            )
            for certificate, kind in rows:
                anchor = registry_pb2.TrustAnchor(
                    certificate=certificate.der,
                    kind=_ANCHOR_KINDS[kind],
                    key_id=certificate.subject_key_id,
                    issuer_key_id=certificate.issuer_key_id,
                    status=_status_value(certificate, now),
                )
                if anchor.status in _USABLE_ANCHOR_STATUSES:
                    store.anchors.append(anchor)
                    continue
                revocation = session.scalar(
                    sa.select(RevocationRow).where(
                        RevocationRow.certificate_id == certificate.id
                    )
                )
                if revocation is not None:
                    anchor.revocation.CopyFrom(_revocation_message(revocation))
                store.withdrawn_anchors.append(anchor)
            return store

    # Certificates -------------------------------------------------------

    def record_certificate(
        self,
        der: bytes,
        frontdoor: str,
        name: str,
        kind: common_pb2.CertificateKind,
        inventory: inv.RecordingInventory | None = None,
    ) -> common_pb2.CertificateRecord:
        """Record a certificate the issuer signed; recording it twice is harmless
        (the second recording changes nothing)."""
        certificate = _load_certificate(der)
        kind_name = _KIND_NAMES.get(kind)
        if kind_name is None:
            raise InvalidArgument("kind must be CLIENT, INTERMEDIATE or ROOT")
        name = check_descriptive_name(name)
        names = uploads.subject_alt_name_count(certificate)
        if names > uploads.MAX_SUBJECT_ALT_NAMES:
            raise InvalidArgument(
                f"the certificate has {names} subject alternative names; at most "
                f"{uploads.MAX_SUBJECT_ALT_NAMES} are recorded"
            )
        inventory = inventory or inv.RecordingInventory()
        inventory = dataclasses.replace(
            inventory, metadata=dataclasses.replace(inventory.metadata, name=name)
        )

        try:
            return self._write_certificate(certificate, frontdoor, kind_name, inventory)
        except (IntegrityError, AlreadyExists):
            # A concurrent retry of this call committed between our reads (the
            # clash check then names this very certificate) or before our
            # insert; a second transaction finds the row, or the real clash.
            return self._write_certificate(certificate, frontdoor, kind_name, inventory)

    def _write_certificate(
        self,
        certificate: x509.Certificate,
        frontdoor: str,
        kind_name: str,
        inventory: inv.RecordingInventory,
    ) -> common_pb2.CertificateRecord:
        with self._database.writing() as session:
            frontdoor_id = None
            if kind_name != "root":
                frontdoor_id = _require_frontdoor(session, frontdoor).id
            existing = session.scalar(
                sa.select(CertificateRow).where(
                    CertificateRow.fingerprint == identifiers.fingerprint(certificate)
                )
            )
            if existing is None:
                existing = self._insert_certificate(
                    session, certificate, frontdoor_id, kind_name, inventory
                )
            elif existing.deleted_at is not None:
                raise PolicyRefusal(
                    f"certificate {existing.fingerprint} was recorded before and "
                    f"deleted on {existing.deleted_at.isoformat()}; a deleted "
                    "certificate is not recorded again"
                )
            return self._record_message(session, existing)

    def get_certificate(
        self, selector: CertificateSelector, include_deleted: bool = False
    ) -> common_pb2.CertificateRecord:
        """One certificate; NotFound when the registry has no such certificate
        (or, unless ``include_deleted``, it was deleted)."""
        with self._database.reading() as session:
            return self._record_message(
                session, _find_certificate(session, selector, include_deleted)
            )

    def list_certificates(
        self,
        frontdoor: str,
        status: common_pb2.CertificateStatus,
        page_size: int,
        page_token: str,
        usage: int = 0,
    ) -> tuple[list[common_pb2.CertificateRecord], str]:
        """A page of certificates in recording order, and the next page's token."""
        records, next_token, _ = self.inventory.list_certificates(
            inv.query_from_request(
                registry_pb2.ListCertificatesRequest(
                    frontdoor=frontdoor,
                    status=status,
                    page_size=page_size,
                    page_token=page_token,
                    usage=usage,  # type: ignore[arg-type]
                )
            )
        )
        return records, next_token

    def ca_key_ids(self) -> list[str]:
        """Key ids revocations are logged under: the root, intermediates,
        uploaded CAs and pinned self-signed certificates (their own issuers)."""
        with self._database.reading() as session:
            return list(
                dict.fromkeys(
                    session.scalars(
                        sa.select(CertificateRow.subject_key_id)
                        .where(
                            sa.or_(
                                CertificateRow.kind.in_(CA_KINDS),
                                CertificateRow.subject_key_id != "",
                            )
                        )
                        .order_by(CertificateRow.id)
                    )
                )
            )

    # Uploads ------------------------------------------------------------

    def upload_certificates(
        self,
        frontdoor: str,
        data: bytes,
        name: str,
        dry_run: bool,
        actor: str = inv.SYSTEM_ACTOR,
    ) -> UploadOutcome:
        """Lint an upload and, when it has no error and is not a dry run,
        store it in one transaction (see ``services.registry.uploads``)."""
        name = check_descriptive_name(name)
        certificates = uploads.read_upload(data)

        try:
            return self._upload(frontdoor, certificates, name, dry_run, actor)
        except IntegrityError:
            # A concurrent upload stored one of these certificates between
            # the lint and the insert; this transaction was rolled back whole.
            raise AlreadyExists(
                "another upload stored one of these certificates at the same "
                "time; upload again to see the report"
            ) from None

    def _upload(
        self,
        frontdoor: str,
        certificates: list[x509.Certificate],
        name: str,
        dry_run: bool,
        actor: str,
    ) -> UploadOutcome:
        now = self._clock.now()
        with self._database.writing() as session:
            row = _require_frontdoor(session, frontdoor)
            profile = effective_settings(
                common_pb2.FrontdoorSettings.FromString(row.settings),
                self._key_policy,
            ).issuance
            policy = uploads.FrontdoorPolicy(
                name=frontdoor,
                allowed_key_types=tuple(profile.allowed_key_types),
                min_rsa_bits=profile.min_rsa_bits,
                uploaded_cas=uploads.uploaded_cas(session, row.id, now),
            )
            plan = uploads.lint_upload(
                certificates, policy, uploads.SessionKnowledge(session, row.id), now
            )
            if plan.has_errors or dry_run:
                return UploadOutcome(plan, {}, stored=False)

            records: dict[str, common_pb2.CertificateRecord] = {}
            single = len(plan.certificates) == 1
            for planned in plan.certificates:
                certificate_row = self._store_uploaded(
                    session, row.id, planned, name, single, actor
                )
                records[planned.fingerprint] = self._record_message(
                    session, certificate_row
                )
            return UploadOutcome(plan, records, stored=True)

    def _store_uploaded(
        self,
        session: Session,
        frontdoor_id: int,
        planned: uploads.PlannedCertificate,
        name: str,
        single: bool,
        actor: str,
    ) -> CertificateRow:
        # The name given names the client certificate (or the only one); the
        # CAs of a chain are named by their subjects.
        given = name if (single or planned.role is not uploads.Role.CA) else ""
        record_name = given or planned.subject[:MAX_NAME_LENGTH]
        if planned.already_anchored:
            anchored = session.scalar(
                sa.select(CertificateRow).where(
                    CertificateRow.fingerprint == planned.fingerprint
                )
            )
            assert anchored is not None, "the lint found this anchor"
            return anchored
        if planned.already_recorded:
            row = session.scalar(
                sa.select(CertificateRow).where(
                    CertificateRow.fingerprint == planned.fingerprint
                )
            )
            assert row is not None, "the lint found this record in this transaction"
        else:
            kind = "client"
            if planned.role is uploads.Role.CA:
                kind = "uploaded_root" if planned.self_signed else "intermediate"
            row = self._insert_certificate(
                session,
                planned.certificate,
                frontdoor_id,
                kind,
                inv.RecordingInventory(
                    metadata=inv.CertificateMetadata(name=record_name),
                    actor=actor,
                    first_event="uploaded",
                ),
                origin="uploaded",
                issuer_key_id=planned.issuer_key_id,
                subject_key_id=planned.subject_key_id,
            )
        if planned.role is not uploads.Role.CLIENT:
            session.add(
                TrustAnchorRow(
                    frontdoor_id=frontdoor_id,
                    certificate_id=row.id,
                    kind=(
                        "uploaded_ca"
                        if planned.role is uploads.Role.CA
                        else "pinned_certificate"
                    ),
                    created_at=self._clock.now(),
                )
            )
            frontdoor = session.get(FrontdoorRow, frontdoor_id)
            inv.record_event(
                session,
                row.id,
                "trust_added",
                actor,
                {
                    "frontdoor": frontdoor.name if frontdoor else "",
                    "role": planned.role.value,
                },
            )
            session.flush()
        return row

    def remove_trust_anchor(
        self, frontdoor: str, fingerprint: str, actor: str = inv.SYSTEM_ACTOR
    ) -> tuple[str, registry_pb2.TrustStore]:
        """Take an uploaded CA or pinned certificate out of a frontdoor's
        trust store; the anchor's kind and the trust store after."""
        wanted = _parsed(identifiers.parse_fingerprint, fingerprint)
        with self._database.writing() as session:
            row = _require_frontdoor(session, frontdoor)
            anchor = session.scalar(
                sa.select(TrustAnchorRow)
                .join(
                    CertificateRow, CertificateRow.id == TrustAnchorRow.certificate_id
                )
                .where(TrustAnchorRow.frontdoor_id == row.id)
                .where(CertificateRow.fingerprint == wanted)
            )
            if anchor is None:
                raise NotFound(
                    f"certificate {wanted} is not in the trust store of frontdoor "
                    f"{frontdoor!r}"
                )
            if anchor.kind not in ("uploaded_ca", "pinned_certificate"):
                raise PolicyRefusal(
                    "the anchor is an intermediate Tessera issued to the frontdoor; "
                    "revoke it through the issuer instead of removing it"
                )
            kind = anchor.kind
            inv.record_event(
                session,
                anchor.certificate_id,
                "trust_removed",
                actor,
                {"frontdoor": frontdoor, "kind": kind},
            )
            session.delete(anchor)
        return kind, self.trust_store(frontdoor)

    # Revocation ---------------------------------------------------------

    def record_revocation(
        self,
        selector: CertificateSelector,
        reason: int,
        invalidity_date: dt.datetime | None,
        revocation_date: dt.datetime | None = None,
        actor: str = inv.SYSTEM_ACTOR,
    ) -> common_pb2.Revocation:
        """Append a revocation to the log under the next sequence number.

        The counter row is updated first in the transaction, which locks it:
        numbers are handed out in commit order, without gaps. A restore
        re-applying a revocation made after its backup passes the original
        ``revocation_date``; every other caller lets it be now.
        """
        check_revocation_reason(reason)
        now = self._clock.now()
        if revocation_date is not None and revocation_date > now + _CLOCK_SKEW:
            raise InvalidArgument("revocation_date lies in the future")
        if invalidity_date is not None and invalidity_date > now + _CLOCK_SKEW:
            raise InvalidArgument(
                "invalidity_date lies in the future; it is when the key was known or "
                "suspected to be compromised"
            )

        try:
            with self._database.writing() as session:
                certificate = _find_certificate(session, selector)
                self._refuse_revoked(session, certificate)
                if certificate.kind == "root":
                    raise PolicyRefusal(
                        "the platform root cannot be revoked; it has no issuer to "
                        "publish its revocation"
                    )
                sequence = _next_sequence(session)
                frontdoor = _frontdoor_name(session, certificate.frontdoor_id)
                row = RevocationRow(
                    sequence=sequence,
                    certificate_id=certificate.id,
                    issuer_key_id=certificate.issuer_key_id,
                    serial_number=certificate.serial_number,
                    fingerprint=certificate.fingerprint,
                    frontdoor=frontdoor,
                    reason=reason,
                    revocation_date=revocation_date or now,
                    invalidity_date=invalidity_date,
                )
                session.add(row)
                if reason in COMPROMISE_REASONS:
                    self._mark_key_compromised(session, certificate, sequence)
                certificate.status = (
                    "on_hold"
                    if reason == common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD
                    else "revoked"
                )
                certificate.updated_at = now
                inv.record_event(
                    session,
                    certificate.id,
                    "revoked",
                    actor,
                    {"reason": reason, "sequence": sequence},
                    now,
                )
                session.flush()
                return _revocation_message(row)
        except IntegrityError:
            # A concurrent revocation of the same certificate won the race.
            with self._database.reading() as session:
                self._refuse_revoked(session, _find_certificate(session, selector))
            raise

    @staticmethod
    def _mark_key_compromised(
        session: Session, certificate: CertificateRow, sequence: int
    ) -> None:
        key = facts.spki_sha256(_load_certificate(certificate.der).public_key())
        if session.get(CompromisedKeyRow, key) is None:
            session.add(
                CompromisedKeyRow(spki_sha256=key, revocation_sequence=sequence)
            )

    def key_status(self, spki_sha256: str) -> registry_pb2.KeyStatus:
        """Whether a revocation reported this public key compromised."""
        key = spki_sha256.strip().lower()
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise InvalidArgument(
                "spki_sha256 must be the SHA-256 of the DER SubjectPublicKeyInfo "
                "as 64 hex digits"
            )

        with self._database.reading() as session:
            row = session.get(CompromisedKeyRow, key)
            if row is None:
                return registry_pb2.KeyStatus(compromised=False)
            status = registry_pb2.KeyStatus(compromised=True)
            revocation = session.get(RevocationRow, row.revocation_sequence)
            if revocation is not None:
                status.revocation.CopyFrom(_revocation_message(revocation))
            return status

    def list_revocations(
        self, after_sequence: int, limit: int
    ) -> tuple[list[common_pb2.Revocation], int]:
        """Log entries after ``after_sequence`` and the log's newest sequence."""
        if limit > MAX_REVOCATION_PAGE:
            raise InvalidArgument(f"limit may be at most {MAX_REVOCATION_PAGE}")
        if after_sequence > MAX_SEQUENCE:
            raise InvalidArgument(
                f"after_sequence {after_sequence} is larger than any sequence the log "
                f"can reach ({MAX_SEQUENCE}); send 0 for the whole log"
            )
        limit = limit or DEFAULT_REVOCATION_PAGE
        with self._database.reading() as session:
            last = _last_sequence(session)
            rows = session.scalars(
                sa.select(RevocationRow)
                .where(RevocationRow.sequence > after_sequence)
                .where(RevocationRow.sequence <= last)
                .order_by(RevocationRow.sequence)
                .limit(limit)
            ).all()
            return [_revocation_message(row) for row in rows], last

    def list_issuer_revocations(
        self,
        issuer_key_id: str,
        after_sequence: int,
        up_to_sequence: int,
        not_valid_after_from: dt.datetime | None,
        limit: int,
    ) -> tuple[list[registry_pb2.RevokedCertificate], int]:
        """One issuer's log entries after ``after_sequence`` (and at most
        ``up_to_sequence``, when not zero) whose certificate's notAfter is
        not before ``not_valid_after_from``, and the log's newest sequence."""
        if limit > MAX_REVOCATION_PAGE:
            raise InvalidArgument(f"limit may be at most {MAX_REVOCATION_PAGE}")
        limit = limit or DEFAULT_REVOCATION_PAGE
        issuer_key_id = _parsed(identifiers.parse_key_id, issuer_key_id)

        with self._database.reading() as session:
            last = _last_sequence(session)
            up_to = min(up_to_sequence, last) if up_to_sequence else last
            statement = (
                sa.select(RevocationRow, CertificateRow.not_valid_after)
                .join(CertificateRow, CertificateRow.id == RevocationRow.certificate_id)
                .where(RevocationRow.issuer_key_id == issuer_key_id)
                .where(RevocationRow.sequence > after_sequence)
                .where(RevocationRow.sequence <= up_to)
            )
            if not_valid_after_from is not None:
                statement = statement.where(
                    CertificateRow.not_valid_after >= not_valid_after_from
                )
            rows = session.execute(
                statement.order_by(RevocationRow.sequence).limit(limit)
            ).all()
            return [
                registry_pb2.RevokedCertificate(
                    revocation=_revocation_message(row),
                    not_valid_after=facts.timestamp(not_valid_after),
                )
                for row, not_valid_after in rows
            ], last

    def revocation_status(
        self, issuer_key_id: str, serial_number: str
    ) -> registry_pb2.RevocationStatus:
        """The log's word on one certificate, with the sequence it covers."""
        # The log holds canonical text; anything else would read as "not revoked".
        issuer_key_id = _parsed(identifiers.parse_key_id, issuer_key_id)
        serial_number = identifiers.format_serial(
            _parsed(identifiers.parse_serial, serial_number)
        )

        with self._database.reading() as session:
            last = _last_sequence(session)
            row = session.scalar(
                sa.select(RevocationRow)
                .where(RevocationRow.issuer_key_id == issuer_key_id)
                .where(RevocationRow.serial_number == serial_number)
            )
        status = registry_pb2.RevocationStatus(complete_to_sequence=last)
        if row is not None:
            status.revoked = True
            status.revocation.CopyFrom(_revocation_message(row))
        return status

    def last_sequence(self) -> int:
        """The newest committed sequence number of the revocation log."""
        with self._database.reading() as session:
            return _last_sequence(session)

    def revocations_after(
        self, after_sequence: int, limit: int, up_to: int | None = None
    ) -> list[common_pb2.Revocation]:
        """Up to ``limit`` log entries after ``after_sequence`` (and at most
        ``up_to``), in order, as WatchRevocations sends them."""
        with self._database.reading() as session:
            statement = sa.select(RevocationRow).where(
                RevocationRow.sequence > after_sequence
            )
            if up_to is not None:
                statement = statement.where(RevocationRow.sequence <= up_to)
            rows = session.scalars(
                statement.order_by(RevocationRow.sequence).limit(limit)
            ).all()
            return [_revocation_message(row) for row in rows]

    def log_entries(
        self, after_sequence: int, up_to: int, limit: int
    ) -> list[LogEntry]:
        """Log entries with after_sequence < sequence <= up_to, in order."""
        with self._database.reading() as session:
            rows = session.scalars(
                sa.select(RevocationRow)
                .where(RevocationRow.sequence > after_sequence)
                .where(RevocationRow.sequence <= up_to)
                .order_by(RevocationRow.sequence)
                .limit(limit)
            ).all()
            return [_log_entry(row) for row in rows]

    def issuer_log_entries(
        self, issuer_key_id: str, up_to: int, batch_size: int
    ) -> Iterator[list[LogEntry]]:
        """Every log entry of one issuer up to a sequence, in batches."""
        after = 0
        while True:
            with self._database.reading() as session:
                rows = session.scalars(
                    sa.select(RevocationRow)
                    .where(RevocationRow.issuer_key_id == issuer_key_id)
                    .where(RevocationRow.sequence > after)
                    .where(RevocationRow.sequence <= up_to)
                    .order_by(RevocationRow.sequence)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            yield [_log_entry(row) for row in rows]
            after = rows[-1].sequence

    # Internals ----------------------------------------------------------

    def _insert_certificate(
        self,
        session: Session,
        certificate: x509.Certificate,
        frontdoor_id: int | None,
        kind: str,
        inventory: inv.RecordingInventory,
        *,
        origin: str = "issued",
        issuer_key_id: str | None = None,
        subject_key_id: str | None = None,
    ) -> CertificateRow:
        now = self._clock.now()
        serial_number = identifiers.format_serial(certificate.serial_number)
        if issuer_key_id is None:
            issuer_key_id = identifiers.authority_key_id(certificate) or ""
            if kind == "root":
                issuer_key_id = identifiers.subject_key_id(certificate)
        if subject_key_id is None:
            subject_key_id = (
                identifiers.subject_key_id(certificate) if kind in CA_KINDS else ""
            )
        clash = session.scalar(
            sa.select(CertificateRow.fingerprint)
            .where(CertificateRow.issuer_key_id == issuer_key_id)
            .where(CertificateRow.serial_number == serial_number)
        )
        if clash is not None:
            raise AlreadyExists(
                f"another certificate with serial number {serial_number} from issuer "
                f"{issuer_key_id} is already recorded (fingerprint {clash})"
            )
        row = CertificateRow(
            fingerprint=identifiers.fingerprint(certificate),
            serial_number=serial_number,
            issuer_key_id=issuer_key_id,
            subject_key_id=subject_key_id,
            frontdoor_id=frontdoor_id,
            kind=kind,
            name=inventory.metadata.name,
            description=inventory.metadata.description,
            environment=inventory.metadata.environment,
            owner=inventory.metadata.owner,
            subject=facts.subject_text(certificate.subject),
            subject_alt_names=json.dumps(
                [[san.type, san.value] for san in facts.subject_alt_names(certificate)]
            ),
            not_valid_before=certificate.not_valid_before_utc,
            not_valid_after=certificate.not_valid_after_utc,
            key_type=facts.key_type(certificate.public_key()),
            status="active",
            created_at=now,
            updated_at=now,
            der=certificate.public_bytes(Encoding.DER),
            origin=origin,
            spki_sha256=facts.spki_sha256(certificate.public_key()),
        )
        session.add(row)
        session.flush()
        inv.on_recorded(session, row, certificate, inventory, now)
        session.flush()
        return row

    def _refuse_revoked(self, session: Session, certificate: CertificateRow) -> None:
        existing = session.scalar(
            sa.select(RevocationRow).where(
                RevocationRow.certificate_id == certificate.id
            )
        )
        if existing is not None:
            raise AlreadyExists(
                f"certificate {certificate.fingerprint} was already revoked on "
                f"{existing.revocation_date.isoformat()} (log entry "
                f"{existing.sequence})",
                details=[_revocation_message(existing)],
            )

    def _frontdoor_message(
        self, session: Session, row: FrontdoorRow
    ) -> common_pb2.Frontdoor:
        settings = common_pb2.FrontdoorSettings.FromString(row.settings)
        intermediates = session.scalars(
            sa.select(CertificateRow)
            .join(TrustAnchorRow, TrustAnchorRow.certificate_id == CertificateRow.id)
            .where(TrustAnchorRow.frontdoor_id == row.id)
            .where(TrustAnchorRow.kind == "issued_intermediate")
            .order_by(CertificateRow.id.desc())
        ).all()
        now = self._clock.now()
        return common_pb2.Frontdoor(
            name=row.name,
            settings=settings,
            effective_settings=effective_settings(settings, self._key_policy),
            intermediates=[
                common_pb2.CaCertificate(
                    key_id=certificate.subject_key_id,
                    certificate=certificate.der,
                    status=_status_value(certificate, now),
                    not_valid_after=facts.timestamp(certificate.not_valid_after),
                )
                for certificate in intermediates
            ],
            created_at=facts.timestamp(row.created_at),
            updated_at=facts.timestamp(row.updated_at),
        )

    def _record_message(
        self, session: Session, row: CertificateRow
    ) -> common_pb2.CertificateRecord:
        return self.record_messages(session, [row])[0]

    def record_messages(
        self, session: Session, rows: Sequence[CertificateRow]
    ) -> list[common_pb2.CertificateRecord]:
        """CertificateRecord messages for rows, with their inventory fields."""
        frontdoors: dict[int | None, str] = {}
        # One query for a page's revocations, not one a revoked row.
        held = [row.id for row in rows if row.status in ("revoked", "on_hold")]
        revocations = {
            revocation.certificate_id: revocation
            for revocation in (
                session.scalars(
                    sa.select(RevocationRow).where(
                        RevocationRow.certificate_id.in_(held)
                    )
                )
                if held
                else ()
            )
        }
        records = []
        for row in rows:
            if row.frontdoor_id not in frontdoors:
                frontdoors[row.frontdoor_id] = _frontdoor_name(
                    session, row.frontdoor_id
                )
            record = self._base_record(session, row, frontdoors[row.frontdoor_id])
            revocation = revocations.get(row.id)
            if revocation is not None:
                record.revocation.CopyFrom(_revocation_message(revocation))
            records.append(record)
        fill_last_uses(session, [row.id for row in rows], records)
        inv.fill_records(session, rows, records)
        return records

    def find_row(
        self,
        session: Session,
        fingerprint: str,
        include_deleted: bool = False,
        for_update: bool = False,
    ) -> CertificateRow:
        """The row of a certificate named by fingerprint; NotFound when there
        is none, or (unless ``include_deleted``) when it was deleted.
        ``for_update`` locks the row (PostgreSQL) so that concurrent edits of
        one certificate take turns; SQLite's writer lock does that already."""
        return _find_certificate(
            session,
            CertificateSelector(fingerprint=fingerprint),
            include_deleted,
            for_update,
        )

    @staticmethod
    def filter_status(
        statement: sa.Select[Any],
        status: common_pb2.CertificateStatus,
        now: dt.datetime,
    ) -> sa.Select[Any]:
        """``statement`` restricted to a status, "expired" derived from notAfter."""
        return _filter_status(statement, status, now)

    def _base_record(
        self, session: Session, row: CertificateRow, frontdoor: str
    ) -> common_pb2.CertificateRecord:
        return common_pb2.CertificateRecord(
            fingerprint_sha256=row.fingerprint,
            serial_number=row.serial_number,
            issuer_key_id=row.issuer_key_id,
            frontdoor=frontdoor,
            name=row.name,
            subject=row.subject,
            subject_alt_names=[
                common_pb2.SubjectAltName(type=kind, value=value)
                for kind, value in json.loads(row.subject_alt_names)
            ],
            not_valid_before=facts.timestamp(row.not_valid_before),
            not_valid_after=facts.timestamp(row.not_valid_after),
            key_type=row.key_type,
            status=_status_value(row, self._clock.now()),
            created_at=facts.timestamp(row.created_at),
            kind=_KIND_VALUES[row.kind],
            certificate=row.der,
            chain_not_valid_after=facts.timestamp(
                chain_expiry(session, row).not_valid_after
            ),
            origin=_ORIGIN_VALUES.get(
                row.origin or "issued", common_pb2.CERTIFICATE_ORIGIN_UNSPECIFIED
            ),
        )

    def _page_token_key(self) -> bytes:
        with self._database.reading() as session:
            row = session.get(SecretRow, _PAGE_TOKEN_SECRET)
            if row is not None:
                return row.value
        try:
            with self._database.writing() as session:
                session.add(
                    SecretRow(name=_PAGE_TOKEN_SECRET, value=secrets.token_bytes(32))
                )
        except IntegrityError:
            pass  # another replica created it first; use theirs
        with self._database.reading() as session:
            row = session.get(SecretRow, _PAGE_TOKEN_SECRET)
            assert row is not None
            return row.value


def check_descriptive_name(name: str) -> str:
    """Return a descriptive name, or raise InvalidArgument for a bad one."""
    return inv.check_text("name", name, MAX_NAME_LENGTH)


def _load_certificate(der: bytes) -> x509.Certificate:
    if not der:
        raise InvalidArgument("certificate is empty; send the DER bytes")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise InvalidArgument(
            "certificate is not a DER-encoded X.509 certificate"
        ) from None


def _load_ca_certificate(der: bytes) -> x509.Certificate:
    certificate = _load_certificate(der)
    try:
        constraints = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidArgument(
            "the intermediate is not a CA certificate (basicConstraints CA:TRUE)"
        )
    return certificate


def _require_issued_by_a_platform_root(
    session: Session, intermediate: x509.Certificate
) -> None:
    """A frontdoor's intermediate must be signed by a platform root the
    registry recorded; anything else as an anchor would let its holder mint
    certificates the validator accepts."""
    key_id = identifiers.authority_key_id(intermediate)
    root = None
    if key_id:
        root = session.scalar(
            sa.select(CertificateRow)
            .where(CertificateRow.kind == "root")
            .where(CertificateRow.subject_key_id == key_id)
        )
    if root is None:
        raise PolicyRefusal(
            "the intermediate names no platform root this registry has recorded "
            "(its authority key identifier is missing or unknown); frontdoor "
            "intermediates are made by the issuer's CreateFrontdoor"
        )
    try:
        intermediate.verify_directly_issued_by(_load_certificate(root.der))
    except (ValueError, TypeError, InvalidSignature):
        raise PolicyRefusal(
            "the intermediate's signature does not verify with the key of the "
            f"platform root {key_id} it names; it was not issued by this platform"
        ) from None


def _frontdoor_row(session: Session, name: str) -> FrontdoorRow | None:
    return session.scalar(sa.select(FrontdoorRow).where(FrontdoorRow.name == name))


def _require_frontdoor(session: Session, name: str) -> FrontdoorRow:
    if not name:
        raise InvalidArgument("frontdoor is empty; name the frontdoor")
    row = _frontdoor_row(session, name)
    if row is None:
        raise NotFound(
            f"frontdoor {name!r} does not exist; create it first or check the name"
        )
    return row


def _frontdoor_name(session: Session, frontdoor_id: int | None) -> str:
    if frontdoor_id is None:
        return ""
    return (
        session.scalar(
            sa.select(FrontdoorRow.name).where(FrontdoorRow.id == frontdoor_id)
        )
        or ""
    )


def _has_anchor(
    session: Session, frontdoor_id: int, certificate: x509.Certificate
) -> bool:
    return (
        session.scalar(
            sa.select(TrustAnchorRow.id)
            .join(CertificateRow, TrustAnchorRow.certificate_id == CertificateRow.id)
            .where(TrustAnchorRow.frontdoor_id == frontdoor_id)
            .where(CertificateRow.fingerprint == identifiers.fingerprint(certificate))
        )
        is not None
    )


def _find_certificate(
    session: Session,
    selector: CertificateSelector,
    include_deleted: bool = False,
    for_update: bool = False,
) -> CertificateRow:
    statement = sa.select(CertificateRow)
    if for_update:
        statement = statement.with_for_update()
    if selector.fingerprint:
        wanted = _parsed(identifiers.parse_fingerprint, selector.fingerprint)
        statement = statement.where(CertificateRow.fingerprint == wanted)
        described = f"with fingerprint {wanted}"
    elif selector.serial_number and selector.issuer_key_id:
        serial = identifiers.format_serial(
            _parsed(identifiers.parse_serial, selector.serial_number)
        )
        key_id = _parsed(identifiers.parse_key_id, selector.issuer_key_id)
        statement = statement.where(CertificateRow.serial_number == serial).where(
            CertificateRow.issuer_key_id == key_id
        )
        described = f"with serial number {serial} from issuer {key_id}"
    elif selector.serial_number and selector.frontdoor:
        serial = identifiers.format_serial(
            _parsed(identifiers.parse_serial, selector.serial_number)
        )
        frontdoor = _require_frontdoor(session, selector.frontdoor)
        statement = (
            statement.where(CertificateRow.serial_number == serial)
            .where(CertificateRow.frontdoor_id == frontdoor.id)
            .where(CertificateRow.kind == "client")
        )
        described = f"with serial number {serial} in frontdoor {selector.frontdoor!r}"
    else:
        raise InvalidArgument(
            "name the certificate by fingerprint, or by serial number together with "
            "its frontdoor or issuer key id"
        )
    rows = session.scalars(statement.limit(2)).all()
    if not rows:
        raise NotFound(f"no certificate {described} is recorded")
    if len(rows) > 1:
        raise InvalidArgument(
            f"more than one certificate {described} is recorded; name it by fingerprint"
        )
    if rows[0].deleted_at is not None and not include_deleted:
        raise inv.deleted_notice(rows[0])
    return rows[0]


_Parsed = TypeVar("_Parsed")


def _parsed(parse: Callable[[str], _Parsed], text: str) -> _Parsed:
    try:
        return parse(text)
    except ValueError as error:
        raise InvalidArgument(str(error)) from None


def _filter_status(
    statement: sa.Select[Any],
    status: common_pb2.CertificateStatus,
    now: dt.datetime,
) -> sa.Select[Any]:
    if not status:
        return statement
    if status == common_pb2.CERTIFICATE_STATUS_EXPIRED:
        return statement.where(
            CertificateRow.status.in_(("active", "superseded"))
        ).where(CertificateRow.not_valid_after <= now)
    statement = statement.where(CertificateRow.status == _STATUS_NAMES[status])
    if status in (
        common_pb2.CERTIFICATE_STATUS_ACTIVE,
        common_pb2.CERTIFICATE_STATUS_SUPERSEDED,
    ):
        statement = statement.where(_Likely(CertificateRow.not_valid_after > now))
    return statement


class _Likely(sa.sql.functions.FunctionElement[bool]):
    """A condition true for most rows. SQLite, which keeps no statistics
    unless ANALYZE ran, otherwise takes "not expired yet" for a narrow range:
    a frontdoor + status page then reads the frontdoor's whole unexpired set
    through the notAfter index and sorts it, instead of walking the
    (frontdoor, status, id) index for one page. Other databases get the
    condition as it is."""

    name = "likely"
    inherit_cache = True
    type = sa.Boolean()


@compiles(_Likely)
def _plain_condition(element: _Likely, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(_Likely, "sqlite")
def _sqlite_likely(element: _Likely, compiler: Any, **kw: Any) -> str:
    return f"likely({compiler.process(element.clauses, **kw)})"


def _status_value(
    row: CertificateRow, now: dt.datetime
) -> common_pb2.CertificateStatus:
    if row.status in ("active", "superseded") and row.not_valid_after <= now:
        return common_pb2.CERTIFICATE_STATUS_EXPIRED
    return _STATUS_VALUES[row.status]


def _next_sequence(session: Session) -> int:
    session.execute(
        sa.update(CounterRow)
        .where(CounterRow.name == REVOCATION_COUNTER)
        .values(value=CounterRow.value + 1)
    )
    value = session.scalar(
        sa.select(CounterRow.value).where(CounterRow.name == REVOCATION_COUNTER)
    )
    assert value is not None, "the revocation counter row is seeded by migration r0001"
    return value


def _last_sequence(session: Session) -> int:
    return (
        session.scalar(
            sa.select(CounterRow.value).where(CounterRow.name == REVOCATION_COUNTER)
        )
        or 0
    )


def _revocation_message(row: RevocationRow) -> common_pb2.Revocation:
    message = common_pb2.Revocation(
        sequence=row.sequence,
        frontdoor=row.frontdoor,
        issuer_key_id=row.issuer_key_id,
        serial_number=row.serial_number,
        fingerprint_sha256=row.fingerprint,
        reason=row.reason,  # type: ignore[arg-type]
        revocation_date=facts.timestamp(row.revocation_date),
    )
    if row.invalidity_date is not None:
        message.invalidity_date.CopyFrom(facts.timestamp(row.invalidity_date))
    return message


def _log_entry(row: RevocationRow) -> LogEntry:
    return LogEntry(
        sequence=row.sequence,
        issuer_key_id=row.issuer_key_id,
        serial_number=row.serial_number,
        revocation=CachedRevocation(
            sequence=row.sequence,
            reason=row.reason,
            revocation_date=row.revocation_date,
            invalidity_date=row.invalidity_date,
        ),
    )
