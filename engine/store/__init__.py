"""SQLite store: connection settings, migrations, typed queries.

All SQL of the project lives in this package; the schema lives only in ``migrations/*.sql``.
"""

from __future__ import annotations

from engine.store.connection import StoreError, connect, open_store
from engine.store.migrate import apply_migrations, migration_files, pending_migrations

__all__ = [
    "StoreError",
    "apply_migrations",
    "connect",
    "migration_files",
    "open_store",
    "pending_migrations",
]
