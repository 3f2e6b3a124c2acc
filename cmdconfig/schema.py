"""Configuration keys: name, kind, default and one line of help.

A schema is the single list of keys a command accepts, so the file loader,
``-o`` overrides, ``--help`` and the documented example files all agree.
Each kind turns the text of a value into a typed value or raises
``ValueError`` with a short reason; the loader adds the key and file:line.
Defaults are written as text and parsed like any other value, so a bad
default fails when the schema is built, not when a user trips on it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmdconfig.loader import Config

REQUIRED = None  # default of a key that has no default

_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


def _parse_int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected seconds (e.g. 30, 0.5, 5m, 1h), got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parse_share(text: str) -> float:
    """A share of something, written ``10%`` (or ``10``): returned as 0.1."""
    number = text[:-1] if text.endswith("%") else text
    try:
        share = float(number) / 100
    except ValueError:
        raise ValueError(f"expected a percentage (e.g. 10%), got {text!r}") from None
    if not 0 <= share <= 1:
        raise ValueError(f"expected a percentage from 0% to 100%, got {text!r}")
    return share


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_secret(text: str) -> str:
    if text == "":
        return ""
    file, _, ident = text.rpartition(":")
    if not file or not ident or any(c.isspace() for c in ident):
        raise ValueError(f"expected FILE:ID, got {text!r}")
    return text


def _parse_time(text: str) -> str:
    if text == "":
        return ""
    match = _CLOCK.match(text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"expected HH:MM (00:00 to 23:59), got {text!r}")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _parse_path(text: str) -> str:
    # Made absolute now: --daemon changes directory to / before the command runs.
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL byte")
    return os.path.abspath(text) if text else ""


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": _parse_int,
    "port": _parse_int,
    "bool": _parse_bool,
    "path": _parse_path,
    "list": _parse_list,
    "choice": str,
    "secret": _parse_secret,
    "duration": _parse_duration,
    "time": _parse_time,
    "share": _parse_share,
}
KINDS = frozenset(_PARSERS)


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``default`` is the text of the default value (``REQUIRED``/None: the
    key must be given).  ``minimum``/``maximum`` bound ``int``, ``port``
    and ``duration`` values; ``choices`` lists the values of a ``choice``.
    """

    name: str
    kind: str
    default: str | None
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"key {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise TypeError(f"key {self.name!r}: a choice needs choices")
        if self.kind == "port":
            object.__setattr__(self, "minimum", 1 if self.minimum is None else self.minimum)
            object.__setattr__(self, "maximum", 65535 if self.maximum is None else self.maximum)
        if self.default is not None:
            self.parse(self.default)

    @property
    def required(self) -> bool:
        return self.default is None

    def parse(self, text: str) -> Any:
        """Typed value of ``text``; ``ValueError`` says what is wrong."""
        value = _PARSERS[self.kind](text)
        if self.kind == "choice" and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {text!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {_num(self.minimum)}, got {text!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {_num(self.maximum)}, got {text!r}")
        return value

    def metavar(self) -> str:
        if self.kind == "choice":
            return "|".join(self.choices)
        return {"secret": "FILE:ID", "time": "HH:MM", "duration": "SECONDS"}.get(
            self.kind, self.kind.upper()
        )

    def describe_default(self) -> str:
        if self.default is None:
            return "(required)"
        return self.default if self.default != "" else "(empty)"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# A check sees the whole loaded config and raises ``config.error(key, why)``.
Check = Callable[["Config"], None]


@dataclass(frozen=True)
class Schema:
    """The keys of one command, in the order ``--help`` shows them."""

    keys: Sequence[Key]
    checks: Sequence[Check] = ()
    _by_name: dict[str, Key] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Key] = {}
        for key in self.keys:
            if key.name in by_name:
                raise TypeError(f"key {key.name!r} defined twice")
            by_name[key.name] = key
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Key:
        return self._by_name[name]

    def names(self) -> Iterable[str]:
        return self._by_name.keys()

    def help_text(self, aliases: dict[str, str] | None = None) -> str:
        """The key list for ``--help``: ``key = default`` then the help."""
        also = {key: opt for opt, key in (aliases or {}).items()}
        lines = ["configuration keys (in the file as 'key = value', or -o key=value):"]
        for key in self.keys:
            extra = f" (also {also[key.name]})" if key.name in also else ""
            lines.append(f"  {key.name} = {key.describe_default()}")
            lines.append(f"      {key.help}{extra}")
        return "\n".join(lines)


def daemon_keys() -> list[Key]:
    """The keys both daemons share: where their log goes, how much, how often progress."""
    return [
        Key(
            "log.file",
            "path",
            "",
            "append the log to this file instead of stderr; reopened on SIGHUP, so it can"
            " be rotated (empty = stderr)",
        ),
        Key(
            "log.verbose",
            "int",
            "0",
            "more log output, as that many -v on top of the command line's (re-read on SIGHUP)",
            minimum=0,
            maximum=2,
        ),
        Key(
            "progress.interval",
            "duration",
            "5",
            "seconds between progress lines (and systemd STATUS= updates) during a boot"
            " scan or a full sync",
            minimum=0.01,
        ),
    ]
