"""Milvus ingestion pipeline as a library: sources, chunking, encoders, store."""
