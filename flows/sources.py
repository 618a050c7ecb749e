"""Finding source files and reading them as text, one bounded block at a time.

Sources are files, folders (recursive) and glob patterns.  A file that cannot be used (empty,
binary, unreadable, not UTF-8) becomes a ``Skipped`` with its reason; it never raises, so one bad
file cannot sink a run.  This module must never hold more than one block of one file in memory
and never touches the model or Milvus.
"""

from __future__ import annotations

import codecs
import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flows.errors import SourceError

#: Bytes read at a time.  Large files are decoded and chunked block by block.
BLOCK_BYTES = 1 << 20
#: Bytes sniffed for NUL characters to tell binary files from text.
SNIFF_BYTES = 8192
#: Milvus VARCHAR limit for the stored source path, in UTF-8 bytes.
SOURCE_MAX_BYTES = 4096


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: ``source`` is the name stored in Milvus (absolute POSIX path)."""

    path: Path
    source: str


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[Skipped]
    roots: list[str]


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


def discover_sources(
    specs: list[str], include: list[str], exclude: list[str]
) -> Discovery:
    """Expand files, folders and globs into a sorted, de-duplicated file list.

    A path given explicitly is taken whatever its extension; files found inside folders or by
    globs must match ``include`` and not ``exclude``.  A spec that matches nothing is an error
    (a typo must not look like an empty corpus); so is a spec with no files at all.
    """
    if not specs:
        raise SourceError("no sources given: pass one or more files, folders or glob patterns")
    found: dict[str, SourceFile] = {}
    skipped: list[Skipped] = []
    roots: list[str] = []

    def add(path: Path) -> None:
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
        found[name] = SourceFile(path=path, source=name)

    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            roots.append(source_name(path))
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if not _excluded(here / d, path, exclude))
                for filename in sorted(filenames):
                    candidate = here / filename
                    if _included(candidate, include) and not _excluded(candidate, path, exclude):
                        if candidate.is_file():
                            add(candidate)
        elif path.exists():
            roots.append(source_name(path))
            if path.is_file():
                add(path)
            else:
                skipped.append(Skipped(source_name(path), "not a regular file"))
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
            base = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".")
            roots.append(source_name(base if base.is_dir() else base.parent))
            hits = [Path(m) for m in matches if Path(m).is_file()]
            hits = [h for h in hits if _included(h, include) and not _excluded(h, base, exclude)]
            if not hits:
                raise SourceError(f"glob {spec!r} matched no files (check the pattern and quoting)")
            for hit in hits:
                add(hit)
        else:
            raise SourceError(f"source {spec!r} does not exist (check the path)")
    files = sorted(found.values(), key=lambda f: f.source)
    return Discovery(files=files, skipped=skipped, roots=sorted(set(roots)))


def check_readable(path: Path) -> str | None:
    """Why the file cannot be ingested, or None; reads only its first block."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "empty file"
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "binary file (NUL bytes)"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 text; convert it to UTF-8"
    return None


class UndecodableError(Exception):
    """Raised while reading blocks: the file is not valid UTF-8 at a byte offset."""

    def __init__(self, byte_offset: int):
        super().__init__(f"not valid UTF-8 (at byte {byte_offset}); convert it to UTF-8")
        self.byte_offset = byte_offset


def iter_text_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, str]]:
    """Yield ``(char_offset, text)`` blocks of a UTF-8 file (BOM dropped), cut at paragraph breaks.

    Blocks end at the last blank line (else line break, else whitespace) of what was read, so that
    chunking a block never cuts through a paragraph that fits in one.  Offsets count characters of
    the decoded text, so ``text[start:end]`` of the whole file equals a chunk.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    offset = 0
    consumed_bytes = 0
    first = True
    with open(path, "rb") as handle:
        while True:
            raw = handle.read(block_bytes)
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
    reason = check_readable(item.path)
    if reason:
        return Inspection("", 0, reason)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    size = 0
    seen_text = False
    try:
        with open(item.path, "rb") as handle:
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
    except OSError as exc:
        return Inspection("", size, f"unreadable ({exc.strerror or exc})")
    return Inspection(digest.hexdigest(), size, None if seen_text else "no text (only whitespace)")


def iter_blocks(item: SourceFile | TextDocument) -> Iterator[tuple[int, str]]:
    """``(char_offset, text)`` blocks of a file or a text document."""
    if isinstance(item, TextDocument):
        yield 0, item.text
    else:
        yield from iter_text_blocks(item.path)
