"""Compromised keys: public keys no certificate may be issued for again.

Revision ID: r0002
Revises: r0001
Create Date: 2026-12-04

Keys of certificates already revoked for keyCompromise or cACompromise are
entered from the revocation log, so the refusal covers revocations made
before this revision too.
"""

import hashlib

import sqlalchemy as sa
from alembic import op
from cryptography import x509
from cryptography.hazmat.primitives import serialization

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    compromised_keys = op.create_table(
        "compromised_keys",
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("revocation_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("spki_sha256"),
    )

    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT revocation_log.sequence, certificates.der FROM revocation_log "
            "JOIN certificates ON certificates.id = revocation_log.certificate_id "
            # RFC 5280 reason codes keyCompromise and cACompromise.
            "WHERE revocation_log.reason IN (1, 2) ORDER BY revocation_log.sequence"
        )
    ).all()
    first: dict[str, int] = {}
    for sequence, der in rows:
        public_key = x509.load_der_x509_certificate(der).public_key()
        spki = public_key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        first.setdefault(hashlib.sha256(spki).hexdigest(), sequence)
    if first:
        op.bulk_insert(
            compromised_keys,
            [
                {"spki_sha256": key, "revocation_sequence": sequence}
                for key, sequence in first.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("compromised_keys")
