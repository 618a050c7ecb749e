"""What a user would otherwise write: langchain-milvus, and a bare encode-then-insert loop.

Both get the same chunks (cut by our chunker, so chunking is *not* charged to them), the same
loaded sentence-transformers model, batch size and threads, and a fresh Milvus Lite folder with
an HNSW/COSINE index like ours.  langchain-milvus is optional (``pip install -e ".[bench]"``);
without it the peer is skipped with a note.  This module must never change how the model
encodes (same instruction, same pooling) so that the comparison is about the plumbing only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.measure import Result, measure


@dataclass(frozen=True)
class BenchChunk:
    """A chunk as the pipeline would store it: text plus where it came from."""

    text: str
    source: str
    index: int


def langchain_missing() -> str | None:
    """Why the langchain-milvus peer cannot run here, or None."""
    for module, package in (("langchain_milvus", "langchain-milvus"), ("langchain_core", "langchain-core")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e \".[bench]\")"
    return None


def _release(uri: str) -> None:
    """Stop the in-process Milvus Lite server of ``uri`` so the next phase starts clean."""
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
    except Exception:  # noqa: BLE001 - an older milvus-lite without it: nothing to release
        pass


def run_langchain(ef: Any, chunks: Sequence[BenchChunk], uri: str, index_params: dict[str, Any]) -> Result:
    """``Milvus.from_documents`` with our model wrapped as a LangChain ``Embeddings``."""
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_milvus import Milvus

    class InstructorEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return ef.encode_array(texts, ef.doc_instruction).tolist()

        def embed_query(self, text: str) -> list[float]:
            return ef.encode_array([text], ef.query_instruction)[0].tolist()

    docs = [Document(page_content=c.text, metadata={"source": c.source, "chunk_index": c.index}) for c in chunks]
    with measure() as phase:
        store = Milvus.from_documents(
            docs,
            embedding=InstructorEmbeddings(),
            collection_name="bench_langchain",
            connection_args={"uri": uri},
            index_params=index_params,
            consistency_level="Strong",
            drop_old=True,
        )
        rows = store.client.query("bench_langchain", filter="", output_fields=["count(*)"], consistency_level="Strong")
    _release(uri)
    count = int(rows[0]["count(*)"]) if rows else 0
    return Result("langchain-milvus from_documents", len(chunks), phase.wall, peak_rss_mib=phase.peak_rss_mib,
                  cpu_share=phase.cpu_share, extra={"rows": count, "load_avg": round(phase.load_avg, 2)})


def run_bare_loop(ef: Any, chunks: Sequence[BenchChunk], uri: str, index_params: dict[str, Any], batch_size: int) -> Result:
    """The loop from a tutorial: encode a batch with sentence-transformers, insert it, repeat."""
    from pymilvus import DataType, MilvusClient

    model = ef._model  # the very same SentenceTransformer (instruction-masking pooling included)
    name = "bench_loop"
    encode = write = 0.0
    with measure() as phase:
        client = MilvusClient(uri)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=ef.dim)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("source", DataType.VARCHAR, max_length=4096)
        schema.add_field("chunk_index", DataType.INT64)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", **index_params)
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start : start + batch_size]
            t0 = time.perf_counter()
            vectors = model.encode(
                [c.text.strip() for c in batch], prompt=ef.doc_instruction, batch_size=batch_size,
                normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
            )
            t1 = time.perf_counter()
            client.insert(name, [
                {"id": hashlib.md5(f"{c.source}\x00{c.index}".encode()).hexdigest(), "vector": v.tolist(), "text": c.text, "source": c.source,
                 "chunk_index": c.index}
                for c, v in zip(batch, vectors)
            ])
            write += time.perf_counter() - t1
            encode += t1 - t0
        rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        client.close()
    _release(uri)
    count = int(rows[0]["count(*)"]) if rows else 0
    return Result("bare loop: ST encode + insert", len(chunks), phase.wall, stages={"encode": encode, "write": write},
                  peak_rss_mib=phase.peak_rss_mib, cpu_share=phase.cpu_share,
                  extra={"rows": count, "load_avg": round(phase.load_avg, 2)})
