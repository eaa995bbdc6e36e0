"""Alembic environment for the registry's tables."""

from alembic import context

from services.common.database import run_migrations_online
from services.registry.models import RegistryBase

run_migrations_online(context, RegistryBase.metadata)
