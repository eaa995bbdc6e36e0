"""Expiry monitoring: notifications claimed per certificate and window, and
webhook deliveries that failed every attempt.

Revision ID: r0006_expiry
Revises: r0005_usage
Create Date: 2026-12-04

certificates.subject_key_id gets an index: the monitor and every
certificate record look up the issuing CA of a certificate by it.
"""

import sqlalchemy as sa
from alembic import op

revision = "r0006_expiry"
down_revision = "r0005_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificates_subject_key_id"),
            ["subject_key_id"],
            unique=False,
        )
    op.create_table(
        "expiry_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("chain_not_valid_after", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("certificate_id", "window_days"),
    )
    with op.batch_alter_table("expiry_notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_expiry_notifications_state"), ["state"], unique=False
        )
    op.create_table(
        "webhook_dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["notification_id"], ["expiry_notifications.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notification_id"),
    )


def downgrade() -> None:
    op.drop_table("webhook_dead_letters")
    with op.batch_alter_table("expiry_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_expiry_notifications_state"))
    op.drop_table("expiry_notifications")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_subject_key_id"))
