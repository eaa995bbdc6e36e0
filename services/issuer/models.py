"""The issuer's tables (Alembic history ``services/issuer/migrations``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.schema import UtcDateTime


class IssuerBase(DeclarativeBase):
    """Declarative base of the issuer's tables."""


class AuthorityRow(IssuerBase):
    """A CA Tessera holds a key for: the platform root or an intermediate.

    A row is reserved ("pending") before its key exists, so two issuer
    processes never create the same CA twice, and an interrupted creation
    resumes where it stopped.
    """

    __tablename__ = "authorities"
    __table_args__ = (sa.UniqueConstraint("role", "frontdoor", "generation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "root" or "intermediate".
    role: Mapped[str] = mapped_column(sa.String(16))
    # Empty for the platform root.
    frontdoor: Mapped[str] = mapped_column(sa.String(63), default="")
    # 1 for a frontdoor's first intermediate; rotation adds generations.
    generation: Mapped[int] = mapped_column(sa.Integer, default=1)
    # Where the key lives; a URI the signer plugins understand.
    signer_uri: Mapped[str] = mapped_column(sa.String(512))
    # Set once the certificate exists.
    key_id: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    certificate: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # "pending" or "active".
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CrlRow(IssuerBase):
    """The newest CRL of one CA, and what it covers (DESIGN, step 6).

    One row per CA, replaced by each rebuild only with a greater CRL number,
    so numbers never go backwards whichever issuer process publishes.
    """

    __tablename__ = "crls"

    # The CA's subject key id, lowercase hex.
    issuer_key_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    # Empty for the platform root's CRL.
    frontdoor: Mapped[str] = mapped_column(sa.String(63), default="")
    # RFC 5280 section 5.2.3 allows up to 20 octets; microseconds since the
    # epoch need 7, so a 64-bit column holds every number this issuer makes.
    crl_number: Mapped[int] = mapped_column(sa.BigInteger)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # The revocation log's end that this CRL covers.
    revocation_sequence: Mapped[int] = mapped_column(sa.BigInteger)
    entry_count: Mapped[int] = mapped_column(sa.Integer)
    der: Mapped[bytes] = mapped_column(sa.LargeBinary)


class OcspResponderRow(IssuerBase):
    """A delegated OCSP responder certificate of one intermediate, and
    where its key lives (RFC 6960 section 4.2.2.2)."""

    __tablename__ = "ocsp_responders"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The intermediate that certified the responder.
    issuer_key_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    signer_uri: Mapped[str] = mapped_column(sa.String(512))
    certificate: Mapped[bytes] = mapped_column(sa.LargeBinary)
    not_valid_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_valid_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
