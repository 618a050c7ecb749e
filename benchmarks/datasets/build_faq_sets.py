"""Build BEIR-layout retrieval sets from FAQ documents shipped in Debian documentation packages.

    python -m benchmarks.datasets.build_faq_sets --out tests/data [--only debian-faq ...]

Each set's queries are the FAQ's own question headings, as the FAQ's authors wrote them (only the
section number is stripped); the relevant passages are that question's answer, cut into passages,
with the heading removed; every other section of the same documentation (non-question sections,
chapter introductions, and for some sets further manual chapters) is kept as distractors.  The
passage ``title`` is the document and chapter title, never the question.

Nothing here is written by hand: the input is the installed Debian files (the apt package each
set needs is named in ``SETS`` and in the error when it is missing), the output is deterministic
(document order, ids derived from section numbers, no timestamps).  Needs beautifulsoup4 + lxml.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------------------------
# Sections and passages


@dataclass
class Section:
    doc: str  # short id of the source document, e.g. "faq"
    number: str  # "3.14.1", or "" for an unnumbered section
    heading: str  # heading without its number
    depth: int  # 1 = chapter
    chapter: str  # the chapter heading as printed (passage titles use it)
    blocks: list[str] = field(default_factory=list)
    source: str = ""  # the document's own title (passage titles start with it)


@dataclass
class SetSpec:
    name: str
    packages: tuple[str, ...]  # the apt packages that ship the files
    title: str  # human title for the README
    licence: str  # licence summary for the README
    build: Callable[[], list[Section]]
    question_docs: tuple[str, ...]  # docs whose question headings become queries
    doc_titles: dict[str, str]
    notes: str = ""


QUESTION_WORDS = {
    "how", "what", "what's", "why", "when", "where", "which", "who", "whom", "whose", "can", "could",
    "do", "does", "did", "is", "are", "was", "were", "should", "shall", "will", "would", "may",
    "might", "must", "has", "have", "isn't", "doesn't", "don't", "can't", "shouldn't", "won't",
    "aren't", "didn't", "shouldn’t", "doesn’t", "don’t", "can’t", "isn’t",
}  # fmt: skip

_NUMBERED = re.compile(r"^(?:Chapter\s+)?(\d+(?:\.\d+)*)[.:]?\s+(.*)$", re.DOTALL)
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")


def collapse(text: str) -> str:
    return _WS.sub(" ", text.replace("\n", " ")).strip()


def is_question(heading: str) -> bool:
    """A real question: starts with a question word, or asks one ("…; what is wrong?")."""
    words = heading.split()
    if not words:
        return False
    first = words[0].lower().strip("`'\"(")
    if first in QUESTION_WORDS:
        return True
    return "?" in heading and len(words) >= 4


def split_number(text: str) -> tuple[str, str]:
    m = _NUMBERED.match(text)
    if m:
        return m.group(1), collapse(m.group(2))
    return "", collapse(text)


TARGET_CHARS = 1100  # passages are packed from whole blocks up to about this size
MAX_BLOCK = 1600  # a single block longer than this is cut at line, then sentence, boundaries


def _cut(block: str) -> list[str]:
    if len(block) <= MAX_BLOCK:
        return [block]
    units = block.split("\n") if "\n" in block else re.split(r"(?<=[.!?])\s+", block)
    if len(units) == 1:
        units = textwrap.wrap(block, TARGET_CHARS)
    pieces: list[str] = []
    cur = ""
    sep = "\n" if "\n" in block else " "
    for unit in units:
        for part in _cut(unit) if len(unit) > MAX_BLOCK else [unit]:
            if cur and len(cur) + len(part) + 1 > TARGET_CHARS:
                pieces.append(cur)
                cur = part
            else:
                cur = f"{cur}{sep}{part}" if cur else part
    if cur:
        pieces.append(cur)
    return pieces


def pack(blocks: Iterable[str]) -> list[str]:
    """Greedily join whole blocks (paragraphs, lists, code) into passages of ~TARGET_CHARS."""
    out: list[str] = []
    cur = ""
    for block in blocks:
        for piece in _cut(block.strip()):
            if not piece:
                continue
            if cur and len(cur) + len(piece) + 2 > TARGET_CHARS:
                out.append(cur)
                cur = piece
            else:
                cur = f"{cur}\n\n{piece}" if cur else piece
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------------------------------------------
# HTML: linearise into headings and text blocks, then group into sections

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5}
_BLOCKS = {"p", "pre", "dl", "ul", "ol", "table", "blockquote", "address"}
_BREAKS = {"li", "dt", "dd", "tr", "p", "div", "pre", "br", "blockquote", "dl", "ul", "ol", "table"}
_DROP = {"script", "style", "head", "title", "meta", "link"}


def _text_of(el) -> str:
    """Text of an element: inline markup joined without spaces, block children on new lines."""
    from bs4 import Comment, NavigableString

    parts: list[str] = []

    def walk(node, pre: bool) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                s = str(child)
                parts.append(s if pre else _WS.sub(" ", s.replace("\n", " ")))
                continue
            if child.name in _DROP or "pull-right" in (child.get("class") or []):
                continue
            block = child.name in _BREAKS
            if block:
                parts.append("\n")
            if child.name == "td":
                parts.append(" ")
            walk(child, pre or child.name == "pre")
            if block:
                parts.append("\n")

    if el.name == "pre":
        walk(el, True)
        lines = [line.rstrip() for line in "".join(parts).split("\n")]
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        return textwrap.dedent("\n".join(lines))
    walk(el, False)
    lines = [collapse(line) for line in "".join(parts).split("\n")]
    return "\n".join(line for line in lines if line)


def linearise(root, skip: Callable[[object], bool]) -> Iterator[tuple[str, int, str]]:
    """Yield ("h", level, heading) and ("b", 0, text) in document order."""
    from bs4 import Comment, NavigableString

    inline: list[str] = []

    def flush() -> Iterator[tuple[str, int, str]]:
        text = collapse("".join(inline))
        inline.clear()
        if text:
            yield ("b", 0, text)

    def walk(node) -> Iterator[tuple[str, int, str]]:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                inline.append(str(child))
                continue
            if child.name in _DROP or skip(child):
                continue
            if child.name in _HEADINGS:
                yield from flush()
                yield ("h", _HEADINGS[child.name], collapse(_text_of(child)))
            elif child.name in _BLOCKS:
                yield from flush()
                text = _text_of(child)
                if text.strip():
                    yield ("b", 0, text)
            elif child.name in {"div", "section", "body", "html", "span"} and child.find(
                list(_HEADINGS) + list(_BLOCKS)
            ):
                yield from flush()
                yield from walk(child)
                yield from flush()
            else:
                inline.append(_text_of(child) if child.name not in {"a", "span"} else child.get_text(""))

    yield from walk(root)
    yield from flush()


def sections_from_html(
    path: Path, doc: str, skip: Callable[[object], bool], *, start: Callable[[str], bool] | None = None
) -> list[Section]:
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # DocBook's XHTML, read as HTML on purpose
        soup = BeautifulSoup(path.read_bytes(), "lxml")
    source = collapse(soup.title.get_text("")) if soup.title else ""
    sections: list[Section] = []
    chapter = ""
    started = start is None
    for kind, level, text in linearise(soup.body or soup, skip):
        if kind == "h":
            number, heading = split_number(text)
            if not started:
                started = start(text)
                if not started:
                    continue
            depth = number.count(".") + 1 if number else level
            if depth == 1:
                chapter = collapse(text)
            sections.append(Section(doc, number, heading, depth, chapter or heading, source=source))
        elif started and sections:
            sections[-1].blocks.append(text)
    return sections


# ----------------------------------------------------------------------------------------------
# Sources


def _require(path: Path, package: str) -> Path:
    if not path.exists():
        raise SystemExit(
            f"{path} not found: this set is built from the Debian package {package!r}; "
            f"install it with `apt-get install -y {package}` (Debian 12) or use the committed copy"
        )
    return path


DEBIAN_FAQ = Path("/usr/share/doc/debian/FAQ")
DEBIAN_FAQ_CHAPTERS = [
    "basic-defs", "getting-debian", "choosing", "compatibility", "software", "ftparchives",
    "pkg-basics", "pkgtools", "uptodate", "kernel", "customizing", "support", "contributing",
    "redistributing", "nextrelease", "faqinfo",
]  # fmt: skip


def _docbook_skip(el) -> bool:
    cls = el.get("class") or []
    return bool({"navheader", "navfooter", "toc", "list-of-tables", "list-of-examples"} & set(cls))


DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
# Debian Reference chapters kept as distractors: package management, boot, network, i18n.
DEBIAN_REFERENCE_CHAPTERS = ["ch02", "ch03", "ch05", "ch08"]


def build_debian_faq() -> list[Section]:
    out: list[Section] = []
    for chapter in DEBIAN_FAQ_CHAPTERS:
        path = _require(DEBIAN_FAQ / f"{chapter}.en.html", "debian-faq")
        out.extend(sections_from_html(path, "faq", _docbook_skip))
    for chapter in DEBIAN_REFERENCE_CHAPTERS:
        path = _require(DEBIAN_REFERENCE / f"{chapter}.en.html", "debian-reference-en")
        for sec in sections_from_html(path, f"ref-{chapter}", _docbook_skip):
            sec.source = "Debian Reference"
            out.append(sec)
    return out


ZSH_DOC = Path("/usr/share/doc/zsh-doc")
# Manual chapters kept as distractors: the shell-language chapters a FAQ reader would also meet.
ZSH_MANUAL_CHAPTERS = [
    "Introduction", "Roadmap", "Invocation", "Files", "Shell-Grammar", "Redirection",
    "Command-Execution", "Functions", "Jobs-_0026-Signals", "Arithmetic-Evaluation",
    "Conditional-Expressions", "Prompt-Expansion", "Expansion", "Parameters", "Options",
    "Zsh-Line-Editor",
]  # fmt: skip
_ZSH_FAQ_SECTION = re.compile(r"^(\d+)\.(\d+): (.+)$")
_ZSH_FAQ_CHAPTER = re.compile(r"^Chapter (\d+): +(.+)$")


def build_zsh_faq_text() -> list[Section]:
    """The plain-text FAQ (FAQ.gz): 'Chapter N: ...' and 'N.M: question' lines at column 0."""
    path = _require(ZSH_DOC / "FAQ.gz", "zsh-doc")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    end_of_contents = next(i for i, line in enumerate(lines) if line.startswith("--- End of Contents"))
    # Before the table of contents: the introduction (kept, minus the Usenet header lines).
    intro_start = next(i for i, line in enumerate(lines) if not line.strip()) + 1
    contents = next(i for i, line in enumerate(lines) if line.startswith("Contents:"))
    sections = [Section("zshfaq", "", "Introduction", 1, "Z-Shell Frequently-Asked Questions")]
    sections[0].source = "Z-Shell Frequently-Asked Questions"
    body = lines[intro_start:contents]
    chapter = sections[0].chapter
    for line in lines[end_of_contents + 1 :] + [""]:
        m_ch, m_sec = _ZSH_FAQ_CHAPTER.match(line), _ZSH_FAQ_SECTION.match(line)
        tail = line.rstrip(":") if line in {"Acknowledgments:", "Copyright Information:"} else None
        if m_ch or m_sec or tail:
            sections[-1].blocks.extend(_text_paragraphs(body))
            body = []
            if m_ch:
                chapter = f"Chapter {m_ch.group(1)}: {collapse(m_ch.group(2))}"
                sections.append(
                    Section("zshfaq", m_ch.group(1), collapse(m_ch.group(2)), 1, chapter, source=sections[0].source)
                )
            elif m_sec:
                number = f"{m_sec.group(1)}.{m_sec.group(2)}"
                sections.append(
                    Section("zshfaq", number, collapse(m_sec.group(3)), 2, chapter, source=sections[0].source)
                )
            else:
                sections.append(Section("zshfaq", "", tail, 1, tail, source=sections[0].source))
                chapter = tail
            continue
        body.append(line)
    sections[-1].blocks.extend(_text_paragraphs(body))
    return sections


def _text_paragraphs(lines: list[str]) -> list[str]:
    """Paragraphs separated by empty lines; whitespace-only lines inside code examples are kept."""
    paras, cur = [], []
    for line in lines:
        if line == "":
            if cur:
                paras.append(cur)
            cur = []
        else:
            # Continuation lines are indented two spaces under the paragraph's first line; code
            # examples a further two, which they keep.
            cur.append((line[2:] if line.startswith("  ") and cur else line).rstrip())
    if cur:
        paras.append(cur)
    out = []
    for para in paras:
        text = textwrap.dedent("\n".join(line for line in para if line.strip()))
        if text.strip():
            out.append(text.strip("\n"))
    return out


def _texi_skip(el) -> bool:
    cls = set(el.get("class") or [])
    if el.name == "table" and {"header", "menu", "cartouche"} & cls:
        return True
    return bool({"header", "menu", "contents", "shortcontents", "footer", "navbar"} & cls) or el.name == "hr"


def build_zsh_faq() -> list[Section]:
    sections = build_zsh_faq_text()
    for stem in ZSH_MANUAL_CHAPTERS:
        path = _require(ZSH_DOC / "html" / f"{stem}.html", "zsh-doc")
        for sec in sections_from_html(path, f"man-{stem.lower().replace('-_0026-', '-')}", _texi_skip):
            sec.source = "The Z Shell Manual"
            sections.append(sec)
    return sections


FFMPEG_DOC = Path("/usr/share/doc/ffmpeg/manual")
FFMPEG_FAQS = {"faq": "faq.html", "mlfaq": "mailing-list-faq.html"}
FFMPEG_MANUALS = ["ffmpeg", "ffprobe", "ffplay", "developer", "git-howto", "platform", "fate"]


def _ffmpeg_skip(el) -> bool:
    cls = set(el.get("class") or [])
    return bool({"contents", "shortcontents", "navbar", "footer", "table-of-contents"} & cls) or (
        el.get("id") in {"SEC_Contents", "SEC_Overview"}
    )


def _ffmpeg_start(heading: str) -> bool:
    return heading not in {"Table of Contents", ""} and not heading.startswith(("FFmpeg ", "ffmpeg "))


def build_ffmpeg_faq() -> list[Section]:
    sections: list[Section] = []
    for doc, name in FFMPEG_FAQS.items():
        path = _require(FFMPEG_DOC / name, "ffmpeg-doc")
        sections.extend(sections_from_html(path, doc, _ffmpeg_skip, start=_ffmpeg_start))
    for stem in FFMPEG_MANUALS:
        path = _require(FFMPEG_DOC / f"{stem}.html", "ffmpeg-doc")
        sections.extend(sections_from_html(path, f"man-{stem}", _ffmpeg_skip, start=_ffmpeg_start))
    return sections


SETS = {
    "debian-faq": SetSpec(
        name="debian-faq",
        packages=("debian-faq", "debian-reference-en"),
        title="The Debian GNU/Linux FAQ, with chapters of the Debian Reference as distractors",
        licence=(
            'Copyright (C) 1996-2003 Software in the Public Interest. "Permission is granted to make '
            "and distribute verbatim copies of this document provided the copyright notice and this "
            "permission notice are preserved on all copies. Permission is granted to copy and "
            "distribute modified versions of this document under the conditions for verbatim "
            "copying, provided that the entire resulting derived work is distributed under the terms "
            "of a permission notice identical to this one. Permission is granted to copy and distribute "
            "translations of this document into another language, under the above conditions for "
            "modified versions, except that this permission notice may be included in translations "
            'approved by the Free Software Foundation instead of in the original English." (the whole '
            "notice, from /usr/share/doc/debian-faq/copyright; "
            "Debian main, DFSG-free). This set is a modified (excerpted, re-segmented) version and is "
            "distributed under the same notice. Debian Reference: copyright 2007-2013 Osamu Aoki, GPL-2+ "
            "(/usr/share/doc/debian-reference-common/copyright), Debian main."
        ),
        build=build_debian_faq,
        question_docs=("faq",),
        doc_titles={"faq": "The Debian GNU/Linux FAQ"},
        notes=(
            "Queries come from the FAQ's HTML chapters (`/usr/share/doc/debian/FAQ/*.en.html`); distractors "
            "are its non-question sections (e.g. `8.1.1. dpkg`) and chapter introductions, plus the Debian "
            "Reference chapters "
            + ", ".join(f"`{c}.en.html`" for c in DEBIAN_REFERENCE_CHAPTERS)
            + " (package management, system initialization, network setup, I18N and L10N). The Reference "
            "may also answer some questions; those passages are not judged (BEIR-style incomplete "
            "judgements), so scores are a lower bound."
        ),
    ),
    "zsh-faq": SetSpec(
        name="zsh-faq",
        packages=("zsh-doc",),
        title="Z-Shell Frequently-Asked Questions, with chapters of the zsh manual as distractors",
        licence=(
            'FAQ: copyright (C) P.W. Stephenson, 1995-2020: "Permission is hereby granted, without '
            "written agreement and without license or royalty fees, to use, copy, modify, and "
            "distribute this documentation for any purpose, provided that the above copyright notice "
            'appears in all copies of this documentation." Manual: copyright 1992-2022 The Zsh '
            "Development Group, under the zsh licence (MIT-style; /usr/share/doc/zsh-doc/copyright). "
            "Both in Debian main."
        ),
        build=build_zsh_faq,
        question_docs=("zshfaq",),
        doc_titles={"zshfaq": "Z-Shell Frequently-Asked Questions"},
        notes=(
            "Queries come from the plain-text FAQ (`/usr/share/doc/zsh-doc/FAQ.gz`); distractors are its "
            "non-question sections plus these chapters of the zsh manual (HTML, `/usr/share/doc/zsh-doc/html`): "
            + ", ".join(ZSH_MANUAL_CHAPTERS)
            + ". The manual may also answer some questions; those passages are not judged (BEIR-style "
            "incomplete judgements), so scores are a lower bound."
        ),
    ),
    "ffmpeg-faq": SetSpec(
        name="ffmpeg-faq",
        packages=("ffmpeg-doc",),
        title="FFmpeg FAQ and FFmpeg mailing-list FAQ, with FFmpeg manuals as distractors",
        licence=(
            "FFmpeg documentation, LGPL-2.1+ sources; Debian's copyright file states \"The HTML "
            "documentation /usr/share/doc/ffmpeg/manual/*.html in the ffmpeg-doc package is effectively "
            'licensed under GPL-3+" (because doc/t2h.pm is used to produce it). Redistributable under '
            "GPL-3+; source: https://ffmpeg.org (doc/*.texi). Debian main."
        ),
        build=build_ffmpeg_faq,
        question_docs=("faq", "mlfaq"),
        doc_titles={"faq": "FFmpeg FAQ", "mlfaq": "FFmpeg Mailing List FAQ"},
        notes=(
            "Queries come from `faq.html` and `mailing-list-faq.html`; distractors are their non-question "
            "sections plus the manuals " + ", ".join(f"`{m}.html`" for m in FFMPEG_MANUALS) + ". "
            "The manuals may also answer some questions; those passages are not judged, so scores are "
            "a lower bound."
        ),
    ),
}


# ----------------------------------------------------------------------------------------------
# Assemble the BEIR set


def _norm(text: str) -> str:
    return collapse(text).lower()


MIN_DISTRACTOR_CHARS = 40  # shorter non-answer passages (a heading over an empty body) are dropped


def _doc_title(spec: SetSpec, section: Section) -> str:
    base = spec.doc_titles.get(section.doc) or section.source
    if base.lower() == section.chapter.lower() or section.chapter.startswith(base):
        return section.chapter
    return f"{base}: {section.chapter}" if section.chapter and section.chapter != base else base


def assemble(spec: SetSpec, sections: list[Section]) -> tuple[list[dict], list[dict], list[tuple[str, str]], dict]:
    corpus: list[dict] = []
    passages_of: dict[int, list[str]] = {}
    used_ids: set[str] = set()
    unnumbered: dict[str, int] = {}
    question_of: dict[int, str] = {}
    for idx, sec in enumerate(sections):
        q = sec.depth >= 2 and sec.doc in spec.question_docs and is_question(sec.heading)
        if q:
            question_of[idx] = sec.heading
        blocks = list(sec.blocks)
        if not q and sec.depth >= 2 and blocks:
            blocks.insert(0, sec.heading)  # a non-question section keeps its heading, as a reader sees it
        if sec.number:
            stem = f"{sec.doc}-{sec.number}"
        else:
            unnumbered[sec.doc] = unnumbered.get(sec.doc, 0) + 1
            stem = f"{sec.doc}-s{unnumbered[sec.doc]}"
        if stem in used_ids:
            raise SystemExit(f"{spec.name}: duplicate section id {stem}")
        used_ids.add(stem)
        passages_of[idx] = []
        for k, text in enumerate(pack(blocks), start=1):
            if not q and len(text) < MIN_DISTRACTOR_CHARS:
                continue
            pid = f"{stem}-p{k}"
            corpus.append({"_id": pid, "title": _doc_title(spec, sec), "text": text})
            passages_of[idx].append(pid)
    texts = {d["_id"]: _norm(d["title"] + " " + d["text"]) for d in corpus}

    # A question's answer = its own passages plus those of its numbered subsections.
    queries: dict[str, dict] = {}
    by_text: dict[str, str] = {}
    qrels: list[tuple[str, str]] = []
    dropped: list[str] = []
    for idx, heading in question_of.items():
        sec = sections[idx]
        rel = list(passages_of[idx])
        if sec.number:
            prefix = sec.number + "."
            for j in range(idx + 1, len(sections)):
                other = sections[j]
                if other.doc != sec.doc or not other.number.startswith(prefix):
                    break
                rel.extend(passages_of[j])
        if not rel:
            dropped.append(f"{heading} (no answer text)")
            continue
        if any(_norm(heading) in texts[pid] for pid in rel):
            dropped.append(f"{heading} (question repeated in its answer)")
            continue
        key = _norm(heading)
        if key in by_text:  # the same question asked twice: one query, both answers relevant
            qid = by_text[key]
        else:
            qid = f"{sec.doc}-{sec.number}" if sec.number else f"{sec.doc}-q{len(queries) + 1}"
            by_text[key] = qid
            queries[qid] = {"_id": qid, "text": heading}
        for pid in rel:
            if (qid, pid) not in qrels:
                qrels.append((qid, pid))
    stats = {"dropped": dropped}
    return corpus, list(queries.values()), qrels, stats


def package_version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_set(spec: SetSpec, out_root: Path) -> dict:
    sections = spec.build()
    corpus, queries, qrels, stats = assemble(spec, sections)
    out = out_root / spec.name
    (out / "qrels").mkdir(parents=True, exist_ok=True)

    def dump(path: Path, rows: list[dict]) -> None:
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    dump(out / "corpus.jsonl", corpus)
    dump(out / "queries.jsonl", queries)
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, pid in qrels:
            fh.write(f"{qid}\t{pid}\t1\n")
    relevant = {pid for _, pid in qrels}
    per_query: dict[str, int] = {}
    for qid, _ in qrels:
        per_query[qid] = per_query.get(qid, 0) + 1
    counts = {
        "passages": len(corpus),
        "queries": len(queries),
        "qrels": len(qrels),
        "relevant_passages": len(relevant),
        "distractors": len(corpus) - len(relevant),
        "multi": sum(1 for n in per_query.values() if n > 1),
        "max_rel": max(per_query.values()),
        "chars": sum(len(d["text"]) for d in corpus),
        "dropped": stats["dropped"],
        "example_title": next(d["title"] for d in corpus if d["_id"] in relevant),
    }
    (out / "README.md").write_text(readme(spec, counts), encoding="utf-8")
    return counts


def readme(spec: SetSpec, c: dict) -> str:
    versions = ", ".join(f"`{p}` version `{package_version(p)}`" for p in spec.packages)
    dropped = "".join(f"\n  - {d}" for d in c["dropped"]) or " none"
    return f"""# {spec.name}

A retrieval evaluation set in the BEIR layout built from **{spec.title}**, so that retrieval
choices are judged on questions and answers this project did not write.

| file | content |
|---|---|
| `corpus.jsonl` | {c["passages"]} passages (`_id`, `title`, `text`), {c["chars"]:,} characters of text; {c["relevant_passages"]} are answers, {c["distractors"]} are distractors |
| `queries.jsonl` | {c["queries"]} queries: the FAQ's question headings verbatim (section number stripped) |
| `qrels/test.tsv` | {c["qrels"]} judgements, all score 1; {c["multi"]} queries have an answer split over several passages (at most {c["max_rel"]}) |

## Source and licence

Debian package(s) {versions} (Debian 12 "bookworm", main), read from the
installed files.

Licence: {spec.licence}

## How it was built

Generated, not hand-edited:

    apt-get install -y {" ".join(spec.packages)}
    python -m benchmarks.datasets.build_faq_sets --out tests/data --only {spec.name}

- A query is a section heading that is a question (it starts with a question word such as
  How/What/Why/Can/Is, or contains "?" and has at least four words); chapter headings never are.
- Each section's text (paragraphs, lists, code blocks; navigation and tables of contents dropped) is
  packed into passages of up to about {TARGET_CHARS} characters at block boundaries. A question's own
  heading is removed from its passages; a non-question section keeps its heading as the first line.
- A passage's `title` is the document and chapter title (e.g. "{c["example_title"]}"),
  never the question.
- Relevant passages for a query: all passages of its section and of its numbered subsections
  (score 1). Everything else is a distractor.
- {spec.notes}
- Questions dropped by the builder (no answer text, or the question repeated verbatim in its
  answer):{dropped}

Ids: passages `<doc>-<section number>-p<k>` (`<doc>-s<n>` for unnumbered sections), queries
`<doc>-<section number>`; files are in document order.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    parser.add_argument("--only", nargs="*", choices=sorted(SETS), help="build only these sets")
    args = parser.parse_args(argv)
    for name in args.only or list(SETS):
        counts = write_set(SETS[name], args.out)
        shown = {k: v for k, v in counts.items() if k not in {"dropped", "example_title"}}
        print(f"{name}: {shown}, dropped {len(counts['dropped'])} questions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
