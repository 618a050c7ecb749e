"""Lexical sanity baseline for a BEIR-layout set: plain BM25 (k1=1.2, b=0.75) over title + text.

    python -m benchmarks.datasets.bm25_baseline tests/data/debian-faq tests/data/zsh-faq ...

Prints nDCG@10 and Recall@10; a set scoring ~1.0 is trivial, ~0 is broken.  No dependencies.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter

from milvus_ingest.evaluation.beir import load_beir


def _tok(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def bm25_scores(root: str, k1: float = 1.2, b: float = 0.75) -> tuple[float, float, int]:
    ds = load_beir(root)
    ids = list(ds.corpus)
    docs = [Counter(_tok(ds.corpus[i].full_text)) for i in ids]
    lengths = [sum(d.values()) for d in docs]
    n, avg = len(docs), sum(lengths) / len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
    ndcg, recall = [], []
    for qid, judged in ds.qrels.items():
        rel = {d for d, s in judged.items() if s > 0}
        terms = _tok(ds.queries[qid])
        scored = []
        for doc_id, d, length in zip(ids, docs, lengths):
            norm = k1 * (1 - b + b * length / avg)
            s = sum(idf[t] * d[t] * (k1 + 1) / (d[t] + norm) for t in terms if t in d)
            scored.append((-s, doc_id))
        top = [doc_id for _, doc_id in sorted(scored)[:10]]
        dcg = sum(1 / math.log2(r + 2) for r, doc_id in enumerate(top) if doc_id in rel)
        ndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(10, len(rel)))))
        recall.append(len(set(top) & rel) / len(rel))
    return sum(ndcg) / len(ndcg), sum(recall) / len(recall), len(ndcg)


def main(argv: list[str]) -> int:
    for root in argv:
        ndcg, recall, count = bm25_scores(root)
        print(f"{root}: BM25 nDCG@10 {ndcg:.3f}  Recall@10 {recall:.3f}  ({count} queries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
