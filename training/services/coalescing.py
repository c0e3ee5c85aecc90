"""Concurrent predictions of one model, run as one call.

A random forest spends most of a one-row prediction walking its trees in Python, and about as long
for eight rows. So requests for the same loaded model that arrive while it is busy wait for it, and
the next of them predicts all the waiting rows at once (dynamic batching, as model servers do it):

- a request that finds the model idle runs at once, alone: a single client waits for nothing;
- while one call runs, later requests queue; when it ends, the first of them takes the queue (up to
  `max_rows` rows in all, in arrival order) and predicts it in one call, and every request gets its
  own rows' results back;
- when a combined call fails, each request of it runs again alone, so that each gets its own result
  or error, never another request's.

Every request is checked before it queues (its own 400), and the results a combined call gives are
the ones each request gets alone: a row's prediction depends on that row only.
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
