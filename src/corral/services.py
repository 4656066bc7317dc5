"""Services: the one typed container of corral's live parts, handed to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass

from corral.backends.backend import Backend
from corral.backends.fleet import Fleet
from corral.http.admin import AdminRoutes
from corral.http.cors import CorsPolicy
from corral.http.fleet import FleetRoutes
from corral.http.ops import OpsRoutes
from corral.observability.logs import AccessLog
from corral.observability.metrics import Metrics
from corral.routing.queue import Router
from corral.settings import Settings


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
