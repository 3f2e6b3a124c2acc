"""The behaviours every fs_sync fetcher must show, as a pytest mixin.

A backend's test class inherits `FetcherContract` and provides a `backend`
fixture returning a `Backend`: the directory the server (or mount) serves,
how an absolute source path becomes the worker path to ask for, and how to
build the fetcher on a reactor. Fetchers run on a fresh `SelectReactor` per
test, driven by `run_deferred` (iterate until the Deferred fires, with a
deadline): no global reactor, no sleeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure

from fs_sync.interface import Fetcher, FetchItem, Outcome


def run_deferred(reactor: SelectReactor, d: Any, timeout: float = 30.0) -> Any:
    """Drive `reactor` until `d` fires; return its result or raise its error.

    The check sits between running the calls and selecting (``iterate``
    would run a thread's result, then block in select for its whole
    timeout); the waker makes select return when a thread calls in.
    """
    box: list[Any] = []
    d.addBoth(box.append)
    if reactor.waker not in reactor.getReaders():
        reactor.addReader(reactor.waker)
    deadline = time.monotonic() + timeout
    while True:
        reactor.runUntilCurrent()
        if box:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"Deferred did not fire within {timeout}s")
        reactor.doIteration(0.05)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


@contextlib.contextmanager
def private_reactor() -> Iterator[SelectReactor]:
    """A private reactor for one test, its waker closed afterwards."""
    r = SelectReactor()
    try:
        yield r
    finally:
        r.removeAll()
        r.waker.connectionLost(None)


@dataclass
class Backend:
    served: bytes  # a directory the backend can read; tests write sources inside it
    remote_of: Callable[[bytes], bytes]  # absolute source path -> worker path to fetch
    make: Callable[[SelectReactor], Fetcher]
    leftovers: Callable[[], list[bytes]] = list  # backend scratch left after a test


def temp_names(directory: bytes) -> list[bytes]:
    """Names under `directory` that look like a fetcher's temporary files."""
    found = []
    for parent, dirs, files in os.walk(directory):
        for name in dirs + files:
            if b".fsm-" in name:
                found.append(os.path.join(parent, name))
    return found


class FetcherContract:
    """Mixin: the shared fetcher behaviours, run once per backend."""

    @pytest.fixture
    def fetch_reactor(self) -> Iterator[SelectReactor]:
        with private_reactor() as r:
            yield r

    @pytest.fixture(autouse=True)
    def _contract_setup(
        self, backend: Backend, fetch_reactor: SelectReactor, request: pytest.FixtureRequest
    ) -> Iterator[None]:
        reactor = fetch_reactor
        self.reactor = reactor
        self.backend = backend
        unique = re.sub(
            rb"[^A-Za-z0-9_.-]", b"_", f"{type(self).__name__}-{request.node.name}".encode()
        )
        self.src = os.path.join(backend.served, unique)
        os.makedirs(self.src)
        self.dst = os.path.join(os.path.dirname(backend.served), b"dst-" + unique)
        os.makedirs(self.dst)
        self.fetcher = backend.make(reactor)
        yield
        run_deferred(reactor, self.fetcher.close())
        assert temp_names(self.dst) == []
        assert backend.leftovers() == []

    # -- helpers --

    def source(self, name: bytes, content: bytes) -> bytes:
        path = os.path.join(self.src, name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def item(self, name: bytes) -> FetchItem:
        remote = self.backend.remote_of(os.path.join(self.src, name))
        return FetchItem(remote=remote, local=os.path.join(self.dst, name))

    def fetch(self, *items: FetchItem) -> list[tuple[FetchItem, Outcome, str]]:
        return run_deferred(self.reactor, self.fetcher.fetch(list(items)))

    def read(self, name: bytes) -> bytes:
        with open(os.path.join(self.dst, name), "rb") as f:
            return f.read()

    # -- the contract --

    def test_fetch_one_file(self) -> None:
        """One item is fetched: DONE and the local content equals the remote."""
        self.source(b"one.txt", b"hello world\n")
        [(item, outcome, _)] = self.fetch(self.item(b"one.txt"))
        assert (item, outcome) == (self.item(b"one.txt"), Outcome.DONE)
        assert self.read(b"one.txt") == b"hello world\n"

    def test_fetch_many_in_one_call(self) -> None:
        """A batch returns one result per item, in order, each file correct."""
        names = [f"f{i:03d}".encode() for i in range(40)]
        for n in names:
            self.source(n, n * 100)
        results = self.fetch(*(self.item(n) for n in names))
        assert [r[0] for r in results] == [self.item(n) for n in names]
        assert {r[1] for r in results} == {Outcome.DONE}
        assert all(self.read(n) == n * 100 for n in names)

    def test_missing_remote_is_vanished(self) -> None:
        """A file gone on the server is VANISHED; the rest of the batch is DONE."""
        self.source(b"a", b"A")
        self.source(b"c", b"C")
        results = self.fetch(self.item(b"a"), self.item(b"gone"), self.item(b"c"))
        assert [r[1] for r in results] == [Outcome.DONE, Outcome.VANISHED, Outcome.DONE]
        assert not os.path.lexists(os.path.join(self.dst, b"gone"))
        assert self.read(b"c") == b"C"

    def test_remote_directory_is_not_fetched(self) -> None:
        """A remote directory is NOT_A_FILE (or FAILED) and nothing appears locally."""
        os.mkdir(os.path.join(self.src, b"sub"))
        [(_, outcome, _)] = self.fetch(self.item(b"sub"))
        assert outcome in (Outcome.NOT_A_FILE, Outcome.FAILED)
        assert not os.path.lexists(os.path.join(self.dst, b"sub"))

    def test_replace_keeps_hard_link_content(self) -> None:
        """Replacing renames a new file in: a hard link to the old one is unchanged."""
        old = os.path.join(self.dst, b"log")
        with open(old, "wb") as f:
            f.write(b"old content")
        os.link(old, os.path.join(self.dst, b"log.1"))
        self.source(b"log", b"new content, longer")
        [(_, outcome, _)] = self.fetch(self.item(b"log"))
        assert outcome is Outcome.DONE
        assert self.read(b"log") == b"new content, longer"
        assert self.read(b"log.1") == b"old content"

    def test_local_directory_fails(self) -> None:
        """When the local path is a directory the item FAILS and the directory stays."""
        self.source(b"d", b"file on the server")
        os.mkdir(os.path.join(self.dst, b"d"))
        [(_, outcome, _)] = self.fetch(self.item(b"d"))
        assert outcome is Outcome.FAILED
        assert os.path.isdir(os.path.join(self.dst, b"d"))

    def test_non_utf8_name(self) -> None:
        """A name that is not valid UTF-8 is fetched byte for byte."""
        name = b"caf\xe9 \xff\xfe.bin"
        self.source(name, b"latin-1 named")
        [(_, outcome, message)] = self.fetch(self.item(name))
        assert outcome is Outcome.DONE, message
        assert self.read(name) == b"latin-1 named"

    def test_large_file(self) -> None:
        """A 20 MB file arrives whole and equal."""
        content = os.urandom(20 << 20)
        self.source(b"big", content)
        [(_, outcome, message)] = self.fetch(self.item(b"big"))
        assert outcome is Outcome.DONE, message
        digest = hashlib.sha256(self.read(b"big")).hexdigest()
        assert digest == hashlib.sha256(content).hexdigest()

    def test_fetch_again_after_change(self) -> None:
        """A second fetch of the same path brings the new content (connection reuse)."""
        self.source(b"x", b"first")
        assert self.fetch(self.item(b"x"))[0][1] is Outcome.DONE
        self.source(b"x", b"second version")
        assert self.fetch(self.item(b"x"))[0][1] is Outcome.DONE
        assert self.read(b"x") == b"second version"
