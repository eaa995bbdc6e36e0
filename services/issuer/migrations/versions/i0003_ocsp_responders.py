"""Delegated OCSP responder certificates and their key URIs.

Revision ID: i0003
Revises: i0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "i0003"
down_revision = "i0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_responders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer_key_id", sa.String(128), nullable=False),
        sa.Column("signer_uri", sa.String(512), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("not_valid_before", sa.DateTime(), nullable=False),
        sa.Column("not_valid_after", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_ocsp_responders_issuer_key_id", "ocsp_responders", ["issuer_key_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ocsp_responders_issuer_key_id", "ocsp_responders")
    op.drop_table("ocsp_responders")
