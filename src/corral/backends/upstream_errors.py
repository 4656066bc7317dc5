"""How a request to a backend can fail, and what the client is told: translated once, here."""

from __future__ import annotations

from corral.errors import CorralError, UpstreamError, UpstreamTimeout


class UpstreamFailure(Exception):
    """The backend could not be used for this request. ``before_response`` tells failover it may
    try another backend: nothing of the answer has been seen yet."""

    before_response = True


class UpstreamConnectError(UpstreamFailure):
    """Connecting failed (refused, unreachable, or not within ``connect_timeout``)."""


class UpstreamClosed(UpstreamFailure):
    """The backend closed the connection (or sent something unparseable) before answering."""


class UpstreamReadTimeout(UpstreamFailure):
    """No response headers, or no body bytes, within ``read_timeout``."""


def client_error(err: UpstreamFailure, backend: str) -> CorralError:
    """Transport failures become client-facing errors here, and only here."""
    if isinstance(err, UpstreamReadTimeout):
        return UpstreamTimeout(f"backend {backend} did not answer in time")
    if isinstance(err, UpstreamConnectError):
        return UpstreamError(f"backend {backend} is unreachable")
    return UpstreamError(f"backend {backend} failed: {err}")
