"""Engine and session factory for SQLite (embedded) and PostgreSQL (production).

SQLite write transactions start with BEGIN IMMEDIATE: a deferred BEGIN that later
upgrades to a write lock fails with "database is locked" under concurrent writers
instead of waiting for the busy timeout. Units of work that only read (`reading()`)
begin deferred instead, so they never queue behind a writer (WAL lets them read).

Writers of one process also queue for SQLite's lock in the process, first come first
served: SQLite's own busy handler makes a waiter sleep and poll (up to 100 ms a time),
so under a burst the lock sits free while waiters sleep, and who gets it is luck. Other
processes still meet the busy timeout, and so does a writer here after as long a wait.

On PostgreSQL a server restart must not reach users as a failure. The pool pings a
connection as it hands it out (`pool_pre_ping`), so a connection the restart killed is
replaced rather than used, and the first dead one found invalidates the whole pool.
A unit of work takes its connection before its body runs: when that fails because
the server is gone (nothing was written yet), it waits a moment and tries once more,
then raises `DatabaseUnavailable`, which the error handler tells users as "briefly
unavailable". `read()` also runs a read-only body again once if its connection died
under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from typing import TypeVar
from uuid import uuid4

from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine

from storage.audit_chain import Sealer
from storage.audit_chain import seal_own
from storage.audit_chain import wrote_entries
from storage.cache import EpochCache
from storage.cache import EpochWatch
from storage.cache import data_epoch
from storage.cache import data_epoch_sql

SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY = "liaison_desk_read_only"
RETRY_PAUSE = 0.5  # seconds before the one retry of a unit of work the server failed
# SQLSTATEs of a server that is gone or not taking connections: class 08 (connection
# exception), 53300 too many connections, 57P01-57P03 shutdown / crash / starting up.
UNREACHABLE_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")
PGBOUNCER_FLAG = "pgbouncer"  # DATABASE_URL's ?pgbouncer=true (our flag, not the driver's)

T = TypeVar("T")


class DatabaseUnavailable(OperationalError):
    """The database server cannot be reached (restarting, down, full): nothing of the
    unit of work was written, and trying again in a while will work."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("connect", None, cause)


def _sqlstate(error: BaseException) -> str:
    return str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")


def is_unreachable(error: BaseException | None) -> bool:
    """Whether `error` (or what caused it) says the server is gone rather than that the
    work was wrong: a connection that died, was refused, or was turned away."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DatabaseUnavailable | ConnectionError):
            return True
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if _sqlstate(error).startswith(UNREACHABLE_SQLSTATES):
            return True
        if isinstance(error, OSError) and error.errno is None and "connect" in str(error):
            return True  # asyncpg: "Multiple exceptions: [Errno 111] Connect call failed"
        error = error.__cause__ or error.__context__
    return False


def through_pgbouncer(database_url: str | URL) -> bool:
    """Whether DATABASE_URL says `?pgbouncer=true`: the server is reached through a
    pooler in transaction mode, where each transaction may run on another server
    connection, so a statement prepared in one may be gone in the next (PgBouncer
    before 1.21, or without `max_prepared_statements`) and LISTEN hears nothing."""
    value = make_url(database_url).query.get(PGBOUNCER_FLAG, "")
    return str(value).lower() in ("1", "true", "yes", "on")


def postgres_engine_arguments(database_url: str | URL) -> tuple[URL, dict[str, Any]]:
    """The URL to connect with and the `connect_args` for asyncpg. Behind PgBouncer
    asyncpg keeps no statement cache and names each statement it prepares uniquely, so
    no name is ever met on a server connection that has it already or lacks it
    (SQLAlchemy's recipe for transaction poolers): one more round trip a statement."""
    url = make_url(database_url)
    if not through_pgbouncer(url):
        return url, {}
    url = url.difference_update_query([PGBOUNCER_FLAG]).update_query_dict(
        {"prepared_statement_cache_size": "0"})
    return url, {"statement_cache_size": 0,
                 "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4().hex}__"}


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        pool: dict[str, int] = {}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # Enough kept open for UPDATE_CONCURRENCY's default (32) not to open and
            # close connections (each a thread) under load; memory has a single one.
            pool = {"pool_size": 20, "max_overflow": 20}
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool
        )
        _configure_sqlite(engine)
        return engine
    url, connect_args = postgres_engine_arguments(url)
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10,
                               connect_args=connect_args)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def dialect_insert(session: AsyncSession) -> Any:
    """The session's dialect's INSERT: the plain one has no ON CONFLICT, both of ours do."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


class Database:
    """The engine plus a session factory; one unit of work per update or job."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = create_engine(database_url)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.caches: dict[str, EpochCache] = {}
        self.epoch = EpochWatch(self._read_epoch)
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._writers = asyncio.Lock() if is_sqlite(self.engine) else None
        on_file = make_url(database_url).database not in (None, "", ":memory:")
        self._epoch_sql = (data_epoch_sql(self.engine.dialect)
                           if is_sqlite(self.engine) and on_file else None)
        self._epoch_connection: AsyncConnection | None = None
        # SQLite has no server to lose, and taking the connection first would take its
        # write lock (BEGIN IMMEDIATE) before the body's first statement.
        self._connect_first = not is_sqlite(self.engine)
        self.sealer = Sealer(self)
        self._seals_own = is_sqlite(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read/write unit of work, committed on success, rolled back on error. Audit
        entries it wrote are sealed into the chain: on SQLite in it, before it commits;
        on PostgreSQL once it has committed, in the background (storage/audit_chain.py)."""
        async with self._write_turn(), self._unit(self.sessionmaker) as session:
            yield session
            if self._seals_own and wrote_entries(session):
                await seal_own(session)
        if wrote_entries(session):
            self.sealer.request()

    @asynccontextmanager
    async def _unit(self, maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        """Committed on success, rolled back (by closing) on error."""
        if not self._connect_first:
            async with maker() as session, session.begin():
                yield session
            return
        async with maker() as session:
            await self._connect(session)
            yield session
            await session.commit()

    async def _connect(self, session: AsyncSession) -> None:
        """Take the session's connection (the pool pings it) before the body runs, so a
        server that is gone fails here, where nothing is written yet."""
        async def connect() -> None:
            try:
                await session.connection()
            except Exception:
                await session.close()  # usable again, for the retry
                raise

        await self._retried(connect)

    @staticmethod
    async def _retried(attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`; if the server was unreachable, once more after a pause; if it
        still is, DatabaseUnavailable."""
        for tries_left in (1, 0):
            try:
                return await attempt()
            except DatabaseUnavailable:
                raise  # an inner unit already waited and tried again
            except Exception as error:
                if not is_unreachable(error):
                    raise
                if not tries_left:
                    raise DatabaseUnavailable(error) from error
            await asyncio.sleep(RETRY_PAUSE)
        raise AssertionError("not reached")

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        if self._writers is None:
            yield
            return
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self._writers.acquire()
        except TimeoutError:
            raise OperationalError("BEGIN IMMEDIATE", None,
                                   sqlite3.OperationalError("database is locked")) from None
        try:
            yield
        finally:
            self._writers.release()

    async def _read_epoch(self) -> int:
        """Read for every update. On an SQLite file, on a connection kept for it and with
        the driver's own call: one trip to aiosqlite's thread, where a pooled session
        takes about eighteen (checkout, BEGIN, cursor, execute, fetch, close, rollback,
        reset), a fifth of the CPU a lookup used."""
        if self._epoch_sql is None:
            return await self.read(data_epoch)
        try:
            if self._epoch_connection is None:
                self._epoch_connection = await self.engine.connect()
            raw = await self._epoch_connection.get_raw_connection()
            driver = raw.driver_connection  # None only once the connection is invalidated
            assert driver is not None
            rows = await driver.execute_fetchall(self._epoch_sql)
        except Exception:
            await self._close_epoch_connection()  # a fresh one next time
            raise
        return int(rows[0][0])

    async def _close_epoch_connection(self) -> None:
        connection, self._epoch_connection = self._epoch_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def cache(self, name: str) -> EpochCache:
        """A named in-memory cache of what this database's directory says
        (storage/cache.py)."""
        cache = self.caches.get(name)
        if cache is None:
            cache = self.caches[name] = EpochCache()
        return cache

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads (on SQLite it takes no write lock: it must not
        write)."""
        async with self._unit(self.read_sessionmaker) as session:
            yield session

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in a `reading()` unit; run once more if the server dropped the connection
        under it (it only read, so running it again is harmless)."""
        async def attempt() -> T:
            async with self.reading() as session:
                return await work(session)

        return await self._retried(attempt)

    async def dispose(self) -> None:
        await self.sealer.settle(close=True)
        await self._close_epoch_connection()
        await self.engine.dispose()


class AlreadySubmitted(Exception):
    """A guided flow's draft that was stored before (its submission key is taken), with
    the numbers of what it created. Raised inside the unit of work: nothing is stored
    or sent again."""

    def __init__(self, numbers: Sequence[str]) -> None:
        super().__init__(", ".join(numbers))
        self.numbers = list(numbers)


Created = TypeVar("Created")


async def submit_once(db: Database,
                      work: Callable[[AsyncSession], Awaitable[Created]]) -> Created:
    """Run `work`, which stores a draft under its submission key (or raises
    AlreadySubmitted when the key is taken), in a unit of work. Two submissions of one
    draft at once (two processes): the later insert meets the unique key and rolls
    back; run again, its lookup finds the first one's rows."""
    try:
        async with db.session() as session:
            return await work(session)
    except IntegrityError:
        async with db.session() as session:
            return await work(session)
