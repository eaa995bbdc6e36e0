"""Alembic environment for the tables every service shares."""

from alembic import context

from services.common.database import run_migrations_online
from services.common.schema import CommonBase

run_migrations_online(context, CommonBase.metadata)
