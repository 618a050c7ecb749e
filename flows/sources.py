"""Finding source files and reading them as text, one bounded block at a time.

Sources are files, folders (recursive) and glob patterns.  A file that cannot be used (empty,
binary, unreadable, not UTF-8) becomes a ``Skipped`` with its reason; it never raises, so one bad
file cannot sink a run.  This module must never hold more than one block of one file in memory
and never touches the model or Milvus.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from flows.errors import SourceError

#: Bytes read at a time.  Large files are decoded and chunked block by block.
BLOCK_BYTES = 1 << 20
#: Bytes sniffed for NUL characters to tell binary files from text.
SNIFF_BYTES = 8192
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


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for an absolute glob pattern with ``glob.glob(recursive=True)``'s rules.

    ``*``/``?``/``[…]`` stay inside one path component, ``**`` spans any number of folders, and a
    wildcard at the start of a component does not match a leading dot (as glob hides dotfiles).
    Needed because prune must decide whether a *deleted* file was named by the pattern.
    """
    out: list[str] = []
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(r"(?:(?!\.)[^/]+/)*" if not last else r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+")
            continue
        piece = r"(?!\.)" if part[:1] in "*?[" and part else ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                piece += r"[^/]*"
            elif c == "?":
                piece += r"[^/]"
            elif c == "[":
                end = part.find("]", j + 2 if part[j + 1 : j + 2] in ("!", "]") else j + 1)
                if end < 0:
                    piece += r"\["
                else:
                    body = part[j + 1 : end].replace("\\", "\\\\")
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    piece += f"[{body}]"
                    j = end
            else:
                piece += re.escape(c)
            j += 1
        out.append(piece + ("" if last else "/"))
    return re.compile("".join(out))


def _glob_base(spec: str) -> tuple[Path, int | None]:
    """The folder a glob starts from (its parts before the first wildcard) and how deep it goes."""
    parts = Path(os.path.abspath(os.path.expanduser(spec))).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    rest = parts[len(fixed) :]
    depth = None if "**" in rest else len(rest)
    return Path(*fixed) if fixed else Path("/"), depth


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _not_regular(mode: int) -> str:
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
                    self.skipped.append(Skipped(source_name(path), _not_regular(mode)))
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
                skipped.append(Skipped(source_name(path), _not_regular(mode)))
        elif glob.has_magic(spec):
            base, depth = _glob_base(spec)
            pattern = _glob_regex(Path(os.path.abspath(os.path.expanduser(spec))).as_posix())
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
    return str(_glob_base(spec)[0])


class SourceReadError(Exception):
    """One source could not be read, decoded or parsed: that source's skip, with the reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UndecodableError(SourceReadError):
    """Raised while reading blocks: the file is not valid UTF-8 at a byte offset."""

    def __init__(self, byte_offset: int):
        super().__init__(f"not valid UTF-8 (at byte {byte_offset}); convert it to UTF-8")
        self.byte_offset = byte_offset


def os_reason(exc: OSError) -> str:
    """A one-line reason for an OS error on one file."""
    if isinstance(exc, FileNotFoundError):
        return "file vanished during the run (deleted or moved); rerun to pick up the change"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "replaced by a symlink during the run; not followed"
    return f"unreadable ({exc.strerror or exc})"


def open_source(path: Path, linked: bool = False) -> BinaryIO:
    """Open a source for reading without blocking on a FIFO or following a swapped-in link.

    Raises ``SourceReadError`` when it cannot be opened or is no longer a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if linked else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SourceReadError(os_reason(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceReadError(_not_regular(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_readable(path: Path, linked: bool = False) -> str | None:
    """Why the file cannot be ingested, or None; reads only its first block."""
    try:
        with open_source(path, linked) as handle:
            head = handle.read(SNIFF_BYTES)
    except SourceReadError as exc:
        return exc.reason
    except OSError as exc:
        return os_reason(exc)
    if not head:
        return "empty file"
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "binary file (NUL bytes)"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text; convert it to UTF-8"
    return None


def iter_text_blocks(
    path: Path, block_bytes: int = BLOCK_BYTES, digest: Any = None, linked: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(char_offset, text)`` blocks of a UTF-8 file (BOM dropped), cut at paragraph breaks.

    Blocks end at the last blank line (else line break, else whitespace) of what was read, so that
    chunking a block never cuts through a paragraph that fits in one.  Offsets count characters of
    the decoded text, so ``text[start:end]`` of the whole file equals a chunk.  ``digest`` (a
    hashlib object) is fed the raw bytes, so a caller can tell whether the file changed since it
    was inspected.  Failures raise ``SourceReadError`` with the reason.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    offset = 0
    consumed_bytes = 0
    first = True
    with open_source(path, linked) as handle:
        while True:
            try:
                raw = handle.read(block_bytes)
            except OSError as exc:
                raise SourceReadError(os_reason(exc)) from None
            if digest is not None:
                digest.update(raw)
            final = not raw
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as exc:
                raise UndecodableError(consumed_bytes + exc.start) from None
            consumed_bytes += len(raw)
            if first and text.startswith("\ufeff"):
                text = text[1:]
            if text:
                first = False
            pending += text
            if final:
                if pending:
                    yield offset, pending
                return
            if len(pending) < block_bytes:
                continue
            cut = _cut_point(pending)
            if cut <= 0:
                if len(pending) < 4 * block_bytes:
                    continue
                cut = block_bytes  # no whitespace at all: a hard cut keeps memory bounded
            yield offset, pending[:cut]
            offset += cut
            pending = pending[cut:]


def _cut_point(text: str) -> int:
    """Where to end a block: after the last paragraph break, else line break, else whitespace."""
    for separator in ("\n\n", "\n", " "):
        index = text.rfind(separator, len(text) // 2)
        if index > 0:
            return index + len(separator)
    return -1


@dataclass(frozen=True)
class TextDocument:
    """A document given as text rather than a file (evaluation corpora, API callers)."""

    source: str
    text: str


@dataclass(frozen=True)
class Inspection:
    """One pass over a source's bytes: its hash, and why it cannot be used (or None)."""

    sha256: str
    size: int
    reason: str | None


def inspect_source(item: SourceFile | TextDocument) -> Inspection:
    """Hash the bytes and validate them as UTF-8 text in one streamed pass.

    Validating before anything is written means a file that turns out not to be UTF-8 halfway
    through never leaves half a new version in the store.
    """
    if isinstance(item, TextDocument):
        data = item.text.encode("utf-8", "surrogatepass")
        reason = None if item.text.strip() else "empty document"
        return Inspection(hashlib.sha256(data).hexdigest(), len(data), reason)
    reason = check_readable(item.path, item.linked)
    if reason:
        return Inspection("", 0, reason)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    size = 0
    seen_text = False
    try:
        with open_source(item.path, item.linked) as handle:
            while True:
                raw = handle.read(BLOCK_BYTES)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:
                    return Inspection("", size, UndecodableError(size + exc.start).args[0])
                digest.update(raw)
                size += len(raw)
                if not seen_text and text.lstrip("\ufeff").strip():
                    seen_text = True
                if not raw:
                    break
    except SourceReadError as exc:
        return Inspection("", size, exc.reason)
    except OSError as exc:
        return Inspection("", size, os_reason(exc))
    return Inspection(digest.hexdigest(), size, None if seen_text else "no text (only whitespace)")


def iter_blocks(item: SourceFile | TextDocument, digest: Any = None) -> Iterator[tuple[int, str]]:
    """``(char_offset, text)`` blocks of a file or a text document (``digest``: see iter_text_blocks)."""
    if isinstance(item, TextDocument):
        if digest is not None:
            digest.update(item.text.encode("utf-8", "surrogatepass"))
        yield 0, item.text
    else:
        yield from iter_text_blocks(item.path, digest=digest, linked=item.linked)
