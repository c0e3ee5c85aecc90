"""Calls run together (mlops_dashboard/coalescing.py): calls that arrive while one runs are run
together next, each gets its own share, a failing combined run gives each call its own outcome, a
big call is never merged past the row limit, and another key never waits."""

from __future__ import annotations

import threading
import time

from mlops_dashboard import coalescing

DEADLINE = 30


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Held:
    """A run function whose first call blocks until released; records the groups of each call."""

    def __init__(self, fail=lambda group: False):
        self.calls: list[list[list]] = []
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, groups):
        self.calls.append([list(g) for g in groups])
        if len(self.calls) == 1:
            assert self.release.wait(DEADLINE)
        if any(self.fail(g) for g in groups):
            raise ValueError(f"bad rows in {groups}")
        return [[x * 10 for x in g] for g in groups]


def start(coalescer, key, rows, run, results):
    def target():
        try:
            results[tuple(rows)] = coalescer.run(key, rows, run)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[tuple(rows)] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def queued(coalescer, key) -> int:
    lane = coalescer._lanes.get(key)
    return len(lane.queue) if lane is not None else 0


def test_calls_arriving_while_one_runs_are_run_together_and_each_gets_its_own_share():
    c, run, results = coalescing.Coalescer(max_rows=100), Held(), {}
    first = start(c, "model", [0], run, results)
    wait_for(lambda: len(run.calls) == 1, "the first call to run")
    others = [start(c, "model", [i, i + 100], run, results) for i in range(1, 6)]
    wait_for(lambda: queued(c, "model") == 5, "five calls to queue")
    run.release.set()
    for t in [first, *others]:
        t.join(DEADLINE)
    assert len(run.calls) == 2  # the first alone, then the five queued at once
    assert sorted(run.calls[1]) == [[i, i + 100] for i in range(1, 6)]
    assert results[(0,)] == [0]
    for i in range(1, 6):
        assert results[(i, i + 100)] == [i * 10, (i + 100) * 10]
    assert c._lanes == {}  # nothing kept once idle


def test_a_failing_combined_call_gives_each_call_its_own_outcome():
    c, run, results = coalescing.Coalescer(max_rows=100), Held(fail=lambda g: -1 in g), {}
    first = start(c, "model", [0], run, results)
    wait_for(lambda: len(run.calls) == 1, "the first call to run")
    others = [start(c, "model", rows, run, results) for rows in ([1], [-1], [2])]
    wait_for(lambda: queued(c, "model") == 3, "three calls to queue")
    run.release.set()
    for t in [first, *others]:
        t.join(DEADLINE)
    assert results[(1,)] == [10] and results[(2,)] == [20]
    assert isinstance(results[(-1,)], ValueError)


def test_calls_are_not_merged_past_the_row_limit_and_other_models_do_not_wait():
    c, run, results = coalescing.Coalescer(max_rows=4), Held(), {}
    first = start(c, "model", [0], run, results)
    wait_for(lambda: len(run.calls) == 1, "the first call to run")
    assert c.run("another model", [7], lambda groups: [["alone"] for _ in groups]) == ["alone"]
    others = []
    for rows in ([1, 1, 1], [2, 2], [3, 3]):  # queued in this order
        others.append(start(c, "model", rows, run, results))
        wait_for(lambda n=len(others): queued(c, "model") == n, "the call to queue")
    run.release.set()
    for t in [first, *others]:
        t.join(DEADLINE)
    assert run.calls[1:] == [[[1, 1, 1]], [[2, 2], [3, 3]]]  # 3 + 2 > 4: the next call takes the rest
    assert results[(2, 2)] == [20, 20] and results[(3, 3)] == [30, 30]
