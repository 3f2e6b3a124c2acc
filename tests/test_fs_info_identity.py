"""Tests for fs_info.identity: membership by whole components, and the streaming walk."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fs_info import identity as identity_module
from fs_info.identity import Identity, IdentitySet, ancestors, normalize
from protocol.paths import is_under

# -- membership: pure, no I/O -------------------------------------------------


def test_include_covers_itself_and_below():
    """An include covers the path itself and everything under it, nothing beside it."""
    ident = Identity([b"/var/www"])
    assert b"/var/www" in ident
    assert b"/var/www/html/index.php" in ident
    assert b"/var" not in ident
    assert b"/var/www2" not in ident
    assert b"/var/ww" not in ident


def test_exclude_by_whole_component():
    """Excluding /a/cache removes /a/cache and below, but not /a/cache2."""
    ident = Identity([b"/a"], [b"/a/cache"])
    assert b"/a/cache" not in ident
    assert b"/a/cache/x" not in ident
    assert b"/a/cache2" in ident
    assert b"/a/cache2/x" in ident
    assert b"/a/cach" in ident


def test_include_nested_in_exclude_takes_it_back():
    """An include inside an excluded tree is included again, deeper excludes still apply."""
    ident = Identity([b"/a", b"/a/b/c"], [b"/a/b", b"/a/b/c/tmp"])
    assert b"/a/b/x" not in ident
    assert b"/a/b/c" in ident
    assert b"/a/b/c/d" in ident
    assert b"/a/b/c/tmp/f" not in ident


def test_exclude_of_the_include_itself_wins():
    """An exclude equal to an include excludes it."""
    assert b"/a/x" not in Identity([b"/a"], [b"/a"])


def test_root_include():
    """Including / covers every absolute path."""
    ident = Identity([b"/"], [b"/proc"])
    assert b"/" in ident and b"/etc/passwd" in ident
    assert b"/proc/1" not in ident


def test_non_bytes_is_never_a_member():
    """Only bytes paths can be members (str is a programming error, not a match)."""
    assert "/a" not in Identity([b"/a"])


@pytest.mark.parametrize("bad", [b"a/b", b"/a/", b"/a//b", b"/a/../b", b"", b"/a/./b"])
def test_identity_refuses_unnormalised_paths(bad):
    """Identity paths must be absolute and normalised."""
    with pytest.raises(ValueError):
        Identity([bad])


def test_identity_refuses_str_paths():
    """Identity paths are bytes."""
    with pytest.raises(TypeError):
        Identity(["/a"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "raw, norm",
    [
        (b"/a/b/", b"/a/b"),
        (b"//a//b", b"/a/b"),
        (b"/a/./b/../c", b"/a/c"),
        (b"/", b"/"),
        (b"///", b"/"),
        (b"/\xff/x", b"/\xff/x"),
    ],
)
def test_normalize(raw, norm):
    """normalize is lexical: slashes and dots only, bytes kept as they are."""
    assert normalize(raw) == norm


@pytest.mark.parametrize("bad", [b"rel", b"", b"/a\nb", b"/a\0b"])
def test_normalize_refuses(bad):
    """Relative paths and paths with newline or NUL are refused."""
    with pytest.raises(ValueError):
        normalize(bad)


def test_ancestors_and_is_under():
    """ancestors goes up to /; is_under compares whole components."""
    assert list(ancestors(b"/a/b/c")) == [b"/a/b/c", b"/a/b", b"/a", b"/"]
    assert list(ancestors(b"/")) == [b"/"]
    assert is_under(b"/a/b", b"/a") and is_under(b"/a", b"/a") and is_under(b"/a", b"/")
    assert not is_under(b"/ab", b"/a") and not is_under(b"/a", b"/a/b")


def test_roots_drop_nested_includes():
    """roots() are the includes not inside another include, sorted."""
    ident = Identity([b"/srv", b"/var/www/html", b"/var/www", b"/etc", b"/srv2"])
    assert ident.roots() == [b"/etc", b"/srv", b"/srv2", b"/var/www"]


def test_orphan_excludes():
    """An exclude strictly inside no include is reported as an orphan."""
    ident = Identity([b"/a"], [b"/a/b", b"/c/d", b"/a"])
    assert ident.orphan_excludes() == [b"/a", b"/c/d"]


def test_identity_set_membership():
    """A path belongs to a set if any identity includes it."""
    both = IdentitySet([Identity([b"/a"], [b"/a/tmp"]), Identity([b"/a/tmp/keep"])])
    assert b"/a/x" in both
    assert b"/a/tmp/keep/f" in both
    assert b"/a/tmp/other" not in both
    assert both.roots() == [b"/a"]


COMPONENTS = st.sampled_from([b"a", b"b", b"ab", b"a.b"])
PATHS = st.lists(COMPONENTS, min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts))


def defined_member(includes, excludes, path) -> bool:
    """Some include at or above the path with no exclude between them."""

    def under(p, top):
        return p == top or p.startswith(top + b"/")

    return any(
        under(path, inc) and not any(under(exc, inc) and under(path, exc) for exc in excludes)
        for inc in includes
    )


@given(st.sets(PATHS, max_size=4), st.sets(PATHS, max_size=4), PATHS)
def test_membership_matches_the_definition(includes, excludes, path):
    """Membership: some include at or above the path with no exclude between them."""
    assert (path in Identity(includes, excludes)) is defined_member(includes, excludes, path)


@given(st.sets(PATHS, max_size=4), st.sets(PATHS, max_size=4), st.lists(PATHS, max_size=30))
def test_remembered_membership_matches_the_definition(includes, excludes, paths):
    """One identity asked many times (its directory map filled, and cleared at its
    bound) answers each path as the definition does."""
    ident = Identity(includes, excludes)
    for path in paths + paths:
        assert (path in ident) is defined_member(includes, excludes, path)
    assert len(ident._dirs) <= identity_module.MEMBERSHIP_CACHE


def test_membership_map_is_bounded(monkeypatch):
    """Past its bound the directory map starts again: memory stays bounded."""
    monkeypatch.setattr(identity_module, "MEMBERSHIP_CACHE", 3)
    ident = Identity([b"/a"], [b"/a/x"])
    for i in range(10):
        assert b"/a/d%d/f" % i in ident
        assert b"/a/x/d%d/f" % i not in ident
    assert 0 < len(ident._dirs) <= 3


# -- the walk: real directories -------------------------------------------------


def make_tree(root, paths):
    for rel in paths:
        full = os.path.join(bytes(root), rel)
        if rel.endswith(b"/"):
            os.makedirs(full, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(b"x")


def rel(root, paths):
    base = bytes(root)
    return [p[len(base) :] or b"/" for p in paths]


@pytest.fixture
def root(tmp_path):
    return os.fsencode(tmp_path)


def test_find_order_dirs_before_contents(root):
    """find yields the root first, each directory before its contents, names sorted as bytes."""
    make_tree(root, [b"t/b/2", b"t/b/1", b"t/a", b"t/B/x", b"t/c/"])
    found = rel(root, Identity([root + b"/t"]).find())
    assert found == [b"/t", b"/t/B", b"/t/B/x", b"/t/a", b"/t/b", b"/t/b/1", b"/t/b/2", b"/t/c"]


def test_find_excludes_by_whole_component(root):
    """An excluded /a/cache is not walked; /a/cache2 is."""
    make_tree(root, [b"a/cache/x", b"a/cache2/x", b"a/f"])
    ident = Identity([root + b"/a"], [root + b"/a/cache"])
    assert rel(root, ident.find()) == [b"/a", b"/a/cache2", b"/a/cache2/x", b"/a/f"]


def test_find_nested_includes_once(root):
    """Nested and repeated includes yield each path once."""
    make_tree(root, [b"a/b/c/f", b"a/g"])
    ident = Identity([root + b"/a", root + b"/a/b", root + b"/a/b/c"])
    assert rel(root, ident.find()) == [b"/a", b"/a/b", b"/a/b/c", b"/a/b/c/f", b"/a/g"]


def test_find_include_inside_exclude(root):
    """An include inside an excluded tree is walked; the rest of that tree is not."""
    make_tree(root, [b"a/skip/keep/f", b"a/skip/other/f", b"a/skip/zz", b"a/x"])
    ident = Identity([root + b"/a", root + b"/a/skip/keep"], [root + b"/a/skip"])
    assert rel(root, ident.find()) == [b"/a", b"/a/skip/keep", b"/a/skip/keep/f", b"/a/x"]


def test_find_non_utf8_names(root):
    """Names that are not UTF-8 are yielded as the same bytes."""
    make_tree(root, [b"t/\xff\xfe/\x80", b"t/caf\xc3\xa9"])
    found = rel(root, Identity([root + b"/t"]).find())
    assert found == [b"/t", b"/t/caf\xc3\xa9", b"/t/\xff\xfe", b"/t/\xff\xfe/\x80"]


def test_find_does_not_follow_symlinks(root):
    """A symlink to a directory is yielded as itself, never walked into."""
    make_tree(root, [b"outside/secret", b"t/f"])
    os.symlink(root + b"/outside", root + b"/t/link")
    os.symlink(root + b"/outside", root + b"/linkroot")
    ident = Identity([root + b"/t", root + b"/linkroot"])
    assert rel(root, ident.find()) == [b"/linkroot", b"/t", b"/t/f", b"/t/link"]


def test_find_skips_missing_roots(root):
    """An include that does not exist yields nothing and does not stop the walk."""
    make_tree(root, [b"b/f"])
    ident = Identity([root + b"/a", root + b"/b"])
    assert rel(root, ident.find()) == [b"/b", b"/b/f"]


def test_find_skips_entries_vanishing_mid_walk(root):
    """Entries deleted after their directory was listed are skipped, not reported."""
    make_tree(root, [b"t/a/1", b"t/b/1", b"t/c", b"t/d/1"])
    found = []
    for path in Identity([root + b"/t"]).find():
        found.append(path)
        if path == root + b"/t/a":  # /t is listed already: b, c and d are pending
            os.unlink(root + b"/t/b/1")
            os.rmdir(root + b"/t/b")
            os.unlink(root + b"/t/c")
            os.unlink(root + b"/t/d/1")
    assert rel(root, found) == [b"/t", b"/t/a", b"/t/a/1", b"/t/d"]


def test_find_streams(root):
    """The walk is lazy: a file created in a directory not yet listed is found."""
    make_tree(root, [b"t/a/1", b"t/z/"])
    walk = Identity([root + b"/t"]).find()
    assert next(walk) == root + b"/t"
    with open(root + b"/t/z/late", "wb"):
        pass
    assert rel(root, walk) == [b"/t/a", b"/t/a/1", b"/t/z", b"/t/z/late"]


def test_walk_yields_lstat(root):
    """walk pairs each path with its lstat result."""
    make_tree(root, [b"t/f"])
    os.symlink(b"f", root + b"/t/l")
    kinds = {p: s.st_mode for p, s in Identity([root + b"/t"]).walk()}
    assert stat.S_ISLNK(kinds[root + b"/t/l"])
    assert stat.S_ISREG(kinds[root + b"/t/f"])


def test_walk_reports_other_errors(root):
    """An error other than 'vanished' goes to onerror, and the walk goes on."""
    make_tree(root, [b"t/f"])
    too_long = root + b"/" + b"x" * 300  # ENAMETOOLONG from lstat
    errors = []
    found = list(Identity([too_long, root + b"/t"]).find(lambda p, e: errors.append(p)))
    assert found == [root + b"/t", root + b"/t/f"]
    assert errors == [too_long]


def test_identity_set_find_each_path_once_in_order(root):
    """A set walks overlapping identities once, each directory before its contents."""
    make_tree(root, [b"a/tmp/keep/f", b"a/tmp/junk", b"a/x", b"b/y"])
    ident = IdentitySet(
        [
            Identity([root + b"/a"], [root + b"/a/tmp"]),
            Identity([root + b"/a/tmp/keep", root + b"/b"]),
            Identity([root + b"/a/x"]),
        ]
    )
    found = rel(root, ident.find())
    assert found == [b"/a", b"/a/tmp/keep", b"/a/tmp/keep/f", b"/a/x", b"/b", b"/b/y"]


def test_identity_value_semantics():
    """Identities compare and hash by their entries; an empty one is falsy."""
    a = Identity([b"/a"], [b"/a/b"])
    assert a == Identity([b"/a"], [b"/a/b"]) and hash(a) == hash(Identity([b"/a"], [b"/a/b"]))
    assert a != Identity([b"/a"]) and a != "/a"
    assert not Identity() and a
    assert "b'/a/b'" in repr(a)


def test_empty_set_walks_nothing(root):
    """An identity set without includes yields nothing."""
    assert list(IdentitySet([]).find()) == []
    assert list(IdentitySet([Identity([], [root])]).find()) == []
