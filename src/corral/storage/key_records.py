"""What a stored API key is, as values: :class:`KeyRecord`, and the :class:`KeySpec` and
:class:`KeyChanges` that make and change one. No secret is ever part of them.

>>> KeyChanges(rpm=None, tpm=500).values()
{'rpm': None, 'tpm': 500}
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from corral.errors import BadRequest, NotFound

Status = Literal["active", "revoked", "expired", "inactive"]


class KeyNotFound(NotFound):
    pass


class KeyNameTaken(BadRequest):
    pass


class Unset(enum.Enum):
    """Marks a field of :class:`KeyChanges` that is not to be changed (``None`` clears)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key may do. ``models=None``: every model; a limit of ``None``: no limit."""

    name: str
    description: str = ""
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """An update: only the fields given change. ``KeyChanges(rpm=None)`` removes the limit."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    models: tuple[str, ...] | Unset | None = UNSET
    rpm: int | Unset | None = UNSET
    tpm: int | Unset | None = UNSET
    max_concurrency: int | Unset | None = UNSET
    expires_at: datetime | Unset | None = UNSET
    active: bool | Unset = UNSET

    def values(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {name: value for name, value in given.items() if value is not UNSET}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key as stored: everything but its secret."""

    id: int
    name: str
    description: str
    prefix: str
    digest: bytes = field(repr=False)
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool
    models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    request_count: int
    token_count: int

    def status(self, now: datetime) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if not self.active:
            return "inactive"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class Activity:
    """What one key did since the last flush."""

    requests: int
    tokens: int
    last_used_at: datetime


# A named alias: inside the store classes, ``list`` is the method of that name.


def describe(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """A key as JSON for the admin API and ``--json``: no digest, no secret."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return {
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "prefix": record.prefix,
        "status": record.status(now),
        "created_at": iso(record.created_at),
        "last_used_at": iso(record.last_used_at),
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
        "models": list(record.models) if record.models is not None else None,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "max_concurrency": record.max_concurrency,
        "request_count": record.request_count,
        "token_count": record.token_count,
    }
