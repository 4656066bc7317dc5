"""Where corral keeps what must outlive a process: API keys now; usage and webhooks later.

:class:`~corral.storage.engine.Database` opens the SQLite file (default) or PostgreSQL and
upgrades its schema with the migrations shipped in ``corral/storage/migrations``;
:class:`~corral.storage.keys.SqlKeyStore` is the key store on top of it.
"""
