"""A small reader for protobuf text format (AMCT's .cfg files), into nested dicts of lists."""

from __future__ import annotations

import re

from ..errors import ConfigError

__all__ = ["parse_textproto"]

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
