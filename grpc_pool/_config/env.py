"""Reading configuration from text (environment variables): which fields have a
text form, and how a value is parsed."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from typing import Any, Union

from .._base.errors import InvalidConfig
from .._base.redact import redact_target
from .validate import _invalid

_TEXT_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _required(f: Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _split_top(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets, parts stripped."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _type_names(annotation: object) -> list[str]:
    """The names of the types an annotation allows: "int | None" -> ["int", "None"]."""
    if isinstance(annotation, str):  # the usual case: postponed annotations
        names: list[str] = []
        for part in _split_top(annotation, "|"):
            for wrapper in ("Optional[", "typing.Optional["):
                if part.startswith(wrapper) and part.endswith("]"):
                    names += [*_type_names(part[len(wrapper) : -1]), "None"]
                    break
            else:
                for wrapper in ("Union[", "typing.Union["):
                    if part.startswith(wrapper) and part.endswith("]"):
                        for inner in _split_top(part[len(wrapper) : -1], ","):
                            names += _type_names(inner)
                        break
                else:
                    names.append(part)
        return names
    if annotation is None or annotation is type(None):
        return ["None"]
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (Union, types.UnionType):
        return [name for arg in args for name in _type_names(arg)]
    return [getattr(annotation, "__name__", repr(annotation))]


def _env_kinds(f: Field[Any]) -> tuple[type, ...]:
    """The text-convertible types of a field, in the order to try; () if none.

    From the annotation, else the type of the default: a field added later is read
    from the environment without changes here.
    """
    names = _type_names(f.type)
    kinds = tuple(kind for name, kind in _TEXT_TYPES.items() if name in names)
    if not kinds and type(f.default) in _TEXT_TYPES.values() and "[" not in str(names):
        kinds = (type(f.default),)  # e.g. an alias: ``timeout: Seconds = 5.0``
    if kinds and "None" in names:
        kinds = (type(None), *kinds)  # an empty value means None, before "" as a str
    return kinds


def _from_text(variable: str, text: str, kinds: tuple[type, ...]) -> Any:
    """The value of ``variable`` as the first of ``kinds`` that parses it."""
    value = text.strip()
    for kind in kinds:
        if kind is type(None):
            if not value:
                return None
        elif kind is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
        elif kind is int:
            try:
                return int(value)
            except ValueError:
                pass
        elif kind is float:
            try:
                return float(value)
            except ValueError:
                pass
        else:
            return value
    raise _invalid(variable, text, " or ".join(_TEXT_FORMS[kind] for kind in kinds))


_TEXT_FORMS: dict[type, str] = {
    bool: "a bool: 1/0, true/false, yes/no, on/off (any case)",
    int: "an int such as 4",
    float: "a number such as 2.5",
    str: "any text",
    type(None): "an empty value (None)",
}


def config_from_mapping(cls: Any, settings: Mapping[str, Any]) -> Any:
    """``PoolConfig.from_mapping``: ``cls(**settings)`` with unknown and missing keys named."""
    if not isinstance(settings, Mapping):
        raise _invalid("settings", settings, "a mapping of PoolConfig field names to values")
    names = [f.name for f in fields(cls)]
    unknown = [key for key in settings if key not in names]
    if unknown:
        raise InvalidConfig(
            f"unknown key(s) {', '.join(map(repr, unknown))} in pool settings; "
            f"allowed: {', '.join(names)}"
        )
    missing = [f.name for f in fields(cls) if _required(f) and f.name not in settings]
    if missing:
        raise InvalidConfig(
            f"missing key(s) {', '.join(map(repr, missing))} in pool settings: "
            "expected a value for each required field (target: a non-empty str "
            "such as 'host:port')"
        )
    return cls(**settings)


def config_from_env(cls: Any, prefix: str, environ: Mapping[str, str] | None) -> Any:
    """``PoolConfig.from_env``: each readable field from ``<prefix><FIELD>``."""
    if not isinstance(prefix, str) or not prefix:
        raise _invalid("prefix", prefix, "a non-empty str such as 'GRPC_POOL_'")
    env: Mapping[str, str] = os.environ if environ is None else environ
    by_name = {f.name: f for f in fields(cls)}
    readable = {name: _env_kinds(f) for name, f in by_name.items()}
    variables = {prefix + name.upper(): name for name, kinds in readable.items() if kinds}
    for key in sorted(key for key in env if key.startswith(prefix) and key not in variables):
        name = key[len(prefix) :].lower()
        if name in by_name:
            raise InvalidConfig(
                f"{key}={env[key]!r} is not allowed: {name} has no text form; expected "
                f"{key} unset (set {name} in code: dataclasses.replace(config, {name}=...))"
            )
        raise InvalidConfig(f"unknown environment variable {key}; allowed: {', '.join(variables)}")
    values: dict[str, Any] = {}
    for variable, name in variables.items():
        if variable in env:
            values[name] = _from_text(variable, env[variable], readable[name])
        elif _required(by_name[name]):
            raise InvalidConfig(
                f"{variable} is not set: expected a value for the required field {name}"
            )
    try:
        return cls(**values)
    except InvalidConfig as error:
        # The constructor names the field: add which variable gave the value.
        message = str(error)
        for variable, name in variables.items():
            if name in values and message.startswith(f"{name}="):
                text = redact_target(env[variable]) if name == "target" else env[variable]
                raise InvalidConfig(f"{message} (from {variable}={text!r})") from error
        raise
