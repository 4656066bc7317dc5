"""``/api/pull``, ``/api/push`` and ``/api/create``: progress streams that change the catalogue.

Progress lines follow Ollama's wording ("pulling manifest", "pulling <digest>", "verifying sha256
digest", "writing manifest", "success"); layer progress climbs in a few steps. A streamed pull
installs the model when it reaches "writing manifest", so a client that leaves earlier installs
nothing; ``"stream": false`` does the work and answers ``{"status": "success"}``.

Example::

    response = await pull(state, request)    # NDJSON progress, then the model is listed
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson

from corral.http.messages import Request, Response, StreamResponse
from corral.testing.models import ModelInfo, canonical_name
from corral.testing.native_api import NDJSON_HEADERS
from corral.testing.payload import (
    BadRequest,
    NotFound,
    get_bool,
    get_dict,
    get_str,
    parse_body,
)
from corral.testing.state import SimState

Step = dict[str, Any]
_STEPS = 3
_QUANTIZATIONS = {"q4_k_m": "Q4_K_M", "q4_k_s": "Q4_K_S", "q8_0": "Q8_0"}


def layers(info: ModelInfo) -> list[tuple[str, int]]:
    """(digest hex, size) of the model's blobs: weights, template, parameters."""
    sizes = (info.size, 1429 + len(info.template), 96)
    return [
        (hashlib.sha256(f"{info.digest}/{i}".encode()).hexdigest(), size)
        for i, size in enumerate(sizes)
    ]


def _progress(verb: str, digest: str, total: int) -> Iterable[Step]:
    for step in range(_STEPS + 1):
        yield {
            "status": f"{verb} {digest[:12]}",
            "digest": f"sha256:{digest}",
            "total": total,
            "completed": total * step // _STEPS,
        }


def pull_steps(info: ModelInfo) -> list[Step]:
    steps: list[Step] = [{"status": "pulling manifest"}]
    for digest, size in layers(info):
        steps.extend(_progress("pulling", digest, size))
    steps += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
    return steps


def push_steps(info: ModelInfo) -> list[Step]:
    steps: list[Step] = [{"status": "retrieving manifest"}]
    for digest, size in layers(info):
        steps.append({"status": "starting upload", "digest": f"sha256:{digest}", "total": size})
        steps.extend(_progress("pushing", digest, size))
    steps.append({"status": "pushing manifest"})
    return steps


def _respond(
    stream: bool, steps: list[Step], install: Callable[[], object], install_at: str
) -> Response:
    """Answer with progress lines (installing when ``install_at`` is reached) or one success."""
    if not stream:
        install()
        return Response.json(200, {"status": "success"})

    async def lines() -> AsyncIterator[bytes]:
        for step in steps:
            if step["status"] == install_at:
                install()
            yield orjson.dumps(step) + b"\n"
        yield b'{"status":"success"}\n'

    return StreamResponse(200, lines(), list(NDJSON_HEADERS))


async def pull(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    name = get_str(body, "model") or get_str(body, "name")
    if not name:
        raise BadRequest("model is required")
    get_bool(body, "insecure", False)
    catalogue, new_digest = state.catalogue, state.repull_changes_digest
    # Progress shows the digest the pull will install, before installing it.
    preview = catalogue.planned_pull(name, now=time.time(), new_digest=new_digest)

    def install() -> ModelInfo:
        return catalogue.pull(name, now=time.time(), new_digest=new_digest)

    return _respond(
        get_bool(body, "stream", True), pull_steps(preview), install, "writing manifest"
    )


async def push(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    name = get_str(body, "model") or get_str(body, "name")
    if not name:
        raise BadRequest("model is required")
    get_bool(body, "insecure", False)
    info = state.catalogue.get(name)
    if info is None:
        raise NotFound(f'model "{name}" not found')
    return _respond(get_bool(body, "stream", True), push_steps(info), lambda: None, "")


async def create(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    name = get_str(body, "model") or get_str(body, "name")
    if not name:
        raise BadRequest("model is required")
    source, files = get_str(body, "from"), get_dict(body, "files")
    system, template = get_str(body, "system"), get_str(body, "template")
    parameters = get_dict(body, "parameters")
    quantize = get_str(body, "quantize")
    license_value = body.get("license")
    license_text = (
        "\n".join(license_value)
        if isinstance(license_value, list)
        else (license_value if isinstance(license_value, str) else "")
    )
    quant = _QUANTIZATIONS.get(quantize.lower()) if quantize else None
    if quantize and quant is None:
        raise BadRequest(f"unsupported quantization type {quantize}")
    catalogue = state.catalogue
    steps: list[Step]
    if source:
        base = catalogue.get(source)
        if base is None:
            raise NotFound(f'model "{source}" not found')
        steps = [{"status": "reading model metadata"}]
        if quant is not None:
            total = base.size * 3
            steps.extend(
                {
                    "status": f"quantizing F16 model to {quant}",
                    "digest": "0",
                    "total": total,
                    "completed": total * i // _STEPS,
                }
                for i in range(1, _STEPS + 1)
            )
            steps.append({"status": "verifying conversion"})
        if system:
            steps.append({"status": "creating system layer"})
        steps += [{"status": f"using already created layer sha256:{d}"} for d, _ in layers(base)]
    elif files:
        base = None
        steps = [{"status": "parsing GGUF"}]
        for filename, digest in files.items():
            hexdigest = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
            if hexdigest not in catalogue.blobs:
                raise BadRequest(f"file {filename} not found: blob {digest} does not exist")
            steps.append({"status": f"using existing layer sha256:{hexdigest}"})
    else:
        raise BadRequest("neither 'from' or 'files' was specified")
    config = orjson.dumps(
        [canonical_name(name), source, files, system, template, parameters, quant],
        option=orjson.OPT_SORT_KEYS,
    )
    digest = hashlib.sha256(config).hexdigest()
    steps += [{"status": f"writing layer sha256:{digest}"}, {"status": "writing manifest"}]
    fields: dict[str, Any] = {
        "digest": digest,
        "system": system,
        "parameters": parameters,
        "license": license_text,
    }
    if base is not None:
        fields.update(
            profile=base.profile,
            parent_model=base.name,
            quantization_level=quant or base.quantization_level,
            system=system or base.system,
            parameters=parameters or base.parameters,
        )
    if template or base is not None:
        fields["template"] = template or (base.template if base is not None else "")

    def install() -> ModelInfo:
        return catalogue.add(name, now=time.time(), **fields)

    return _respond(get_bool(body, "stream", True), steps, install, "writing manifest")
