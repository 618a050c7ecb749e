"""Retrieval evaluation: BEIR-layout data (``beir``), metrics (``metrics``), a whole run (``run``)."""
