"""CA authorities: the platform root and frontdoor intermediates.

Revision ID: i0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "i0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("frontdoor", sa.String(63), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("signer_uri", sa.String(512), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=True, unique=True),
        sa.Column("certificate", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("role", "frontdoor", "generation"),
    )


def downgrade() -> None:
    op.drop_table("authorities")
