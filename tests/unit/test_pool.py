"""The encoder's batch pool: results in order, batches side by side, errors and Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from milvus_ingest.encoders.pool import BatchPool


def test_results_come_back_in_the_items_order():
    pool = BatchPool(3).start()
    assert pool.map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    assert pool.map(lambda x: x, []) == []


def test_two_workers_run_two_items_at_once():
    """Each item waits for the other at a barrier: a pool that ran one at a time would time out."""
    pool = BatchPool(2)
    meet = threading.Barrier(2, timeout=10)
    names = pool.map(lambda _: (meet.wait(), threading.current_thread().name)[1], range(2))
    assert sorted(names) == ["encoder-0", "encoder-1"]


def test_setup_runs_once_in_each_worker_before_its_first_item():
    seen: dict[str, int] = {}
    setup_done = threading.local()

    def setup(index: int) -> None:
        seen[threading.current_thread().name] = index
        setup_done.value = True

    pool = BatchPool(2, setup).start()
    assert seen == {"encoder-0": 0, "encoder-1": 1}
    assert all(pool.map(lambda _: getattr(setup_done, "value", False), range(20)))
    pool.map(lambda x: x, range(20))
    assert len(seen) == 2  # not again for a second call


def test_started_runs_in_the_callers_thread_after_each_start():
    calls: list[str] = []
    pool = BatchPool(2, lambda i: None, lambda: calls.append(threading.current_thread().name))
    pool.map(lambda x: x, range(3))
    pool.map(lambda x: x, range(3))
    assert calls == [threading.current_thread().name]
    pool.close()
    pool.map(lambda x: x, range(3))  # threads again, so started again
    assert len(calls) == 2


def test_a_setup_error_is_raised_by_start():
    def setup(index: int) -> None:
        raise RuntimeError(f"no threads for worker {index}")

    with pytest.raises(RuntimeError, match="no threads for worker"):
        BatchPool(2, setup).start()


def test_an_item_error_is_raised_in_the_caller_and_stops_the_rest():
    started: list[int] = []

    def work(x: int) -> int:
        started.append(x)
        if x == 0:
            raise ValueError("batch 0 is broken")
        time.sleep(0.01)
        return x

    pool = BatchPool(2)
    with pytest.raises(ValueError, match="batch 0 is broken"):
        pool.map(work, range(100))
    assert len(started) < 10  # no batch started after the failure but the one in flight
    assert pool.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]  # the pool still works


def test_an_interrupted_caller_starts_no_further_item():
    """Ctrl-C while a call waits: it is raised once the items in flight end, and none starts
    after them (a pool that queued every batch would run them all before the process could exit)."""
    started: list[float] = []
    finished: list[float] = []

    def work(x: int) -> int:
        started.append(time.perf_counter())
        time.sleep(0.05)
        finished.append(time.perf_counter())
        return x

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    pool = BatchPool(2)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            pool.map(work, range(200))
        interrupted_at = time.perf_counter()
        assert len(finished) == len(started)  # raised once the batches in flight ended
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(0.3)
    assert 2 <= len(started) < 30
    assert not [t for t in started if t > interrupted_at + 0.01]
    assert pool.map(lambda x: x, range(3)) == [0, 1, 2]


def test_close_stops_the_threads_after_their_calls():
    pool = BatchPool(2).start()
    threads = list(pool._threads)
    assert pool.map(lambda x: x, range(4)) == [0, 1, 2, 3]
    pool.close()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    assert pool.map(lambda x: -x, range(3)) == [0, -1, -2]  # a closed pool starts afresh


def test_a_forked_child_gets_threads_of_its_own():
    """A server that encodes, then forks its workers: the child's pool has no threads until it
    starts its own (it would wait forever on the parent's)."""
    import os

    pool = BatchPool(2)
    assert pool.map(lambda x: x, range(4)) == [0, 1, 2, 3]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            ok = pool.map(lambda x: x * 2, range(6)) == [0, 2, 4, 6, 8, 10]
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 20
    while os.waitpid(child, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the forked child's pool never ran its call")
        time.sleep(0.05)
    assert os.read(read, 2) == b"ok"
    os.close(read)


def test_workers_must_be_at_least_one():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchPool(0)


def test_a_worker_free_at_the_end_of_a_call_starts_the_next_one():
    """The first call's slow item waits for an item of the second call: a pool that began the
    second call only once the first ended would time out here (``submit``'s point)."""
    pool = BatchPool(2)
    second_began = threading.Event()

    def first(x: int) -> bool:
        return second_began.wait(10) if x == 0 else True

    one = pool.submit(first, [0, 1])
    two = pool.submit(lambda x: second_began.set() or x, [7, 8])
    assert one.result() == [True, True]
    assert two.result() == [7, 8]
    assert one.started is not None and two.started < one.ended <= two.ended


def test_stop_starts_no_further_item_of_a_call_queued_behind_another():
    pool = BatchPool(2)
    release = threading.Event()
    one = pool.submit(lambda _: release.wait(10), [0, 1])
    ran: list[int] = []
    two = pool.submit(ran.append, range(100))
    two.stop()
    release.set()
    two.cancel()  # returns once no worker is on it
    assert one.result() == [True, True] and ran == []
