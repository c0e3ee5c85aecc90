"""Django's PostgreSQL backend, with a pool that does not check a connection it just had back.

With a pool (DATABASE_POOL_SIZE) and CONN_HEALTH_CHECKS, psycopg_pool checks every connection it
hands out with a round trip to the server: one more round trip per request, which was a tenth of a
telemetry ingest request's time. Here a connection given back to the pool less than
DATABASE_POOL_CHECK_IDLE_SECONDS ago is handed out unchecked, as HikariCP does (its
aliveBypassWindowMs): it worked a moment ago. One idle longer is checked as before, and a dead one is
replaced before anyone uses it. A server that went away within that second fails the request that
finds out, as it would without checks; the next one gets a checked connection.
"""

from __future__ import annotations

import threading
import time
import weakref

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

_returned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> when it came back
_lock = threading.Lock()


def _note_return(conn) -> None:
    with _lock:
        _returned[conn] = time.monotonic()


def _check_unless_recent(conn) -> None:
    from psycopg_pool import ConnectionPool

    with _lock:
        back = _returned.get(conn)
    if back is not None and time.monotonic() - back < settings.DATABASE_POOL_CHECK_IDLE_SECONDS:
        return
    ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not options or not self.settings_dict["CONN_HEALTH_CHECKS"]:
            return super().pool
        if self.alias not in self._connection_pools:
            # Django's pool (DatabaseWrapper.pool), with the check above and the return noted.
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                kwargs={**self.get_connection_params(), "autocommit": True},  # Django sets its own later
                open=False,
                configure=self._configure_connection,
                check=_check_unless_recent,
                reset=_note_return,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # the first of racing threads wins
        return self._connection_pools[self.alias]
