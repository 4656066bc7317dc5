"""Request bodies of the simulated API: JSON parsing, typed field access, and the errors raised.

The status lives on the error class; each API surface renders the message in its own shape
(native ``{"error": "..."}``, OpenAI's error object, Anthropic's error event)::

    ApiError            500
     +-- BadRequest     400  invalid JSON, missing or mistyped field
     +-- NotFound       404  unknown model or blob
     +-- NotAllowed     405  known path, wrong method

Example::

    body = parse_body(b'{"model": "llama3.2", "stream": false}')
    require_model(body)            # "llama3.2"
    get_bool(body, "stream", True)  # False
"""

from __future__ import annotations

from typing import Any

import orjson


class ApiError(Exception):
    """An answer the simulated Ollama gives on purpose, with the status on the class."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class NotAllowed(ApiError):
    status = 405


def model_not_found(name: str) -> NotFound:
    """Ollama's wording on the inference endpoints (generate, chat, embed)."""
    return NotFound(f'model "{name}" not found, try pulling it first')


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object, or ``BadRequest`` in Ollama's words."""
    if not body or body.isspace():
        raise BadRequest("missing request body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"invalid JSON: {err}") from err
    if not isinstance(data, dict):
        raise BadRequest(f"json: cannot unmarshal {_json_type(data)} into a request object")
    return data


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise BadRequest("model is required")
    if not isinstance(model, str):
        raise _mistyped("model", model, "string")
    return model


def get_str(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _mistyped(key, value, "string")
    return value


def get_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _mistyped(key, value, "bool")
    return value


def get_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    # JSON has one number type; a float with no fraction is an int to Go's decoder too.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mistyped(key, value, "int")
    return value


def get_dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _mistyped(key, value, "object")
    return value


def get_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _mistyped(key, value, "array")
    return value


def _mistyped(key: str, value: object, expected: str) -> BadRequest:
    return BadRequest(
        f"json: cannot unmarshal {_json_type(value)} into field {key} of type {expected}"
    )


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
