"""The bare loop every comparison is made against: what a newcomer writes in twenty lines.

LangChain's ``RecursiveCharacterTextSplitter`` (1000 characters, 100 overlap) over each document's
title and text, sentence-transformers' ``encode`` with no instruction, a quick-setup
``MilvusClient`` collection (COSINE, Milvus's default index) and a plain ``search``: no token
awareness, no instruction, no structure, no BM25.  It runs on the same corpus, questions and
metrics as the pipeline (``evaluation.run``), so a report says how far ahead the pipeline is on
the data at hand, not on numbers copied from elsewhere.  This module must never write outside
the temporary folder it makes, and never be used by the pipeline itself.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from milvus_ingest.errors import ConfigError
from milvus_ingest.evaluation.beir import BeirDataset

#: The splitter settings most tutorials use.
CHUNK_CHARS = 1000
OVERLAP_CHARS = 100


def bare_loop_rankings(
    dataset: BeirDataset, model_path: str, depth: int, chunks_per_doc: int, batch_size: int = 32
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, float], int]:
    """Document rankings per judged query from the bare loop, its timings, and its chunk count."""
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError:
        raise ConfigError(
            "the bare-loop baseline needs langchain-text-splitters: pip install -e '.[eval]' (or --no-baseline)"
        ) from None
    from sentence_transformers import SentenceTransformer

    from milvus_ingest.store.connect import import_pymilvus, release_lite

    MilvusClient = import_pymilvus().MilvusClient

    started = time.perf_counter()
    model = SentenceTransformer(model_path, device="cpu")
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=OVERLAP_CHARS)
    texts, owners = [], []
    for doc_id, doc in dataset.corpus.items():
        for piece in splitter.split_text(doc.full_text):
            texts.append(piece)
            owners.append(doc_id)
    loaded = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True) if texts else []
    folder = Path(tempfile.mkdtemp(prefix="flows-bare-"))
    client: Any = None
    try:
        client = MilvusClient(str(folder / "bare.db"))
        client.create_collection("bare", dimension=int(model.get_sentence_embedding_dimension()), metric_type="COSINE")
        rows = [{"id": i, "vector": v.tolist(), "text": t, "doc": d} for i, (v, t, d) in enumerate(zip(vectors, texts, owners))]
        for start in range(0, len(rows), 512):
            client.insert("bare", rows[start : start + 512])
        ingested = time.perf_counter()
        queries = dataset.judged_queries()
        qids = list(queries)
        rankings: dict[str, list[tuple[str, float]]] = {}
        limit = min(depth * chunks_per_doc, max(len(rows), 1), 16384)
        for start in range(0, len(qids), 64):
            batch = qids[start : start + 64]
            encoded = model.encode([queries[q] for q in batch], normalize_embeddings=True)
            results = client.search("bare", data=[v.tolist() for v in encoded], limit=limit, output_fields=["doc"])
            for qid, hits in zip(batch, results):
                ranking: list[tuple[str, float]] = []
                for hit in hits:
                    doc = hit["entity"]["doc"]
                    if doc not in {d for d, _ in ranking}:
                        ranking.append((doc, float(hit["distance"])))
                rankings[qid] = ranking[:depth]
        searched = time.perf_counter()
    finally:
        if client is not None:
            client.close()
        release_lite(str(folder / "bare.db"))
        shutil.rmtree(folder, ignore_errors=True)
    n = max(len(rankings), 1)
    seconds = {
        "model_load": round(loaded - started, 3),
        "ingest": round(ingested - loaded, 3),
        "search": round(searched - ingested, 3),
        "search_ms_per_query": round(1000 * (searched - ingested) / n, 2),
    }
    return rankings, seconds, len(texts)
