"""The ingest pipeline: ``plan`` what changed, ``stream`` chunk → encode → write, ``run`` it all.

``report`` is what a run did.  The package never imports Prefect; the flows wrap ``run_ingest``.
"""

from milvus_ingest.ingest.plan import (
    CHUNKER_VERSION,
    IngestOptions,
    IngestPlan,
    SourcePlan,
    collection_meta,
    content_hash,
    parse_shard,
    plan_ingest,
    select_shard,
    shard_of,
)
from milvus_ingest.ingest.report import IngestReport, StageTimes
from milvus_ingest.ingest.run import Ingestor, StepRunner, run_ingest, run_step_directly
from milvus_ingest.ingest.stream import ProgressCallback, WriteResult
from milvus_ingest.store import chunk_id

__all__ = [
    "CHUNKER_VERSION",
    "IngestOptions",
    "IngestPlan",
    "IngestReport",
    "Ingestor",
    "ProgressCallback",
    "SourcePlan",
    "StageTimes",
    "StepRunner",
    "WriteResult",
    "chunk_id",
    "collection_meta",
    "content_hash",
    "parse_shard",
    "plan_ingest",
    "run_ingest",
    "run_step_directly",
    "select_shard",
    "shard_of",
]
