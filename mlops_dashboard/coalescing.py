"""Calls that may run together, run together: the work of several threads done in one go.

Some work costs about as much for many items as for one: a random forest walks its trees in Python
for one row or eight. So calls with the same key
that arrive while one runs wait for it, and the next of them runs all the waiting calls at once
(dynamic batching, as model servers do it):

- a call that finds its key idle runs at once, alone: a lone caller waits for nothing;
- while one runs, later calls queue; when it ends, the first of them takes the queue (up to
  `max_rows` rows in all, in arrival order) and runs it in one go, and each call gets its own share
  of the results back;
- when a combined run fails, each call of it runs again alone, so that each gets its own result or
  error, never another call's.

Used by predictions (training.services.serving: the rows of concurrent requests for one model).
`Coalescer` batches threads; `LoopCoalescer` batches the tasks of an event loop, running each batch
in an executor's thread (training.api_fast).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Any, Callable, Hashable

# run(groups of rows) -> one result per group, in order.
BatchRun = Callable[[list[list]], list[Any]]


class _Call:
    __slots__ = ("rows", "result", "error", "done", "turn")

    def __init__(self, rows: list):
        self.rows = rows
        self.result = None
        self.error: BaseException | None = None
        self.done = False
        self.turn = threading.Event()  # set when done, or when this call is to lead the next batch

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class _Lane:
    __slots__ = ("queue", "busy")

    def __init__(self):
        self.queue: deque[_Call] = deque()
        self.busy = False


class Coalescer:
    """See the module doc. One per kind of work; `key` names what may run together (a loaded model)."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, _Lane] = {}

    def run(self, key: Hashable, rows: list, run: BatchRun):
        """This call's result: `run([rows])[0]`, or its share of a run of several calls' rows."""
        call = _Call(rows)
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            lane.queue.append(call)
            leads = not lane.busy
            lane.busy = True
        if not leads:
            call.turn.wait()
            if call.done:
                return call.outcome()
        # This call is at the head of the queue: it takes as many as fit and runs them.
        with self._lock:
            batch = [lane.queue.popleft()]
            size = len(batch[0].rows)
            while lane.queue and size + len(lane.queue[0].rows) <= self.max_rows:
                size += len(lane.queue[0].rows)
                batch.append(lane.queue.popleft())
        try:
            _run_batch(batch, run)
        finally:
            for other in batch:
                if not other.done:  # interrupted (a BaseException): nobody is left waiting
                    other.error, other.done = RuntimeError("the prediction was interrupted"), True
            with self._lock:
                if lane.queue:
                    lane.queue[0].turn.set()  # the next in line leads
                else:
                    lane.busy = False
                    if self._lanes.get(key) is lane:
                        del self._lanes[key]
            for other in batch[1:]:
                other.turn.set()
        return call.outcome()


def _run_batch(batch: list[_Call], run: BatchRun) -> None:
    for c, outcome in zip(batch, run_together([c.rows for c in batch], run)):
        if isinstance(outcome, Exception):
            c.error = outcome  # raised in the caller's thread (outcome)
        else:
            c.result = outcome
        c.done = True


def run_together(groups: list[list], run: BatchRun) -> list:
    """`run(groups)`: one result per group, or, when that fails, each group run alone, each getting
    its own result or its own exception (returned, not raised)."""
    if len(groups) > 1:
        try:
            return list(run(groups))
        except Exception:  # noqa: BLE001 - each runs alone below, and gets its own error
            pass
    outcomes = []
    for rows in groups:
        try:
            outcomes.append(run([rows])[0])
        except Exception as exc:  # noqa: BLE001 - this group's own error
            outcomes.append(exc)
    return outcomes


class LoopCoalescer:
    """The same batching for callers on an asyncio event loop, the work done in an executor's thread.

    `run(key, item, work, executor, size)` queues `item` (of `size` rows) behind the calls of the
    same key. A key that is idle starts a run at once; while it runs, later items wait, and when it
    ends the waiting items (up to `max_rows` rows, in arrival order) go together to the next run.
    An item of `max_rows` rows or more runs alone, in its turn: one thread at a time per key (two
    threads of Python work at once run slower than one after the other, for the GIL: measured with
    two clients sending 1,000-row batches).
    `work(items)` runs in the executor and returns one outcome per item, in order; it must not raise
    (an exception raised anyway is each item's outcome). Nothing here blocks the loop.
    """

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._lanes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> {key: deque}

    async def run(self, key: Hashable, item: Any, work: Callable[[list], list], executor, size: int = 1):
        loop = asyncio.get_running_loop()
        lanes = self._lanes.get(loop)
        if lanes is None:
            lanes = self._lanes[loop] = {}
        future = loop.create_future()
        queue = lanes.get(key)
        if queue is None:  # idle: this item starts a run
            queue = lanes[key] = deque()
            queue.append((item, size, future))
            self._start(loop, lanes, key, work, executor)
        else:
            queue.append((item, size, future))
        return await future

    def _start(self, loop, lanes: dict, key, work, executor) -> None:
        queue = lanes[key]
        batch = [queue.popleft()]
        rows = batch[0][1]
        while queue and rows + queue[0][1] <= self.max_rows:
            rows += queue[0][1]
            batch.append(queue.popleft())
        try:
            running = loop.run_in_executor(executor, _work_all, work, [item for item, _, _ in batch])
        except RuntimeError as exc:  # the executor is shut down: every waiting caller gets the error
            for _, _, future in [*batch, *queue]:
                if not future.done():
                    future.set_exception(exc)
            del lanes[key]
            return

        def finished(done: asyncio.Future) -> None:
            try:
                outcomes = done.result()
            except BaseException as exc:  # noqa: BLE001 - the executor failed to run it at all
                outcomes = [exc] * len(batch)
            for (_, _, future), outcome in zip(batch, outcomes):
                if future.done():  # its caller went away (cancelled)
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            if queue:
                self._start(loop, lanes, key, work, executor)
            elif lanes.get(key) is queue:
                del lanes[key]

        running.add_done_callback(finished)


def _work_all(work: Callable[[list], list], items: list) -> list:
    try:
        outcomes = work(items)
    except Exception as exc:  # noqa: BLE001 - each item's outcome, raised in its caller
        return [exc] * len(items)
    if len(outcomes) != len(items):
        return [RuntimeError("a batch gave the wrong number of results")] * len(items)
    return outcomes
