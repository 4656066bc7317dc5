"""What a simulated model says: deterministic text, thinking, JSON output, tool calls, logprobs.

Every API surface reduces its request to a :class:`Prompt`; :func:`plan` turns it into a
:class:`Plan` (the pieces to stream and the token counts), with no clock involved. The same
prompt always gives the same answer: the words come from a fixed sequence, entered at an offset
derived from a CRC of the model and the prompt (and ``seed`` when given).

Lengths: plain text has the simulator's natural length and ends with ``done_reason`` "stop",
as a model that reaches its end of text. A requested limit (``num_predict``, OpenAI's
``max_tokens``, Anthropic's ``max_tokens``) only shortens it, ending it with "length", as in
Ollama. With ``exact_limits`` (a simulator started with ``exact_lengths``) a limit sets the length
of plain text exactly instead, so a benchmark controls its load. JSON output and tool calls have
their own length, which a limit can only cut.

Example::

    p = plan("llama3.2", Prompt(text="Why is the sky blue?", words=5), natural=24)
    "".join(p.content)      # same text on every run
    p.done_reason, p.eval_count   # ("stop", 24)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.testing.payload import BadRequest

_WORDS = (
    *("the", "sky", "is", "blue", "because", "light", "scatters", "in", "air", "and"),
    *("shorter", "waves", "bend", "more", "than", "red", "ones", "so", "we", "see", "a"),
    *("bright", "dome", "of", "color", "above", "us", "during", "day", "while", "sunsets"),
    *("glow", "orange", "as", "beams", "travel", "through", "thicker", "layers", "near"),
    *("horizon", "where", "dust", "and", "water", "add", "warm", "tones"),
)
_SEQUENCE_LENGTH = 4096


def _word_sequence() -> tuple[str, ...]:
    words, state = [], 0x2545F491
    for _ in range(_SEQUENCE_LENGTH):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        words.append(" " + _WORDS[(state >> 16) % len(_WORDS)])
    return tuple(words * 2)  # doubled, so any window is one slice


_SEQUENCE = _word_sequence()
_THINK_TOKENS = {"low": 8, "medium": 16, "high": 32, "max": 48}
_PIECE = re.compile(r"\s*\S+")


@dataclass(slots=True)
class Prompt:
    """A request as the simulated model sees it, whatever API it came through."""

    text: str
    words: int
    last_user: str = ""
    seed: int | None = None
    limit: int | None = None
    cap: int | None = None
    format: object = None
    think: object = None
    tools: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Plan:
    """The answer to stream: thinking pieces, then content pieces, then tool calls."""

    content: list[str]
    thinking: list[str]
    tool_calls: list[ToolCall]
    done_reason: str
    prompt_eval_count: int
    seed: int
    tool_tokens: int = 0

    @property
    def eval_count(self) -> int:
        return len(self.thinking) + len(self.content) + self.tool_tokens

    @property
    def text(self) -> str:
        return "".join(self.content)


def count_words(text: str) -> int:
    return len(text.split())


def prompt_seed(model: str, text: str, seed: int | None) -> int:
    value = zlib.crc32(text.encode(), zlib.crc32(model.encode()))
    if seed is not None:
        value = zlib.crc32(seed.to_bytes(16, "little", signed=True), value)
    return value


def words(seed: int, count: int) -> list[str]:
    """``count`` word tokens; the first is capitalised and has no leading space."""
    if count <= 0:
        return []
    start = seed % _SEQUENCE_LENGTH
    if count <= _SEQUENCE_LENGTH:
        out = list(_SEQUENCE[start : start + count])
    else:
        out = [_SEQUENCE[(start + i) % _SEQUENCE_LENGTH] for i in range(count)]
    out[0] = out[0][1:].capitalize()
    return out


def plan(model: str, prompt: Prompt, natural: int, *, exact_limits: bool = False) -> Plan:
    """The answer to ``prompt``: ``natural`` tokens of text, shortened by the prompt's limit
    (or, with ``exact_limits``, exactly as long as its ``num_predict``/``max_tokens``)."""
    seed = prompt_seed(model, prompt.text, prompt.seed)
    budget = prompt.limit if prompt.limit is not None else prompt.cap
    thinking = words(seed >> 7, think_tokens(prompt.think))
    if budget is not None:
        thinking = thinking[:budget]
        budget -= len(thinking)
    calls = tool_calls(prompt.tools, prompt.last_user, seed)
    if calls:
        tokens = sum(4 + len(c.arguments) for c in calls)
        return Plan([], thinking, calls, "stop", max(1, prompt.words), seed, tokens)
    if prompt.format is not None:
        content = _PIECE.findall(json_document(prompt.format, seed))
        exact = False
    else:
        exact = exact_limits and prompt.limit is not None
        content = words(seed, budget if exact and budget is not None else natural)
    reason = "length" if exact else "stop"
    if budget is not None and len(content) > budget:
        content, reason = content[:budget], "length"
    if reason == "stop" and content and prompt.format is None:
        content[-1] += "."
    return Plan(content, thinking, [], reason, max(1, prompt.words), seed)


def think_tokens(think: object) -> int:
    if think is None or think is False:
        return 0
    if think is True:
        return _THINK_TOKENS["medium"]
    if isinstance(think, str) and think in _THINK_TOKENS:
        return _THINK_TOKENS[think]
    if think in ("none", ""):
        return 0
    raise BadRequest(
        f'invalid think value: "{think}" (must be "high", "medium", "low", true, or false)'
    )


def check_format(fmt: object) -> object:
    """``format`` as Ollama accepts it: absent, ``""``, ``"json"`` or a JSON schema object."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    raise BadRequest('invalid format: expected "json" or a valid JSON schema')


def json_document(fmt: object, seed: int) -> str:
    """A small JSON text that satisfies ``fmt`` ("json" or a schema), indented like a model's."""
    value = _value_for(fmt if isinstance(fmt, dict) else {}, seed, depth=0)
    if not isinstance(value, dict) or not value:
        value = {"answer": "".join(words(seed, 4)).strip()}
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _value_for(schema: dict[str, Any], seed: int, depth: int) -> Any:
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return schema["enum"][seed % len(schema["enum"])]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict) or depth > 4:
            return {}
        return {
            str(name): _value_for(sub if isinstance(sub, dict) else {}, seed + i * 31, depth + 1)
            for i, (name, sub) in enumerate(props.items())
        }
    if kind == "array":
        items = schema.get("items")
        return [_value_for(items if isinstance(items, dict) else {}, seed, depth + 1)]
    if kind == "integer":
        return seed % 100
    if kind == "number":
        return (seed % 1000) / 10
    if kind == "boolean":
        return bool(seed & 1)
    if kind == "null":
        return None
    return "".join(words(seed, 2)).strip()


def tool_calls(tools: list[Any], last_user: str, seed: int) -> list[ToolCall]:
    """One call to the first tool whose name the user's last message mentions."""
    if not tools or not last_user:
        return []
    said = last_user.lower()
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        spec: dict[str, Any] = function if isinstance(function, dict) else tool
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            continue
        if name.lower() in said or name.lower().replace("_", " ") in said:
            schema = spec.get("parameters") or spec.get("input_schema") or {}
            arguments = _arguments(schema if isinstance(schema, dict) else {}, last_user, seed)
            return [ToolCall(f"call_{seed:08x}", name, arguments)]
    return []


def _arguments(schema: dict[str, Any], said: str, seed: int) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    subject = [w.strip("?!.,;:'\"") for w in said.split()]
    word = next((w for w in reversed(subject) if w.isalpha()), "example").capitalize()
    out: dict[str, Any] = {}
    for name, sub in props.items():
        sub = sub if isinstance(sub, dict) else {}
        if sub.get("type", "string") == "string" and "enum" not in sub:
            out[str(name)] = word
        else:
            out[str(name)] = _value_for(sub, seed, depth=1)
    return out


def logprob(token: str, top: int) -> dict[str, Any]:
    """A deterministic log-probability entry for one token, with ``top`` alternatives."""
    value = -(zlib.crc32(token.encode()) % 2000) / 1000.0
    entry: dict[str, Any] = {"token": token, "logprob": value}
    if top > 0:
        alternatives = [{"token": token, "logprob": value}]
        alternatives += [
            {"token": _WORDS[(len(token) + i) % len(_WORDS)], "logprob": value - 1.0 - i}
            for i in range(top - 1)
        ]
        entry["top_logprobs"] = alternatives
    return entry


def context_tokens(seed: int, count: int) -> list[int]:
    """Token ids standing for the conversation, returned as ``context`` by /api/generate."""
    return [(seed + i * 2654435761) % 128000 for i in range(count)]
