"""The server's processes for big predictions (mlops_dashboard/process_pool.py), with real spawned
processes: none until asked for, up in the background, a failed start retried later, a process that
dies while running a call reported as lost and replaced. (Predictions through a server that uses them:
tests/training/test_predict_fast.py.)"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlops_dashboard import process_pool
from mlops_dashboard.process_pool import Lost, ProcessPool, Unavailable
from tests.procs import wait_for


def pid_and_setting() -> tuple[int, str]:
    from django.conf import settings

    return os.getpid(), settings.SETTINGS_MODULE


def die() -> None:
    os._exit(3)


def _call(pool: ProcessPool, executor, fn):
    """`pool.run(executor, fn)` on an event loop of its own, in a thread of its own (the suite's
    browser tests leave Playwright's loop running in the test thread)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, pool.run(executor, fn)).result()


def _until_ready(pool: ProcessPool):
    return wait_for(pool.ready, timeout=120, message="the processes")


@pytest.fixture
def pool(settings, monkeypatch):
    settings.TEST_PROCESSES = 2
    monkeypatch.setattr(process_pool, "RESTART_SECONDS", 0.5)
    made = ProcessPool("TEST_PROCESSES")
    yield made
    executor = made._executor
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def test_none_without_the_setting_and_none_until_the_processes_are_up(pool, settings):
    settings.TEST_PROCESSES = 0
    assert pool.ready() is None and pool._executor is None and not pool._starting
    settings.TEST_PROCESSES = 2
    assert pool.ready() is None  # starting, in the background
    executor = _until_ready(pool)
    pids = {_call(pool, executor, pid_and_setting)[0] for _ in range(6)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert _call(pool, executor, pid_and_setting)[1] == "mlops_dashboard.settings"  # Django set up


def test_a_start_that_fails_is_tried_again_later(pool, monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "no_such_settings_module")  # what the new processes inherit
    assert pool.ready() is None
    deadline = time.monotonic() + 120
    while pool._starting or pool._not_before == 0.0:  # the start failed: its processes could not set up
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert pool.ready() is None and pool._executor is None
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")
    executor = _until_ready(pool)  # tried again once its wait is over
    assert _call(pool, executor, pid_and_setting)[0] != os.getpid()


def test_a_process_that_dies_in_a_call_is_lost_and_the_pool_replaced(pool):
    executor = _until_ready(pool)
    with pytest.raises(Lost):
        _call(pool, executor, die)
    with pytest.raises(Unavailable):  # the broken pool takes nothing more
        _call(pool, executor, pid_and_setting)
    replaced = _until_ready(pool)
    assert replaced is not executor
    assert _call(pool, replaced, pid_and_setting)[0] != os.getpid()
