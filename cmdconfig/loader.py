"""Read ``key = value`` files and ``-o`` overrides into a typed, read-only config.

The format is deliberately tiny: one ``key = value`` a line, dotted keys,
``#`` comments (whole lines, or after whitespace at the end of a line) and
blank lines.  It is parsed, never executed.  Every value is checked against
the schema; an unknown key, a bad value, a key given twice in one file or a
missing required key is a ``ConfigError`` naming the key and ``file:line``
(or the command-line option that set it), so nothing is silently ignored.
"""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from cmdconfig.errors import ConfigError
from cmdconfig.schema import Schema
from cmdconfig.secrets import read_secret

__all__ = ["Config", "ConfigError", "load", "parse_lines"]

_TRAILING_COMMENT = re.compile(r"\s#.*$")

# An override is "KEY=VALUE" (from -o) or (key, value, origin).
Override = str | tuple[str, str] | tuple[str, str, str]


class Config(Mapping[str, Any]):
    """Typed values by key, with where each came from."""

    def __init__(self, values: dict[str, Any], origins: dict[str, str], path: str | None):
        self._values = values
        self._origins = origins
        self.path = path  # the file that was read, or None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def origin(self, key: str) -> str:
        """``file:line``, ``-o``, a long option, or ``default``."""
        return self._origins.get(key, "default")

    def error(self, key: str, why: str) -> ConfigError:
        """A ConfigError about ``key`` that says where the key was set."""
        return ConfigError(f"{self.origin(key)}: {key}: {why}")

    def secret(self, key: str) -> bytes | None:
        """Read the secret named by a ``secret`` key; None when the key is empty."""
        spec = self._values[key]
        if not spec:
            return None
        try:
            return read_secret(spec)
        except ConfigError as e:
            raise self.error(key, e.message) from None


def _unknown(schema: Schema, key: str) -> str:
    close = difflib.get_close_matches(key, list(schema.names()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def parse_lines(lines: Iterable[str], source: str) -> Iterator[tuple[str, str, str]]:
    """``(key, value, "source:line")`` for each setting in a file's lines."""
    for number, raw in enumerate(lines, 1):
        where = f"{source}:{number}"
        line = _TRAILING_COMMENT.sub("", raw.strip()).strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise ConfigError(f"{where}: expected 'key = value', got {line!r}")
        yield key, value.strip(), where


def _read_file(path: str, required: bool) -> list[str] | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().splitlines()
    except OSError as e:
        if e.errno == errno.ENOENT and not required:
            return None
        raise ConfigError(f"{path}: cannot read configuration file: {e.strerror}") from None


def _split_override(item: Override) -> tuple[str, str, str]:
    if isinstance(item, str):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-o {item}: expected KEY=VALUE")
        return key.strip(), value.strip(), "-o"
    if len(item) == 2:
        return item[0], item[1], "-o"
    return item


def load(
    schema: Schema,
    path: str | None,
    overrides: Iterable[Override] = (),
    *,
    required_file: bool = False,
    required: Collection[str] | None = None,
) -> Config:
    """Defaults, then the file at ``path``, then each override in order.

    A missing file is an error only when ``required_file`` (given with -c).
    ``required`` names the keys without a default that must be given (None:
    all of them), for a mode that needs fewer (``fs_mirror --status``); a
    key left out then is absent from the Config.
    """
    settings: list[tuple[str, str, str]] = []
    lines = _read_file(path, required_file) if path else None
    read_path = path if lines is not None else None
    if lines is not None:
        seen: dict[str, str] = {}
        for key, value, where in parse_lines(lines, str(path)):
            if key in seen and key in schema:
                raise ConfigError(f"{where}: key {key!r} given twice (first at {seen[key]})")
            seen[key] = where
            settings.append((key, value, where))
    settings.extend(_split_override(item) for item in overrides)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for spec in schema:
        if spec.default is not None:
            values[spec.name] = spec.parse(spec.default)
    for name, text, where in settings:
        if name not in schema:
            raise ConfigError(f"{where}: {_unknown(schema, name)}")
        try:
            values[name] = schema[name].parse(text)
        except ValueError as e:
            raise ConfigError(f"{where}: bad value for {name!r}: {e}") from None
        origins[name] = where
    for spec in schema:
        if spec.name not in values and (required is None or spec.name in required):
            where = f"in {read_path} " if read_path else "in the file given with -c "
            raise ConfigError(
                f"{read_path or 'configuration'}: missing required key {spec.name!r}"
                f" (set it {where}or with -o {spec.name}=VALUE)"
            )
    config = Config(values, origins, read_path)
    for check in schema.checks:
        check(config)
    return config
