"""Benchmarks anyone can rerun: how close ingestion comes to the model's own speed, and at what cost.

- ``python -m benchmarks.ingest [CORPUS_DIR]``: ceiling (raw encode) vs. ``run_ingest`` vs. the
  Prefect flow vs. langchain-milvus and a bare loop; unchanged re-run; padding; bf16/fp16.
- ``python -m benchmarks.memory``: peak RSS of an ingest process at 10 MB and 200 MB of text.
- ``python -m benchmarks.query``: latency per question, one at a time and 100 in a batch.
- ``python -m benchmarks.gpu --quick``: instructor-xl's shape on a GPU (random weights).

Results and the machine they came from are in the README (section "Benchmarks").  This package must
never be imported by ``flows`` (the product does not depend on its benchmarks), and never write
outside a temporary folder it created (or the ``--json`` file it is given).
"""
