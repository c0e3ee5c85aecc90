"""Leases (leases.py) on the test run's Redis: at most `limit` held at once per name, given back at
the end of the block, and a lease whose holder stopped refreshing it (a dead process) stops counting."""

from mlops_dashboard import leases
from tests.aio import run_async as run


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
