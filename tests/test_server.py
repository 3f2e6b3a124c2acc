"""The mirror protocol adapter, driven through Twisted's in-memory transport and clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger

from mirrord.clients import MirrorServerFactory
from mirrord.headtimes import HeadTimes
from mirrord.initstream import snapshot_line
from mirrord.journal import Journal
from mirrord.store import Entry, Store
from mirrord.values import Change, Put
from protocol.messages import client_proof, server_proof
from protocol.records import Action, Record

SESSION = "0123456789abcdef0123456789abcdef"


# -- small real stand-ins for the store and the journal ----------------------


@dataclass(frozen=True)
class FakeEntry:
    kind: bytes
    mode: int = 0o40755
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 1_700_000_000_500_000_000
    target: bytes = b""
    unreadable: bool = False


class MemoryStore:
    """The Store methods the server uses, over a dict and a list."""

    def __init__(self, entries: dict[bytes, FakeEntry] | None = None) -> None:
        self.session = SESSION
        self.tree = dict(entries or {})
        self.log: list[tuple[int, bytes]] = []
        self.oldest = 1
        self.calls = 0

    @property
    def head(self) -> int:
        return self.log[-1][0] if self.log else self.oldest - 1

    def iter_tree(self, root=None, after=None, limit=1000, skip_subtree=False):
        self.calls += 1
        keys = sorted(p.replace(b"/", b"\0") for p in self.tree)
        if after is not None:
            akey = after.replace(b"/", b"\0")
            keys = [
                k for k in keys if k > akey and not (skip_subtree and k.startswith(akey + b"\0"))
            ]
        return [(k.replace(b"\0", b"/"), self.tree[k.replace(b"\0", b"/")]) for k in keys[:limit]]

    def log_after(self, serial, limit):
        return [(s, line) for s, line in self.log if s > serial][:limit]

    def append(self, *lines: bytes) -> int:
        for line in lines:
            self.log.append((self.head + 1, line))
        return self.head

    def trim(self, oldest: int) -> None:
        self.log = [(s, line) for s, line in self.log if s >= oldest]
        self.oldest = oldest


class MemoryJournal:
    """``wait_after`` Deferreds, fired by ``commit`` once the head passes them."""

    def __init__(self, store: MemoryStore, clock: MemoryReactorClock) -> None:
        self.store, self.clock = store, clock
        self.waiters: list[tuple[int, defer.Deferred]] = []
        self.head_times = HeadTimes(store.head, clock.seconds())

    def wait_after(self, serial: int) -> defer.Deferred:
        if self.store.head > serial:
            return defer.succeed(self.store.head)
        entry: tuple[int, defer.Deferred] = (serial, None)  # type: ignore[assignment]
        d: defer.Deferred = defer.Deferred(lambda _: self.waiters.remove(entry))
        entry = (serial, d)
        self.waiters.append(entry)
        return d

    def commit(self, *lines: bytes) -> None:
        head = self.store.append(*lines)
        self.head_times.grew(head, self.clock.seconds())
        ready = [w for w in self.waiters if head > w[0]]
        self.waiters = [w for w in self.waiters if head <= w[0]]
        for _, d in ready:
            d.callback(head)


def real_journal(store: Store, reactor) -> Journal:
    """The real journal; its identity and watch are only used by rescans, not here."""
    return Journal(store, None, lambda path: True, reactor)


def create(journal: Journal, *paths: bytes) -> None:
    """Queue one CREATE record (and its snapshot entry) per path in the real journal."""
    entry = Entry(b"d", 0o755, 0, 0, 0, 1_000_000_000, 1_000_000_000)
    journal.add([Change(Put(p, entry), Record(Action.CREATE, p)) for p in paths])


def rec(path: bytes) -> bytes:
    return Record(Action.CREATE, path).encode()


TREE = {
    b"/srv": FakeEntry(b"d"),
    b"/srv/a": FakeEntry(b"d", mode=0o40700, uid=5, gid=6),
    b"/srv/a/file": FakeEntry(b"f", mode=0o100644, size=12),
    b"/srv/a-b": FakeEntry(b"f", mode=0o100600, size=3),
    b"/srv/a/link": FakeEntry(b"l", mode=0o120777, target=b"../a-b"),
    b"/srv/z\n%": FakeEntry(b"d"),
}


class Harness:
    """A factory on a memory store, journal and clock, and helpers to connect to it."""

    def __init__(self, entries=TREE, store=None, **options) -> None:
        self.store = MemoryStore(entries) if store is None else store
        self.clock = MemoryReactorClock()
        real = store is not None
        memory = MemoryJournal(self.store, self.clock)
        self.journal = real_journal(store, self.clock) if real else memory
        self.events: list[dict] = []
        options.setdefault("timeout", 60.0)
        self.factory = MirrorServerFactory(
            self.store,
            self.journal,
            reactor=self.clock,
            log=Logger(observer=self.events.append),
            **options,
        )

    def connect(self, transport: StringTransport | None = None, port: int = 40000):
        transport = transport or StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", port))
        proto = self.factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        return Client(self, proto, transport)


class Client:
    def __init__(self, harness: Harness, proto, transport: StringTransport) -> None:
        self.harness, self.proto, self.transport = harness, proto, transport

    def send(self, *lines: bytes, end: bytes = b"\n") -> None:
        self.proto.dataReceived(b"".join(line + end for line in lines))

    def take(self) -> list[bytes]:
        """The complete lines written since the last take, without CRLF."""
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data[-50:]
        return data.split(b"\r\n")[:-1]

    def run(self) -> None:
        """Let the reactor run every call that is due (INIT chunks)."""
        clock = self.harness.clock
        for _ in range(10_000):
            if not any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
                return
            clock.advance(0)
        raise AssertionError("reactor calls never stopped")

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected

    def init(self) -> list[bytes]:
        self.send(b"START", b"INIT")
        self.run()
        return self.take()


# -- conversation errors -----------------------------------------------------


@pytest.mark.parametrize("first", [b"INIT", b"NEXT", b"", b"start", b"SN:abc,1", b"\xff\xfe"])
def test_first_command_not_start_is_invalid_command(first):
    """Anything but START first gets INVALID COMMAND and a close."""
    c = Harness().connect()
    c.send(first)
    assert c.take() == [b"INVALID COMMAND"]
    assert c.closed


@pytest.mark.parametrize("second", [b"NEXT", b"START", b"HELLO", b"INIT2"])
def test_after_start_anything_but_init_or_sn_is_rejected(second):
    """After START only INIT or SN is accepted; the rest is INVALID INIT COMMAND and a close."""
    c = Harness().connect()
    c.send(b"START", second)
    assert c.take() == [b"OK", b"INVALID INIT COMMAND"]
    assert c.closed


@pytest.mark.parametrize("second", [b"\x00", b"INIT\xff", b"IN\tIT", b"\x1b[A"])
def test_bytes_that_are_not_a_line_are_invalid_command_in_any_state(second):
    """Control or non-ASCII bytes are not a valid line: INVALID COMMAND and a close."""
    c = Harness().connect()
    c.send(b"START", second)
    assert c.take() == [b"OK", b"INVALID COMMAND"]
    assert c.closed


def test_malformed_sn_is_an_unknown_session_and_stays_open():
    """SN:xyz names no session we have: SESSION INVALID, and the client may still INIT."""
    c = Harness().connect()
    c.send(b"START", b"SN:xyz")
    assert c.take() == [b"OK", b"SESSION INVALID"]
    assert not c.closed


def test_unknown_session_stays_open_and_init_still_works():
    """SN with an unknown session is refused but the client may INIT on the same connection."""
    c = Harness().connect()
    c.send(b"START", b"SN:ffffffffffffffffffffffffffffffff,0")
    assert c.take() == [b"OK", b"SESSION INVALID"]
    assert not c.closed
    c.send(b"INIT")
    c.run()
    lines = c.take()
    assert lines[0] == b"SESSION:" + SESSION.encode()
    assert lines[-1] == b"EOF"


@pytest.mark.parametrize("serial", [2, 3, 11, 12])
def test_serial_out_of_range_stays_open(serial):
    """SN with a serial before the retained log or after the head is refused, connection open."""
    h = Harness()
    h.store.append(*(rec(b"/srv/n%d" % i) for i in range(10)))
    h.store.trim(5)  # retained 5..10: valid resume serials are 4..10
    c = h.connect()
    c.send(b"START", b"SN:%s,%d" % (SESSION.encode(), serial))
    assert c.take() == [b"OK", b"SERIAL OVERDUE OR INVALID"]
    assert not c.closed


@pytest.mark.parametrize("serial", [4, 10])
def test_resume_at_range_edges_continues_with_next(serial):
    """SN at the oldest-1 or the head serial is accepted and NEXT continues after it."""
    h = Harness()
    h.store.append(*(rec(b"/srv/n%d" % i) for i in range(10)))
    h.store.trim(5)
    c = h.connect()
    c.send(b"START", b"SN:%s,%d" % (SESSION.upper().encode(), serial))
    assert c.take() == [b"OK", b"OK"]
    h.journal.commit(rec(b"/srv/new"))
    c.send(b"NEXT")
    lines = c.take()
    assert lines[0] == b"SERIAL:11"
    assert lines[1:-1] == [line for s, line in h.store.log if s > serial]


@pytest.mark.parametrize("line", [b"INIT", b"START", b"NEXTT", b"SN:%s,0" % SESSION.encode()])
def test_after_init_anything_but_next_is_invalid_realtime(line):
    """Once streaming, any line but NEXT gets INVALID REALTIME COMMAND and a close."""
    c = Harness().connect()
    c.init()
    c.send(line)
    assert c.take() == [b"INVALID REALTIME COMMAND"]
    assert c.closed


def test_over_long_line_is_invalid_command_and_closes():
    """A line over 64 KiB (even before its newline arrives) gets INVALID COMMAND and a close."""
    c = Harness().connect()
    c.send(b"START")
    c.proto.dataReceived(b"N" * 65537)
    assert c.take() == [b"OK", b"INVALID COMMAND"]
    assert c.closed
    c.proto.dataReceived(b"INIT\n")  # nothing more is answered
    assert c.take() == []


def test_line_of_exactly_64k_is_only_a_bad_command():
    """A 64 KiB line is within the cap, so it earns the state's own error, not a buffer error."""
    c = Harness().connect()
    c.send(b"START", b"X" * 65536)
    assert c.take() == [b"OK", b"INVALID INIT COMMAND"]


def test_crlf_and_bare_lf_and_split_chunks_are_accepted():
    """Client lines may end in CRLF or LF and arrive split anywhere."""
    c = Harness().connect()
    for byte in b"START\r\nIN":
        c.proto.dataReceived(bytes([byte]))
    c.proto.dataReceived(b"IT\n")
    c.run()
    lines = c.take()
    assert lines[:2] == [b"OK", b"SESSION:" + SESSION.encode()]
    assert lines[-1] == b"EOF"


def test_secret_requires_auth():
    """With a secret, START is challenged; only the right proof gets OK with the server's own."""
    h = Harness(secret=b"s3cret")
    good = h.connect(port=1)
    good.send(b"START")
    (challenge,) = good.take()
    assert challenge.startswith(b"CHALLENGE:")
    nonce, mine = challenge.split(b":", 1)[1].decode(), "c1" * 16
    good.send(b"AUTH:%s:%s" % (client_proof(b"s3cret", nonce, mine, b"").encode(), mine.encode()))
    assert good.take() == [b"OK:" + server_proof(b"s3cret", nonce, mine, b"").encode()]
    bad = h.connect(port=2)
    wrong = client_proof(b"other", nonce, mine, b"")
    bad.send(b"START", b"AUTH:%s:%s" % (wrong.encode(), mine.encode()))
    lines = bad.take()
    assert lines[0].startswith(b"CHALLENGE:") and lines[0] != challenge  # fresh nonce each time
    assert lines[1:] == [b"AUTH FAILED"]
    assert bad.closed


# -- INIT stream ---------------------------------------------------------------


def test_init_streams_the_snapshot_in_key_order():
    """INIT sends SESSION, SERIAL (the head), each entry as a record in key order, then EOF."""
    h = Harness(chunk=2)
    h.store.append(rec(b"/srv/x"), rec(b"/srv/y"))
    c = h.connect()
    lines = c.init()
    assert lines[:3] == [b"OK", b"SESSION:" + SESSION.encode(), b"SERIAL:2"]
    assert lines[-1] == b"EOF"
    records = [Record.decode(line) for line in lines[3:-1]]
    assert [r.path for r in records] == [
        b"/srv",
        b"/srv/a",
        b"/srv/a/file",
        b"/srv/a/link",
        b"/srv/a-b",
        b"/srv/z\n%",
    ]
    assert [r.action for r in records] == [
        Action.CREATE,
        Action.CREATE,
        Action.FWRITE,
        Action.SYMLINK,
        Action.FWRITE,
        Action.CREATE,
    ]
    a, file = records[1], records[2]
    assert (a.meta.mode, a.meta.uid, a.meta.gid) == (0o700, 5, 6)
    assert a.meta.mtime_ns == 1_700_000_000_500_000_000
    assert (file.meta.mode, file.meta.size) == (0o644, 12)
    assert records[3].target == b"../a-b"
    assert c.proto.status()["serial"] == 2


class Ticking(MemoryReactorClock):
    """A clock one second later at every reading: each chunk of an INIT takes seconds."""

    def seconds(self) -> float:
        self.rightNow += 1.0
        return self.rightNow


@pytest.mark.parametrize("every", [0.5, 1e6])
def test_a_long_init_says_its_progress_and_its_end_with_counts(every):
    """An INIT that takes longer than progress_every logs how far it is and tells it to
    ``status`` (systemd's STATUS=), then its end; a quicker one only logs its end. The end
    line has the entries sent and the time it took."""
    told: list[str] = []
    h = Harness(chunk=2, progress_every=every, status=told.append)
    h.clock = h.factory.reactor = Ticking()
    c = h.connect()
    lines = c.init()
    assert lines[-1] == b"EOF" and len(lines) == 3 + 6 + 1
    peer = c.proto.peer
    if every > 1000:
        assert told == []
    else:
        assert told[-1] == f"client {peer} INIT sent: 6 entries"
        counts = [int(t.split(": ")[1].split()[0]) for t in told[:-1]]
        assert counts == [2, 4, 6]  # after each full chunk; the empty last one ends it
        assert all(t.startswith(f"client {peer} INIT: ") for t in told[:-1])
    done = [e for e in h.events if e["log_format"].startswith("client {peer} INIT sent")]
    assert [e["entries"] for e in done] == [6] and done[0]["seconds"] > 0


def test_snapshot_line_shapes():
    """Directories become CREATE, files FWRITE with size, symlinks SYMLINK with the target."""
    assert snapshot_line(b"/d", FakeEntry(b"d", mode=0o40750, mtime_ns=2_000_000_000)) == (
        b"CREATE:/d\tmode=750\tuid=0\tgid=0\tmtime=2"
    )
    line = snapshot_line(b"/f", FakeEntry(b"f", mode=0o104755, size=7, mtime_ns=10))
    assert Record.decode(line).meta.mode == 0o4755
    assert Record.decode(line).meta.size == 7
    assert snapshot_line(b"/l", FakeEntry(b"l", target=b"/x\ty")) == b"SYMLINK:/l\t/x%09y"


def test_init_of_empty_snapshot_is_just_header_and_eof():
    """An empty store still answers INIT with SESSION, SERIAL:0 and EOF."""
    c = Harness(entries={}).connect()
    assert c.init() == [b"OK", b"SESSION:" + SESSION.encode(), b"SERIAL:0", b"EOF"]


class ThrottledTransport(StringTransport):
    """Pauses its producer once more than ``limit`` bytes are unread, as a socket does."""

    def __init__(self, limit: int) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.8", 1))
        self.limit = limit
        self.producer_paused = False
        self.most = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self.most = max(self.most, len(self.value()))
        if len(self.value()) > self.limit and not self.producer_paused:
            self.producer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.producer_paused = False
        self.producer.resumeProducing()


def test_init_pauses_while_the_transport_is_paused():
    """A paused transport stops the INIT stream (no store reads, no writes) until resumed."""
    entries = {b"/t/%03d" % i: FakeEntry(b"f", mode=0o100644) for i in range(50)}
    h = Harness(entries=entries, chunk=5)
    c = h.connect(ThrottledTransport(limit=300))
    assert c.transport.producer is c.proto and c.transport.streaming
    c.send(b"START", b"INIT")
    seen: list[bytes] = []
    rounds = 0
    while not seen or seen[-1] != b"EOF":
        c.run()
        assert c.transport.producer_paused or c.transport.value().endswith(b"EOF\r\n")
        calls = h.store.calls
        h.clock.advance(5)  # time passes, the client reads nothing: nothing happens
        assert h.store.calls == calls
        seen += c.take()
        c.transport.drain()
        rounds += 1
    assert rounds >= 5  # each chunk is ~300 bytes: the stream stopped many times
    assert c.transport.most < 300 + 5 * 60  # never more than one chunk beyond the limit
    paths = [Record.decode(line).path for line in seen[3:-1]]
    assert paths == sorted(entries)


def test_next_sent_during_init_is_answered_after_eof():
    """A NEXT pipelined behind INIT is held and answered once the stream has ended."""
    h = Harness(chunk=1)
    h.store.append(rec(b"/srv/0"))
    c = h.connect()
    c.send(b"START", b"INIT", b"NEXT")
    h.journal.commit(rec(b"/srv/1"))  # committed while streaming: after S=1
    c.run()
    lines = c.take()
    eof = lines.index(b"EOF")
    assert lines[2] == b"SERIAL:1"
    assert lines[eof + 1 :] == [b"SERIAL:2", rec(b"/srv/1"), b"EOF"]


# -- NEXT ----------------------------------------------------------------------


def test_next_with_records_answers_at_once():
    """NEXT when the log is ahead sends SERIAL:<last>, the stored lines and EOF."""
    h = Harness()
    c = h.connect()
    c.init()
    h.store.append(rec(b"/srv/1"), b"DELETE:/srv/a")
    c.send(b"NEXT")
    assert c.take() == [b"SERIAL:2", rec(b"/srv/1"), b"DELETE:/srv/a", b"EOF"]
    assert c.proto.status()["lag"] == 0


def test_status_says_how_long_a_client_has_lacked_a_record():
    """lag_seconds: the age of the oldest record the client has not got; 0 once it has all."""
    h = Harness()
    c = h.connect()
    c.init()
    h.clock.advance(20)  # well inside the idle timeout
    h.journal.commit(rec(b"/srv/1"))
    h.clock.advance(5)
    h.journal.commit(rec(b"/srv/2"))
    h.clock.advance(2.5)
    status = c.proto.status()
    assert (status["lag"], status["lag_seconds"]) == (2, 7.5)
    c.send(b"NEXT")
    assert c.take() == [b"SERIAL:2", rec(b"/srv/1"), rec(b"/srv/2"), b"EOF"]
    assert (c.proto.status()["lag"], c.proto.status()["lag_seconds"]) == (0, 0.0)


def test_next_parks_until_a_commit_wakes_it():
    """NEXT with nothing new parks; the next commit answers it; the lag shows in status."""
    h = Harness()
    c = h.connect()
    c.init()
    c.send(b"NEXT")
    assert c.take() == []
    assert [s["state"] for s in h.factory.clients()] == ["parked"]
    assert len(h.journal.waiters) == 1
    h.journal.commit(rec(b"/srv/new"))
    assert c.take() == [b"SERIAL:1", rec(b"/srv/new"), b"EOF"]
    (status,) = h.factory.clients()
    assert status["peer"] == "192.0.2.7:40000"
    assert (status["state"], status["serial"], status["lag"]) == ("realtime", 1, 0)
    assert status["bytes_sent"] > 0


def test_batch_limit():
    """A NEXT sends at most ``batch`` records; the rest come with the following NEXT."""
    h = Harness(batch=3)
    c = h.connect()
    c.init()
    h.store.append(*(rec(b"/srv/%d" % i) for i in range(5)))
    c.send(b"NEXT")
    assert c.take() == [b"SERIAL:3", *(rec(b"/srv/%d" % i) for i in range(3)), b"EOF"]
    assert h.factory.clients()[0]["lag"] == 2
    c.send(b"NEXT")
    assert c.take() == [b"SERIAL:5", rec(b"/srv/3"), rec(b"/srv/4"), b"EOF"]


def test_trimmed_log_gives_serial_overdue_and_close():
    """A client whose next record was trimmed from the log gets SERIAL OVERDUE OR INVALID."""
    h = Harness()
    c = h.connect()
    c.init()
    h.store.append(*(rec(b"/srv/%d" % i) for i in range(5)))
    h.store.trim(3)  # records 1 and 2 are gone; the client is at 0
    c.send(b"NEXT")
    assert c.take() == [b"SERIAL OVERDUE OR INVALID"]
    assert c.closed


def test_batch_waits_for_a_paused_transport():
    """A NEXT answered while the transport is paused is written only after it resumes."""
    h = Harness()
    c = h.connect()
    c.init()
    h.store.append(rec(b"/srv/1"))
    c.transport.producer.pauseProducing()
    c.send(b"NEXT")
    assert c.take() == []
    c.transport.producer.resumeProducing()
    assert c.take() == [b"SERIAL:1", rec(b"/srv/1"), b"EOF"]


def test_lost_connection_cancels_the_parked_wait():
    """A parked client that disconnects leaves no waiter behind and is no longer listed."""
    h = Harness()
    c = h.connect()
    c.init()
    c.send(b"NEXT")
    assert len(h.journal.waiters) == 1
    c.proto.connectionLost(None)
    assert h.journal.waiters == []
    assert h.factory.clients() == []
    h.journal.commit(rec(b"/srv/late"))  # nothing is written to a gone client
    assert c.take() == []


# -- idle timeout ----------------------------------------------------------------


def test_idle_connection_is_closed_after_timeout():
    """A connection that sends nothing for ``timeout`` seconds is closed; input resets it."""
    h = Harness(timeout=10.0)
    c = h.connect()
    h.clock.advance(9)
    c.send(b"START")
    h.clock.advance(9)
    assert not c.closed
    h.clock.advance(2)
    assert c.closed


def test_parked_connection_is_not_timed_out():
    """A client parked on NEXT may stay idle; the timeout applies again after the answer."""
    h = Harness(timeout=10.0)
    c = h.connect()
    c.init()
    c.send(b"NEXT")
    h.clock.advance(1000)
    assert not c.closed
    h.journal.commit(rec(b"/srv/1"))
    assert c.take()[-1] == b"EOF"
    h.clock.advance(11)
    assert c.closed


def test_zero_timeout_disables_it():
    """timeout=0 never closes an idle connection (one that started: see the START deadline)."""
    h = Harness(timeout=0)
    c = h.connect()
    c.send(b"START")
    h.clock.advance(10**6)
    assert not c.closed
    assert not h.clock.getDelayedCalls()


def test_a_client_that_does_not_start_in_10_seconds_is_closed():
    """Contract 2.3: nothing, or half a line, for 10 s closes the connection; START in time
    keeps it open."""
    h = Harness(timeout=0)
    silent, prompt = h.connect(), h.connect(port=40001)
    silent.proto.dataReceived(b"STA")
    h.clock.advance(9.9)
    prompt.send(b"START")
    h.clock.advance(0.2)
    assert silent.closed and not prompt.closed
    h.clock.advance(10**6)
    assert not prompt.closed


def test_the_connection_past_max_clients_gets_busy():
    """max-clients=1: the second connection is told BUSY and closed; the first is served."""
    h = Harness(max_clients=1)
    first = h.connect()
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40001))
    busy = h.factory.buildProtocol(transport.getPeer())
    busy.makeConnection(transport)
    assert transport.value() == b"BUSY\r\n" and transport.disconnecting
    first.send(b"START")
    assert first.take() == [b"OK"]


def test_a_full_transport_stops_reading_the_client_until_it_drains():
    """While the transport's buffer is full (it pauses us), we pause the transport's
    reading too, and resume it when told to resume: a client that never reads
    cannot make us buffer replies without bound."""
    h = Harness()
    c = h.connect()
    c.proto.pauseProducing()
    assert c.transport.producerState == "paused"
    c.proto.resumeProducing()
    assert c.transport.producerState == "producing"


# -- isolation -------------------------------------------------------------------


class BrokenTransport(StringTransport):
    """A transport whose writes fail, to make one connection's handling raise."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("disk on fire")


def test_exception_in_one_connection_does_not_affect_another():
    """An error while serving one client is logged with its peer and closes only that client."""
    h = Harness()
    good = h.connect(port=1)
    bad = h.connect(BrokenTransport(peerAddress=IPv4Address("TCP", "198.51.100.9", 2)))
    bad.send(b"START")  # must not raise out of dataReceived
    assert bad.transport.disconnecting
    failures = [e for e in h.events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["peer"] == "198.51.100.9:2"
    bad.proto.connectionLost(None)
    lines = good.init()
    assert lines[-1] == b"EOF"
    assert not good.closed
    assert [c["peer"] for c in h.factory.clients()] == ["192.0.2.7:1"]


# -- over a real Berkeley DB store ---------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db"), loglen=3)
    yield s
    s.close()


def test_init_from_real_store_sends_directories_before_their_contents(store):
    """Over a real store, INIT streams every entry once, each directory before its contents."""
    d = Entry(b"d", 0o755, 1, 2, 0, 3_000_000_000, 0)
    f = Entry(b"f", 0o644, 1, 2, 9, 3_000_000_000, 0)
    dirs = [b"/r", b"/r/a", b"/r/a/x", b"/r/a b", b"/r/a.b", b"/r/b\xff"]
    files = [b"/r/a/x/y", b"/r/a-b", b"/r/a/0", b"/r/a b/\x01", b"/r/b\xff/c"]
    store.load([Put(p, d) for p in dirs] + [Put(p, f) for p in files])
    c = Harness(store=store, chunk=3).connect()
    lines = c.init()
    assert lines[:3] == [b"OK", b"SESSION:" + store.session.encode(), b"SERIAL:0"]
    records = [Record.decode(line) for line in lines[3:-1]]
    paths = [r.path for r in records]
    assert sorted(paths) == sorted(dirs + files)
    for i, path in enumerate(paths):
        parent = path.rpartition(b"/")[0]
        assert parent == b"" or parent in paths[:i], (path, paths)
    kinds = {r.path: r.action for r in records}
    assert {p for p, a in kinds.items() if a is Action.CREATE} == set(dirs)
    assert {p for p, a in kinds.items() if a is Action.FWRITE} == set(files)


def test_real_store_next_batch_and_trimmed_log(store):
    """Over a real store and journal, a commit wakes NEXT; once trimmed past, SERIAL OVERDUE."""
    h = Harness(store=store, batch=2)
    early, late = h.connect(port=1), h.connect(port=2)
    early.init()
    late.init()
    early.send(b"NEXT")
    create(h.journal, b"/r/1")
    assert early.take() == []  # committed at the end of the reactor turn
    h.clock.advance(0)
    assert early.take() == [b"SERIAL:1", b"CREATE:/r/1", b"EOF"]
    create(h.journal, b"/r/2", b"/r/3", b"/r/4", b"/r/5")  # loglen=3 keeps 3..5
    h.clock.advance(0)
    assert (store.oldest, store.head) == (3, 5)
    late.send(b"NEXT")
    assert late.take() == [b"SERIAL OVERDUE OR INVALID"]
    assert late.closed
    early.send(b"NEXT")  # at 1, next needed is 2: trimmed too
    assert early.take() == [b"SERIAL OVERDUE OR INVALID"]
    fresh = h.connect(port=3)
    fresh.send(b"START", b"SN:%s,2" % store.session.encode(), b"NEXT")
    assert fresh.take() == [b"OK", b"OK", b"SERIAL:4", b"CREATE:/r/3", b"CREATE:/r/4", b"EOF"]


def test_stop_closes_every_client_and_drops_their_pending_work():
    """factory.stop() closes parked and INIT-streaming clients; later input reads nothing."""
    h = Harness(chunk=1)
    parked = h.connect(port=40001)
    parked.init()
    parked.send(b"NEXT")
    streaming = h.connect(port=40002)
    streaming.send(b"START", b"INIT")  # its first chunk is scheduled, not yet sent
    assert len(h.journal.waiters) == 1 and h.clock.getDelayedCalls()
    h.factory.stop()
    assert parked.closed and streaming.closed
    assert h.journal.waiters == []
    assert not [c for c in h.clock.getDelayedCalls() if c.active()]
    parked.transport.clear()
    parked.send(b"NEXT")
    h.journal.commit(rec(b"/srv/new"))
    assert parked.take() == []


def test_init_sends_an_unreadable_directory_with_nothing_below_it():
    """A directory stored as unreadable is CREATE with unreadable=1; what the snapshot
    still holds below it is not streamed, and what follows it is, at any chunk size."""
    tree = {
        b"/srv": FakeEntry(b"d"),
        b"/srv/a": FakeEntry(b"d", unreadable=True),
        b"/srv/a/old": FakeEntry(b"f", size=1),
        b"/srv/a/sub": FakeEntry(b"d"),
        b"/srv/a/sub/deep": FakeEntry(b"f", size=1),
        b"/srv/a-b": FakeEntry(b"f", size=3),
        b"/srv/b": FakeEntry(b"d"),
    }
    for chunk in (1, 2, 3, 512):
        lines = Harness(entries=tree, chunk=chunk).connect().init()
        records = [Record.decode(line) for line in lines[3:-1]]
        assert [r.path for r in records] == [b"/srv", b"/srv/a", b"/srv/a-b", b"/srv/b"], chunk
        assert [r.meta.unreadable for r in records] == [False, True, False, False]
        assert lines[-1] == b"EOF"
