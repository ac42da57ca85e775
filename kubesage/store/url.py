"""Store URLs: checking them, connecting, and bringing the schema to this kubesage's revision.

``sqlite:///PATH`` is the embedded store (a file; several processes share it through SQLite's
locks). ``postgresql://USER@HOST:PORT/DB`` is a team's server. A password never appears in a
URL kubesage reads: it comes from ``$PGPASSWORD``, libpq's ``$PGPASSFILE`` (``~/.pgpass``), or
the file ``$KUBESAGE_STORE_PASSWORD_FILE`` names; error messages and records show the URL without
one. Every problem is one line naming it and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from kubesage.dsl.errors import KubesageError

PASSWORD_FILE_ENV = "KUBESAGE_STORE_PASSWORD_FILE"
SCHEMES = ("sqlite", "postgresql")
EXAMPLES = "sqlite:///PATH/runs.db or postgresql://USER@HOST:PORT/DB"
MIGRATION_LOCK = 72_411_306  # PostgreSQL advisory lock: one process migrates at a time


class StoreError(KubesageError):
    """The store cannot be used: a malformed URL, a wrong password, a schema too new."""


class StoreUnreachable(StoreError):
    """The store's server does not answer."""


class StoreReadOnly(StoreError):
    """The store refuses a write: the role may only read."""


def redact(url: str) -> str:
    """``url`` without any password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", "@")
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    """``url`` if it names a store kubesage can open; else a ``StoreError`` with the fix."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in SCHEMES or "://" not in url:
        raise StoreError(f"store URL '{redact(url)}' is not one kubesage opens; write {EXAMPLES}")
    if parts.password is not None:
        raise StoreError(f"store URL '{redact(url)}' holds a password; remove it from the URL and "
                         f"set $PGPASSWORD, or a file in ${PASSWORD_FILE_ENV} (or ~/.pgpass)")
    if scheme == "sqlite" and not parts.path.strip("/"):
        raise StoreError(f"store URL '{url}' names no file; write sqlite:///PATH/runs.db")
    if scheme == "postgresql":
        try:
            port = parts.port
        except ValueError:
            raise StoreError(f"store URL '{url}' has a malformed port; write {EXAMPLES}") from None
        if not parts.hostname or not parts.path.strip("/") or not parts.username:
            raise StoreError(f"store URL '{url}' needs a user, a host and a database; write "
                             "postgresql://USER@HOST:PORT/DB")
        del port
    return url


def connect(url: str) -> Engine:
    """An engine for the store at ``url``, its schema at this kubesage's revision."""
    check_url(url)
    if url.startswith("sqlite"):
        engine = _sqlite(url)
    else:
        engine = _postgresql(url)
    try:
        migrate(engine)
    except OperationalError as e:
        engine.dispose()
        raise _connect_error(url, e) from None
    return engine


def _sqlite(url: str) -> Engine:
    path = urlsplit(url).path
    path = path[1:] if path.startswith("//") else path  # sqlite:////abs and sqlite:///rel
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    engine = create_engine(f"sqlite:///{os.path.abspath(path)}", connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    return engine


def _postgresql(url: str) -> Engine:
    parts = urlsplit(url)
    driver_url = parts._replace(scheme="postgresql+psycopg").geturl()
    connect_args: dict[str, object] = {"connect_timeout": 5}
    password_file = os.environ.get(PASSWORD_FILE_ENV)
    if password_file:
        try:
            with open(password_file) as f:
                connect_args["password"] = f.read().strip()
        except OSError as e:
            raise StoreError(f"${PASSWORD_FILE_ENV} names {password_file}, which cannot be read "
                             f"({e.strerror}); point it at the file holding the store's "
                             "password") from None
    return create_engine(driver_url, connect_args=connect_args, pool_pre_ping=True,
                         pool_size=4, max_overflow=8)


def _connect_error(url: str, error: OperationalError) -> StoreError:
    text_ = str(getattr(error, "orig", None) or error).strip()
    first = (text_.splitlines() or [""])[0]
    where = redact(url)
    if "password authentication failed" in text_ or "no password supplied" in text_:
        return StoreError(f"the run store at {where} refused the login ({first}); set the "
                          f"password in $PGPASSWORD, ${PASSWORD_FILE_ENV} or ~/.pgpass")
    if "does not exist" in text_ and "database" in text_:
        return StoreError(f"the run store at {where}: {first}; create it (createdb) or fix "
                          "the database name in the URL")
    if url.startswith("sqlite"):
        return StoreError(f"the run store at {where} cannot be opened ({first}); check the "
                          "path and its permissions")
    return StoreUnreachable(f"the run store at {where} does not answer ({first}); start the "
                            "server, or set store: in config/local.yaml (or $KUBESAGE_STORE) to "
                            "one that runs")


def migrate(engine: Engine) -> None:
    """Bring the schema to this kubesage's head revision (Alembic), one process at a time; a
    store written before revisions existed (``runs.db``) is stamped first, then upgraded."""
    from kubesage.store.schema import SCHEMA_HEAD

    with engine.connect() as probe:
        if _recorded_revisions(probe) == [SCHEMA_HEAD]:
            return
    with _migration_lock(engine) as conn:
        current = _revision(conn)
        if current == SCHEMA_HEAD:
            return
        if current is not None and current not in _known_revisions():
            raise StoreError(
                f"the run store at {redact(str(engine.url))} has schema revision {current}, newer "
                f"than this kubesage knows ({SCHEMA_HEAD}); upgrade kubesage (pip install -U "
                "kubesage) to use it")
        _upgrade(conn, stamp_legacy=current is None and inspect(conn).has_table("runs"))


def _recorded_revisions(conn: Connection) -> list[str]:
    """What Alembic's table records, read without loading Alembic (most of a store's opening
    time when there is nothing to migrate); none when the table is not there yet."""
    try:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:  # no such table (a new or a legacy store): the full check decides
        conn.rollback()
        return []


def _revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def _alembic_config():  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", os.path.join(os.path.dirname(__file__),
                                                           "migrations"))
    return config


def _upgrade(conn: Connection, stamp_legacy: bool) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = conn
    if stamp_legacy:
        command.stamp(config, "0001")
    command.upgrade(config, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction no other kubesage process migrates in at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            yield conn
        return
    lock_path = f"{engine.url.database}.migrate.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
