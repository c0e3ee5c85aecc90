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
"""

from __future__ import annotations

import threading
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
    if len(batch) > 1:
        try:
            results = run([c.rows for c in batch])
        except Exception:  # noqa: BLE001 - each runs alone below, and gets its own error
            pass
        else:
            for c, result in zip(batch, results):
                c.result, c.done = result, True
            return
    for c in batch:
        try:
            c.result = run([c.rows])[0]
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread (outcome)
            c.error = exc
        c.done = True
