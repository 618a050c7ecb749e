"""Source discovery and the reasons a file is skipped (never raised)."""

from __future__ import annotations

import os

import pytest

from flows.errors import SourceError
from flows.sources import SourceFile, TextDocument, discover_sources, inspect_source

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


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    assert "permission" in inspect_source(SourceFile(path, str(path))).reason
