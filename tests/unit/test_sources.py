"""Source discovery and the reasons a file is skipped (never raised)."""

from __future__ import annotations

import os

import pytest

from milvus_ingest.errors import SourceError
from milvus_ingest.reading import inspect_source
from milvus_ingest.sources import SourceFile, TextDocument, discover_sources

INCLUDE = ["*.txt", "*.md", "*.rst"]
EXCLUDE = [".*", "__pycache__"]


def _tree(root):
    (root / "a").mkdir()
    (root / "a" / "one.txt").write_text("one")
    (root / "a" / "two.md").write_text("two")
    (root / "a" / "skip.bin").write_bytes(b"\x00\x01")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.txt").write_text("hidden")
    (root / "b.rst").write_text("b")
    return root


def test_folders_files_and_globs(tmp_path):
    root = _tree(tmp_path)
    found = discover_sources([str(root)], INCLUDE, EXCLUDE)
    names = [os.path.relpath(f.path, root) for f in found.files]
    assert names == ["a/one.txt", "a/two.md", "b.rst"]
    assert all(f.source == str(f.path.resolve()) or f.source.endswith(os.path.relpath(f.path, root)) for f in found.files)
    assert found.roots == [str(root)]
    by_glob = discover_sources([str(root / "**" / "*.md")], INCLUDE, EXCLUDE)
    assert [f.path.name for f in by_glob.files] == ["two.md"]
    # An explicit file is taken whatever its extension; duplicates collapse.
    explicit = discover_sources([str(root / "a" / "skip.bin"), str(root / "a" / "skip.bin")], INCLUDE, EXCLUDE)
    assert len(explicit.files) == 1


def test_missing_paths_and_empty_globs_are_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        discover_sources([str(tmp_path / "missing")], INCLUDE, EXCLUDE)
    with pytest.raises(SourceError, match="matched no files"):
        discover_sources([str(tmp_path / "*.nothing")], INCLUDE, EXCLUDE)
    with pytest.raises(SourceError, match="no sources"):
        discover_sources([], INCLUDE, EXCLUDE)


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty file"),
        (b"   \n\t\n", "no text"),
        (b"\xef\xbb\xbf", "no text"),
        ("\u200b\u200d\u00ad \n\u2060\ufeff\u200e".encode() * 5000, "invisible characters"),
        (b"text\x00with nul", "binary"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("caf\u00e9 latin-1".encode("latin-1"), "not valid UTF-8"),
        (b"ok text " * 400_000 + b"\xff", "not valid UTF-8"),
        ("utf-16 text".encode("utf-16"), "UTF-16"),
    ],
)
def test_unusable_files_get_a_reason(tmp_path, content, reason):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    result = inspect_source(SourceFile(path, str(path)))
    assert result.reason and reason in result.reason


def test_good_files_hash_and_bom_is_accepted(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("héllo wörld", encoding="utf-8")
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "héllo wörld".encode())
    a = inspect_source(SourceFile(plain, str(plain)))
    b = inspect_source(SourceFile(bom, str(bom)))
    assert a.reason is None and b.reason is None and a.sha256 != b.sha256 and len(a.sha256) == 64
    assert inspect_source(TextDocument("d", "  ")).reason == "empty document"
    assert inspect_source(TextDocument("d", "\u200b\u200b")).reason == "empty document"
    # invisible characters around visible text are kept: the text is what counts
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\u200b" * 70_000 + "soft\u00adhyphen", encoding="utf-8")
    assert inspect_source(SourceFile(mixed, str(mixed))).reason is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    assert "permission" in inspect_source(SourceFile(path, str(path))).reason


# -- prune scope: what a spec covers ------------------------------------------------------


def _mixed_tree(root):
    for rel in ["a.txt", "b.md", "sub/c.txt", "sub/d.md", "sub/deep/e.md", "sub/deep/f.txt", "x/y.rst", ".dot/g.md"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


@pytest.mark.parametrize(
    "pattern",
    ["**/*.md", "*.txt", "sub/*", "**", "sub/**/*.txt", "*/deep/*.md", "[ab].*", "s?b/*.md", "**/deep/*", "*/*/*"],
)
def test_glob_specs_find_what_glob_finds(tmp_path, pattern):
    import glob as globmod

    root = _mixed_tree(tmp_path)
    spec = str(root / pattern)
    expected = sorted(p for p in globmod.glob(spec, recursive=True) if os.path.isfile(p))
    found = discover_sources([spec], ["*"], [".*"])
    assert sorted(str(f.path) for f in found.files) == expected
    # The scope's pattern says the same of every path, existing or not (prune asks it of deleted files).
    (scope,) = found.scopes
    every = sorted(str(p) for p in root.rglob("*") if p.is_file() and ".dot" not in str(p))
    assert sorted(p for p in every if scope.covers(p)) == expected


def test_a_glob_never_condemns_files_it_did_not_name(tmp_path):
    root = _mixed_tree(tmp_path)
    found = discover_sources([str(root / "**" / "*.md")], ["*"], [".*"])
    # Still on disk but not named by the pattern: never gone.
    assert not found.is_gone(str(root / "a.txt"))
    assert not found.is_gone(str(root / "sub" / "c.txt"))
    # Named by the pattern and still there: not gone either.
    assert not found.is_gone(str(root / "sub" / "d.md"))
    # Named by the pattern but deleted: gone.
    assert found.is_gone(str(root / "deleted.md"))
    assert found.is_gone(str(root / "sub" / "deep" / "deleted.md"))
    # A deleted file the pattern does not name: not this run's business.
    assert not found.is_gone(str(root / "deleted.txt"))
    assert not found.is_gone(str(tmp_path.parent / "elsewhere.md"))


def test_a_folder_scope_prunes_deleted_and_excluded_files_only(tmp_path):
    root = _mixed_tree(tmp_path)
    found = discover_sources([str(root)], ["*.md", "*.txt"], [".*"])
    assert {f.path.name for f in found.files} == {"a.txt", "b.md", "c.txt", "d.md", "e.md", "f.txt"}
    assert found.is_gone(str(root / "deleted.txt"))
    assert found.is_gone(str(root / "x" / "y.rst"))  # exists but no longer matches sources.include
    assert not found.is_gone(str(tmp_path.parent / "outside.txt"))
    single = discover_sources([str(root / "a.txt")], INCLUDE, EXCLUDE)
    assert not single.is_gone(str(root / "a.txt")) and not single.is_gone(str(root / "b.md"))


def test_an_unreadable_folder_is_listed_and_protected(tmp_path, monkeypatch):
    """As root a chmod does not stop reads, so the OS error is injected at the listing."""
    root = _mixed_tree(tmp_path)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("/sub"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover_sources([str(root)], ["*"], [".*"])
    assert [s.reason for s in found.skipped if s.source == str(root / "sub")] == ["folder unreadable (Permission denied)"]
    assert not found.is_gone(str(root / "sub" / "c.txt")) and not found.is_gone(str(root / "sub" / "deep" / "e.md"))
    assert found.is_gone(str(root / "gone.txt"))


def test_empty_folders_and_special_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no files"):
        discover_sources([str(tmp_path / "empty")], INCLUDE, EXCLUDE)
    (tmp_path / "only-other").mkdir()
    (tmp_path / "only-other" / "x.bin").write_bytes(b"x")
    with pytest.raises(SourceError, match="holds no files"):
        discover_sources([str(tmp_path / "only-other")], INCLUDE, EXCLUDE)
    special = tmp_path / "special"
    special.mkdir()
    (special / "ok.txt").write_text("fine")
    os.mkfifo(special / "pipe.txt")
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(special / "sock.txt"))
    try:
        found = discover_sources([str(special)], INCLUDE, EXCLUDE)
        explicit = discover_sources([str(special / "pipe.txt")], INCLUDE, EXCLUDE)
    finally:
        sock.close()
    assert [f.path.name for f in found.files] == ["ok.txt"]
    reasons = {os.path.basename(s.source): s.reason for s in found.skipped}
    assert reasons == {"pipe.txt": "not a regular file (a FIFO)", "sock.txt": "not a regular file (a socket)"}
    assert [s.reason for s in explicit.skipped] == ["not a regular file (a FIFO)"] and not explicit.files


# -- symlinks -----------------------------------------------------------------------------


def _linked_tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.txt").write_text("outside inner")
    root = tmp_path / "corpus"
    (root / "real").mkdir(parents=True)
    (root / "real" / "doc.txt").write_text("inside doc")
    (root / "passwd.txt").symlink_to(outside / "secret.txt")
    (root / "ext").symlink_to(outside / "dir")
    (root / "alias.txt").symlink_to(root / "real" / "doc.txt")
    (root / "again").symlink_to(root / "real")
    (root / "real" / "loop").symlink_to(root)
    (root / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    return root, outside


def test_symlinks_outside_the_roots_are_skipped_by_default(tmp_path):
    root, outside = _linked_tree(tmp_path)
    found = discover_sources([str(root)], INCLUDE, EXCLUDE)
    assert sorted(os.path.relpath(f.path, root) for f in found.files) == ["alias.txt", "real/doc.txt"]
    reasons = {os.path.relpath(s.source, root): s.reason for s in found.skipped}
    assert reasons["passwd.txt"] == "symlink outside the source roots"
    assert reasons["ext"] == "symlink outside the source roots"
    assert reasons["broken.txt"] == "broken symlink"
    assert "already read" in reasons["again"] and "already read" in reasons["real/loop"]
    # Nothing that resolves outside is read, under any name.
    assert not any(os.path.realpath(f.path).startswith(str(outside)) for f in found.files)
    # The same rule holds for globs, including links met on the way down.
    by_glob = discover_sources([str(root / "**" / "*.txt")], INCLUDE, EXCLUDE)
    assert not any(os.path.realpath(f.path).startswith(str(outside)) for f in by_glob.files)
    assert {os.path.relpath(s.source, root): s.reason for s in by_glob.skipped}["passwd.txt"] == "symlink outside the source roots"


def test_a_second_root_makes_its_targets_inside(tmp_path):
    root, outside = _linked_tree(tmp_path)
    found = discover_sources([str(root), str(outside)], INCLUDE, EXCLUDE)
    names = {f.source for f in found.files}
    assert str(root / "passwd.txt") in names and str(root / "ext" / "inner.txt") in names


def test_follow_symlinks_all_and_none(tmp_path):
    root, outside = _linked_tree(tmp_path)
    every = discover_sources([str(root)], INCLUDE, EXCLUDE, follow_symlinks="all")
    assert {os.path.relpath(f.path, root) for f in every.files} == {"alias.txt", "passwd.txt", "ext/inner.txt", "real/doc.txt"}
    none = discover_sources([str(root)], INCLUDE, EXCLUDE, follow_symlinks="none")
    assert [os.path.relpath(f.path, root) for f in none.files] == ["real/doc.txt"]
    assert all("follow_symlinks: none" in s.reason for s in none.skipped if "broken" not in s.reason)
    # A path named explicitly is read, link or not: the user named it.
    explicit = discover_sources([str(root / "passwd.txt")], INCLUDE, EXCLUDE, follow_symlinks="none")
    assert [f.path.name for f in explicit.files] == ["passwd.txt"]


def test_refused_links_count_as_gone_for_prune_but_unreadable_ones_do_not(tmp_path):
    root, _ = _linked_tree(tmp_path)
    found = discover_sources([str(root)], INCLUDE, EXCLUDE)
    refused = {os.path.relpath(s.source, root) for s in found.skipped if s.refused}
    assert refused == {"passwd.txt", "ext"}
