"""Certificate usage: when validators last accepted a certificate, and where.

Revision ID: r0005_usage
Revises: r0004_uploads
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "r0005_usage"
down_revision = "r0004_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_usage",
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("frontdoor_id", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"], ["certificates.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["frontdoor_id"], ["frontdoors.id"], ondelete="CASCADE"
        ),
        # The key's first column serves "never used" (NOT EXISTS by
        # certificate) and a record's last use.
        sa.PrimaryKeyConstraint("certificate_id", "frontdoor_id"),
    )


def downgrade() -> None:
    op.drop_table("certificate_usage")
