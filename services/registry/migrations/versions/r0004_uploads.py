"""Uploaded certificates: where each record came from, and its key's hash.

Revision ID: r0004_uploads
Revises: r0003_inventory
Create Date: 2026-12-04

Every record before this revision was signed by Tessera's issuer, so the
existing rows are "issued". The SHA-256 of each record's public key is
filled in from its DER, so the duplicate-key check of uploads covers older
records too. Trust anchors gain the kinds "uploaded_ca" and
"pinned_certificate"; that column is free text, so it needs no change.
"""

import hashlib

import sqlalchemy as sa
from alembic import op
from cryptography import x509
from cryptography.hazmat.primitives import serialization

revision = "r0004_uploads"
down_revision = "r0003_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(
            sa.Column(
                "origin",
                sa.String(length=16),
                nullable=False,
                server_default="issued",
            )
        )
        batch.add_column(sa.Column("spki_sha256", sa.String(length=64)))
        batch.create_index("ix_certificates_origin", ["origin"])
        batch.create_index("ix_certificates_spki_sha256", ["spki_sha256"])

    connection = op.get_bind()
    certificates = sa.table(
        "certificates",
        sa.column("id", sa.Integer),
        sa.column("der", sa.LargeBinary),
        sa.column("spki_sha256", sa.String),
    )
    rows = connection.execute(sa.select(certificates.c.id, certificates.c.der))
    for row_id, der in rows.all():
        spki = (
            x509.load_der_x509_certificate(der)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        connection.execute(
            certificates.update()
            .where(certificates.c.id == row_id)
            .values(spki_sha256=hashlib.sha256(spki).hexdigest())
        )


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index("ix_certificates_spki_sha256")
        batch.drop_index("ix_certificates_origin")
        batch.drop_column("spki_sha256")
        batch.drop_column("origin")
