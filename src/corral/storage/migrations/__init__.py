"""Alembic migrations of corral's schema, shipped with the package and run on start-up.

Each file in ``versions/`` upgrades the schema by one step, in place; a database written by an
older corral is upgraded without losing rows. Run by :func:`corral.storage.migrate.upgrade`.
"""
