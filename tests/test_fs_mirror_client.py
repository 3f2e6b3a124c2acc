"""fs_mirror.client over Twisted's StringTransport: handshake, INIT, NEXT loop, resume.

The sink is either the real Applier (with a copying fetcher over a real
"worker" directory) or a small recorder whose Deferreds the test fires, to
show what happens while a chunk is still being applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent

from fs_mirror.apply import Applier, Stats
from fs_mirror.client import MirrorClient
from fs_mirror.connection import CLOSE_TIMEOUT, MirrorProtocol
from fs_mirror.state import State
from fs_sync.interface import BackendUnavailable, FetchItem, Outcome
from protocol.messages import client_proof, server_proof
from protocol.records import Record

SESSION = "0123456789abcdef0123456789abcdef"


class CopyFetcher:
    """Copies WORKER + remote over local by temp file and rename."""

    def __init__(self, worker: bytes) -> None:
        self.worker = worker

    def fetch(self, items: Sequence[FetchItem]) -> Deferred:
        out = []
        for item in items:
            try:
                with open(self.worker + item.remote, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                out.append((item, Outcome.VANISHED, "gone"))
                continue
            with open(item.local + b".tmp", "wb") as g:
                g.write(data)
            os.rename(item.local + b".tmp", item.local)
            out.append((item, Outcome.DONE, ""))
        return succeed(out)

    def close(self) -> Deferred:
        return succeed(None)


class Recorder:
    """A sink that records chunks and finishes each only when the test says so."""

    mirrors = False

    def __init__(self) -> None:
        self.chunks: list[tuple[list[bytes], int | None, bool]] = []
        self.firsts: list[int | None] = []  # the serial of each chunk's first record
        self.waiting: list[Deferred] = []
        self.stats = Stats()

    def apply_batch(
        self, records, serial=None, *, init=False, replayed=0, progress=None, first=None
    ):
        self.chunks.append(([r.encode() for r in records], serial, init))
        self.firsts.append(first)
        self.stats.records += len(records)
        d: Deferred = Deferred()
        self.waiting.append(d)
        return d

    def finish(self) -> None:
        self.waiting.pop(0).callback(self.stats)

    def checkpoint(self) -> None:
        pass

    def needs_resync(self) -> bool:
        return False

    def resynced(self) -> None:
        pass

    def finish_init(self) -> Deferred:
        return succeed(None)


class Harness:
    def __init__(self, tmp_path, sink=None, **kw) -> None:
        self.datadir = os.fsencode(tmp_path / "mirror")
        self.worker = os.fsencode(tmp_path / "worker")
        os.makedirs(self.worker, exist_ok=True)
        self.state = State(self.datadir)
        self.state.acquire()
        if "saved" in kw:
            self.state.save(*kw.pop("saved"))
        self.events: list[dict] = []
        log = Logger(namespace="test", observer=self.events.append)
        self.sink = sink or Applier(self.datadir, CopyFetcher(self.worker), as_root=False, log=log)
        self.fatal: list[str] = []
        self.client = MirrorClient(
            state=self.state,
            sink=self.sink,
            reactor=MemoryReactorClock(),
            run_blocking=lambda f, *a: maybeDeferred(f, *a),
            log=log,
            on_fatal=self.fatal.append,
            **kw,
        )

    def connect(self) -> tuple[MirrorProtocol, StringTransport]:
        proto = self.client.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def log_text(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)


def sent(transport: StringTransport) -> list[bytes]:
    """Lines the client wrote since the last call."""
    lines = transport.value().split(b"\n")[:-1]
    transport.clear()
    return lines


def feed(proto: MirrorProtocol, *lines: bytes) -> None:
    proto.dataReceived(b"".join(line + b"\r\n" for line in lines))


def init_stream(serial: int, *records: bytes) -> list[bytes]:
    return [b"SESSION:" + SESSION.encode(), b"SERIAL:%d" % serial, *records, b"EOF"]


def test_init_then_next_loop(tmp_path):
    """START, INIT applied and saved, 'init finished' logged, then each batch saved before NEXT."""
    h = Harness(tmp_path)
    with open(h.worker + b"/f", "wb") as f:
        f.write(b"content")
    proto, t = h.connect()
    assert sent(t) == [b"START"]
    feed(proto, b"OK")
    assert sent(t) == [b"INIT"]
    feed(proto, *init_stream(5, b"CREATE:/d", b"FWRITE:/f"))
    assert sent(t) == [b"NEXT"]
    assert h.state.load() == (SESSION, 5)
    with open(h.datadir + b"/f", "rb") as f:
        assert f.read() == b"content"
    assert os.path.isdir(h.datadir + b"/d")
    assert "init finished: 2 records, 1 files, 7 bytes" in h.log_text()
    feed(proto, b"SERIAL:7", b"DELETE:/d", b"EOF")
    assert sent(t) == [b"NEXT"]
    assert h.state.load() == (SESSION, 7) and not os.path.exists(h.datadir + b"/d")


def test_resume_with_sn(tmp_path):
    """With a saved position the client sends SN and, once accepted, NEXT (no INIT)."""
    h = Harness(tmp_path, saved=(SESSION, 41))
    proto, t = h.connect()
    feed(proto, b"OK")
    assert sent(t) == [b"START", f"SN:{SESSION},41".encode()]
    feed(proto, b"OK")
    assert sent(t) == [b"NEXT"]
    assert "resumed session" in h.log_text()
    feed(proto, b"SERIAL:42", b"CREATE:/new", b"EOF")
    assert h.state.load() == (SESSION, 42) and os.path.isdir(h.datadir + b"/new")


@pytest.mark.parametrize("reply", [b"SESSION INVALID", b"SERIAL OVERDUE OR INVALID"])
def test_refused_resume_falls_back_to_init_and_sweeps(tmp_path, reply):
    """A refused SN logs 'full resync', INITs, and removes what the new INIT lacks."""
    h = Harness(tmp_path, saved=("ffff", 3))
    os.makedirs(h.datadir + b"/srv/old")
    os.makedirs(h.datadir + b"/srv/keep")
    proto, t = h.connect()
    feed(proto, b"OK", reply)
    assert sent(t) == [b"START", b"SN:ffff,3", b"INIT"]
    assert f"full resync: server said {reply.decode()}" in h.log_text()
    feed(proto, *init_stream(9, b"CREATE:/srv/keep"))
    assert sorted(os.listdir(h.datadir + b"/srv")) == [b"keep"]
    assert h.state.load() == (SESSION, 9)
    assert os.listdir(h.state.staging) == []  # the seen-set is gone


def test_chunks_pause_the_transport(tmp_path):
    """Records are applied in chunks with the transport paused until each chunk is done."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, chunk=2)
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(3, b"CREATE:/a", b"CREATE:/b", b"CREATE:/c"))
    assert rec.chunks == [([b"CREATE:/a", b"CREATE:/b"], 3, True)]
    assert t.producerState == "paused"
    rec.finish()
    assert rec.chunks[1] == ([b"CREATE:/c"], 3, True)
    assert t.producerState == "paused" and h.state.load() is None
    rec.finish()
    assert t.producerState == "producing" and h.state.load() == (SESSION, 3)
    assert sent(t)[-1] == b"NEXT"
    feed(proto, b"SERIAL:4", b"DELETE:/a", b"EOF")
    assert rec.chunks[2] == ([b"DELETE:/a"], 4, False)


def test_init_reads_the_next_chunk_while_one_is_applied(tmp_path):
    """INIT: the chunk after the one being applied is read meanwhile; chunks still reach
    the sink one after the other, in order, and no more than two are in hand."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, chunk=2)
    proto, t = h.connect()
    names = [b"CREATE:/%s" % n for n in (b"a", b"b", b"c", b"d", b"e")]
    feed(proto, b"OK", *init_stream(3, *names))
    assert rec.chunks == [(names[:2], 3, True)]  # the second waits for the first
    assert list(proto.lines) == [names[4], b"EOF"]  # ... but it was read and parsed
    assert t.producerState == "paused"  # two chunks in hand: reading stops
    rec.finish()
    assert rec.chunks[1] == (names[2:4], 3, True)
    assert list(proto.lines) == [] and h.state.load() is None
    rec.finish()
    assert rec.chunks[2] == (names[4:], 3, True)
    rec.finish()
    assert h.state.load() == (SESSION, 3) and sent(t)[-1] == b"NEXT"


def test_init_chunk_failing_while_the_next_waits_drops_the_connection(tmp_path):
    """The chunk read ahead is never applied once the one before it failed."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, chunk=2)
    proto, t = h.connect()
    names = [b"CREATE:/%s" % n for n in (b"a", b"b", b"c", b"d", b"e")]
    feed(proto, b"OK", *init_stream(3, *names))
    rec.waiting.pop(0).errback(OSError(13, "Permission denied"))
    assert t.disconnecting and h.state.load() is None
    proto.connectionLost()
    assert len(rec.chunks) == 1
    assert h.client.when_idle().called  # nothing of the dropped connection is left running


def test_init_chunk_retried_for_a_full_disk_keeps_the_next_one_behind_it(tmp_path):
    """A chunk waiting for disk space is retried first: the one read after it waits."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, chunk=2)
    proto, t = h.connect()
    names = [b"CREATE:/%s" % n for n in (b"a", b"b", b"c", b"d", b"e")]
    feed(proto, b"OK", *init_stream(3, *names))
    rec.waiting.pop(0).errback(OSError(28, "No space left on device"))
    assert [chunk for chunk, _, _ in rec.chunks] == [names[:2]]
    h.client.reactor.advance(1)
    assert [chunk for chunk, _, _ in rec.chunks] == [names[:2]] * 2
    rec.finish()
    assert [chunk for chunk, _, _ in rec.chunks] == [names[:2]] * 2 + [names[2:4]]
    rec.finish()
    rec.finish()
    assert h.state.load() == (SESSION, 3) and not t.disconnecting


def test_failed_batch_drops_connection_without_saving(tmp_path):
    """A batch whose apply fails for another reason is not saved; the connection drops."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10))
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:12", b"CREATE:/x", b"EOF")
    rec.waiting.pop().errback(OSError(13, "Permission denied"))
    assert t.disconnecting and h.state.load() == (SESSION, 10)
    assert sent(t) == []
    assert "failed: [Errno 13] Permission denied" in h.log_text()


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        OSError(30, "Read-only file system"),
        BackendUnavailable("rsync daemon at w:873 refused the password for user u", auth=True),
        BackendUnavailable("connection refused by the FTP service at w:21"),
    ],
    ids=["ENOSPC", "EROFS", "backend-auth", "backend-down"],
)
def test_batch_waiting_for_disk_or_backend_is_retried_on_the_same_connection(tmp_path, error):
    """A full disk or an unavailable backend: the same batch again later, no save, no new INIT."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10))
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:12", b"CREATE:/x", b"EOF")
    clock = h.client.reactor
    for delay in (1, 2, 4):
        rec.waiting.pop().errback(error)
        assert not t.disconnecting and h.state.load() == (SESSION, 10) and sent(t) == []
        assert len(rec.chunks) == 1 + delay.bit_length() - 1
        clock.advance(delay)
    assert [chunk for chunk, _, _ in rec.chunks] == [[b"CREATE:/x"]] * 4
    message = error.strerror if isinstance(error, OSError) else str(error)
    assert "retrying in 4 s" in h.log_text() and message in h.log_text()
    rec.finish()
    assert h.state.load() == (SESSION, 12) and sent(t) == [b"NEXT"]


def test_batches_read_while_one_is_applied_go_together_after_it(tmp_path):
    """NEXT goes out as soon as a batch is in; the batches that come while it is applied
    are held and then applied as one chunk, in order, saved at their last serial."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10), ahead_from=1)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:11", b"CREATE:/a", b"EOF")
    assert rec.chunks == [([b"CREATE:/a"], 11, False)] and rec.firsts == [11]
    assert sent(t) == [b"NEXT"]
    feed(proto, b"SERIAL:13", b"CREATE:/b", b"CREATE:/c", b"EOF")
    assert sent(t) == [b"NEXT"]
    feed(proto, b"SERIAL:14", b"DELETE:/a", b"EOF")
    assert sent(t) == [b"NEXT"] and len(rec.chunks) == 1
    rec.finish()
    assert h.state.load() == (SESSION, 11)
    assert rec.chunks[1] == ([b"CREATE:/b", b"CREATE:/c", b"DELETE:/a"], 14, False)
    assert rec.firsts[1] == 12
    rec.finish()
    assert h.state.load() == (SESSION, 14) and sent(t) == [] and len(rec.chunks) == 2


def test_reading_ahead_stops_at_a_chunks_worth(tmp_path):
    """While a chunk is applied at most ``chunk`` records are held: reading pauses, and a
    chunk cut inside a batch saves only the batch end before the cut."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10), chunk=2, ahead_from=1)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:11", b"CREATE:/a", b"EOF")
    feed(proto, b"SERIAL:12", b"CREATE:/b", b"EOF")
    assert sent(t) == [b"NEXT", b"NEXT"]
    feed(proto, b"SERIAL:14", b"CREATE:/c", b"CREATE:/d", b"EOF")
    assert t.producerState == "paused" and sent(t) == [] and len(rec.chunks) == 1
    rec.finish()
    assert h.state.load() == (SESSION, 11)
    assert rec.chunks[1] == ([b"CREATE:/b", b"CREATE:/c"], 14, False) and rec.firsts[1] == 12
    assert t.producerState == "producing" and sent(t) == [b"NEXT"]  # /d held, room for more
    rec.finish()
    assert h.state.load() == (SESSION, 12)  # /c of batch 14 is in, /d not yet
    assert rec.chunks[2] == ([b"CREATE:/d"], 14, False) and rec.firsts[2] == 14
    rec.finish()
    assert h.state.load() == (SESSION, 14)


def test_what_was_read_after_a_failed_chunk_is_never_applied(tmp_path):
    """A chunk fails (not the disk, not the backend): the batches held behind it are dropped
    with the connection, unsaved, and nothing of the connection keeps running."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10), chunk=1, ahead_from=1)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    feed(proto, b"SERIAL:11", b"CREATE:/a", b"EOF", b"SERIAL:12", b"CREATE:/b", b"EOF")
    assert t.producerState == "paused"  # a chunk's worth held behind the one applied
    rec.waiting.pop().errback(OSError(13, "Permission denied"))
    assert t.disconnecting and h.state.load() == (SESSION, 10) and len(rec.chunks) == 1
    proto.connectionLost()
    assert h.client.when_idle().called


def test_only_a_burst_asks_ahead(tmp_path):
    """A lone change asks for the next batch once it is saved; a batch of ``ahead_from``
    records asks at once, while it is applied."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 10), ahead_from=3)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:11", b"CREATE:/a", b"EOF")
    assert sent(t) == []
    rec.finish()
    assert h.state.load() == (SESSION, 11) and sent(t) == [b"NEXT"]
    feed(proto, b"SERIAL:14", b"CREATE:/b", b"CREATE:/c", b"CREATE:/d", b"EOF")
    assert sent(t) == [b"NEXT"] and h.state.load() == (SESSION, 11)
    rec.finish()
    assert h.state.load() == (SESSION, 14) and sent(t) == []


def test_stop_in_a_burst_applies_nothing_read_ahead(tmp_path):
    """stop() while a chunk is applied and the next batch was asked for: the chunk finishes
    and saves, the batch read meanwhile is not applied, no more NEXT, then it closes."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 1), ahead_from=1)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:2", b"CREATE:/x", b"EOF")
    assert sent(t) == [b"NEXT"]
    stopped = h.client.stop()
    assert not stopped.called and not t.disconnecting
    feed(proto, b"SERIAL:3", b"CREATE:/y", b"EOF")
    rec.finish()
    assert h.state.load() == (SESSION, 2) and len(rec.chunks) == 1
    assert sent(t) == [] and t.disconnecting
    proto.connectionLost()
    assert stopped.called


def test_hostile_path_is_refused_and_the_rest_applies(tmp_path):
    """A hostile path from the server is refused, logged once and skipped; the INIT completes."""
    h = Harness(tmp_path)
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(2, b"CREATE:/../escape", b"CREATE:/fine"))
    assert not t.disconnecting and h.state.load() == (SESSION, 2)
    assert sent(t)[-1] == b"NEXT" and os.path.isdir(h.datadir + b"/fine")
    assert h.log_text().count("refused CREATE /../escape") == 1
    assert not os.path.exists(os.path.dirname(h.datadir) + b"/escape")


def test_stop_finishes_batch_in_hand(tmp_path):
    """stop() lets the chunk being applied finish and save, sends no NEXT, then closes."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 1))
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    sent(t)
    feed(proto, b"SERIAL:2", b"CREATE:/x", b"EOF")
    stopped = h.client.stop()
    assert not stopped.called and not t.disconnecting
    rec.finish()
    assert h.state.load() == (SESSION, 2)
    assert sent(t) == [] and t.disconnecting
    proto.connectionLost()
    assert stopped.called


def test_rotation_gate_holds_batches(tmp_path):
    """While the gate is held (a rotation runs), no chunk is applied; afterwards it is."""
    rec = Recorder()
    gate = DeferredLock()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 1), gate=gate)
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    held = gate.acquire()
    assert held.called
    feed(proto, b"SERIAL:2", b"CREATE:/x", b"EOF")
    assert rec.chunks == []
    gate.release()
    assert rec.chunks == [([b"CREATE:/x"], 2, False)]


def auth_sent(t: StringTransport, secret: bytes, nonce: str) -> str:
    """The client nonce of the AUTH line just sent, checking its proof (no TLS: B empty)."""
    start, auth = sent(t)
    assert start == b"START"
    proof, mine = auth.removeprefix(b"AUTH:").decode().split(":")
    assert proof == client_proof(secret, nonce, mine, b"")
    return mine


def test_auth_answers_challenge_and_checks_the_server_proof(tmp_path):
    """With a secret, the CHALLENGE gets AUTH:<Pc>:<Nc>; INIT follows the right OK:<Ps> only."""
    h = Harness(tmp_path, secret=b"s3cret")
    proto, t = h.connect()
    nonce = "00" * 16
    feed(proto, f"CHALLENGE:{nonce}".encode())
    mine = auth_sent(t, b"s3cret", nonce)
    feed(proto, b"OK:" + server_proof(b"s3cret", nonce, mine, b"").encode())
    assert sent(t) == [b"INIT"]


def test_client_nonce_is_new_for_every_connection(tmp_path):
    """Each connection answers with a nonce of its own."""
    h = Harness(tmp_path, secret=b"s3cret")
    nonces = set()
    for _ in range(3):
        proto, t = h.connect()
        feed(proto, b"CHALLENGE:" + b"00" * 16)
        nonces.add(auth_sent(t, b"s3cret", "00" * 16))
    assert len(nonces) == 3


@pytest.mark.parametrize("reply", [b"OK", b"OK:" + b"0" * 64])
def test_unproven_server_is_dropped_and_retried_not_fatal(tmp_path, reply):
    """A plain OK after AUTH, or a wrong proof: logged, dropped, nothing applied, not fatal."""
    h = Harness(tmp_path, secret=b"s3cret")
    proto, t = h.connect()
    feed(proto, b"CHALLENGE:" + b"00" * 16)
    sent(t)
    feed(proto, reply, b"SESSION:" + b"ab" * 16, b"SERIAL:1", b"CREATE:/fake", b"EOF")
    assert t.disconnecting and sent(t) == []
    assert h.fatal == [] and not os.path.lexists(h.datadir + b"/fake")


def test_server_answering_start_with_plain_ok_is_dropped_when_we_hold_a_secret(tmp_path):
    """With a secret, a server that never challenges gets no INIT: dropped, not fatal."""
    h = Harness(tmp_path, secret=b"s3cret")
    proto, t = h.connect()
    feed(proto, b"OK", b"SESSION:" + b"ab" * 16, b"SERIAL:1", b"CREATE:/fake", b"EOF")
    assert t.disconnecting and sent(t) == [b"START"]
    assert h.fatal == [] and not os.path.lexists(h.datadir + b"/fake")


def test_auth_failure_is_fatal(tmp_path):
    """AUTH FAILED stops fs_mirror for good with a message about the secret."""
    h = Harness(tmp_path, secret=b"wrong")
    proto, t = h.connect()
    feed(proto, b"CHALLENGE:" + b"11" * 16, b"AUTH FAILED")
    assert t.disconnecting
    assert h.fatal and "auth.secret-from" in h.fatal[0]


def test_a_failure_that_merely_mentions_authentication_is_retried(tmp_path):
    """Only the conversation's fatal flag stops fs_mirror, never the words of a failure."""
    h = Harness(tmp_path)
    proto, t = h.connect()
    feed(proto, b"FWRITE:/authentication/AUTH FAILED")  # a record where OK belongs
    assert t.disconnecting
    assert h.fatal == []


def test_overlong_line_drops_connection(tmp_path):
    """A line over the 64 KiB cap drops the connection instead of buffering forever."""
    h = Harness(tmp_path)
    proto, t = h.connect()
    proto.dataReceived(b"X" * 70000)
    assert t.disconnecting


def test_records_are_real_records(tmp_path):
    """Records reach the sink decoded, with %XX paths unquoted."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec)
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(1, b"FWRITE:/tab%09name\tmode=644"))
    assert Record.decode(rec.chunks[0][0][0]).path == b"/tab\tname"


def test_stop_aborts_a_peer_that_does_not_let_go(tmp_path):
    """stop() closes at once when idle, and aborts if the server has not let go in time."""
    h = Harness(tmp_path, saved=(SESSION, 1))
    proto, t = h.connect()
    feed(proto, b"OK", b"OK")
    stopped = h.client.stop()
    assert t.disconnecting and not t.disconnected
    h.client.reactor.advance(CLOSE_TIMEOUT)
    assert t.disconnected
    proto.connectionLost()
    assert stopped.called and h.client.reactor.getDelayedCalls() == []


def test_new_connection_waits_for_old_work_then_resumes_from_it(tmp_path):
    """A reconnect while a dropped connection's batch still applies starts after it, with its SN."""
    rec = Recorder()
    h = Harness(tmp_path, sink=rec, saved=(SESSION, 1))
    old, t_old = h.connect()
    feed(old, b"OK", b"OK")
    assert sent(t_old) == [b"START", f"SN:{SESSION},1".encode(), b"NEXT"]
    feed(old, b"SERIAL:2", b"CREATE:/x", b"EOF")
    old.connectionLost()
    new, t_new = h.connect()
    assert t_new.value() == b""
    rec.finish()
    assert h.state.load() == (SESSION, 2)
    assert sent(t_new) == [b"START"]
    feed(new, b"OK")
    assert sent(t_new) == [f"SN:{SESSION},2".encode()]
    assert sent(t_old) == []  # the dropped connection asks for nothing more


def _fill(root: bytes, count: int) -> None:
    os.makedirs(root, exist_ok=True)
    for i in range(count):
        with open(root + b"/f%d" % i, "wb") as f:
            f.write(b"kept")


def test_init_that_would_wipe_the_mirror_stops_and_keeps_it(tmp_path):
    """An INIT naming almost nothing of a full mirror stops fs_mirror; nothing is deleted."""
    h = Harness(tmp_path, max_delete=0.10)
    _fill(h.datadir + b"/srv", 50)
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(3, b"CREATE:/srv"))  # the worker's tree looks empty
    assert len(os.listdir(h.datadir + b"/srv")) == 50
    assert h.state.load() is None and b"NEXT" not in t.value()
    assert h.fatal and "would delete 50 of the 51 entries" in h.fatal[0]


def test_init_keeps_what_is_below_an_unreadable_directory(tmp_path):
    """CREATE with unreadable=1 in an INIT: the mirror's entries below it stay."""
    h = Harness(tmp_path, max_delete=0.10)
    _fill(h.datadir + b"/srv/locked", 5)
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(3, b"CREATE:/srv", b"CREATE:/srv/locked\tunreadable=1"))
    assert len(os.listdir(h.datadir + b"/srv/locked")) == 5
    assert h.state.load() == (SESSION, 3) and not h.fatal


def test_a_file_missed_during_the_init_is_still_owed_after_it(tmp_path):
    """A file renamed away while the INIT streamed is fetched under its new name later."""
    h = Harness(tmp_path)
    os.makedirs(h.worker + b"/d2")
    with open(h.worker + b"/d2/f", "wb") as f:
        f.write(b"moved during the INIT")
    proto, t = h.connect()
    feed(proto, b"OK", *init_stream(4, b"CREATE:/d", b"FWRITE:/d/f"))  # /d is /d2 by now
    assert h.state.load() == (SESSION, 4) and sent(t)[-1] == b"NEXT"
    feed(proto, b"SERIAL:5", b"MOVE:/d\t/d2", b"EOF")
    with open(h.datadir + b"/d2/f", "rb") as f:
        assert f.read() == b"moved during the INIT"


class StuckFetcher:
    """A fetch that never returns: the process is killed while it runs."""

    def fetch(self, items: Sequence[FetchItem]) -> Deferred:
        return Deferred()

    def close(self) -> Deferred:
        return succeed(None)


def test_batch_replayed_after_a_kill_mid_fetch_keeps_the_moved_tree(tmp_path):
    """CREATE /a/sub; MOVE /a /b; FWRITE /b/x, killed during the fetch, then replayed.

    Replaying the CREATE would make /a anew and the MOVE would then put that
    near-empty /a over the real /b: the whole moved tree lost.  The records
    the killed run applied are only worked out again for what they fetch.
    """
    datadir = os.fsencode(tmp_path / "mirror")
    for i in range(5):
        os.makedirs(datadir + b"/a/big", exist_ok=True)
        with open(datadir + b"/a/big/f%d" % i, "wb") as f:
            f.write(b"kept")
    batch = [b"SERIAL:13", b"CREATE:/a/sub", b"MOVE:/a\t/b", b"FWRITE:/b/x", b"EOF"]
    first = Harness(tmp_path, sink=Applier(datadir, StuckFetcher(), as_root=False),
                    saved=(SESSION, 10))  # fmt: skip
    proto, t = first.connect()
    feed(proto, b"OK", b"OK", *batch)
    assert sorted(os.listdir(datadir + b"/b/big")) == [b"f%d" % i for i in range(5)]
    first.state.release()  # kill -9 while the fetch runs: the serial stays at 10

    again = Harness(tmp_path)
    os.makedirs(again.worker + b"/b/sub")  # the worker's tree
    with open(again.worker + b"/b/x", "wb") as f:
        f.write(b"x")
    proto, t = again.connect()
    feed(proto, b"OK", b"OK", *batch)
    assert again.state.load() == (SESSION, 13)
    assert sorted(os.listdir(datadir + b"/b/big")) == [b"f%d" % i for i in range(5)]
    assert not os.path.exists(datadir + b"/a")
    with open(datadir + b"/b/x", "rb") as f:
        assert f.read() == b"x"


class Killed(BaseException):
    """kill -9: the batch's own error handling (``except Exception``) does not run."""


class DyingApplier(Applier):
    """Dies (``Killed``) once it has applied ``lives`` records to the disk."""

    def __init__(self, *args, lives: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.lives = lives

    def _apply(self, record: Record) -> None:
        super()._apply(record)
        self.lives -= 1
        if self.lives == 0:
            raise Killed


#: The worker made a tree /a, renamed it to /b, then made /a anew.  Before the
#: fix, a run killed after the MOVE but before the end of the chunk's disk
#: changes left nothing saved, and the replay's CREATE made /a again, so the
#: MOVE put that near-empty /a over the real /b.
KILLED_MID_APPLY = [
    b"SERIAL:15",
    b"CREATE:/a/sub",
    b"FWRITE:/a/sub/new",
    b"MOVE:/a\t/b",
    b"CREATE:/a",
    b"FWRITE:/a/y",
    b"FWRITE:/b/x",
    b"EOF",
]


@pytest.mark.parametrize("lives", range(1, 7))
def test_batch_replayed_after_a_kill_mid_apply_keeps_the_moved_tree(tmp_path, lives):
    """Killed after any record of a chunk with a MOVE in it: the replay converges."""
    datadir = os.fsencode(tmp_path / "mirror")
    os.makedirs(datadir + b"/a/big")
    for i in range(5):
        with open(datadir + b"/a/big/f%d" % i, "wb") as f:
            f.write(b"kept")
    dying = DyingApplier(datadir, StuckFetcher(), as_root=False, lives=lives)
    first = Harness(tmp_path, sink=dying, saved=(SESSION, 8))
    proto, _ = first.connect()
    feed(proto, b"OK", b"OK", *KILLED_MID_APPLY)  # Deferreds catch even a BaseException
    assert dying.lives == 0 and first.state.load() == (SESSION, 8)
    first.state.release()

    again = Harness(tmp_path)
    for path, content in ((b"/b/x", b"x"), (b"/a/y", b"y"), (b"/b/sub/new", b"n")):
        os.makedirs(os.path.dirname(again.worker + path), exist_ok=True)
        with open(again.worker + path, "wb") as f:
            f.write(content)
    proto, _ = again.connect()
    feed(proto, b"OK", b"OK", *KILLED_MID_APPLY)
    assert again.state.load() == (SESSION, 15), again.log_text()
    assert sorted(os.listdir(datadir + b"/b/big")) == [b"f%d" % i for i in range(5)]
    assert sorted(os.listdir(datadir + b"/b")) == [b"big", b"sub", b"x"]
    assert os.listdir(datadir + b"/a") == [b"y"]
    for path, content in ((b"/b/x", b"x"), (b"/a/y", b"y"), (b"/b/sub/new", b"n")):
        with open(datadir + path, "rb") as f:
            assert f.read() == content, path
