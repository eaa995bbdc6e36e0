"""The registry's tables (Alembic history ``services/registry/migrations``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.schema import UtcDateTime

# The counter row that hands out revocation-log sequence numbers.
REVOCATION_COUNTER = "revocation_log"


class RegistryBase(DeclarativeBase):
    """Declarative base of the registry's tables."""


class FrontdoorRow(RegistryBase):
    __tablename__ = "frontdoors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    # Serialised tessera.common.v1.FrontdoorSettings; binary protobuf keeps
    # fields a newer version added.
    settings: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CertificateRow(RegistryBase):
    __tablename__ = "certificates"
    __table_args__ = (
        sa.UniqueConstraint("issuer_key_id", "serial_number"),
        sa.Index("ix_certificates_frontdoor_status", "frontdoor_id", "status", "id"),
        # "Which certificates of frontdoor F expire before T", and sorting by it.
        sa.Index(
            "ix_certificates_frontdoor_not_after", "frontdoor_id", "not_valid_after"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    serial_number: Mapped[str] = mapped_column(sa.String(40), index=True)
    issuer_key_id: Mapped[str] = mapped_column(sa.String(128))
    # The CA certificates' own key id; empty for client certificates.
    subject_key_id: Mapped[str] = mapped_column(sa.String(128), default="", index=True)
    # NULL for the platform root, which belongs to no frontdoor.
    frontdoor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("frontdoors.id"))
    # "client", "intermediate", "root" (the platform root) or "uploaded_root"
    # (a self-signed CA of the user's PKI); see CA_KINDS and PUBLIC_KINDS.
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(256), default="", index=True)
    subject: Mapped[str] = mapped_column(sa.Text)
    # JSON list of [type, value] pairs.
    subject_alt_names: Mapped[str] = mapped_column(sa.Text)
    not_valid_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_valid_after: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    key_type: Mapped[str] = mapped_column(sa.String(32))
    # "active", "on_hold", "revoked" or "superseded"; "expired" is derived.
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    der: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # Inventory metadata (services/registry/inventory.py).
    description: Mapped[str] = mapped_column(sa.Text, default="")
    environment: Mapped[str] = mapped_column(sa.String(63), default="", index=True)
    owner: Mapped[str] = mapped_column(sa.String(256), default="", index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # Set when deleted: the row stays for its history and the revocation log.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # "issued" (Tessera signed it) or "uploaded" (the user's own PKI).
    origin: Mapped[str] = mapped_column(
        sa.String(16), default="issued", server_default="issued", index=True
    )
    # SHA-256 of the DER SubjectPublicKeyInfo, hex: finds certificates that
    # share a key.
    spki_sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class TrustAnchorRow(RegistryBase):
    """A certificate a frontdoor trusts as the end of a path."""

    __tablename__ = "trust_anchors"
    __table_args__ = (sa.UniqueConstraint("frontdoor_id", "certificate_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    frontdoor_id: Mapped[int] = mapped_column(sa.ForeignKey("frontdoors.id"))
    certificate_id: Mapped[int] = mapped_column(sa.ForeignKey("certificates.id"))
    # "issued_intermediate", "uploaded_ca" or "pinned_certificate".
    kind: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class RevocationRow(RegistryBase):
    """One entry of the revocation log; sequence numbers are gap-free."""

    __tablename__ = "revocation_log"
    __table_args__ = (
        sa.Index("ix_revocation_log_issuer", "issuer_key_id", "sequence"),
    )

    sequence: Mapped[int] = mapped_column(
        sa.BigInteger, primary_key=True, autoincrement=False
    )
    certificate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("certificates.id"), unique=True
    )
    issuer_key_id: Mapped[str] = mapped_column(sa.String(128))
    serial_number: Mapped[str] = mapped_column(sa.String(40))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    frontdoor: Mapped[str] = mapped_column(sa.String(63))
    reason: Mapped[int] = mapped_column(sa.SmallInteger)
    revocation_date: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class CompromisedKeyRow(RegistryBase):
    """A public key that a keyCompromise or cACompromise revocation reported
    compromised; no certificate is issued for it again."""

    __tablename__ = "compromised_keys"

    # SHA-256 of the DER SubjectPublicKeyInfo, hex.
    spki_sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # The first revocation that reported it. No foreign key: the key stays
    # barred even should that log entry be lost.
    revocation_sequence: Mapped[int] = mapped_column(sa.BigInteger)


class CounterRow(RegistryBase):
    """A named counter; taking a number updates the row, which locks it."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


class SecretRow(RegistryBase):
    """Secrets the registry generates for itself (the page-token key)."""

    __tablename__ = "registry_secrets"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(sa.LargeBinary)


class CertificateUsageRow(RegistryBase):
    """When validators last accepted a certificate at a frontdoor
    (``services/registry/usage.py``); one row per certificate and frontdoor."""

    __tablename__ = "certificate_usage"

    certificate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("certificates.id", ondelete="CASCADE"), primary_key=True
    )
    frontdoor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("frontdoors.id", ondelete="CASCADE"), primary_key=True
    )
    # Only ever moves forward, and never past the registry's clock.
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ExpiryNotificationRow(RegistryBase):
    """One expiry warning: a certificate entered one of its windows.

    The row is written (state "pending") before anything is sent, and the
    unique constraint lets only one pass, of one replica, claim it.
    """

    __tablename__ = "expiry_notifications"
    __table_args__ = (sa.UniqueConstraint("certificate_id", "window_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(sa.ForeignKey("certificates.id"))
    window_days: Mapped[int] = mapped_column(sa.Integer)
    # The chain's expiry when the warning was claimed.
    chain_not_valid_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # "pending", "delivered" or "dead_lettered".
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    # The JSON body of the notification, fixed when it is claimed so that a
    # redelivery sends the same body.
    payload: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class WebhookDeadLetterRow(RegistryBase):
    """A webhook delivery that failed every attempt."""

    __tablename__ = "webhook_dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("expiry_notifications.id"), unique=True
    )
    # Without any password it held.
    url: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[str] = mapped_column(sa.Text)
    last_error: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CertificateTagRow(RegistryBase):
    """One tag of a certificate; tags are lowercase."""

    __tablename__ = "certificate_tags"
    __table_args__ = (sa.Index("ix_certificate_tags_tag", "tag", "certificate_id"),)

    certificate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("certificates.id"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(sa.String(63), primary_key=True)


class CertificateNameRow(RegistryBase):
    """A subject or subjectAltName value of a certificate, lowercase, for
    search; written when the certificate is recorded."""

    __tablename__ = "certificate_names"
    __table_args__ = (
        sa.Index("ix_certificate_names_value", "value", "certificate_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("certificates.id"), index=True
    )
    # "subject", a subject attribute's OID name ("commonName"), or a SAN type.
    kind: Mapped[str] = mapped_column(sa.String(32))
    # Values are cut to 255 characters; longer names are found by prefix.
    value: Mapped[str] = mapped_column(sa.String(255))


class CertificateMappingRow(RegistryBase):
    """A service using a certificate in one environment."""

    __tablename__ = "certificate_mappings"
    __table_args__ = (
        sa.Index(
            "ix_certificate_mappings_service",
            "service",
            "environment",
            "certificate_id",
        ),
    )

    certificate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("certificates.id"), primary_key=True
    )
    service: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    environment: Mapped[str] = mapped_column(sa.String(63), primary_key=True)


class CertificateEventRow(RegistryBase):
    """One entry of a certificate's history."""

    __tablename__ = "certificate_events"
    __table_args__ = (
        sa.Index("ix_certificate_events_certificate", "certificate_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(sa.ForeignKey("certificates.id"))
    # The vocabulary is in services/registry/inventory.py (EVENTS).
    event: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(256))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # A JSON object.
    details: Mapped[str] = mapped_column(sa.Text, default="{}")


# Stored certificate kinds -------------------------------------------------------

# The stored kinds that are CA certificates. "uploaded_root" is a self-signed
# CA of the user's PKI; it is never "root", which names the platform root
# that may sign frontdoor intermediates.
CA_KINDS = ("intermediate", "root", "uploaded_root")
# The stored kinds at the top of a chain (self-signed CAs).
ROOT_KINDS = ("root", "uploaded_root")
# The name each stored kind is shown as outside the registry (the
# CertificateKind of the API, webhook payloads and logs).
PUBLIC_KINDS = {
    "client": "client",
    "intermediate": "intermediate",
    "root": "root",
    "uploaded_root": "root",
}


def stored_kinds(public_kind: str) -> tuple[str, ...]:
    """The stored kinds shown as ``public_kind``."""
    return tuple(
        stored for stored, shown in PUBLIC_KINDS.items() if shown == public_kind
    )
