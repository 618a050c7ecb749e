"""Finding sources: files, folders (recursive) and glob patterns, under one symlink policy.

What is found is a ``SourceFile``; what cannot be used (a refused link, an unreadable folder, a
FIFO) is a ``Skipped`` with its reason, never an exception, so one bad entry cannot sink a run.
``Discovery.is_gone`` is the one rule ``--prune`` follows.  This module must never open a file's
contents (``reading`` does) and never touches the model or Milvus.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from milvus_ingest.errors import SourceError
from milvus_ingest.globs import glob_base, glob_regex

#: Milvus VARCHAR limit for the stored source path, in UTF-8 bytes.
SOURCE_MAX_BYTES = 4096


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: ``source`` is the name stored in Milvus (absolute POSIX path).

    ``linked`` says discovery reached it through a symlink it chose to follow; any other file is
    opened without following a link, so a file swapped for a link mid-run is refused, not read.
    """

    path: Path
    source: str
    linked: bool = False


@dataclass(frozen=True)
class TextDocument:
    """A document given as text rather than a file (evaluation corpora, API callers).

    ``title`` is stored on its rows and, with contextual chunks, embedded with each of them."""

    source: str
    text: str
    title: str = ""

    def identity(self) -> bytes:
        """What its version stamp hashes: the title (when given) and the text."""
        data = self.text.encode("utf-8", "surrogatepass")
        return (self.title.encode("utf-8", "surrogatepass") + b"\x00" + data) if self.title else data


@dataclass(frozen=True)
class Skipped:
    """A source not read this run.  ``refused`` marks a rule's refusal (a symlink the policy does
    not follow), which for ``--prune`` is as good as gone; any other skip keeps stored rows."""

    source: str
    reason: str
    refused: bool = False


def _excluded(path: Path, root: Path, exclude: list[str]) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in exclude)


def _included(path: Path, include: list[str]) -> bool:
    return not include or any(fnmatch.fnmatch(path.name, pattern) for pattern in include)


def source_name(path: Path) -> str:
    """The stable name of a file in the store: its absolute path, symlinks in the folders kept."""
    return Path(os.path.abspath(path)).as_posix()


FollowSymlinks = Literal["inside", "all", "none"]


@dataclass(frozen=True)
class Scope:
    """What one source spec covers, for ``--prune``: a file, a folder, or a glob under a folder.

    ``prune`` removes a stored source only when a scope covers it *and* its file is gone (or, for
    a folder, no longer passes the include/exclude rules); a glob covers only the paths its
    pattern matches, so a narrower pattern never condemns files it did not name.
    """

    kind: Literal["file", "folder", "glob"]
    root: str
    pattern: re.Pattern[str] | None = None

    def covers(self, source: str) -> bool:
        if self.kind == "file":
            return source == self.root
        if not _under(source, [self.root]):
            return False
        return self.pattern is None or self.pattern.fullmatch(source) is not None


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[Skipped]
    scopes: list[Scope] = field(default_factory=list)
    #: Folders that could not be read (or links not followed): sources below them are not gone.
    unread_folders: list[str] = field(default_factory=list)

    @property
    def roots(self) -> list[str]:
        return sorted({scope.root for scope in self.scopes})

    def is_gone(self, source: str) -> bool:
        """True when ``--prune`` may remove ``source``: covered, not seen, and not just unreadable."""
        if _under(source, self.unread_folders):
            return False
        for scope in self.scopes:
            if not scope.covers(source):
                continue
            if scope.kind == "folder" or not os.path.lexists(source):
                return True
        return False


def _under(source: str, roots: Sequence[str]) -> bool:
    return any(source == r or source.startswith(r.rstrip("/") + "/") for r in roots)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return f"not a regular file ({name})"
    return "not a regular file"


class _Walker:
    """Walks folders with one symlink policy, recording what it skips and why."""

    def __init__(self, real_roots: list[str], include: list[str], exclude: list[str], follow: FollowSymlinks):
        self.real_roots = real_roots
        self.include = include
        self.exclude = exclude
        self.follow = follow
        self.skipped: list[Skipped] = []
        self.unread: list[str] = []

    def link_refusal(self, path: str) -> str | None:
        """Why a symlink at ``path`` is not followed, or None."""
        target = os.path.realpath(path)
        if not os.path.exists(target):
            return "broken symlink"
        if self.follow == "none":
            return "symlink not followed (sources.follow_symlinks: none)"
        if self.follow == "inside" and not _under(target, self.real_roots):
            return "symlink outside the source roots"
        return None

    def walk(self, root: Path, depth: int | None, match: re.Pattern[str] | None) -> Iterator[tuple[Path, bool]]:
        """``(path, via a link)`` of regular files under ``root``, ``depth`` levels down when given.

        Real folders are read before linked ones, so a link to a folder that is also reached
        directly never claims its files; a folder already read (a loop) is listed and passed.
        """
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[Path, int]] = [(root, 0)]
        linked: list[tuple[Path, int]] = []
        while stack or linked:
            folder, level = stack.pop() if stack else linked.pop(0)
            try:
                info = folder.stat()
                if (info.st_dev, info.st_ino) in seen:
                    self._skip(folder, "symlink to a folder already read (a loop or a duplicate)", unread=False)
                    continue
                seen.add((info.st_dev, info.st_ino))
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                self._skip(folder, f"folder unreadable ({exc.strerror or exc})")
                continue
            subfolders: list[tuple[Path, int]] = []
            for entry in entries:
                path = Path(entry.path)
                if _excluded(path, root, self.exclude):
                    continue
                try:
                    is_link = entry.is_symlink()
                    is_dir = entry.is_dir()
                except OSError as exc:
                    self.skipped.append(Skipped(source_name(path), f"unreadable ({exc.strerror or exc})"))
                    continue
                if is_dir:
                    if depth is not None and level + 1 >= depth:
                        continue
                    if not is_link:
                        subfolders.append((path, level + 1))
                    elif reason := self.link_refusal(entry.path):
                        self.skipped.append(Skipped(source_name(path), reason, refused=True))
                    else:
                        linked.append((path, level + 1))
                    continue
                if depth is not None and level + 1 != depth:
                    continue
                if not _included(path, self.include) or (match and not match.fullmatch(source_name(path))):
                    continue
                if is_link and (reason := self.link_refusal(entry.path)):
                    self.skipped.append(Skipped(source_name(path), reason, refused=reason != "broken symlink"))
                    continue
                try:
                    mode = os.stat(path).st_mode
                except OSError as exc:
                    self.skipped.append(Skipped(source_name(path), f"unreadable ({exc.strerror or exc})"))
                    continue
                if stat.S_ISREG(mode):
                    yield path, is_link
                else:
                    self.skipped.append(Skipped(source_name(path), not_regular(mode)))
            stack.extend(reversed(subfolders))

    def _skip(self, folder: Path, reason: str, unread: bool = True) -> None:
        """A folder not read: with ``unread``, nothing stored below it counts as gone."""
        name = source_name(folder)
        self.skipped.append(Skipped(name, reason))
        if unread:
            self.unread.append(name)


def discover_sources(
    specs: list[str], include: list[str], exclude: list[str], follow_symlinks: FollowSymlinks = "inside"
) -> Discovery:
    """Expand files, folders and globs into a sorted, de-duplicated file list.

    A path given explicitly is taken whatever its extension (and even when it is a link: the
    user named it); files found inside folders or by globs must match ``include`` and not
    ``exclude``, and symlinks among them follow ``follow_symlinks``: ``inside`` (the default)
    follows a link only when its target lies inside one of the roots given, ``all`` follows
    every link, ``none`` follows none.  Refused links, unreadable folders, FIFOs and sockets are
    listed as skipped with their reason.  A spec that finds nothing at all is an error (a typo, or
    an unmounted folder, must not look like an empty corpus).
    """
    if not specs:
        raise SourceError("no sources given: pass one or more files, folders or glob patterns")
    found: dict[str, SourceFile] = {}
    skipped: list[Skipped] = []
    scopes: list[Scope] = []

    def add(path: Path, linked: bool) -> None:
        name = source_name(path)
        if name in found:
            return
        if len(name.encode("utf-8", "surrogateescape")) > SOURCE_MAX_BYTES:
            skipped.append(Skipped(name, f"path longer than {SOURCE_MAX_BYTES} bytes"))
            return
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            skipped.append(Skipped(name, "file name is not valid UTF-8; rename the file"))
            return
        found[name] = SourceFile(path=path, source=name, linked=linked)

    real_roots = [os.path.realpath(_spec_root(spec)) for spec in specs]
    walker = _Walker(real_roots, include, exclude, follow_symlinks)
    for spec in specs:
        path = Path(spec).expanduser()
        before = len(found) + len(walker.skipped)
        if path.is_dir():
            scopes.append(Scope("folder", source_name(path)))
            for hit, linked in walker.walk(path, None, None):
                add(hit, linked)
            if len(found) + len(walker.skipped) == before:
                raise SourceError(
                    f"folder {spec!r} holds no files matching sources.include ({', '.join(include) or 'any'}): "
                    "check the path, or add the suffixes to sources.include"
                )
        elif os.path.lexists(path) and path.exists():
            scopes.append(Scope("file", source_name(path)))
            mode = path.stat().st_mode
            if stat.S_ISREG(mode):
                add(path, path.is_symlink())
            else:
                skipped.append(Skipped(source_name(path), not_regular(mode)))
        elif glob.has_magic(spec):
            base, depth = glob_base(spec)
            pattern = glob_regex(Path(os.path.abspath(os.path.expanduser(spec))).as_posix())
            scopes.append(Scope("glob", source_name(base), pattern))
            if base.is_dir():
                for hit, linked in walker.walk(base, depth, pattern):
                    add(hit, linked)
            if len(found) + len(walker.skipped) == before:
                raise SourceError(f"glob {spec!r} matched no files (check the pattern and quoting)")
        else:
            raise SourceError(f"source {spec!r} does not exist (check the path)")
    files = sorted(found.values(), key=lambda f: f.source)
    return Discovery(files, skipped + walker.skipped, scopes, sorted(set(walker.unread)))


def _spec_root(spec: str) -> str:
    """The folder or file a spec names, for the ``inside`` symlink rule (a glob: its base)."""
    path = Path(spec).expanduser()
    if os.path.lexists(path) or not glob.has_magic(spec):
        return str(path)
    return str(glob_base(spec)[0])
