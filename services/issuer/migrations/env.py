"""Alembic environment for the issuer's tables."""

from alembic import context

from services.common.database import run_migrations_online
from services.issuer.models import IssuerBase

run_migrations_online(context, IssuerBase.metadata)
