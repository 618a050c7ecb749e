"""Glob patterns as ``glob.glob(recursive=True)`` reads them: a regex, a base folder, a depth.

Discovery walks a glob's base folder itself (one symlink policy for folders and globs alike),
and ``--prune`` must decide whether a *deleted* file was named by a pattern; both need the
pattern as data rather than as a directory listing.  This module must never touch the disk.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path


def glob_regex(pattern: str) -> re.Pattern[str]:
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


def glob_base(spec: str) -> tuple[Path, int | None]:
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
