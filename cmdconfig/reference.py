"""The configuration reference and the manual pages, made from the code.

Every key a command accepts is declared once, in its schema, and every
option once, in its argparse parser; the documents are rendered from those
so they cannot drift.  ``markdown`` and ``roff`` are pure (values in, text
out); ``main`` writes or checks the files::

    python -m cmdconfig.reference --write docs/   # after adding a key or option
    python -m cmdconfig.reference --check docs/   # what the test runs

A command's page (``Manual``) holds what no parser knows: its synopsis,
description, signals and files.  cmdconfig imports nothing of ours, so the
commands are named in ``MANUALS`` as module paths, like the console scripts
in pyproject.toml, and imported only when the documents are made.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cmdconfig.exits import MEANINGS
from cmdconfig.schema import Key, Schema
from cmdconfig.version import __version__

__all__ = ["MANUALS", "Manual", "Option", "documents", "markdown", "options", "roff"]

#: Where each command's ``MANUAL`` lives (one per console script).
MANUALS = ("mirrord.manual", "fs_mirror.manual", "fs_info.manual")
REGENERATE = "python -m cmdconfig.reference --write docs/"


@dataclass(frozen=True)
class Manual:
    """The prose of one command's page; options and keys come from ``parser()``."""

    name: str
    summary: str
    synopsis: tuple[str, ...]
    description: tuple[str, ...]
    signals: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...]
    parser: Callable[[], argparse.ArgumentParser]
    see_also: tuple[str, ...] = ()  # "fs_info(1)", "rsyncd.conf(5)"


@dataclass(frozen=True)
class Option:
    """One command-line option as ``--help`` shows it."""

    invocation: str
    help: str


def _invocation(action: argparse.Action) -> str:
    """``-c, --config FILE``, spelt here: argparse's own spelling changed in Python 3.13."""
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if not action.option_strings:
        return metavar
    names = ", ".join(action.option_strings)
    args = {
        0: "",
        None: metavar,
        "?": f"[{metavar}]",
        "*": f"[{metavar} ...]",
        "+": f"{metavar} [{metavar} ...]",
    }.get(
        action.nargs,
        " ".join([metavar] * action.nargs) if isinstance(action.nargs, int) else metavar,
    )
    return f"{names} {args}" if args else names


def options(parser: argparse.ArgumentParser) -> list[Option]:
    """The parser's options (and positionals) in its order, ``-h`` first."""
    found = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        text = (action.help or "").replace("%(default)s", str(action.default))
        found.append(Option(_invocation(action), text))
    return found


def aliases(parser: argparse.ArgumentParser) -> dict[str, str]:
    """key -> the long option that sets it (``datadir`` -> ``--datadir``)."""
    found = {}
    for action in parser._actions:
        key = getattr(action, "key", None)  # cmdconfig.cli's -o aliases carry their key
        if isinstance(key, str) and action.option_strings:
            found[key] = action.option_strings[0]
    return found


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def kind_text(key: Key) -> str:
    """The kind of value a key takes, in words, with its bounds."""
    words = {
        "str": "text",
        "int": "integer",
        "port": "port",
        "bool": "yes or no",
        "path": "path",
        "list": "comma-separated list",
        "secret": "FILE:ID",
        "duration": "seconds",
        "time": "HH:MM",
        "share": "percentage (10%)",
    }
    if key.kind == "choice":
        return "one of " + ", ".join(key.choices)
    text = words[key.kind]
    low, high = key.minimum, key.maximum
    if low is not None and high is not None:
        text += f", {_number(low)} to {_number(high)}"
    elif low is not None:
        text += f", at least {_number(low)}"
    elif high is not None:
        text += f", at most {_number(high)}"
    return text


# -- markdown ---------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _md_page(manual: Manual) -> Iterator[str]:
    parser = manual.parser()
    schema: Schema = getattr(parser, "schema")  # noqa: B009 (CommandParser's, untyped here)
    also = aliases(parser)
    default_file = getattr(parser, "default_config", None)
    yield f"## {manual.name}"
    yield ""
    yield f"{manual.summary[0].upper()}{manual.summary[1:]}."
    where = f" Default file: `{default_file}`." if default_file else ""
    yield f"Manual page: [`{manual.name}(1)`](man/{manual.name}.1).{where}"
    yield ""
    yield "| key | value | default | meaning |"
    yield "|---|---|---|---|"
    for key in schema:
        name = _code(key.name) + (f" (also `{also[key.name]}`)" if key.name in also else "")
        default = "required" if key.required else (_code(key.default or "") or "empty")
        yield f"| {name} | {_cell(kind_text(key))} | {_cell(default)} | {_cell(key.help)} |"
    yield ""
    yield f"Command line (`{manual.name} --help`):"
    yield ""
    yield "| option | meaning |"
    yield "|---|---|"
    for option in options(parser):
        yield f"| `{_cell(option.invocation)}` | {_cell(option.help)} |"
    yield ""


_MD_HEAD = f"""\
# Configuration reference

<!-- Generated from the schemas and parsers by `{REGENERATE}`; do not edit. -->

Each command reads one file of `key = value` lines (`#` starts a comment,
dotted keys such as `fssync.user`); `-c FILE` names another file and
`-o key=value` (repeatable) overrides it. An unknown key or a bad value
stops the command with exit status 2 and one line naming the key. Examples
with every key live in `etc/`. Secrets never go in these files: a
`FILE:ID` value names a file of `ID PASSWORD` lines readable by its owner
only. Durations take `ms`, `s`, `m`, `h` or `d` (bare numbers are seconds);
yes/no values also take true/false, on/off and 1/0.
"""


def markdown(manuals: Sequence[Manual]) -> str:
    """``docs/configuration.md``: every command's keys and options."""
    lines = [_MD_HEAD]
    for manual in manuals:
        lines.extend(_md_page(manual))
    lines.append("## Exit status (every command)")
    lines.append("")
    for code, meaning in MEANINGS.items():
        lines.append(f"- `{code}`: {meaning}.")
    return "\n".join(lines) + "\n"


# -- roff ---------------------------------------------------------------------


def _esc(text: str) -> str:
    """Text safe in roff: backslashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e")
    return "\n".join("\\&" + ln if ln[:1] in (".", "'") else ln for ln in text.split("\n"))


def _lit(text: str) -> str:
    """A literal (option, key, value): its hyphens are minus signs, not dashes."""
    return _esc(text).replace("-", "\\-")


def _section(title: str) -> list[str]:
    return [f".SH {title}"]


def _tagged(tag: str, body: str) -> list[str]:
    return [".TP", tag, _esc(body)]


def roff(manual: Manual, version: str = __version__) -> str:
    """The manual page of one command, section 1."""
    parser = manual.parser()
    schema: Schema = getattr(parser, "schema")  # noqa: B009
    also = aliases(parser)
    title = manual.name.upper().replace("_", "\\_")
    out = [
        f'.\\" Generated by `{REGENERATE}`; do not edit.',
        f'.TH {title} 1 "" "mirrord {version}" "User Commands"',
        *_section("NAME"),
        f"{_lit(manual.name)} \\- {_esc(manual.summary)}",
        *_section("SYNOPSIS"),
    ]
    for line in manual.synopsis:
        out += [".PP", f".B {_lit(manual.name)}", _lit(line)]
    out += _section("DESCRIPTION")
    for i, paragraph in enumerate(manual.description):
        out += ([".PP"] if i else []) + [_esc(paragraph)]
    out += _section("OPTIONS")
    for option in options(parser):
        out += _tagged(f".B {_lit(option.invocation)}", option.help)
    out += _section("CONFIGURATION")
    out.append(
        _esc(
            "Keys go in the configuration file as 'key = value' lines, or on the "
            "command line as -o key=value, which overrides the file. An unknown key "
            "or a bad value is exit status 2 with a line naming the key."
        )
    )
    for key in schema:
        default = "required" if key.required else f"default {key.default or 'empty'}"
        extra = f"; also {also[key.name]}" if key.name in also else ""
        tag = f'.BI {_lit(key.name)} " = " {_lit(key.metavar())}'
        out += _tagged(tag, f"{key.help}.")
        out += [".br", _esc(f"Value: {kind_text(key)}; {default}{extra}.")]
    out += _section("SIGNALS")
    for signal, meaning in manual.signals:
        out += _tagged(f".B {signal}", meaning)
    out += _section("FILES")
    for path, meaning in manual.files:
        out += _tagged(f".I {_lit(path)}", meaning)
    out += _section("EXIT STATUS")
    for code, meaning in MEANINGS.items():
        out += _tagged(f".B {code}", meaning[0].upper() + meaning[1:] + ".")
    out += _section("SEE ALSO")
    for page in manual.see_also:  # "rsyncd.conf(5)"
        name, _, section = page.rstrip(")").partition("(")
        out.append(f".BR {_lit(name)} ({section or 1}),")
    out.append(_esc("docs/guide.md, docs/configuration.md, docs/troubleshooting.md,"))
    out.append(_esc("docs/operations.md and docs/protocol.md in the source."))
    return "\n".join(out) + "\n"


# -- the files ------------------------------------------------------------------


def load_manuals(modules: Sequence[str] = MANUALS) -> list[Manual]:
    manuals = []
    for name in modules:
        manual = importlib.import_module(name).MANUAL
        if not isinstance(manual, Manual):
            raise TypeError(f"{name}.MANUAL is not a cmdconfig.reference.Manual")
        manuals.append(manual)
    return manuals


def documents(manuals: Sequence[Manual]) -> dict[str, str]:
    """Relative path under docs/ -> its text."""
    made = {"configuration.md": markdown(manuals)}
    for manual in manuals:
        made[os.path.join("man", f"{manual.name}.1")] = roff(manual)
    return made


def stale(docs: str, made: dict[str, str]) -> list[str]:
    """The documents under ``docs`` that differ from what the code makes now."""
    wrong = []
    for relative, text in made.items():
        try:
            with open(os.path.join(docs, relative), encoding="utf-8") as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            wrong.append(relative)
    return wrong


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cmdconfig.reference", description=__doc__.split("\n")[0]
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", metavar="DOCS", help="write the documents under DOCS")
    what.add_argument("--check", metavar="DOCS", help="exit 1 if a document under DOCS is stale")
    args = parser.parse_args(argv)
    made = documents(load_manuals())
    if args.check:
        wrong = stale(args.check, made)
        for relative in wrong:
            print(f"{os.path.join(args.check, relative)} is stale: run {REGENERATE}")
        return 1 if wrong else 0
    for relative, text in made.items():
        path = os.path.join(args.write, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # Run as cmdconfig.reference, not __main__: the manuals' Manual is that module's.
    from cmdconfig.reference import main as _main

    sys.exit(_main())
