"""HeadTimes: when the log grew past a serial, bounded, for a client's lag in seconds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mirrord.headtimes import HeadTimes


def test_lag_is_the_age_of_the_first_missing_record():
    """A client at serial s lacks s+1 first: its lag is the time since s+1 was logged."""
    t = HeadTimes(10, 1000.0)
    t.grew(15, 1010.0)
    t.grew(20, 1030.0)
    assert t.lag_seconds(20, 20, 1040.0) == 0.0
    assert t.lag_seconds(15, 20, 1040.0) == 10.0  # 16 was logged at 1030
    assert t.lag_seconds(12, 20, 1040.0) == 30.0  # 13 was logged at 1010
    assert t.lag_seconds(3, 20, 1040.0) == 40.0  # logged before the start: since the start


def test_commits_within_the_resolution_share_one_window():
    """Commits closer than ``resolution`` merge: the window keeps its first time."""
    t = HeadTimes(0, 0.0, resolution=1.0)
    t.grew(1, 10.0)
    t.grew(2, 10.4)
    t.grew(3, 10.9)
    t.grew(4, 11.5)
    assert len(t) == 3  # start, [1..3] at 10.0, [4] at 11.5
    assert t.logged_at(3) == 10.0 and t.logged_at(4) == 11.5


def test_a_head_that_did_not_grow_changes_nothing():
    """A commit that logged nothing (or an older head) adds no window."""
    t = HeadTimes(5, 0.0)
    t.grew(5, 50.0)
    t.grew(4, 60.0)
    assert len(t) == 1 and t.logged_at(5) == 0.0


def test_memory_is_bounded_and_old_serials_get_a_lower_bound():
    """Past ``size`` windows the oldest go; a serial older than those kept gets the
    oldest time kept, so its lag is at most understated, never invented."""
    t = HeadTimes(0, 0.0, size=10)
    for i in range(1, 1001):
        t.grew(i, float(i * 10))
    assert len(t) <= 20
    assert t.lag_seconds(0, 1000, 20000.0) <= 20000.0 - 10.0
    assert t.lag_seconds(0, 1000, 20000.0) >= 20000.0 - 10000.0
    assert t.lag_seconds(999, 1000, 20000.0) == 10000.0


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 3)), max_size=60), st.data())
def test_logged_at_never_after_the_truth(steps, data):
    """Whatever the pattern of commits, logged_at(s) is at most the real time s was logged
    and at most ``resolution`` earlier while it is kept."""
    t = HeadTimes(0, 0.0, resolution=1.0, size=1000)
    head, now, truth = 0, 0.0, {}
    for grow, dt in steps:
        now += dt
        for s in range(head + 1, head + grow + 1):
            truth[s] = now
        head += grow
        t.grew(head, now)
    if truth:
        s = data.draw(st.sampled_from(sorted(truth)))
        assert truth[s] - 1.0 <= t.logged_at(s) <= truth[s]
