"""Alembic's entry point: migrate on the connection corral hands over (see corral.storage.migrate).

Corral passes an open synchronous connection in ``config.attributes["connection"]``; the outer
transaction commits, so every step of one upgrade lands together or not at all.
"""

from __future__ import annotations

from alembic import context

from corral.storage.schema import metadata

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters a table by copying it, which Alembic only does in batch operations.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
