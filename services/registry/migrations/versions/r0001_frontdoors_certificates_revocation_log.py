"""Frontdoors, certificates, trust anchors and the revocation log.

Revision ID: r0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Revocation-log sequence numbers start at 1.
    op.bulk_insert(counters, [{"name": "revocation_log", "value": 0}])
    op.create_table(
        "frontdoors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("settings", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "registry_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("serial_number", sa.String(length=40), nullable=False),
        sa.Column("issuer_key_id", sa.String(length=128), nullable=False),
        sa.Column("subject_key_id", sa.String(length=128), nullable=False),
        sa.Column("frontdoor_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_alt_names", sa.Text(), nullable=False),
        sa.Column("not_valid_before", sa.DateTime(), nullable=False),
        sa.Column("not_valid_after", sa.DateTime(), nullable=False),
        sa.Column("key_type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["frontdoor_id"],
            ["frontdoors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
        sa.UniqueConstraint("issuer_key_id", "serial_number"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_certificates_frontdoor_status",
            ["frontdoor_id", "status", "id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certificates_not_valid_after"),
            ["not_valid_after"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certificates_serial_number"), ["serial_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_certificates_status"), ["status"], unique=False
        )

    op.create_table(
        "revocation_log",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("issuer_key_id", sa.String(length=128), nullable=False),
        sa.Column("serial_number", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("frontdoor", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=False),
        sa.Column("revocation_date", sa.DateTime(), nullable=False),
        sa.Column("invalidity_date", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
        ),
        sa.PrimaryKeyConstraint("sequence"),
        sa.UniqueConstraint("certificate_id"),
    )
    with op.batch_alter_table("revocation_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_revocation_log_issuer", ["issuer_key_id", "sequence"], unique=False
        )

    op.create_table(
        "trust_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frontdoor_id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
        ),
        sa.ForeignKeyConstraint(
            ["frontdoor_id"],
            ["frontdoors.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("frontdoor_id", "certificate_id"),
    )


def downgrade() -> None:
    op.drop_table("trust_anchors")
    with op.batch_alter_table("revocation_log", schema=None) as batch_op:
        batch_op.drop_index("ix_revocation_log_issuer")

    op.drop_table("revocation_log")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_status"))
        batch_op.drop_index(batch_op.f("ix_certificates_serial_number"))
        batch_op.drop_index(batch_op.f("ix_certificates_not_valid_after"))
        batch_op.drop_index("ix_certificates_frontdoor_status")

    op.drop_table("certificates")
    op.drop_table("registry_secrets")
    op.drop_table("frontdoors")
    op.drop_table("counters")
