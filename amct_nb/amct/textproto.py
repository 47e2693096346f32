"""A small reader for protobuf text format (AMCT's .cfg files), into nested dicts of lists."""

from __future__ import annotations

import re

from ..config import unknown_key
from ..errors import ConfigError

__all__ = ["parse_textproto", "check_fields"]

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:<>\[\],;]|[^\s{}:<>\[\],;"\']+')


def _value(tok: str):
    if tok[:1] in "\"'":
        return tok[1:-1]
    low = tok.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok  # enum identifier


def parse_textproto(text: str, where: str = "config") -> dict:
    """``key: value`` and ``key { ... }`` pairs; every key maps to a list of its values."""
    tokens = _TOKEN.findall(re.sub(r"#[^\n]*", "", text))
    pos = 0

    def block(end):
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos >= len(tokens):
                raise ConfigError(f"{where}: '{key}' has no value: the file is truncated")
            if tokens[pos] in ("{", "<"):
                close = "}" if tokens[pos] == "{" else ">"
                pos += 1
                val = block(close)
                if pos >= len(tokens):
                    raise ConfigError(f"{where}: '{key} {{' is never closed")
                pos += 1
            elif tokens[pos] == "[":
                pos += 1
                val = []
                while pos < len(tokens) and tokens[pos] != "]":
                    if tokens[pos] != ",":
                        val.append(_value(tokens[pos]))
                    pos += 1
                pos += 1
                out.setdefault(key, []).extend(val)
                continue
            else:
                val = _value(tokens[pos])
                pos += 1
            out.setdefault(key, []).append(val)
            if pos < len(tokens) and tokens[pos] in (",", ";"):
                pos += 1
        return out

    result = block(None)
    if pos < len(tokens):
        raise ConfigError(f"{where}: unexpected '{tokens[pos]}'")
    return result


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string or an enum name"}


def _fits(v, kind) -> bool:
    if kind is bool:
        return isinstance(v, bool) or v in (0, 1)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind) and not (kind is int and isinstance(v, bool))


def check_fields(block: dict, schema: dict, where: str) -> None:
    """Refuse what a protobuf parser refuses: a field ``schema`` does not have (naming a close match and the
    fields accepted there), a block where a value belongs, a value of the wrong kind. ``schema`` maps each
    field to a nested schema (a block), ``...`` (a block whose content is not looked at) or a type."""
    for key, values in block.items():
        if key not in schema:
            raise unknown_key(key, schema, where, "field")
        kind = schema[key]
        for v in values:
            if isinstance(kind, dict) or kind is ...:
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: {key} is a block: write {key} {{ ... }}")
                label = next((f"{key} '{v[k][-1]}'" for k in ("layer_name", "layer_type") if v.get(k)), key)
                if kind is not ...:
                    check_fields(v, kind, f"{where}: {label}")
            elif isinstance(v, dict):
                raise ConfigError(f"{where}: {key} takes a value ({_KINDS[kind]}), not a block")
            elif not _fits(v, kind):
                raise ConfigError(f"{where}: {key} {v!r} must be {_KINDS[kind]}")
