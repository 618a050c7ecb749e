"""Rebuild examples/corpus/ from the King James Bible (public domain) with Debian's `bible` tool.

Run: apt-get install bible-kjv && pip install reportlab && python examples/make_corpus.py.  The
corpus is committed; this script documents where it came from and keeps it reproducible.

The corpus shows every reader with structure to find: Markdown with front matter and ``##``
sections, reStructuredText, plain text, a saved HTML page (navigation, cookie banner, aside and
footer around the main text), and a three-part PDF whose outline (bookmarks) names its sections.
"""

import re
import subprocess
import textwrap
from pathlib import Path

#: One file per entry: (title, [(section heading or "", verse spec), ...]).
CHAPTERS = {
    "genesis/creation.md": ("Genesis 1", [("", "genesis1:1-31")]),
    "genesis/the-flood.md": ("The Flood", [("Genesis 6: Noah builds the ark", "genesis6:1-22"), ("Genesis 7: The waters", "genesis7:1-24")]),
    "genesis/babel.txt": ("Genesis 11", [("", "genesis11:1-9")]),
    "ruth/ruth.md": ("Ruth", [("Ruth 1: Whither thou goest", "ruth1:1-22"), ("Ruth 2: The field of Boaz", "ruth2:1-23")]),
    "jonah/jonah.md": ("The Book of Jonah", [("Chapter 1: The storm", "jonah1:1-17"), ("Chapter 2: The prayer", "jonah2:1-10"), ("Chapter 3: Nineveh", "jonah3:1-10"), ("Chapter 4: The gourd", "jonah4:1-11")]),
    "wisdom/ecclesiastes.rst": ("Ecclesiastes", [("Vanity of vanities", "ecclesiastes1:1-18"), ("A time to every purpose", "ecclesiastes3:1-22")]),
    "wisdom/proverbs-the-ant.txt": ("Proverbs 6", [("", "proverbs6:6-11")]),
    "law/ten-commandments.md": ("Exodus 20", [("", "exodus20:1-26")]),
    "prophets/daniel-lions.md": ("Daniel 6", [("", "daniel6:1-28")]),
    "gospels/sermon-on-the-mount.md": ("Matthew 5", [("The Beatitudes", "matthew5:1-16"), ("The law and the prophets", "matthew5:17-48")]),
    "letters/charity.md": ("1 Corinthians 13", [("", "1corinthians13:1-13")]),
    "psalms/psalms.html": ("Psalms", [("Psalm 23: The LORD is my shepherd", "psalms23:1-6"), ("Psalm 104: Bless the LORD, O my soul", "psalms104:1-35")]),
    "gospels/parables.pdf": ("Parables of Jesus", [("The Good Samaritan", "luke10:25-37"), ("The Prodigal Son", "luke15:11-32"), ("The Sower", "matthew13:1-23")]),
}
FRONT_MATTER = {"jonah/jonah.md": "---\ntitle: The Book of Jonah\nbook: Jonah\ntestament: old\ntags: [prophets, mercy]\n---\n"}
HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Example Library</title>
<style>body {{ font-family: serif; }}</style><script>window.analytics = [];</script></head>
<body>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your reading. <button>Accept</button></div>
<header><a href="/">Example Library</a> <nav><a href="/psalms">Psalms</a> <a href="/search">Search</a></nav></header>
<main><article><h1>{title}</h1>
{body}
</article></main>
<aside><h2>Related</h2><ul><li><a href="/proverbs">Proverbs</a></li></ul></aside>
<footer>Public domain text (King James Version). <a href="/about">About this site</a></footer>
</body></html>
"""


def verses(spec: str) -> list[str]:
    out = subprocess.run(["bible", "-f", *spec.split()], capture_output=True, text=True, check=True).stdout
    return [re.sub(r"^\S+\s", "", line).strip() for line in out.splitlines() if line.strip()]


def paragraphs(spec: str) -> list[str]:
    lines = verses(spec)
    return [" ".join(lines[i : i + 4]) for i in range(0, len(lines), 4)]


def text_file(suffix: str, title: str, sections: list[tuple[str, str]], front: str = "") -> str:
    """Markdown (``#`` title, ``##`` sections), reStructuredText (``=``/``-`` underlines) or plain text."""
    def heading(text: str, level: int) -> str:
        if suffix == ".md":
            return "#" * level + " " + text
        if suffix == ".rst":
            return f"{text}\n{('=' if level == 1 else '-') * len(text)}"
        return text

    parts = [front + heading(title, 1)]
    for section, spec in sections:
        if section:
            parts.append(heading(section, 2))
        parts.extend(paragraphs(spec))
    return "\n\n".join(parts) + "\n"


def html_file(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<section><h2>{s}</h2>\n" + "\n".join(f"<p>{p}</p>" for p in paragraphs(spec)) + "</section>"
                     for s, spec in sections)
    return HTML_PAGE.format(title=title, body=body)


def pdf_file(path: Path, title: str, sections: list[tuple[str, str]]) -> None:
    """Each section starts a page, with a bookmark in the outline; long sections run on."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    drawing = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    drawing.setTitle(title)
    top, bottom, step = 800, 60, 14
    for number, (section, spec) in enumerate(sections):
        y = top
        drawing.setFont("Helvetica-Bold", 13)
        drawing.drawString(50, y, section)
        drawing.bookmarkHorizontal(f"s{number}", 0, y + 16)
        drawing.addOutlineEntry(section, f"s{number}", level=0)
        drawing.setFont("Helvetica", 10)
        y -= 2 * step
        for paragraph in paragraphs(spec):
            for line in textwrap.wrap(paragraph, 98):
                if y < bottom:
                    drawing.showPage()
                    drawing.setFont("Helvetica", 10)
                    y = top
                drawing.drawString(50, y, line)
                y -= step
            y -= step // 2
        drawing.showPage()
    drawing.save()


def main() -> None:
    root = Path(__file__).parent / "corpus"
    for name, (title, sections) in CHAPTERS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".pdf":
            pdf_file(path, title, sections)
        elif path.suffix == ".html":
            path.write_text(html_file(title, sections), encoding="utf-8")
        else:
            path.write_text(text_file(path.suffix, title, sections, FRONT_MATTER.get(name, "")), encoding="utf-8")


if __name__ == "__main__":
    main()
