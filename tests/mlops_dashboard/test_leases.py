"""Leases (leases.py) on the test run's Redis: at most `limit` held at once per name, given back at
the end of the block, and a lease whose holder stopped refreshing it (a dead process) stops counting."""

import asyncio
import threading

from mlops_dashboard import leases


def run(coro):
    # In a thread of its own: this one may already run an event loop (Playwright's, in the browser tests).
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", asyncio.run(coro)))
    thread.start()
    thread.join(timeout=60)
    return result["value"]


def test_at_most_limit_leases_are_held_and_each_is_given_back(redis_client):
    async def scenario():
        got = []
        async with leases.lease("t.limit", 2) as first, leases.lease("t.limit", 2) as second:
            async with leases.lease("t.limit", 2) as third:
                got += [first, second, third]
            async with leases.lease("t.other", 2) as elsewhere:
                got.append(elsewhere)
        async with leases.lease("t.limit", 2) as after:
            got.append(after)
        return got

    assert run(scenario()) == [True, True, False, True, True]
    assert redis_client.zcard(leases.key("t.limit")) == 0


def test_a_lease_its_holder_stopped_refreshing_stops_counting(redis_client):
    redis_client.zadd(leases.key("t.dead"), {"held-by-a-dead-process": 0})  # last refreshed long ago

    async def scenario():
        async with leases.lease("t.dead", 1) as held:
            return held

    assert run(scenario()) is True
