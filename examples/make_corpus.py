"""Rebuild examples/corpus/ from the King James Bible (public domain) with Debian's `bible` tool.

Run: apt-get install bible-kjv && python examples/make_corpus.py.  The corpus is committed; this
script only documents where it came from.
"""

import re
import subprocess
from pathlib import Path

CHAPTERS = {
    "genesis/creation.md": ("Genesis 1", "genesis1:1-31"),
    "genesis/the-flood.md": ("Genesis 6-7", "genesis6:1-22 genesis7:1-24"),
    "genesis/babel.txt": ("Genesis 11", "genesis11:1-9"),
    "ruth/ruth.md": ("Ruth 1-2", "ruth1:1-22 ruth2:1-23"),
    "jonah/jonah.md": ("Jonah", "jonah1:1-17 jonah2:1-10 jonah3:1-10 jonah4:1-11"),
    "wisdom/ecclesiastes.rst": ("Ecclesiastes 1 and 3", "ecclesiastes1:1-18 ecclesiastes3:1-22"),
    "wisdom/proverbs-the-ant.txt": ("Proverbs 6", "proverbs6:6-11"),
    "psalms/psalm-23.txt": ("Psalm 23", "psalms23:1-6"),
    "psalms/psalm-104.md": ("Psalm 104", "psalms104:1-35"),
    "law/ten-commandments.md": ("Exodus 20", "exodus20:1-26"),
    "prophets/daniel-lions.md": ("Daniel 6", "daniel6:1-28"),
    "gospels/sermon-on-the-mount.md": ("Matthew 5", "matthew5:1-48"),
    "gospels/good-samaritan.txt": ("Luke 10", "luke10:25-37"),
    "gospels/prodigal-son.md": ("Luke 15", "luke15:11-32"),
    "letters/charity.md": ("1 Corinthians 13", "1corinthians13:1-13"),
}


def verses(spec: str) -> list[str]:
    out = subprocess.run(["bible", "-f", *spec.split()], capture_output=True, text=True, check=True).stdout
    return [re.sub(r"^\S+\s", "", line).strip() for line in out.splitlines() if line.strip()]


def main() -> None:
    root = Path(__file__).parent / "corpus"
    for name, (title, spec) in CHAPTERS.items():
        lines = verses(spec)
        paragraphs = [" ".join(lines[i : i + 4]) for i in range(0, len(lines), 4)]
        heading = f"# {title}" if name.endswith(".md") else (f"{title}\n{'=' * len(title)}" if name.endswith(".rst") else title)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(heading + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
