"""Where corral keeps what must outlive a process: API keys, usage records, webhooks and their
outbox.

:class:`~corral.storage.engine.Database` opens the SQLite file (default) or PostgreSQL, upgrades
its schema with the migrations shipped in ``corral/storage/migrations``, and runs the stores'
SQL on threads of its own; :class:`~corral.storage.keys.SqlKeyStore` and the other stores are
built on it.
"""
