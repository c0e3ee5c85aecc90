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


# --- LoopCoalescer: the same for tasks of an event loop, the work in an executor's threads ---------


def loop_run(scenario):
    """Run `scenario(executor)` in a fresh event loop, in a thread of its own, with a 4-thread executor."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    outcome = {}

    def in_a_thread():  # a thread of its own: the suite's main thread may hold another test's loop
        try:
            with ThreadPoolExecutor(4) as executor:
                outcome["result"] = asyncio.run(scenario(executor))
        except BaseException as exc:  # noqa: BLE001 - raised again in the test
            outcome["error"] = exc

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(DEADLINE * 2)
    assert not thread.is_alive(), "the scenario did not end"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class HeldItems(Held):
    """A work function for LoopCoalescer: items are lists of rows; each outcome is the rows x 10, or
    a ValueError for an item holding -1 (its own, returned: work never raises)."""

    def __call__(self, items):
        self.calls.append([list(i) for i in items])
        if len(self.calls) == 1:
            assert self.release.wait(DEADLINE)
        return [ValueError(f"bad {i}") if -1 in i else [x * 10 for x in i] for i in items]


def test_loop_tasks_arriving_while_one_runs_go_together_next_and_each_gets_its_own_outcome():
    import asyncio

    c, work = coalescing.LoopCoalescer(max_rows=100), HeldItems()

    async def scenario(executor):
        async def one(rows):
            try:
                return await c.run("model", rows, work, executor, size=len(rows))
            except ValueError as exc:
                return exc

        first = asyncio.ensure_future(one([0]))
        while not work.calls:
            await asyncio.sleep(0.005)
        others = [asyncio.ensure_future(one(rows)) for rows in ([1, 101], [-1], [2, 102])]
        await asyncio.sleep(0.05)
        assert len(work.calls) == 1  # the others wait for the first run
        work.release.set()
        return await asyncio.wait_for(asyncio.gather(first, *others), DEADLINE)

    results = loop_run(scenario)
    assert work.calls == [[[0]], [[1, 101], [-1], [2, 102]]]
    assert results[0] == [0] and results[1] == [10, 1010] and results[3] == [20, 1020]
    assert isinstance(results[2], ValueError)
    assert not any(c._lanes.values())  # nothing kept once idle


def test_loop_tasks_are_not_merged_past_the_row_limit_and_a_big_one_runs_alone_in_its_turn():
    import asyncio

    c, work = coalescing.LoopCoalescer(max_rows=4), HeldItems()

    async def scenario(executor):
        first = asyncio.ensure_future(c.run("model", [0], work, executor, size=1))
        while not work.calls:
            await asyncio.sleep(0.005)
        assert await asyncio.wait_for(c.run("another model", [7], work, executor), DEADLINE) == [70]
        queued = []
        for rows in ([5, 5, 5, 5], [1, 1, 1], [2, 2], [3]):  # queued in this order
            queued.append(asyncio.ensure_future(c.run("model", rows, work, executor, size=len(rows))))
            await asyncio.sleep(0.01)
        work.release.set()
        return await asyncio.wait_for(asyncio.gather(first, *queued), DEADLINE)

    results = loop_run(scenario)
    # The held run, the other model's (it did not wait), then the queue: the batch of the limit's
    # size alone, 3 + 2 > 4 alone, then the rest together.
    assert work.calls == [[[0]], [[7]], [[5, 5, 5, 5]], [[1, 1, 1]], [[2, 2], [3]]]
    assert results == [[0], [50, 50, 50, 50], [10, 10, 10], [20, 20], [30]]


def test_a_loop_batch_whose_work_raises_gives_the_error_to_each_of_its_tasks():
    import asyncio

    c = coalescing.LoopCoalescer(max_rows=10)

    def broken(items):
        raise RuntimeError("the work failed")

    async def scenario(executor):
        tasks = [asyncio.ensure_future(c.run("model", [i], broken, executor)) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE)

    assert [type(r) for r in loop_run(scenario)] == [RuntimeError] * 3
