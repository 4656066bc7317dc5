"""Services: the one typed container of corral's live parts, handed to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass

from corral.admin import AdminService
from corral.auth.access import AccessControl
from corral.auth.activity import KeyActivity
from corral.auth.keyring import KeyRing
from corral.auth.notices import KeyNotices
from corral.backends.backend import Backend
from corral.backends.fleet import Fleet
from corral.http.admin import AdminRoutes
from corral.http.cache_stage import CacheStage
from corral.http.cors import CorsPolicy
from corral.http.fleet import FleetRoutes
from corral.http.limit_stage import LimitStage
from corral.http.ops import OpsRoutes
from corral.observability.accounting import RequestAccounting
from corral.observability.logs import AccessLog
from corral.observability.metrics import Metrics
from corral.observability.usage_writer import UsageWriter
from corral.observability.webhooks import Webhooks
from corral.routing.queue import Router
from corral.settings import Settings
from corral.storage.engine import Database


@dataclass(slots=True)
class Services:
    settings: Settings
    backends: list[Backend]
    fleet: Fleet
    fleet_routes: FleetRoutes
    router: Router
    cors: CorsPolicy
    ops: OpsRoutes
    access_log: AccessLog
    metrics: Metrics
    admin: AdminRoutes
    cache: CacheStage
    limits: LimitStage
    # Access control: the key database, its in-memory copy, change notices between instances,
    # per-key counters, and the IP/key checks the gateway runs.
    database: Database
    keyring: KeyRing
    key_notices: KeyNotices
    key_activity: KeyActivity
    access: AccessControl
    key_admin: AdminService
    # Usage records and webhook events, both queued in memory and written in the background.
    usage: UsageWriter | None = None
    webhooks: Webhooks | None = None
    accounting: RequestAccounting | None = None
