"""Usage records in the database, and the totals ``corral usage`` and ``GET /admin/usage``
report.

A row counts ``requests`` requests that share a minute, key, model, backend, route and status,
with the sums of their tokens and times (``usage.granularity = "minute"``, the default), or is
one request with its id and client address (``"request"``). Reports add rows up, so they read
both kinds alike, and a table can hold both.

Rows are written in batches by :class:`corral.observability.usage_writer.UsageWriter`; nothing
here runs on a request's path.

Example::

    store = SqlUsageStore(database)
    await store.insert([UsageRecord(ts=time.time(), route="/api/chat", status=200, key_id=1)])
    rows = await store.query(UsageQuery(by="key", since=now - timedelta(days=1)))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import sqlalchemy as sa

from corral.errors import BadRequest
from corral.storage.engine import Database
from corral.storage.schema import MODEL_NAME_LENGTH, api_keys, usage

GroupBy = Literal["key", "model", "backend", "day"]
GROUPS: tuple[str, ...] = get_args(GroupBy)
_AGO = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """``"24h"``/``"7d"`` (that long ago), a date (``2026-11-01``, UTC midnight) or an ISO time.

    >>> parse_since("2d", datetime(2026, 11, 23, tzinfo=UTC)).isoformat()
    '2026-11-21T00:00:00+00:00'
    """
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    ago = _AGO.fullmatch(text)
    if ago:
        return now - timedelta(seconds=int(ago[1]) * _UNITS[ago[2]])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            f"{value!r} is not a time: use 24h, 7d, 4w, a date (2026-11-01) or an ISO time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Not frozen: one is made per request, and a frozen dataclass sets each field the slow way.
@dataclass(slots=True)
class UsageRecord:
    """What one request did, or (``requests`` > 1) the sums of several that share a minute,
    key, model, backend, route and status. ``ts`` is in seconds since the epoch (cheaper to
    take on a request's path than a ``datetime``); ``key_id`` is ``None`` for requests without
    a stored key. ``ttft_ms`` is the time to the answer's first byte, ``queue_ms`` the wait
    for a backend slot."""

    ts: float
    route: str
    status: int
    key_id: int | None = None
    model: str | None = None
    backend: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: float | None = None
    ttft_ms: float | None = None
    queue_ms: float | None = None
    requests: int = 1

    def add(self, other: UsageRecord) -> None:
        """Count ``other`` in this record's sums (both for the same minute, key, model...)."""
        self.add_figures(
            other.requests, other.prompt_tokens, other.completion_tokens, other.duration_ms,
            other.ttft_ms, other.queue_ms,
        )  # fmt: skip

    def add_figures(
        self,
        requests: int,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        duration_ms: float | None,
        ttft_ms: float | None,
        queue_ms: float | None,
    ) -> None:
        """Count requests with these sums in this record's. A sum stays ``None`` (not known)
        only while every part of it is."""
        # Written out, not looped over field names: this runs once per request.
        self.requests += requests
        if prompt_tokens is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        if completion_tokens is not None:
            self.completion_tokens = (self.completion_tokens or 0) + completion_tokens
        if duration_ms is not None:
            self.duration_ms = (self.duration_ms or 0.0) + duration_ms
        if ttft_ms is not None:
            self.ttft_ms = (self.ttft_ms or 0.0) + ttft_ms
        if queue_ms is not None:
            self.queue_ms = (self.queue_ms or 0.0) + queue_ms


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Totals grouped ``by`` one dimension, over ``[since, until)``; ``None``: unbounded."""

    by: GroupBy = "key"
    since: datetime | None = None
    until: datetime | None = None
    key_id: int | None = None

    def __post_init__(self) -> None:
        if self.by not in GROUPS:
            raise BadRequest(f"by must be one of {', '.join(GROUPS)}")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """One line of a report. ``group`` is the key's id (as text), model, backend or day;
    ``name`` is the key's name when grouping by key."""

    group: str | None
    name: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    ttft_ms: float = 0.0
    """Summed over the requests whose answer began (errors before it and cache hits have none)."""
    queue_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


_INSERT_COLUMNS = (
    "ts", "route", "status", "key_id", "model", "backend", "request_id", "client_ip",
    "prompt_tokens", "completion_tokens", "duration_ms", "ttft_ms", "queue_ms", "requests",
)  # fmt: skip


_KEY_ID = _INSERT_COLUMNS.index("key_id")


def _sqlite_time(ts: float) -> str:
    """SQLAlchemy's form of a time on SQLite: naive UTC text with microseconds."""
    moment = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def _insert_rows(conn: sa.Connection, sql: str, rows: list[tuple[object, ...]]) -> None:
    conn.exec_driver_sql(sql, rows)


def _insert_rows_of_live_keys(
    conn: sa.Connection, sql: str, rows: list[tuple[object, ...]]
) -> None:
    """Insert ``rows``, each whose key is gone as a row without a stored key."""
    ids = {row[_KEY_ID] for row in rows if row[_KEY_ID] is not None}
    alive = set(conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id.in_(ids))).scalars())
    kept = [
        row if row[_KEY_ID] is None or row[_KEY_ID] in alive
        else (*row[:_KEY_ID], None, *row[_KEY_ID + 1 :])
        for row in rows
    ]  # fmt: skip
    conn.exec_driver_sql(sql, kept)


def _totals(conn: sa.Connection, statement: sa.Select[Any]) -> list[UsageTotals]:
    return [
        UsageTotals(
            group=None if row.grp is None else str(row.grp),
            name=row.name,
            requests=int(row.requests),
            errors=int(row.errors or 0),
            prompt_tokens=int(row.prompt),
            completion_tokens=int(row.completion),
            duration_ms=round(float(row.duration), 3),
            ttft_ms=round(float(row.ttft), 3),
            queue_ms=round(float(row.queue), 3),
        )
        for row in conn.execute(statement)
    ]


class SqlUsageStore:
    """The ``usage`` table on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert: str | None = None

    async def insert(self, batch: Sequence[UsageRecord]) -> None:
        """Write ``batch`` in one transaction (one statement, many rows)."""
        if not batch:
            return
        # Plain tuples through the driver's executemany: no per-row deep copy, no statement
        # compilation per batch. With usage kept per request, at thousands of requests a
        # second, this runs on a database thread but under the same interpreter lock as the
        # relay: its cost per row is the relay's cost too.
        when = _sqlite_time if self.database.is_sqlite else _aware_time
        # A model's name is the client's to choose: one longer than its column would fail the
        # whole batch on PostgreSQL, again at every retry, so it is cut to fit.
        rows: list[tuple[object, ...]] = [
            (
                when(r.ts), r.route, r.status, r.key_id,
                r.model[:MODEL_NAME_LENGTH] if r.model else r.model,
                r.backend, r.request_id, r.client_ip, r.prompt_tokens, r.completion_tokens,
                r.duration_ms, r.ttft_ms, r.queue_ms, r.requests,
            )
            for r in batch
        ]  # fmt: skip
        try:
            await self.database.run(_insert_rows, self._insert_sql(), rows)
        except sa.exc.IntegrityError:
            # A key deleted after its requests ended but before their rows were written:
            # the rows are kept, as requests without a stored key (what ON DELETE SET NULL
            # would have made of them a moment later).
            await self.database.run(_insert_rows_of_live_keys, self._insert_sql(), rows)

    def _insert_sql(self) -> str:
        if self._insert is None:
            # The drivers' own placeholders: sqlite3's qmark, psycopg's format style.
            mark = "?" if self.database.is_sqlite else "%s"
            marks = ", ".join([mark] * len(_INSERT_COLUMNS))
            self._insert = f"INSERT INTO usage ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks})"
        return self._insert

    async def query(self, query: UsageQuery) -> list[UsageTotals]:
        dialect = "sqlite" if self.database.is_sqlite else "postgresql"
        group = _group_column(query.by, dialect)
        name = api_keys.c.name if query.by == "key" else sa.null()
        # A row may stand for several requests: totals add ``requests`` up, never count rows.
        errors = sa.func.sum(sa.case((usage.c.status >= 400, usage.c.requests), else_=0))
        statement = (
            sa.select(
                group.label("grp"),
                sa.func.max(name).label("name") if query.by == "key" else name.label("name"),
                sa.func.coalesce(sa.func.sum(usage.c.requests), 0).label("requests"),
                errors.label("errors"),
                sa.func.coalesce(sa.func.sum(usage.c.prompt_tokens), 0).label("prompt"),
                sa.func.coalesce(sa.func.sum(usage.c.completion_tokens), 0).label("completion"),
                sa.func.coalesce(sa.func.sum(usage.c.duration_ms), 0.0).label("duration"),
                sa.func.coalesce(sa.func.sum(usage.c.ttft_ms), 0.0).label("ttft"),
                sa.func.coalesce(sa.func.sum(usage.c.queue_ms), 0.0).label("queue"),
            )
            .select_from(usage.outerjoin(api_keys, usage.c.key_id == api_keys.c.id))
            .group_by(group)
            .order_by(group)
        )
        if query.since is not None:
            statement = statement.where(usage.c.ts >= query.since)
        if query.until is not None:
            statement = statement.where(usage.c.ts < query.until)
        if query.key_id is not None:
            statement = statement.where(usage.c.key_id == query.key_id)
        return await self.database.read(_totals, statement)


def _aware_time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _group_column(by: GroupBy, dialect: str) -> sa.ColumnElement[Any]:
    if by == "key":
        return usage.c.key_id
    if by == "model":
        return usage.c.model
    if by == "backend":
        return usage.c.backend
    if dialect == "sqlite":  # naive UTC text: its first ten characters are the day
        return sa.func.substr(sa.cast(usage.c.ts, sa.String), 1, 10)
    return sa.func.to_char(sa.func.timezone("UTC", usage.c.ts), "YYYY-MM-DD")
