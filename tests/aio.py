"""Running a coroutine from a test."""

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run_async(coro, timeout: float = 600):
    """asyncio.run(coro) in a thread of its own, its result or its exception: the test's own thread
    may already run an event loop (Playwright's, kept for the whole session by the browser tests)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=timeout)
