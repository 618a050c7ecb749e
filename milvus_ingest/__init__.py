"""Ingest documents into Milvus: readers, chunking, embedding and the store, as a library."""
