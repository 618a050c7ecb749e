"""Throughput of the document readers: MB/s per format, pages/s for PDF, documents/s for the rest.

``python -m benchmarks.readers [--pages N] [--docs N] [--folder DIR] [--json PATH]`` generates a
corpus per format in a temporary folder (PDF with reportlab, DOCX with python-docx, the text formats
as strings), or reads every file of ``--folder`` by its suffix, then opens each document and drains
its blocks, timing that alone.  MB/s counts input bytes; "text MB/s" counts extracted characters.
This module must never write outside the temporary folder it creates (or the ``--json`` file).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.measure import describe_machine, format_rows, machine_info, note
from milvus_ingest.readers import FORMATS, UnreadableDocument, detect_format, open_document

WORDS = ["vector", "index", "collection", "milvus", "embedding", "query", "search", "chunk", "document", "segment", "partition", "replica", "schema", "field", "scalar", "filter", "recall", "latency", "throughput", "shard", "node", "cluster"]
SUFFIX = {"text": ".txt", "markdown": ".md", "rst": ".rst", "html": ".html", "pdf": ".pdf", "docx": ".docx"}


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."


def paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(count)]


def write_text_formats(folder: Path, docs: int, rng: random.Random) -> None:
    for n in range(docs):
        sections = [(f"Section {s}", paragraphs(rng, 6)) for s in range(8)]
        (folder / f"doc{n}.txt").write_text("\n\n".join(p for _, ps in sections for p in ps) + "\n")
        md = [f"---\ntitle: Document {n}\n---\n# Document {n}\n"]
        rst = [f"{'=' * 12}\nDocument {n}\n{'=' * 12}\n"]
        html = [f"<html><head><title>Document {n}</title></head><body><nav><a>Home</a></nav><main><h1>Doc {n}</h1>"]
        for title, body in sections:
            md.append(f"## {title}\n\n" + "\n\n".join(body) + "\n\n```\n# code\n```\n")
            rst.append(f"{title}\n{'-' * len(title)}\n\n" + "\n\n".join(body) + "\n")
            html.append(f"<h2>{title}</h2>" + "".join(f"<p>{p}</p>" for p in body)
                        + "<table><tr><td>a</td><td>b</td></tr></table><ul><li>x</li><li>y</li></ul>")
        (folder / f"doc{n}.md").write_text("\n".join(md))
        (folder / f"doc{n}.rst").write_text("\n".join(rst))
        (folder / f"doc{n}.html").write_text("".join(html) + "</main><footer>f</footer></body></html>")


def write_docx(folder: Path, docs: int, rng: random.Random) -> None:
    import docx

    for n in range(docs):
        document = docx.Document()
        document.core_properties.title = f"Document {n}"
        for s in range(8):
            document.add_heading(f"Section {s}", level=1 + s % 2)
            for text in paragraphs(rng, 6):
                document.add_paragraph(text)
            table = document.add_table(rows=3, cols=3)
            for cell in table._cells:
                cell.text = rng.choice(WORDS)
        document.save(folder / f"doc{n}.docx")


def write_pdf(folder: Path, pages: int, rng: random.Random) -> None:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer)
    drawing.setTitle("Benchmark PDF")
    for _ in range(pages):
        for line in range(50):
            drawing.drawString(40, 790 - 15 * line, " ".join(rng.choice(WORDS) for _ in range(12)))
        drawing.showPage()
    drawing.save()
    (folder / "corpus.pdf").write_bytes(buffer.getvalue())


def generate(folder: Path, pages: int, docs: int) -> None:
    rng = random.Random(7)
    write_text_formats(folder, docs, rng)
    write_docx(folder, docs, rng)
    write_pdf(folder, pages, rng)


def measure_folder(folder: Path) -> list[dict[str, Any]]:
    """Per format: documents, input bytes, extracted characters, pages, failures, seconds."""
    totals: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        fmt = detect_format(path)
        row = totals.setdefault(fmt, {"format": fmt, "docs": 0, "failed": 0, "bytes": 0, "chars": 0,
                                      "pages": 0, "seconds": 0.0})
        pages: set[int] = set()
        started = time.perf_counter()
        try:
            for block in open_document(path, fmt).blocks:
                row["chars"] += len(block.text)
                pages.add(block.page)
        except UnreadableDocument as exc:
            row["failed"] += 1
            note(f"{path}: {exc.reason}")
        row["seconds"] += time.perf_counter() - started
        row["docs"] += 1
        row["bytes"] += path.stat().st_size
        row["pages"] += len(pages - {0})
    for row in totals.values():
        seconds = row["seconds"] or 1e-9
        row["mb_per_s"] = row["bytes"] / 1e6 / seconds
        row["text_mb_per_s"] = row["chars"] / 1e6 / seconds
        row["docs_per_s"] = row["docs"] / seconds
        row["pages_per_s"] = row["pages"] / seconds if row["pages"] else None
    return [totals[f] for f in FORMATS if f in totals]


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300, help="pages of the generated PDF")
    parser.add_argument("--docs", type=int, default=40, help="generated documents per other format")
    parser.add_argument("--folder", type=Path, help="read this folder instead of a generated corpus")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    info = machine_info()
    if args.folder:
        rows = measure_folder(args.folder)
    else:
        with tempfile.TemporaryDirectory(prefix="readers-bench-") as tmp:
            note(f"generating {args.pages} PDF pages and {args.docs} documents per format in {tmp}")
            generate(Path(tmp), args.pages, args.docs)
            rows = measure_folder(Path(tmp))
    out(f"machine: {describe_machine(info)}")
    out(format_rows(
        ["format", "docs", "failed", "MB in", "seconds", "MB/s", "text MB/s", "docs/s", "pages/s"],
        [[r["format"], r["docs"], r["failed"], r["bytes"] / 1e6, r["seconds"], r["mb_per_s"], r["text_mb_per_s"],
          r["docs_per_s"], r["pages_per_s"]] for r in rows],
    ))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": rows}, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
