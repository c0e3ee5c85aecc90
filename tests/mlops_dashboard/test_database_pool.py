"""The PostgreSQL pool (mlops_dashboard/postgresql/base.py): a connection given back a moment ago is
handed out without the check's round trip; one idle longer is checked, and a dead one is replaced
before anyone uses it."""

import time

import pytest
from django.db import connection, connections

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")


def server_kills(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 30
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.05)


def test_a_connection_back_a_moment_ago_is_not_checked_and_one_idle_longer_is(transactional_db, settings):
    import psycopg

    from mlops_dashboard.postgresql.base import _check_unless_recent

    assert type(connections["default"]).__module__ == "mlops_dashboard.postgresql.base"
    settings.DATABASE_POOL_CHECK_IDLE_SECONDS = 2.0
    with connection.cursor():
        pass  # Django's own connection, so that the pool hands out another below
    pool = connection.pool
    conn = pool.getconn()
    pool.putconn(conn)
    returned = time.monotonic()
    server_kills(conn.info.backend_pid)
    if time.monotonic() - returned < 2.0:  # (a slow machine may take longer to kill it)
        _check_unless_recent(conn)  # no round trip: nothing finds out it is dead
    while time.monotonic() - returned < 2.1:
        time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):
        _check_unless_recent(conn)


def test_after_an_idle_second_every_connection_handed_out_works_even_if_the_server_dropped_some(
        transactional_db, settings):
    settings.DATABASE_POOL_CHECK_IDLE_SECONDS = 0.2
    with connection.cursor():
        pass
    pool = connection.pool
    taken = [pool.getconn() for _ in range(3)]
    for conn in taken:
        pool.putconn(conn)
    for conn in taken[:2]:
        server_kills(conn.info.backend_pid)
    time.sleep(0.3)
    again = [pool.getconn() for _ in range(3)]
    try:
        for conn in again:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in again:
            pool.putconn(conn)
