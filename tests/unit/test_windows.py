"""How encoder windows grow and shrink (``ingest.stream.next_window``)."""

import pytest

from milvus_ingest.ingest.stream import next_window


@pytest.mark.parametrize(
    "size,seconds,expected",
    [
        (64, 0.8, 1024),  # fast: 16 times this window encodes in 12.8 s, within 15 (the widest)
        (32, 4.0, 64),  # twice fits (8 s), four times (16 s) would not
        (128, 1.0, 1024),  # never past window_batches × batch_size
        (512, 7.0, 1024),  # 14 s for the next: still within 15
        (512, 8.0, 512),  # 16 s for the next: stays
        (256, 31.0, 128),  # over twice the budget: halves
        (32, 100.0, 32),  # but never below one batch per worker
        (32, 0.0, 1024),  # too fast to time
    ],
)
def test_windows_grow_as_far_as_the_budget_allows_and_halve_past_twice_it(size, seconds, expected):
    assert next_window(size, seconds, most=1024, least=32, budget=15.0) == expected


def test_without_a_budget_windows_only_double_up_to_the_most():
    assert [next_window(s, 1e6, 256, 32, 0.0) for s in (32, 128, 256)] == [64, 256, 256]
