"""CRL bookkeeping: the newest CRL of each CA.

Revision ID: i0002
Revises: i0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "i0002"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crls",
        sa.Column("issuer_key_id", sa.String(128), primary_key=True),
        sa.Column("frontdoor", sa.String(63), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("this_update", sa.DateTime(), nullable=False),
        sa.Column("next_update", sa.DateTime(), nullable=False),
        sa.Column("revocation_sequence", sa.BigInteger(), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("crls")
