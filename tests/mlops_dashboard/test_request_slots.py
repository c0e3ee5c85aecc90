"""RequestSlots (asgi.py): a burst of requests runs at most `limit` at a time; the rest wait their
turn in the event loop, and every one is answered."""

import asyncio
import threading

from mlops_dashboard.middleware import RequestSlots


def test_a_burst_runs_at_most_limit_at_once_and_every_request_is_served():
    running, most, served = 0, 0, []

    async def app(scope, receive, send):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)  # a view at work (in Django, a thread and a database connection)
        running -= 1
        served.append(scope["n"])

    slots = RequestSlots(app, limit=3)

    async def burst():
        await asyncio.gather(*(slots({"type": "http", "n": n}, None, None) for n in range(40)))

    # In a thread of its own: this one may already run an event loop (Playwright's, in the browser tests).
    thread = threading.Thread(target=asyncio.run, args=(burst(),))
    thread.start()
    thread.join(timeout=30)
    assert most == 3 and sorted(served) == list(range(40))
