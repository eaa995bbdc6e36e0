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
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    serial_number: Mapped[str] = mapped_column(sa.String(40), index=True)
    issuer_key_id: Mapped[str] = mapped_column(sa.String(128))
    # The CA certificates' own key id; empty for client certificates.
    subject_key_id: Mapped[str] = mapped_column(sa.String(128), default="")
    # NULL for the platform root, which belongs to no frontdoor.
    frontdoor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("frontdoors.id"))
    # "client", "intermediate" or "root".
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(256), default="")
    subject: Mapped[str] = mapped_column(sa.Text)
    # JSON list of [type, value] pairs.
    subject_alt_names: Mapped[str] = mapped_column(sa.Text)
    not_valid_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_valid_after: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    key_type: Mapped[str] = mapped_column(sa.String(32))
    # "active", "on_hold", "revoked" or "superseded"; "expired" is derived.
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    der: Mapped[bytes] = mapped_column(sa.LargeBinary)
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
