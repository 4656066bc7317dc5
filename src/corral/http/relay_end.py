"""The record stage of a relayed answer (DESIGN.md §3): when the relay ends, however it ended,
:class:`RelayEnd` gives the backend its slot back and learns from the answer (health, service
time, the model it now holds warm), finishes the cache ticket, counts the tokens, settles what the
request reserved from its limits (``state["admission"]``) and writes the access log line.

Example::

    done = RelayEnd(gateway, request, upstream, lease, ticket, sent_at, call)
    relay = RelayResponse(upstream, extra, on_done=done)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from corral.backends.models import keep_alive_seconds
from corral.observability.usage import Counts, final_counts

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.backends.upstream import UpstreamResponse
    from corral.context import Call
    from corral.http.cache_ticket import Ticket
    from corral.http.messages import Request
    from corral.http.proxy import Gateway
    from corral.http.relay import RelayOutcome
    from corral.routing.queue import Lease


def _is_error_line(chunk: bytes) -> bool:
    return chunk.startswith((b'{"error"', b'data: {"error"'))


class RelayEnd:
    """What the end of a relayed answer settles, once, however it ended: the backend's slot and
    health, the cache, the token counts, the access log.

    An object rather than a closure: one waits for every open stream, and a closure over all it
    needs costs some 600 bytes more in cells; it would also keep the request's parsed body alive
    (through its Call) for as long as the answer streams.
    """

    __slots__ = (
        "gateway",
        "keep_alive",
        "lease",
        "model",
        "num_ctx",
        "request",
        "sent_at",
        "ticket",
        "upstream",
    )

    def __init__(
        self,
        gateway: Gateway,
        request: Request,
        upstream: UpstreamResponse,
        lease: Lease,
        ticket: Ticket | None,
        sent_at: float,
        call: Call,
    ) -> None:
        self.gateway = gateway
        self.request = request
        self.upstream = upstream
        self.lease = lease
        self.ticket = ticket
        self.sent_at = sent_at
        # What the end needs of the call, not the call: its body and fields can be large.
        self.model = call.model_key
        self.num_ctx = call.num_ctx
        self.keep_alive = keep_alive_seconds(call.fields.get("keep_alive"))

    def __call__(self, outcome: RelayOutcome) -> None:
        gateway, request, upstream = self.gateway, self.request, self.upstream
        backend = self.lease.backend
        self.lease.release()
        if self.ticket is not None:
            self.ticket.finish(upstream, outcome)
        status = upstream.status
        model = self.model
        if outcome.error is not None:
            request.state["error"] = outcome.error
            backend.record_failure(outcome.error)
        elif not upstream.complete:
            status = 499
            gateway.services.metrics.cancelled("mid_answer")
        elif status == 200 and model is not None and _is_error_line(outcome.last_chunk):
            # The model runner failed after the answer began: a 200, then an error line.
            backend.record_failure("error line in stream")
        elif status == 200:
            # Service time, from sending to the last byte, without any model load: what a
            # request queued for this (now warm) backend will wait for.
            elapsed = time.perf_counter() - self.sent_at
            if model is not None:
                counts = final_counts(outcome.tail)
                backend.learn(model, counts.load_seconds, self.num_ctx, self.keep_alive)
                elapsed = max(0.0, elapsed - (counts.load_seconds or 0.0))
                self._count_generation(model, backend, request, outcome, counts)
            backend.record_success(elapsed)
        elif status < 500:
            # The backend is fine; the request was not (a 4xx is the client's mistake).
            backend.record_success()
        admission = request.state.get("admission")
        if admission is not None:  # what the request reserved from its limits
            admission.relayed(upstream.status, request.state)
        gateway.record(request, status, outcome.bytes_sent, outcome)

    def _count_generation(
        self,
        model: str,
        backend: Backend,
        request: Request,
        outcome: RelayOutcome,
        counts: Counts,
    ) -> None:
        state = request.state
        ttft = None
        if outcome.first_byte_at is not None:
            ttft = outcome.first_byte_at - state["started"]
        state["prompt_tokens"] = counts.prompt_tokens
        state["generated_tokens"] = counts.generated_tokens
        self.gateway.services.metrics.generation(
            model,
            backend.name,
            state.get("key_id") or "",
            ttft,
            counts.prompt_tokens,
            counts.generated_tokens,
            counts.tokens_per_second,
        )
