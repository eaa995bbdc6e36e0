"""The certificate inventory: metadata, tags, searchable names, history,
service mappings, soft deletion and the indexes searches use.

Revision ID: r0003_inventory
Revises: r0002
Create Date: 2026-12-04

Existing certificates get their subject and subjectAltName values entered
into certificate_names and an "issued" history event dated at their
recording, so search and history cover certificates recorded before this
revision too.
"""

import json

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision = "r0003_inventory"
down_revision = "r0002"
branch_labels = None
depends_on = None

# Values longer than the column are cut, as the registry does when recording.
_MAX_VALUE = 255
_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(
            sa.Column("description", sa.Text(), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column(
                "environment", sa.String(length=63), nullable=False, server_default=""
            )
        )
        batch.add_column(
            sa.Column("owner", sa.String(length=256), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE certificates SET updated_at = created_at")
    with op.batch_alter_table("certificates") as batch:
        batch.alter_column("updated_at", existing_type=sa.DateTime(), nullable=False)
        batch.create_index("ix_certificates_name", ["name"])
        batch.create_index("ix_certificates_environment", ["environment"])
        batch.create_index("ix_certificates_owner", ["owner"])
        batch.create_index("ix_certificates_created_at", ["created_at"])
        batch.create_index(
            "ix_certificates_frontdoor_not_after", ["frontdoor_id", "not_valid_after"]
        )

    op.create_table(
        "certificate_tags",
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("certificate_id", "tag"),
    )
    op.create_index(
        "ix_certificate_tags_tag", "certificate_tags", ["tag", "certificate_id"]
    )
    names = op.create_table(
        "certificate_names",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_certificate_names_certificate_id", "certificate_names", ["certificate_id"]
    )
    op.create_index(
        "ix_certificate_names_value", "certificate_names", ["value", "certificate_id"]
    )
    op.create_table(
        "certificate_mappings",
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=128), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("certificate_id", "service", "environment"),
    )
    op.create_index(
        "ix_certificate_mappings_service",
        "certificate_mappings",
        ["service", "environment", "certificate_id"],
    )
    op.create_table(
        "certificate_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_certificate_events_certificate",
        "certificate_events",
        ["certificate_id", "id"],
    )
    _backfill(names)


def _backfill(names: sa.Table) -> None:
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "INSERT INTO certificate_events "
            "(certificate_id, event, actor, occurred_at, details) "
            "SELECT id, 'issued', :actor, created_at, '{}' FROM certificates "
            "ORDER BY id"
        ),
        {"actor": "migration r0003_inventory (recorded before history)"},
    )
    after = 0
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT id, subject, subject_alt_names, der "
                "FROM certificates WHERE id > :after ORDER BY id LIMIT :limit"
            ),
            {"after": after, "limit": _BATCH},
        ).all()
        if not rows:
            return
        name_rows = []
        for certificate_id, subject, sans, der in rows:
            values = [("subject", subject)]
            certificate = x509.load_der_x509_certificate(der)
            values += [
                ("attribute", attribute.value)
                for attribute in certificate.subject
                if isinstance(attribute.value, str)
            ]
            values += [("san", value) for _, value in json.loads(sans)]
            seen = set()
            for kind, value in values:
                folded = value.lower()[:_MAX_VALUE]
                if folded and (kind, folded) not in seen:
                    seen.add((kind, folded))
                    name_rows.append(
                        {
                            "certificate_id": certificate_id,
                            "kind": kind,
                            "value": folded,
                        }
                    )
        if name_rows:
            op.bulk_insert(names, name_rows)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("certificate_events")
    op.drop_table("certificate_mappings")
    op.drop_table("certificate_names")
    op.drop_table("certificate_tags")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index("ix_certificates_frontdoor_not_after")
        batch.drop_index("ix_certificates_created_at")
        batch.drop_index("ix_certificates_owner")
        batch.drop_index("ix_certificates_environment")
        batch.drop_index("ix_certificates_name")
        batch.drop_column("deleted_at")
        batch.drop_column("updated_at")
        batch.drop_column("owner")
        batch.drop_column("environment")
        batch.drop_column("description")
