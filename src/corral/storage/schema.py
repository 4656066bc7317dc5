"""The tables, as the newest migration leaves them. Queries use these; migrations never do.

Times are stored in UTC. SQLite has no time zones, so :class:`UtcDateTime` writes naive UTC there
and hands back aware datetimes on every database::

    >>> api_keys.c.digest.type.length
    64
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime on the Python side, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; corral stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite rows written by hand or by an older corral
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The names the migrations give their constraints and indexes, so that a comparison of this
# metadata with a migrated database finds nothing to change.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
    }
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("prefix", sa.String(32), nullable=False, index=True),
    # SHA-256 of the whole key, hex. The key is random, so a slow hash would add nothing.
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("last_used_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    # Since schema 0002: what the key may do, and what it has done.
    sa.Column("models", sa.JSON),  # null: every model
    sa.Column("rpm", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("max_concurrency", sa.Integer),
    sa.Column("request_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("token_count", sa.BigInteger, nullable=False, server_default="0"),
)

# One row, bumped in the same transaction as every change to api_keys that matters to
# verification: an instance polls this single number instead of re-reading every key.
key_revision = sa.Table(
    "key_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# The longest model name a usage row keeps (a longer one is cut to this).
MODEL_NAME_LENGTH = 255

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("ts", UtcDateTime, nullable=False, index=True),
    sa.Column("request_id", sa.String(128)),
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), index=True),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("model", sa.String(MODEL_NAME_LENGTH)),
    sa.Column("backend", sa.String(255)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("duration_ms", sa.Float),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("queue_ms", sa.Float),
    # Requests this row counts: 1 when usage is kept per request, more when per minute.
    sa.Column("requests", sa.Integer, nullable=False, server_default="1"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    # The HMAC signing secret: it must be readable to sign, so it is kept as given.
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("events", sa.JSON),  # null: every event
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "webhook_id",
        sa.Integer,
        sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False, index=True),
    sa.Column("delivered_at", UtcDateTime),
    sa.Column("last_error", sa.Text),
)
