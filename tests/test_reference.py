"""The configuration reference and manual pages match the schemas and parsers (cmdconfig.reference).

The committed files under docs/ must be what the generator makes now: a key
or option added without regenerating fails here, saying which command to run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from cmdconfig.cli import make_parser
from cmdconfig.reference import (
    MANUALS,
    REGENERATE,
    Manual,
    documents,
    kind_text,
    load_manuals,
    markdown,
    options,
    roff,
    stale,
)
from cmdconfig.schema import REQUIRED, Key, Schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_the_committed_documents_are_what_the_code_makes_now() -> None:
    """docs/configuration.md and docs/man/*.1 equal the generator's output."""
    wrong = stale(str(DOCS), documents(load_manuals()))
    assert not wrong, f"stale documents {wrong}: run `{REGENERATE}` and commit the result"


def test_every_console_script_has_a_manual() -> None:
    """MANUALS names one page per console script in pyproject.toml, none missing."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(m.name for m in load_manuals()) == sorted(scripts)
    assert len(MANUALS) == len(scripts)


@pytest.mark.parametrize("manual", load_manuals(), ids=lambda m: m.name)
def test_every_key_and_option_is_on_the_page(manual: Manual) -> None:
    """Each schema key is in configuration.md and the man page; each option in the man page."""
    parser = manual.parser()
    page = roff(manual)
    reference = markdown([manual])
    for key in parser.schema:  # type: ignore[attr-defined]
        assert f"`{key.name}`" in reference
        assert key.name.replace("-", "\\-") in page
    for action in parser._actions:
        for option in action.option_strings:
            assert option.replace("-", "\\-") in page


def _manual(keys: list[Key], extra_option: bool = False) -> Manual:
    def extra(parser: argparse.ArgumentParser) -> None:
        if extra_option:
            parser.add_argument("--frobnicate", action="store_true", help="frob it")

    def parser() -> argparse.ArgumentParser:
        return make_parser("demo", Schema(keys), "/etc/demo.conf", extra)

    return Manual(
        name="demo",
        summary="a demonstration",
        synopsis=("-o KEY=VALUE",),
        description=(".starts with a dot\\and a backslash",),
        signals=(("SIGTERM", "stops"),),
        files=(("/etc/demo.conf", "its file"),),
        parser=parser,
        see_also=("mirrord(1)",),
    )


def test_a_new_key_or_option_makes_the_committed_files_stale(tmp_path: Path) -> None:
    """Written once, the files check clean; a key or an option added since is caught."""
    keys = [Key("alpha", "int", "1", "the first", minimum=0)]
    before = documents([_manual(keys)])
    for relative, text in before.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert stale(str(tmp_path), before) == []
    newer = documents([_manual([*keys, Key("beta", "str", REQUIRED, "the second")])])
    assert sorted(stale(str(tmp_path), newer)) == ["configuration.md", "man/demo.1"]
    assert stale(str(tmp_path), documents([_manual(keys, extra_option=True)])) != []
    (tmp_path / "man" / "demo.1").unlink()
    assert stale(str(tmp_path), before) == ["man/demo.1"]


def test_roff_escapes_what_would_be_a_request_or_an_escape() -> None:
    """A line starting with '.' gets \\&, a backslash becomes \\e, options get \\- hyphens."""
    page = roff(_manual([Key("a-b", "str", "", "x")]), version="9")
    assert "\\&.starts with a dot\\eand a backslash" in page
    assert ".BI a\\-b" in page
    assert '.TH DEMO 1 "" "mirrord 9"' in page
    assert ".BR mirrord (1)," in page


def test_kind_text_names_bounds_and_choices() -> None:
    """The value column says the kind in words with its range, or the choices."""
    assert kind_text(Key("p", "port", "1", "")) == "port, 1 to 65535"
    assert kind_text(Key("n", "int", "5", "", minimum=1)) == "integer, at least 1"
    assert kind_text(Key("c", "choice", "a", "", choices=("a", "b"))) == "one of a, b"
    assert kind_text(Key("d", "duration", "1", "")) == "seconds"


def test_options_lists_the_parser_in_order() -> None:
    """Options come from the parser as --help shows them, the command's own last."""
    listed = options(_manual([], extra_option=True).parser())
    assert listed[0].invocation == "-h, --help"
    assert listed[-1].invocation == "--frobnicate" and listed[-1].help == "frob it"
    assert any(o.invocation == "-c, --config FILE" for o in listed)
    assert any(o.invocation == "-o KEY=VALUE" for o in listed)


def test_markdown_escapes_a_pipe_in_a_table_cell() -> None:
    """A '|' in a key's help does not break the table."""
    text = markdown([_manual([Key("k", "str", "", "a | b")])])
    assert "a \\| b" in text


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
@pytest.mark.parametrize("name", ["mirrord", "fs_mirror", "fs_info"])
def test_the_man_pages_render_without_warnings(name: str) -> None:
    """man -l renders each page with no groff warning, with its sections and keys."""
    done = subprocess.run(
        ["man", "--warnings", "-l", str(DOCS / "man" / f"{name}.1")],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "100", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert done.stderr == ""
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "CONFIGURATION", "SIGNALS", "EXIT STATUS"):
        assert f"\n{section}\n" in done.stdout
    manual = next(m for m in load_manuals() if m.name == name)
    for key in manual.parser().schema:  # type: ignore[attr-defined]
        assert f"{key.name} = " in done.stdout


def test_the_manual_values_are_frozen() -> None:
    """A Manual is a value: pages cannot be edited after they are declared."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_manuals()[0].name = "x"  # type: ignore[misc]
