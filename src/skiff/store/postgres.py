"""The shared engine: one PostgreSQL database for every node of a cluster.

:class:`PostgresDatabase` is a connection pool (psycopg 3 + psycopg_pool) the
Postgres backends of every family share. Connections are in autocommit mode;
a backend that needs several statements to be atomic opens
:meth:`PostgresDatabase.transaction`. Nothing here creates tables: the schema
is :mod:`skiff.store.migrations`' job (``skiff migrate``), so two nodes never
race to change it.

Losing the database while running is mapped here, where connections are
taken, and nowhere else: a connection found dead (the server stopped,
restarted, or cut it) or none to be had within the pool's wait becomes
:class:`~skiff.errors.DatabaseUnavailable` (503 ``database_unavailable``) for
that call. One recovery thread then probes the server every
:data:`PROBE_INTERVAL`; while the probe fails, every call fails at once with
the same error (no request, and no worker thread, waits out a pool timeout for
a server that is known to be down); when it answers, a fresh pool replaces the
old one, whose idle connections are all dead after a restart (the pool's own
reconnection backs off exponentially, up to minutes, and would hand each dead
connection to one more caller first). Other errors (constraint violations,
deadlocks, cancelled statements) are the caller's, unchanged.

The driver is optional (``pip install skiff[postgres]``) and imported only
when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from skiff.errors import DatabaseUnavailable

#: How long opening the pool waits for its first connection before the node
#: refuses to start: long enough for a database that is restarting, short
#: enough that a wrong URL is reported while the operator still watches.
CONNECT_TIMEOUT = 10.0
#: Connections per node. The gateway's storage calls are short; the broker's
#: LISTEN connection is separate and not counted here.
POOL_SIZE = 10
#: While the database is away, how often the recovery thread tries to connect:
#: the longest a node goes on answering 503 after the server is back.
PROBE_INTERVAL = 0.5
#: libpq's connect_timeout of one probe (libpq counts whole seconds, 2 at least).
PROBE_TIMEOUT = 2
#: SQLSTATEs that mean the connection, not the statement, failed: class 08
#: (connection exception) and the server shutting down or starting up.
_LOST_STATES = ("57P01", "57P02", "57P03")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for errors and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - the dev install has it
        raise DatabaseUnavailable(
            "a postgresql:// SKIFF_DATABASE_URL needs the PostgreSQL driver: "
            "pip install 'skiff[postgres]'") from None
    return psycopg, psycopg_pool


class PostgresDatabase:
    """A pool of autocommit connections to one database. Thread-safe."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE,
                 connect_timeout: float = CONNECT_TIMEOUT, options: str | None = None) -> None:
        psycopg, psycopg_pool = _driver()
        self.url = url
        self.psycopg = psycopg
        self._psycopg_pool = psycopg_pool
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if options:
            self._kwargs["options"] = options  # e.g. "-c search_path=..." (the tests' schemas)
        # one direct connection first: a wrong URL or a server that is down fails
        # at once with the driver's reason, not after the pool's retries and log lines
        try:
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout)),
                            **self._kwargs).close()
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {mask_url(url)}: {_reason(exc)}; check "
                "SKIFF_DATABASE_URL and that the server is up", url=mask_url(url)) from None
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool = self._open_pool()
        self._state = threading.Lock()
        self._recovering = False
        #: The recovery thread's last probe failed: calls fail at once until one succeeds.
        self.down = False
        #: Times the database was found lost (a dead connection or no connection).
        self.outages = 0
        self._closed = threading.Event()

    def _open_pool(self) -> Any:
        psycopg_pool = self._psycopg_pool
        pool = psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, kwargs=self._kwargs, open=False,
            timeout=self._connect_timeout, name="skiff")
        try:
            pool.open(wait=True, timeout=self._connect_timeout)
        except psycopg_pool.PoolTimeout:
            pool.close()
            raise DatabaseUnavailable(
                f"cannot reach the database at {mask_url(self.url)} within "
                f"{self._connect_timeout:g} s: {self._probe()}; check SKIFF_DATABASE_URL and "
                "that the server is up", url=mask_url(self.url)) from None
        return pool

    def _probe(self) -> str:
        """Why a connection fails, in the driver's words (without the password)."""
        try:
            self.psycopg.connect(self.url, connect_timeout=2, **self._kwargs).close()
        except self.psycopg.Error as exc:
            return _reason(exc)
        return "the pool timed out"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection in autocommit mode, back to the pool on exit.
        DatabaseUnavailable when the database is away (see the module docstring)."""
        with self._taken() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside a transaction: committed on exit, rolled back on error.
        DatabaseUnavailable when the database is away, the commit's outcome unknown to
        the caller (as for any lost connection)."""
        with self._taken() as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def _taken(self) -> Iterator[Any]:
        if self.down:
            raise self._unavailable()
        conn = None
        try:
            with self._pool.connection() as conn:
                yield conn
        except self._psycopg_pool.PoolTimeout:
            self._lost()
            raise self._unavailable(f"no connection to it within {self._connect_timeout:g} s"
                                    ) from None
        except self.psycopg.OperationalError as exc:
            if not _connection_lost(exc, conn):
                raise
            self._lost()
            raise self._unavailable(_reason(exc)) from None

    def connect(self) -> Any:
        """A dedicated connection outside the pool (LISTEN needs one of its own)."""
        try:
            return self.psycopg.connect(self.url, **self._kwargs)
        except self.psycopg.OperationalError as exc:
            raise self._unavailable(_reason(exc)) from None

    def _unavailable(self, why: str = "") -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"the database at {mask_url(self.url)} is unreachable"
            + (f" ({why})" if why else "") + "; nothing was done. The node reconnects by "
            "itself: retry later, and if this lasts, check that the database server is up",
            url=mask_url(self.url), retry_after=1)

    # -- losing the database and getting it back ----------------------------------------
    def _lost(self) -> None:
        with self._state:
            if self._closed.is_set():
                return
            self.outages += 1
            if self._recovering:
                return
            self._recovering = True
        threading.Thread(target=self._recover, name="skiff-db-recover", daemon=True).start()

    def _recover(self) -> None:
        """Probe until the server answers, then replace the pool (its idle connections
        may all be dead). Calls fail fast from the first failed probe on."""
        while not self._closed.is_set():
            try:
                self.psycopg.connect(self.url, connect_timeout=PROBE_TIMEOUT,
                                     **self._kwargs).close()
                fresh = self._open_pool()
            except (self.psycopg.Error, DatabaseUnavailable) as exc:
                if not self.down:
                    self.down = True
                    print(f"skiff: the database at {mask_url(self.url)} is unreachable "
                          f"({_reason(exc)}); requests that need it get 503 "
                          "database_unavailable until it is back", file=sys.stderr, flush=True)
                self._closed.wait(PROBE_INTERVAL)
                continue
            old, self._pool = self._pool, fresh
            was_down, self.down = self.down, False
            with self._state:
                self._recovering = False
            if was_down:
                print(f"skiff: the database at {mask_url(self.url)} is reachable again",
                      file=sys.stderr, flush=True)
            # connections still out are closed as they come back to the closed pool
            old.close(timeout=1.0)
            if self._closed.is_set():
                fresh.close()
            return

    def close(self) -> None:
        self._closed.set()
        self._pool.close()


def _connection_lost(exc: BaseException, conn: Any) -> bool:
    """Whether ``exc`` says the connection failed (not the statement)."""
    state = getattr(exc, "sqlstate", None)
    return (getattr(conn, "broken", False) or getattr(conn, "closed", False) or state is None
            or state.startswith("08") or state in _LOST_STATES)


def _reason(exc: BaseException) -> str:
    """The driver's message, on one line (libpq's never contains the password)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return text or type(exc).__name__
