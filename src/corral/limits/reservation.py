"""What a generating request reserves from a token budget: an estimate of its prompt plus the
most it may generate, settled with the real counts when its answer ends. A request that names
no length limit gets one (``limits.max_tokens``) written into its body, so that no answer can
overshoot its reservation.

Example::

    call, reserve = reservation(call, max_tokens=2048)   # call.body may now set num_predict
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from corral.context import Call

# Where each generating endpoint takes its length limit.
LENGTH_FIELD = {
    "/api/generate": "num_predict",
    "/api/chat": "num_predict",
    "/v1/chat/completions": "max_tokens",
    "/v1/completions": "max_tokens",
    "/v1/responses": "max_output_tokens",
    "/v1/messages": "max_tokens",
}


def with_length(call: Call, tokens: int) -> Call:
    """``call`` with its length limit set to ``tokens``, body included."""
    field = LENGTH_FIELD[call.endpoint]
    fields = dict(call.fields)
    if field == "num_predict":
        options = fields.get("options")
        fields["options"] = {**(options if isinstance(options, dict) else {}), field: tokens}
    else:
        fields[field] = tokens
    return call._replace(body=orjson.dumps(fields), fields=fields)


def reservation(call: Call, max_tokens: int) -> tuple[Call, int]:
    """The tokens ``call`` reserves, and the call: with ``max_tokens`` as its length limit
    (body included) when it is a generating call that named none."""
    length: Any = 0  # not a generating call; else what the body asks, until checked
    field = LENGTH_FIELD.get(call.endpoint)
    if field is not None:
        fields = call.fields
        if field == "num_predict":
            options = fields.get("options")
            length = options.get(field) if type(options) is dict else None
        else:
            length = fields.get("max_completion_tokens", fields.get(field))
        # Ollama reads -1 (and -2) as "no limit"; ``type`` also turns away booleans.
        if type(length) is not int or length <= 0:
            length = max_tokens
            call = with_length(call, length)
    # The prompt: Ollama's tokens average about four bytes of text; a third of the body errs
    # high, and the reservation is settled with the real count anyway.
    return call, len(call.body) // 3 + 1 + length
