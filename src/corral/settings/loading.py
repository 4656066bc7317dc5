"""Settings from every source, lowest to highest: defaults, a TOML file (or seed 001's
``config.json``), ``.env``, the environment, command-line flags; and one clear line per problem.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, get_args, get_origin

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from corral import compat
from corral.settings.model import (
    ENV_PREFIX,
    NESTED_DELIMITER,
    Settings,
    SettingsError,
)

logger = logging.getLogger("corral.settings")


# -- loading -------------------------------------------------------------------------------------

Key = tuple[str, ...]


class Origin(NamedTuple):
    """Where a raw value came from, spelled as its source spells it."""

    name: str  # "CORRAL_PORT", "port", "--port", "GATEWAY_BACKENDS", "gatewayAddress"
    where: str = ""  # the file, if any: "config.toml", ".env"
    exact: bool = False  # files name the exact item inside the value: backends[0].url

    def describe(self, rest: tuple[str | int, ...]) -> str:
        name = self.name + _spell(rest) if self.exact else self.name
        return f"{name} ({self.where})" if self.where else name


Layer = dict[Key, tuple[object, Origin]]


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    dotenv_path: Path | None = Path(".env"),
    cli_overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read every source, validate once, and return the effective settings.

    ``cli_overrides`` are keyed by field name (``"port"``, or ``"auth.required"`` for a section);
    ``None`` values mean "flag not given". Raises :class:`SettingsError`.
    """
    merged: Layer = {}
    if config_file is not None:
        merged.update(_config_file_layer(config_file))
    merged.update(_environment_layer(os.environ if env is None else env, dotenv_path))
    for name, value in (cli_overrides or {}).items():
        if value is not None:
            key = tuple(compat.FLAG_ALIASES.get(name, name).split("."))
            merged[key] = (value, Origin("--" + re.sub(r"[._]", "-", name)))
    try:
        return Settings.model_validate(_nest(merged))
    except ValidationError as exc:
        raise SettingsError([_describe(error, merged) for error in exc.errors()]) from exc


def _config_file_layer(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        return _seed001_layer(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    layer: Layer = {}
    _flatten(data, (), layer, path.name)
    return layer


def _flatten(table: Mapping[str, Any], prefix: Key, layer: Layer, where: str) -> None:
    for name, value in table.items():
        key = (*prefix, name)
        if isinstance(value, dict) and _section_at(key) is not None:
            _flatten(value, key, layer, where)
        else:
            layer[key] = (value, Origin(".".join(key), where, exact=True))


def _seed001_layer(text: str, path: Path) -> Layer:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object of settings")
    found = compat.from_seed001_config(data)
    if found.unknown:
        raise SettingsError([f"{name} ({path.name}): unknown setting" for name in found.unknown])
    for name in found.ignored:
        logger.warning("%s (%s) is not supported by corral yet; ignored", name, path.name)
    return {m.key: (m.value, Origin(m.name, path.name, exact=True)) for m in found.mapped}


def _environment_layer(environ: Mapping[str, str], dotenv_path: Path | None) -> Layer:
    # Merged by name first: a real environment variable beats the same name in .env, and a
    # CORRAL_* name beats a seed alias wherever each of them was set.
    variables: dict[str, tuple[str, str]] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        for name, value in dotenv_values(dotenv_path).items():
            if value is not None:
                variables[name] = (value, dotenv_path.name)
    variables.update((name, (value, "")) for name, value in environ.items())
    layer: Layer = {}
    for found in compat.from_environment({name: value for name, (value, _) in variables.items()}):
        layer[found.key] = (found.value, Origin(found.name, variables[found.name][1]))
    for name, (value, where) in variables.items():
        if name.startswith(ENV_PREFIX):
            key = tuple(name[len(ENV_PREFIX) :].lower().split(NESTED_DELIMITER))
            if _section_at(key[:-1]) is not None and _field_at(key) is not None:
                layer[key] = (value, Origin(name, where))
    return layer


def _nest(layer: Layer) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, (value, _) in layer.items():
        node = root
        for name in key[:-1]:
            child = node.get(name)
            node = child if isinstance(child, dict) else node.setdefault(name, {})
        node[key[-1]] = value
    return root


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _field_at(loc: Sequence[str | int]) -> FieldInfo | None:
    """The field a validation error location points at, looking through lists and sections."""
    model: type[BaseModel] | None = Settings
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _inner_model(field.annotation)
    return field


def _section_at(key: Key) -> type[BaseModel] | None:
    """The settings section (a model, not a list of them) at ``key``; ``()`` is Settings."""
    field = _field_at(key)
    if not key:
        return Settings
    if field is None or get_origin(field.annotation) is list:
        return None
    return _inner_model(field.annotation)


# -- one clear line per problem -----------------------------------------------------------------

_NUMBER_ERRORS = frozenset({
    "int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "finite_number",
    "greater_than", "greater_than_equal", "less_than", "less_than_equal",
})  # fmt: skip
_PLAIN_PROBLEMS = {
    "missing": "is required",
    "extra_forbidden": "unknown setting",
    "too_short": "must not be empty",
    "bool_parsing": "must be true or false",
}


def _describe(error: ErrorDetails, layer: Layer) -> str:
    loc = error["loc"]
    where = _spell(loc).lstrip(".") or "settings"
    for size in range(len(loc), 0, -1):
        key = tuple(part for part in loc[:size] if isinstance(part, str))
        if len(key) == size and key in layer:
            where = layer[key][1].describe(loc[size:])
            break
    problem, value = _problem(error), error["input"]
    field = _field_at(loc)
    secret = field is not None and SecretStr in (field.annotation, *get_args(field.annotation))
    if error["type"] != "extra_forbidden" and isinstance(value, str | int | float) and not secret:
        problem += f", got {value!r}"
    return f"{where}: {problem}"


def _problem(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    field = _field_at(error["loc"])
    if kind in _NUMBER_ERRORS and field is not None:
        return "must be " + _expected_number(field)
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    return _PLAIN_PROBLEMS.get(kind) or error["msg"][:1].lower() + error["msg"][1:]


def _expected_number(field: FieldInfo) -> str:
    kind = "an integer" if int in (field.annotation, *get_args(field.annotation)) else "a number"
    bounds = {
        name: getattr(rule, name)
        for rule in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(rule, name, None) is not None
    }
    if "ge" in bounds and "le" in bounds:
        return f"{kind} between {bounds['ge']} and {bounds['le']}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " ".join([kind, *(f"{signs[name]} {bound}" for name, bound in bounds.items())])


def _spell(loc: Sequence[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
