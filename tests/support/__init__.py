"""Test helpers: real Milvus and Prefect servers started and stopped by PID, corpora, CLI runs."""
