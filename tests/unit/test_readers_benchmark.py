"""Smoke test of ``python -m benchmarks.readers`` on a tiny generated corpus: every format is read
without failures, counts add up, and the JSON report has the machine and one row per format."""

from __future__ import annotations

import json

from benchmarks.readers import main
from milvus_ingest.readers import FORMATS


def test_benchmark_runs_on_a_tiny_corpus(tmp_path):
    lines: list[str] = []
    report = tmp_path / "readers.json"
    rows = main(["--pages", "3", "--docs", "2", "--json", str(report)], out=lines.append)
    assert [row["format"] for row in rows] == list(FORMATS)
    by_format = {row["format"]: row for row in rows}
    assert all(row["failed"] == 0 and row["chars"] > 0 and row["mb_per_s"] > 0 for row in rows)
    assert by_format["pdf"]["docs"] == 1 and by_format["pdf"]["pages"] == 3 and by_format["pdf"]["pages_per_s"] > 0
    assert by_format["markdown"]["docs"] == 2 and by_format["markdown"]["pages_per_s"] is None
    assert lines[0].startswith("machine: ") and "pages/s" in lines[1]
    saved = json.loads(report.read_text())
    assert saved["machine"]["cpu"] and len(saved["results"]) == len(FORMATS)


def test_benchmark_reads_a_folder_and_counts_failures(tmp_path):
    (tmp_path / "good.md").write_text("# Hi\n\ntext\n")
    (tmp_path / "bad.pdf").write_text("not a pdf")
    rows = {row["format"]: row for row in main(["--folder", str(tmp_path)], out=lambda _: None)}
    assert rows["markdown"]["failed"] == 0 and rows["pdf"]["failed"] == 1
