"""cmdconfig.logs: journald's priority prefixes, when they are used, and the reopened log file."""

from __future__ import annotations

import io
import os
from pathlib import Path

from twisted.logger import Logger, LogLevel

from cmdconfig.logs import (
    LogFile,
    format_line,
    journal_wanted,
    make_observer,
    parse_journal_stream,
)


def event(level: LogLevel, text: str) -> dict:
    return {"log_level": level, "log_format": text, "log_time": 0.0, "log_namespace": "x"}


def test_each_level_gets_its_syslog_priority_and_no_timestamp():
    """<7> debug, <6> info, <4> warning, <3> error, <2> critical (sd-daemon(3)); journald
    stamps the time itself, so the line starts with the priority."""
    want = {
        LogLevel.debug: "<7>[mirrord] d",
        LogLevel.info: "<6>[mirrord] d",
        LogLevel.warn: "<4>[mirrord] warning: d",
        LogLevel.error: "<3>[mirrord] error: d",
        LogLevel.critical: "<2>[mirrord] critical: d",
    }
    for level, line in want.items():
        assert format_line(event(level, "d"), "mirrord", journal=True) == line + "\n"


def test_plain_lines_keep_their_timestamp_and_no_priority():
    """Without the journal: ``TIMESTAMP [prog] message`` as before."""
    line = format_line(event(LogLevel.warn, "w"), "fs_mirror")
    assert not line.startswith("<")
    assert line.endswith(" [fs_mirror] warning: w\n")


def test_a_traceback_is_filed_at_the_events_priority_line_by_line():
    """Each line of a failure's traceback carries the priority, so journald keeps it at error
    level rather than filing its lines as info."""
    stream = io.StringIO()
    log = Logger(observer=make_observer(0, stream, "fs_mirror", journal=True))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("apply failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<2>[fs_mirror] critical: apply failed"
    assert len(lines) > 2 and all(line.startswith("<2>") for line in lines)
    assert lines[-1].endswith("division by zero")


def test_a_control_character_cannot_start_a_line_without_its_priority():
    """A newline in a message (a file name) stays escaped in the journal too."""
    line = format_line(event(LogLevel.info, "a\nb"), "mirrord", journal=True)
    assert line == "<6>[mirrord] a\\nb\n"


def test_journal_stream_is_device_colon_inode():
    """systemd.exec(5): JOURNAL_STREAM is ``DEVICE:INODE``, both decimal."""
    assert parse_journal_stream("8:1234") == (8, 1234)
    for bad in ("", "8", "8:", ":12", "a:1", "8:1:2", "-1:3"):
        assert parse_journal_stream(bad) is None, bad


def test_journal_wanted_only_when_stderr_is_that_stream(tmp_path: Path):
    """The priorities are used when JOURNAL_STREAM names the stream's own device and inode;
    a child whose stderr went elsewhere, but which inherited the variable, writes plain."""
    with open(tmp_path / "err", "w") as ours, open(tmp_path / "other", "w") as other:
        st = os.fstat(ours.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert journal_wanted(ours, env)
        assert not journal_wanted(other, env)
        assert not journal_wanted(ours, {})
        assert not journal_wanted(ours, {"JOURNAL_STREAM": "garbage"})
    assert not journal_wanted(io.StringIO(), env)  # no descriptor at all


def test_log_file_reopen_follows_a_rotation(tmp_path: Path):
    """After the file is renamed away (logrotate), ``reopen`` writes to a new file at the path."""
    path = tmp_path / "fs_mirror.log"
    log_file = LogFile(str(path))
    log = Logger(observer=make_observer(0, log_file, "fs_mirror"))
    log.info("before")
    path.rename(tmp_path / "fs_mirror.log.1")
    log.info("still to the old file")
    log_file.reopen()
    log.info("after")
    old = (tmp_path / "fs_mirror.log.1").read_text()
    assert "before" in old and "still to the old file" in old and "after" not in old
    assert "after" in path.read_text() and "before" not in path.read_text()
