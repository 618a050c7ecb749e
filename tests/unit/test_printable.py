"""Other people's bytes on the terminal: file names, questions and passages can't break lines or
send escape sequences through the command lines' output."""

from __future__ import annotations

import io

from flows.cli import format_table, printable
from flows.search import Answer, print_plain, print_table
from milvus_ingest.retrieval import Hit

HOSTILE_SOURCE = "/data/evil\nname\x1b]0;owned\x07.txt"
HOSTILE_TEXT = "red \x1b[31malert\x1b[0m\nsecond line\u2028third\tcol\x00"


def test_printable_escapes_controls_and_keeps_the_rest():
    assert printable("plain ünïcødé 数 🙂 tab\tless") == "plain ünïcødé 数 🙂 tab\\tless"
    assert printable(HOSTILE_SOURCE) == "/data/evil\\nname\\x1b]0;owned\\x07.txt"
    assert printable(HOSTILE_TEXT, lines=True) == "red \\x1b[31malert\\x1b[0m\nsecond line\\u2028third\tcol\\x00"
    assert printable("\x9b2J") == "\\x9b2J"  # C1 CSI, which some terminals honour too
    assert printable(ValueError("bad\nthing")) == "bad\\nthing"


def test_summary_rows_stay_one_line_each():
    out = format_table([("skipped", 1), (f"  {HOSTILE_SOURCE}", "binary file (NUL bytes)")])
    assert len(out.splitlines()) == 2 and "\x1b" not in out and "\x07" not in out


def _answer() -> Answer:
    hit = Hit(id=1, score=0.5, source=HOSTILE_SOURCE, start=0, end=len(HOSTILE_TEXT), text=HOSTILE_TEXT,
              title="", section="Intro\x1b[2J", page=0, format="text")
    return Answer("why\x1b[2J?", [hit], None, "dense")


def test_search_output_carries_no_control_characters():
    for printer in (print_plain, lambda answers, stream: print_table(answers, stream, width=200)):
        stream = io.StringIO()
        printer([_answer()], stream)
        out = stream.getvalue()
        assert not any(c in out for c in "\x1b\x07\x00\u2028"), out
        assert "evil\\nname" in out and "\\x1b[31malert" in out
    plain = io.StringIO()
    print_plain([_answer()], plain)
    # question, the hit's header, then the passage's two real lines (its own newline kept)
    assert [line[:12] for line in plain.getvalue().splitlines()] == [
        "Q1: why\\x1b[", "1. score 0.5", "   red \\x1b[", "   second li",
    ]
