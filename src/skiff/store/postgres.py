"""The shared engine: one PostgreSQL database for every node of a cluster.

:class:`PostgresDatabase` is a connection pool (psycopg 3 + psycopg_pool) the
Postgres backends of every family share. Connections are in autocommit mode;
a backend that needs several statements to be atomic opens
:meth:`PostgresDatabase.transaction`. Nothing here creates tables: the schema
is :mod:`skiff.store.migrations`' job (``skiff migrate``), so two nodes never
race to change it.

The driver is optional (``pip install skiff[postgres]``) and imported only
when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import contextlib
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
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs=self._kwargs, open=False,
            timeout=connect_timeout, name="skiff")
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise DatabaseUnavailable(
                f"cannot reach the database at {mask_url(url)} within {connect_timeout:g} s: "
                f"{self._probe()}; check SKIFF_DATABASE_URL and that the server is up",
                url=mask_url(url)) from None

    def _probe(self) -> str:
        """Why a connection fails, in the driver's words (without the password)."""
        try:
            self.psycopg.connect(self.url, connect_timeout=2, **self._kwargs).close()
        except self.psycopg.Error as exc:
            return _reason(exc)
        return "the pool timed out"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection in autocommit mode, back to the pool on exit."""
        with self._pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside a transaction: committed on exit, rolled back on error."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def connect(self) -> Any:
        """A dedicated connection outside the pool (LISTEN needs one of its own)."""
        return self.psycopg.connect(self.url, **self._kwargs)

    def close(self) -> None:
        self._pool.close()


def _reason(exc: BaseException) -> str:
    """The driver's message, on one line (libpq's never contains the password)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return text or type(exc).__name__
