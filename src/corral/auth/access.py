"""The access stages of the request flow (DESIGN.md §3), as one object the gateway calls.

In :meth:`Gateway.handle <corral.http.proxy.Gateway.handle>`, in this order:

1. :meth:`AccessControl.client_ip`: the client's address (``request.state["client_ip"]``);
2. :meth:`AccessControl.check_ip`: 403 for a denied address, before anything else runs;
3. :meth:`AccessControl.check_local`: corral's own ``/health`` wants a key while auth is on
   (``/`` and ``/healthz`` stay open for load balancers);
4. :meth:`AccessControl.admit`: for API routes, the key verified, its models checked (403), and
   every credential removed from what goes upstream; the :class:`Principal` is left in
   ``request.state["principal"]`` for the stages after (limits, usage);
5. :meth:`AccessControl.track`: the answer's token count added to the key's counters.

The stages after read ``request.state["principal"]`` (limits, usage) and
``request.state["key_id"]`` (metrics labels: :attr:`Principal.label`).

Example::

    access = AccessControl(settings, authenticator, activity)
    call = access.admit(request, endpoint, parse_call)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote

import orjson

from corral.auth import credentials
from corral.auth.authenticator import MISSING, Authenticator
from corral.auth.client_address import ClientAddress
from corral.auth.credentials import Credentials
from corral.auth.ipfilter import IpFilter
from corral.context import Call
from corral.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from corral.auth.activity import KeyActivity
    from corral.auth.principal import Principal
    from corral.http.messages import Request
    from corral.http.relay import RelayOutcome, RelayResponse
    from corral.http.routes import Endpoint
    from corral.settings import Settings

Parse = Callable[["Endpoint", "Request"], Call]

# Endpoints that name models in fields other than the one routing uses.
_MODEL_FIELDS = {
    "/api/pull": ("model", "name"),
    "/api/push": ("model", "name"),
    "/api/create": ("model", "name"),
    "/api/delete": ("model", "name"),
    "/api/copy": ("source", "destination"),
}
_MODEL_PATH = "/v1/models/"
_BODY_MARK = b'"' + credentials.BODY_FIELD.encode() + b'"'


def models_named(call: Call, path: str) -> Iterator[str]:
    """Every model a call would use or change."""
    if call.model is not None:
        yield call.model
    for name in _MODEL_FIELDS.get(call.endpoint, ()):
        value = call.fields.get(name)
        if isinstance(value, str) and value:
            yield value
    if path.startswith(_MODEL_PATH):
        yield unquote(path[len(_MODEL_PATH) :])


class AccessControl:
    """IP rules, client address and API keys, for one set of settings (see the module)."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        activity: KeyActivity | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.activity = activity
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """Take the access settings from ``settings``; used at start and on reload."""
        self.ip_filter = IpFilter(settings.allow_ips, settings.deny_ips)
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.credentials = Credentials(settings.auth.header)
        self.authenticator.configure(
            [key.get_secret_value() for key in settings.auth.keys], settings.auth.required
        )

    @property
    def credential_headers(self) -> frozenset[bytes]:
        """Lower-case names of the headers that may carry a key: never forwarded upstream."""
        return self.credentials.header_names

    # ---- edge -------------------------------------------------------------------------------

    def client_ip(self, request: Request) -> str:
        return self.client_address.resolve(request.client[0], request.headers)

    def check_ip(self, client_ip: str) -> None:
        if not self.ip_filter.allows(client_ip):
            raise Forbidden("access denied for this address")

    # ---- auth -------------------------------------------------------------------------------

    def check_local(self, request: Request, endpoint: Endpoint) -> None:
        if endpoint.name != "/health" or not self.authenticator.enabled:
            return
        key = self.credentials.from_headers(request.headers)
        if key is None and credentials.QUERY_FIELD in request.query:
            key = credentials.from_query(request.query)
        if key is None:
            raise Unauthorized(MISSING)
        request.state["principal"] = self.authenticator.verify(key)

    def admit(self, request: Request, endpoint: Endpoint, parse: Parse) -> Call:
        """Parse the call with ``parse``, verify its key and models, and remove the key."""
        enabled = self.authenticator.enabled
        key = self.credentials.from_headers(request.headers) if enabled else None
        if credentials.QUERY_FIELD in request.query:
            in_query = credentials.from_query(request.query)
            request.query = credentials.strip_query(request.query)
            key = key if key is not None else in_query
        if enabled and key is None and _BODY_MARK not in request.body:
            # Before parsing: a request without any key learns that first, not a JSON error.
            raise Unauthorized(MISSING)
        call = parse(endpoint, request)
        if credentials.BODY_FIELD in call.fields:
            in_body = call.fields[credentials.BODY_FIELD]
            call = _without_body_key(call)
            request.body = call.body
            if key is None:
                key = in_body if isinstance(in_body, str) else ""
        if not enabled:
            return call
        if key is None:
            raise Unauthorized(MISSING)
        principal = self.authenticator.verify(key)
        if principal.models is not None:
            for model in models_named(call, request.path):
                if not principal.may_use(model):
                    raise Forbidden(f"this API key may not use model '{model}'")
        state = request.state
        state["principal"] = principal
        state["key_id"] = principal.label
        if principal.key_id is not None and self.activity is not None:
            self.activity.used(principal.key_id)
        return call

    def track(self, request: Request, response: RelayResponse) -> None:
        """Count the answer's tokens against the request's key when the relay ends.

        The relay's own end-of-answer step reads the counts from the last chunk into
        ``request.state`` (``prompt_tokens``, ``generated_tokens``); this runs after it and
        only adds them up, so an answer is parsed once.
        """
        state = request.state
        principal: Principal | None = state.get("principal")
        activity = self.activity
        if principal is None or principal.key_id is None or activity is None:
            return
        key_id = principal.key_id
        previous = response.on_done

        def done(outcome: RelayOutcome) -> None:
            if previous is not None:
                previous(outcome)
            tokens = (state.get("prompt_tokens") or 0) + (state.get("generated_tokens") or 0)
            if tokens:
                activity.add_tokens(key_id, tokens)

        response.on_done = done


def _without_body_key(call: Call) -> Call:
    fields = {k: v for k, v in call.fields.items() if k != credentials.BODY_FIELD}
    return call._replace(body=orjson.dumps(fields), fields=fields)
