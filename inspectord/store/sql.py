"""The SQL node store.

Every ``thd_*`` method is blocking and runs in the database thread pool
(:class:`inspectord.store.pool.DatabasePool`); the public methods of
:class:`SQLStore` hand them to the pool and return Deferreds firing with
plain records.  State changes are compare-and-set on ``version_id``, so
several inspectord processes may share one database: whoever updates a row
first wins, the other gets :class:`~inspectord.errors.StateChanged`.
"""

import collections
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import types
import uuid as uuidlib

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from inspectord import errors
from inspectord import state as st
from inspectord.interfaces import IStore
from inspectord.timeutil import utc
from inspectord.store import adopt, enrollment, schema
from inspectord.store.records import Match, NodeRecord

_MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")

_ACTIVE = tuple(s.value for s in st.ACTIVE)
#: States an instance works in: each has an owner and a lease.
_LEASED = tuple(s.value for s in st.LEASED)
# Bound on the records kept for status reads.
_RECENT_MAX = 100_000
# Size of the record cache at which its expired entries are dropped.
_RECENT_SWEEP = 256
#: Options holding secrets, dropped when an introspection ends.
SECRET_OPTIONS = ("ipmi_credentials",)


def _private_sqlite_file(path):
    """Create the database file 0600 (its directory 0700 if new) before SQLite does.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode,
    so they are private too.  An existing file readable by others is made
    private.
    """
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


#: Driver module -> the extra of setup.py that installs it.
DRIVER_EXTRAS = {"pymysql": "mysql", "psycopg2": "postgresql"}
#: A URL naming no driver gets the one of inspectord's extras (SQLAlchemy's
#: own default depends on its version: MySQLdb, psycopg 3).
_DEFAULT_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "postgresql": "postgresql+psycopg2"}


def make_engine(url):
    """An engine for ``url`` (``[database]connection``).

    SQLite gets WAL and a busy timeout.  MySQL/MariaDB gets ``utf8mb4``
    unless the URL names a charset, and READ COMMITTED: under its default
    REPEATABLE READ a transaction keeps reading the snapshot of its first
    read, so the limits counted in SQL (discovery) would miss what other
    instances committed meanwhile.  Server databases check a connection
    before handing it out (``pool_pre_ping``), so a restarted server or one
    that dropped idle connections costs a reconnect, not an error.

    :raises errors.ConfigError: the URL is invalid or its driver is not
        installed (naming the extra that installs it).
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise errors.ConfigError("[database]connection is not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    kwargs = {"pool_pre_ping": True}
    if backend in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        # Below every server's idle timeout (wait_timeout, HAProxy's).
        kwargs.update(isolation_level="READ COMMITTED", pool_recycle=600)
    try:
        return sa.create_engine(parsed, **kwargs)
    except ImportError as e:
        raise errors.ConfigError(_missing_driver(parsed, e)) from None
    except sa.exc.NoSuchModuleError:
        raise errors.ConfigError(
            "[database]connection: SQLAlchemy has no database dialect {!r}".format(parsed.drivername)
        ) from None


def _missing_driver(parsed, error):
    module = (getattr(error, "name", None) or "").split(".")[0]
    extra = DRIVER_EXTRAS.get(module)
    if extra is not None:
        return "[database]connection {}://... needs the {} driver: install inspectord[{}] (pip install 'inspectord[{}]')".format(
            parsed.drivername, module, extra, extra
        )
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        return "[database]connection {}://... needs the {} driver, which inspectord does not ship: write {}://... and install inspectord[mysql]".format(
            parsed.drivername, module or parsed.get_driver_name(), _DEFAULT_DRIVERS["mysql"]
        )
    return "[database]connection {}://... needs the Python module {}, which is not installed".format(
        parsed.drivername, module or parsed.get_driver_name()
    )


def _sqlite_engine(url):
    if url in ("sqlite://", "sqlite:///:memory:"):
        engine = sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = url.split("///", 1)[1] if "///" in url else None
        if path:
            _private_sqlite_file(path.split("?", 1)[0])
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        if url not in ("sqlite://", "sqlite:///:memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


#: Name of the database lock migrations run under (MySQL GET_LOCK; a
#: PostgreSQL advisory lock key is derived from it).
MIGRATION_LOCK = "inspectord-migrations"
_PG_MIGRATION_LOCK_KEY = 0x696E7370  # "insp"
MIGRATION_LOCK_TIMEOUT = 600


def thd_upgrade(engine):
    """Bring inspectord's schema to its head (blocking).

    A new database (or one holding only ironic-inspector's tables) gets
    inspectord's tables created at the head; an older inspectord schema
    gets the missing migrations, its revision first moved out of
    ``alembic_version`` when an inspectord from before its own version
    table left it there.  Returns the :class:`~inspectord.store.adopt.DatabaseShape`
    found; raises :class:`~inspectord.errors.SchemaError` naming a revision
    inspectord does not know.

    Under a database-wide lock (PostgreSQL advisory lock, MySQL
    ``GET_LOCK``): instances started together on an empty database
    migrate one after the other, the later ones finding nothing to do.
    SQLite serializes writers by itself.
    """
    with engine.connect() as connection:
        with _migration_lock(connection):
            with connection.begin():
                shape = adopt.thd_examine(connection)
                # A database already at the head (every start but the first
                # after an upgrade) needs no migration: Alembic, its
                # templates and its dialect modules are not even imported.
                if shape.revision == schema.HEAD_REVISION and shape.legacy_revision is None:
                    return shape
                _thd_migrate(connection, shape)
    return shape


def _thd_migrate(connection, shape):
    """Run the migrations ``shape`` calls for, inside the caller's lock and transaction."""
    from alembic import command as alembic_command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _MIGRATIONS)
    cfg.attributes["connection"] = connection
    heads = migration_scripts()
    revision = shape.revision or shape.legacy_revision
    if revision is not None and revision not in {s.revision for s in heads.walk_revisions()}:
        raise errors.SchemaError(
            "The database holds inspectord's schema at revision {!r}, which this inspectord does not "
            "know (its head is {!r}): it was made by a newer inspectord".format(
                revision, heads.get_current_head()
            )
        )
    if shape.legacy_revision is not None:
        connection.execute(sa.text("DROP TABLE " + adopt.UPSTREAM_VERSION_TABLE))
        cfg.attributes["version_table"] = schema.VERSION_TABLE
        alembic_command.stamp(cfg, shape.legacy_revision)
    if revision is None:
        _create_at_head(connection)
        alembic_command.stamp(cfg, "head")
    else:
        alembic_command.upgrade(cfg, "head")


def migration_scripts():
    """Alembic's ``ScriptDirectory`` of inspectord's migrations (imports Alembic)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _MIGRATIONS)
    return ScriptDirectory.from_config(cfg)


def _create_at_head(connection):
    """Create inspectord's tables as the migrations leave them.

    On MySQL/MariaDB, that is utf8mb4 with a binary collation without
    padding and dynamic rows (what migration 0005 converts older tables
    to), whatever the database's defaults.
    """
    if connection.dialect.name != "mysql":
        schema.metadata.create_all(connection)
        return
    if connection.dialect.is_mariadb:
        collation = "utf8mb4_nopad_bin"
    elif connection.dialect.server_version_info >= (8,):
        collation = "utf8mb4_0900_bin"
    else:
        collation = "utf8mb4_bin"
    metadata = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(metadata).dialect_kwargs.update(
            mysql_charset="utf8mb4", mysql_collate=collation, mysql_row_format="DYNAMIC"
        )
    metadata.create_all(connection)


def thd_upgrade_and_adopt(engine, now=None, first_only=True):
    """:func:`thd_upgrade`, then adopt ironic-inspector's data if the database holds it.

    Returns the :class:`~inspectord.store.adopt.AdoptionReport`, or None
    when nothing was adopted (no ironic-inspector schema; with
    ``first_only``, an adoption already recorded).
    """
    shape = thd_upgrade(engine)
    if shape.upstream_revision is None:
        return None
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return adopt.thd_adopt(engine, now, first_only=first_only)


@contextlib.contextmanager
def _migration_lock(connection):
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
        release = sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
    elif dialect == "mysql":
        got = connection.execute(
            sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": MIGRATION_LOCK, "timeout": MIGRATION_LOCK_TIMEOUT}
        ).scalar()
        if got != 1:
            raise errors.ConfigError(
                "another instance held the migration lock for {} s".format(MIGRATION_LOCK_TIMEOUT)
            )
        release = sa.text("SELECT RELEASE_LOCK(:name)"), {"name": MIGRATION_LOCK}
    else:
        yield
        return
    # The lock belongs to the session: end the transaction it began in.
    connection.commit()
    try:
        yield
    finally:
        if not connection.invalidated:
            connection.execute(*release)
            connection.commit()


# Statements of the hot paths, built once: SQLAlchemy then reuses their
# cache keys and compiled forms instead of rebuilding them per call.
_GET_NODE = sa.select(schema.nodes).where(schema.nodes.c.uuid == sa.bindparam("uuid"))


@functools.lru_cache(maxsize=64)
def _cas_update(columns):
    """``UPDATE nodes SET <columns> WHERE uuid AND version_id`` with bound parameters.

    One statement per set of columns (a handful: start, each kind of
    transition), built once.  Its parameters: ``w_uuid``, ``w_version``
    and ``v_<column>`` for each column set.
    """
    n = schema.nodes
    return (
        n.update()
        .where(n.c.uuid == sa.bindparam("w_uuid"), n.c.version_id == sa.bindparam("w_version"))
        .values({c: sa.bindparam("v_" + c) for c in columns})
    )


def _thd_cas_update(conn, uuid, version_id, values):
    """Apply ``values`` to the node if its version is still ``version_id``; the row count."""
    params = {"v_" + c: v for c, v in values.items()}
    params["w_uuid"] = uuid
    params["w_version"] = version_id
    return conn.execute(_cas_update(tuple(values)), params).rowcount


def _dialect_insert(dialect, table, row):
    """``(dialect's insert construct of row, True for MySQL's ON DUPLICATE KEY)``; only that dialect is imported."""
    mysql = dialect in ("mysql", "mariadb")  # mariadb:// URLs name the MariaDB dialect
    if mysql:
        from sqlalchemy.dialects import mysql as module
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as module
    else:
        from sqlalchemy.dialects import sqlite as module
    return module.insert(table).values(**row), mysql


@functools.lru_cache(maxsize=None)
def _upsert_data(dialect):
    """``INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE`` of introspection data for ``dialect``.

    One statement: two instances storing the same node's data at once
    both succeed (the later write wins) instead of one of them hitting the
    primary key.  Built once per dialect, the first time it is needed, so
    that only the dialect in use is imported.
    """
    t = schema.introspection_data
    row = dict(
        node_uuid=sa.bindparam("p_uuid"),
        processed=sa.bindparam("p_processed"),
        data=sa.bindparam("p_data"),
        stored_at=sa.bindparam("p_at"),
    )
    insert, mysql = _dialect_insert(dialect, t, row)
    if mysql:
        return insert.on_duplicate_key_update(data=insert.inserted.data, stored_at=insert.inserted.stored_at)
    return insert.on_conflict_do_update(
        index_elements=[t.c.node_uuid, t.c.processed],
        set_={"data": insert.excluded.data, "stored_at": insert.excluded.stored_at},
    )


#: The columns of a status (see :meth:`SQLStore.thd_list`): no Ironic node, no options, no ports: a page
#: decodes no JSON at all.  In this order, :func:`_brief_records` unpacks them.
_BRIEF_COLUMNS = tuple(
    schema.nodes.c[name]
    for name in ("uuid", "state", "started_at", "finished_at", "error", "manage_boot", "version_id",
                 "lease_until", "lease_owner", "data_pending")
)
#: The same, and the ports (for the DHCP diagnosis) only of a node under introspection.
_BRIEF_COLUMNS_PORTS = _BRIEF_COLUMNS + (
    sa.case((schema.nodes.c.state.in_(_ACTIVE), schema.nodes.c.ports), else_=sa.null()).label("ports"),
)
#: Where a page of the list resumes: the marker's sort key, nothing else.
_LIST_MARKER = sa.select(schema.nodes.c.started_at, schema.nodes.c.uuid).where(
    schema.nodes.c.uuid == sa.bindparam("uuid")
)


@functools.lru_cache(maxsize=None)
def _upsert_seen(dialect):
    """Upsert of one MAC's last DHCP request for ``dialect``: the newer request wins.

    Built once per dialect, when first needed (only that dialect is imported).
    """
    t = schema.dhcp_seen
    row = dict(
        mac=sa.bindparam("p_mac"),
        last_request=sa.bindparam("p_last"),
        message=sa.bindparam("p_message"),
        allowed=sa.bindparam("p_allowed"),
    )
    insert, mysql = _dialect_insert(dialect, t, row)
    if mysql:
        newer = insert.inserted.last_request >= t.c.last_request
        # MySQL assigns left to right: last_request last, so the others compare with the old one.
        return insert.on_duplicate_key_update([
            ("message", sa.case((newer, insert.inserted.message), else_=t.c.message)),
            ("allowed", sa.case((newer, insert.inserted.allowed), else_=t.c.allowed)),
            ("last_request", sa.case((newer, insert.inserted.last_request), else_=t.c.last_request)),
        ])
    return insert.on_conflict_do_update(
        index_elements=[t.c.mac],
        set_={"last_request": insert.excluded.last_request, "message": insert.excluded.message,
              "allowed": insert.excluded.allowed},
        where=insert.excluded.last_request >= t.c.last_request,
    )


_A, _N = schema.attributes, schema.nodes
# name = 'mac' AND value IN (...): searched in the (name, value) index,
# where a row-value IN scanned every node under introspection.
_CONFLICTS = (
    sa.select(_A.c.name, _A.c.value, _A.c.node_uuid)
    .join(_N, _N.c.uuid == _A.c.node_uuid)
    .where(
        _A.c.node_uuid != sa.bindparam("uuid"),
        _N.c.state.in_(_ACTIVE),
        _A.c.name == "mac",
        _A.c.value.in_(sa.bindparam("macs", expanding=True)),
    )
)
_DELETE_ATTRIBUTES = schema.attributes.delete().where(schema.attributes.c.node_uuid == sa.bindparam("uuid"))
_INSERT_ATTRIBUTE = schema.attributes.insert()
_DELETE_DATA = schema.introspection_data.delete().where(
    schema.introspection_data.c.node_uuid == sa.bindparam("uuid")
)
_LIST_RULES = sa.select(schema.rules).order_by(schema.rules.c.position)
_LOOKUP = (
    sa.select(schema.attributes.c.node_uuid, schema.nodes.c.state)
    .join(schema.nodes, schema.nodes.c.uuid == schema.attributes.c.node_uuid)
    # One IN per attribute name, not a row-value IN of (name, value) pairs:
    # SQLite searches the (name, value) index for these, but scans the
    # whole table for a row-value IN, which grows with every node recorded.
    .where(
        sa.or_(
            sa.and_(
                schema.attributes.c.name == "mac",
                schema.attributes.c.value.in_(sa.bindparam("macs", expanding=True)),
            ),
            sa.and_(
                schema.attributes.c.name == "bmc_address",
                schema.attributes.c.value.in_(sa.bindparam("bmcs", expanding=True)),
            ),
        )
    )
)


class DatabaseUnreachable(Exception):
    """The database could not be reached at start within ``[database]max_retries``."""


#: Runs of one blocking call when the server rolled it back (deadlock,
#: lock wait timeout, serialization failure) or the connection broke.
TRANSIENT_ATTEMPTS = 3
_MYSQL_TRANSIENT = (1205, 1213)  # lock wait timeout, deadlock
_PG_TRANSIENT = ("40001", "40P01")  # serialization failure, deadlock


def transient(error):
    """True if running the whole transaction again is safe and may succeed.

    The server rolled it back (a deadlock victim, a lock wait timeout) or
    the connection broke (a restarted server, an idle connection dropped);
    in both cases nothing of it was kept, and the pool hands out a new
    connection next time.
    """
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if getattr(orig, "pgcode", None) in _PG_TRANSIENT:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT


# Connection refused or lost, server starting or shutting down, too many
# connections, a Galera node not ready (1047 WSREP).
_MYSQL_UNREACHABLE = (1040, 1047, 1053, 1927, 2002, 2003, 2005, 2006, 2013)
_PG_UNREACHABLE = ("08000", "08001", "08006", "53300", "57P01", "57P02", "57P03")


def unreachable(error):
    """True if ``error`` says the database server cannot be reached (yet), not that it refused the work."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    pgcode = getattr(orig, "pgcode", None)
    if pgcode in _PG_UNREACHABLE:
        return True
    if pgcode is None and type(orig).__module__.startswith("psycopg2") and isinstance(error, sa.exc.OperationalError):
        return True  # libpq's connection failures carry no SQLSTATE
    args = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_UNREACHABLE


def _retrying(f):
    """``f`` run again (in the same database thread) after a :func:`transient` error."""

    def run(*args, **kwargs):
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return f(*args, **kwargs)
            except sa.exc.DBAPIError as e:
                if attempt == TRANSIENT_ATTEMPTS or not transient(e):
                    raise

    return run


def _record(row):
    return NodeRecord(
        uuid=row.uuid,
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        manage_boot=row.manage_boot,
        version_id=row.version_id,
        node=row.node or {},
        ports=row.ports or {},
        options=row.options or {},
        lease_until=row.lease_until,
        lease_owner=row.lease_owner,
        data_pending=bool(row.data_pending),
    )


def _brief_records(rows, ports=False):
    """:class:`NodeRecord` of rows of :data:`_BRIEF_COLUMNS` (``ports``: of :data:`_BRIEF_COLUMNS_PORTS`).

    No node, no options; ports only if asked and active.  The rows are
    unpacked by position: reading a thousand rows' columns by name costs
    more than making their records.
    """
    records = []
    for row in rows:
        uuid, state, started, finished, error, manage_boot, version, lease_until, lease_owner, pending = row[:10]
        records.append(NodeRecord(
            uuid, state, started, finished, error, manage_boot, version,
            ports=(row[10] or {}) if ports else {},
            lease_until=lease_until,
            lease_owner=lease_owner,
            data_pending=bool(pending),
        ))
    return records


def _new_version():
    return uuidlib.uuid4().hex


@implementer(IStore)
class SQLStore:
    """Asynchronous node store over a :class:`DatabasePool` (:class:`~inspectord.interfaces.IStore`).

    :param pool: has ``run(f, *args) -> Deferred`` running ``f`` in the
        database thread pool (a synchronous stand-in in unit tests).
    """

    log = Logger()

    def __init__(self, engine, pool, clock=None, status_cache_time=0.0, connect_retries=0, connect_retry_interval=10):
        self.engine = engine
        # At start (upgrade): attempts to reach the database, -1 forever.
        self._connect_retries = connect_retries
        self._connect_retry_interval = connect_retry_interval
        self._pool = pool
        self._clock = clock
        self._cache_time = status_cache_time if clock is not None else 0.0
        # uuid -> (when, NodeRecord): what this instance last read or wrote,
        # swept of the entries older than the cache time as it grows.
        self._recent = {}
        self._recent_sweep_at = _RECENT_SWEEP

    def _run(self, f, *args, **kwargs):
        return self._pool.run(_retrying(f), *args, **kwargs)

    # -- blocking helpers (database thread) ---------------------------------

    def _thd_get(self, conn, uuid):
        row = conn.execute(_GET_NODE, {"uuid": uuid}).first()
        if row is None:
            raise errors.NotFound("Node {} was not found in inspectord's records".format(uuid))
        return row

    def thd_get_node(self, uuid):
        with self.engine.connect() as conn:
            return _record(self._thd_get(conn, uuid))

    def thd_start(self, uuid, now, manage_boot, node, ports, attributes, options=None, owner=None,
                  lease_until=None):
        """Record the start of an introspection (compare-and-set), leased to ``owner``.

        Refused when the node is in a state ``start`` cannot leave or when
        another node under introspection already has one of the lookup
        attributes (two nodes sharing a MAC could not be told apart).
        """
        values = dict(
            state=st.State.starting.value,
            started_at=now,
            finished_at=None,
            error=None,
            manage_boot=manage_boot,
            version_id=_new_version(),
            lease_until=lease_until,
            lease_owner=owner if lease_until is not None else None,
            data_pending=False,
            node=node,
            ports=ports,
            options=options or {},
        )
        with self.engine.begin() as conn:
            row = conn.execute(_GET_NODE, {"uuid": uuid}).first()
            if row is not None:
                st.next_state(row.state, st.Event.start)
            self._thd_check_conflicts(conn, uuid, attributes)
            if row is None:
                try:
                    conn.execute(schema.nodes.insert().values(uuid=uuid, **values))
                except sa.exc.IntegrityError:
                    # Another request inserted it since the SELECT.
                    raise errors.StateChanged("Node {} is being started by another request".format(uuid)) from None
            else:
                if not _thd_cas_update(conn, uuid, row.version_id, values):
                    raise errors.StateChanged("Node {} is being changed by another request".format(uuid))
                conn.execute(_DELETE_ATTRIBUTES, {"uuid": uuid})
            if attributes:
                conn.execute(
                    _INSERT_ATTRIBUTE,
                    [{"node_uuid": uuid, "name": n, "value": v} for n, v in sorted(set(attributes))],
                )
            # The row is what was just written: no need to read it back.
            return _record(types.SimpleNamespace(uuid=uuid, **values))

    def _thd_check_conflicts(self, conn, uuid, attributes):
        # Only MACs must be unique: nodes may share a BMC address (virtual
        # BMCs, chassis managers) and are told apart by MAC at lookup.
        attributes = [(n, v) for n, v in attributes if n == "mac"]
        if not attributes:
            return
        rows = conn.execute(_CONFLICTS, {"uuid": uuid, "macs": sorted({v for _, v in attributes})}).all()
        if rows:
            raise errors.InvalidInput(
                "Node {} cannot be introspected: {} already under introspection".format(
                    uuid,
                    ", ".join("{} {} of node {}".format(r.name, r.value, r.node_uuid) for r in rows),
                )
            )

    def thd_transition(self, uuid, event, now, error=None, expected=None, lease_until=None, processed=None,
                       delete_data=False, raw=None, owner=None, **fields):
        """Apply ``event`` to the node's state (compare-and-set).

        :param expected: if given, the state the caller believes the node
            is in; anything else raises StateChanged.
        :param processed: processed data to store in the same transaction.
        :param delete_data: drop the node's stored data in the same transaction.
        :param raw: unprocessed data to store in the same transaction.
        :param owner: the instance that takes the lease (with ``lease_until``).
        """
        with self.engine.begin() as conn:
            if processed is not None:
                self._thd_put_data(conn, uuid, processed, True, now)
            if raw is not None:
                self._thd_put_data(conn, uuid, raw, False, now)
            if delete_data:
                conn.execute(_DELETE_DATA, {"uuid": uuid})
            return self._thd_transition(conn, uuid, event, now, error, expected, lease_until, owner=owner, **fields)

    def _thd_transition(self, conn, uuid, event, now, error=None, expected=None, lease_until=None, owner=None,
                        row=None, **fields):
        if row is None:
            row = self._thd_get(conn, uuid)
        if expected is not None and row.state not in _states(expected):
            raise errors.StateChanged(
                "Node {} is in state {}, not {}".format(uuid, row.state, "/".join(_states(expected)))
            )
        target = st.next_state(row.state, event)
        values = dict(
            state=target.value,
            version_id=_new_version(),
            lease_until=lease_until,
            lease_owner=owner if lease_until is not None else None,
            data_pending=False,
            **fields,
        )
        if target in st.FINAL:
            values["finished_at"] = now
            values["error"] = error
            # Secrets are needed only while the introspection runs.
            options = row.options or {}
            if any(k in options for k in SECRET_OPTIONS):
                values["options"] = {k: v for k, v in options.items() if k not in SECRET_OPTIONS}
        elif st.State(row.state) in st.FINAL:
            # Leaving a final state (reapply): the node is active again.
            values["finished_at"] = None
            values["error"] = None
        elif error is not None:
            values["error"] = error
        if not _thd_cas_update(conn, uuid, row.version_id, values):
            raise errors.StateChanged("Node {} was changed by another request".format(uuid))
        return _record(types.SimpleNamespace(**dict(row._mapping, **values)))

    def thd_lookup(self, macs, bmc_addresses):
        """The unique best match among all recorded nodes, or None.

        Each matching attribute scores one point; a tie at the top is an
        error (404, as ironic-inspector).  Nodes under introspection are
        preferred over finished ones, so a MAC moved to another machine
        after a finished introspection does not shadow the live one.
        """
        with self.engine.connect() as conn:
            return self._thd_lookup(conn, macs, bmc_addresses)

    def thd_accept(self, macs, bmc_addresses, raw, now, lease_until, process=True, owner=None):
        """Look the node up and, if it is waiting or starting, take the ramdisk's data.

        In one transaction: the lookup, storing the raw data, and (unless
        ``process`` is false) the move to ``processing`` with a lease held
        by ``owner``, plus the introspection rules processing will apply.
        Data for a node still ``starting`` is stored and marked pending
        (``data_pending``): the start processes it as soon as it ends.
        Returns ``(match, record, rules)``: ``record`` is None when the node
        was neither waiting nor starting (nothing is stored then), ``rules``
        None unless it moved.
        """
        with self.engine.begin() as conn:
            match, match_row = self._thd_match(conn, macs, bmc_addresses)
            if match is None or match.record.state not in (st.State.waiting.value, st.State.starting.value):
                return match, None, None
            self._thd_put_data(conn, match.uuid, raw, False, now)
            if not process:
                return match, match.record, None
            if match.record.state == st.State.starting.value:
                return match, self._thd_mark_pending(conn, match.record), None
            record = self._thd_transition(
                conn, match.uuid, st.Event.process, now, expected=st.State.waiting, lease_until=lease_until,
                owner=owner, row=match_row,
            )
            return match, record, self._thd_rules(conn)

    @staticmethod
    def _thd_mark_pending(conn, record):
        n = schema.nodes
        version = _new_version()
        updated = conn.execute(
            n.update()
            .where(n.c.uuid == record.uuid, n.c.version_id == record.version_id)
            .values(data_pending=True, version_id=version)
        ).rowcount
        if not updated:
            raise errors.StateChanged("Node {} changed while its data was stored".format(record.uuid))
        return dataclasses.replace(record, data_pending=True, version_id=version)

    def thd_started(self, uuid, now, owner, lease_until):
        """The start of ``uuid`` is done: ``waiting``, or ``processing`` if data is pending.

        Compare-and-set against the node's current version, retried while
        the node stays ``starting`` (a ramdisk's data may arrive at the same
        moment, through any instance).  Returns ``(record, rules)``;
        ``rules`` is None unless the node moved on to processing (leased to
        ``owner`` until ``lease_until``).
        """
        for _ in range(10):
            try:
                with self.engine.begin() as conn:
                    row = self._thd_get(conn, uuid)
                    if row.state != st.State.starting.value:
                        raise errors.StateChanged("Node {} is in state {}, not starting".format(uuid, row.state))
                    record = self._thd_transition(conn, uuid, st.Event.wait, now, row=row)
                    if not row.data_pending:
                        return record, None
                    moved = self._thd_transition(
                        conn, uuid, st.Event.process, now, lease_until=lease_until, owner=owner
                    )
                    return moved, self._thd_rules(conn)
            except errors.StateChanged:
                if self.thd_get_node(uuid).state != st.State.starting.value:
                    raise
        raise errors.StateChanged("Node {} keeps changing while its start ends".format(uuid))

    def _thd_lookup(self, conn, macs, bmc_addresses):
        return self._thd_match(conn, macs, bmc_addresses)[0]

    def _thd_match(self, conn, macs, bmc_addresses):
        """``(Match, its node's row)`` of :meth:`thd_lookup`; ``(None, None)`` without a match."""
        pairs = [("mac", m.lower()) for m in macs if m] + [("bmc_address", b) for b in bmc_addresses if b]
        if not pairs:
            return None, None
        rows = conn.execute(_LOOKUP, {
            "macs": sorted({v for name, v in pairs if name == "mac"}),
            "bmcs": sorted({v for name, v in pairs if name == "bmc_address"}),
        }).all()
        if not rows:
            return None, None
        active = [r.node_uuid for r in rows if r.state in _ACTIVE]
        scores = collections.Counter(active or [r.node_uuid for r in rows])
        ranked = scores.most_common()
        best = [u for u, s in ranked if s == ranked[0][1]]
        if len(best) > 1:
            raise errors.NotFound(
                "Multiple nodes match the same number of attributes ({}): {}".format(
                    ", ".join("{}={}".format(*p) for p in pairs), ", ".join(sorted(best))
                )
            )
        row = self._thd_get(conn, best[0])
        return Match(uuid=best[0], score=ranked[0][1], record=_record(row)), row

    def thd_store_data(self, uuid, data, processed, now):
        with self.engine.begin() as conn:
            self._thd_put_data(conn, uuid, data, processed, now)

    @staticmethod
    def _thd_put_data(conn, uuid, data, processed, now):
        values = {"p_uuid": uuid, "p_processed": processed, "p_data": json.dumps(data, sort_keys=True), "p_at": now}
        conn.execute(_upsert_data(conn.dialect.name), values)

    def thd_get_data(self, uuid, processed):
        t = schema.introspection_data
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.data).where(t.c.node_uuid == uuid, t.c.processed == processed)
            ).first()
        if row is None:
            raise errors.NotFound(
                "No {} introspection data stored for node {}".format(
                    "processed" if processed else "unprocessed", uuid
                )
            )
        return json.loads(row.data)

    def thd_delete_data(self, uuid):
        t = schema.introspection_data
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.node_uuid == uuid))

    def thd_timed_out(self, threshold):
        n = schema.nodes
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(n.c.uuid).where(n.c.state.in_(_ACTIVE), n.c.started_at < threshold).order_by(n.c.started_at)
            ).all()
        return [r.uuid for r in rows]

    def thd_expired_leases(self, now, limit=100):
        """Nodes in a transient state whose owner stopped renewing its lease.

        A transient state without a lease (recorded before leases existed)
        counts as expired.  Oldest lease first.
        """
        n = schema.nodes
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(n)
                .where(n.c.state.in_(_LEASED), sa.or_(n.c.lease_until.is_(None), n.c.lease_until <= now))
                .order_by(n.c.lease_until)
                .limit(limit)
            ).all()
        return [_record(r) for r in rows]

    def thd_claim(self, record, now, lease_until, owner=None):
        """Take over a node whose lease expired (compare-and-set); ``owner`` holds it now."""
        n = schema.nodes
        with self.engine.begin() as conn:
            updated = conn.execute(
                n.update()
                .where(n.c.uuid == record.uuid, n.c.version_id == record.version_id)
                .values(version_id=_new_version(), lease_until=lease_until, lease_owner=owner)
            ).rowcount
            if not updated:
                raise errors.StateChanged("Node {} was claimed by another instance".format(record.uuid))
            return _record(self._thd_get(conn, record.uuid))

    def thd_renew_leases(self, owner, renewals):
        """Extend the leases ``owner`` holds: ``renewals`` maps ``lease_until`` to UUIDs.

        One UPDATE per distinct lease end (and per 500 nodes), whatever the
        number of nodes; a node another instance took over (its owner
        changed) is left alone.  Returns how many leases were renewed.
        """
        n = schema.nodes
        renewed = 0
        with self.engine.begin() as conn:
            for lease_until, uuids in renewals.items():
                uuids = sorted(uuids)
                for i in range(0, len(uuids), 500):
                    renewed += conn.execute(
                        n.update()
                        .where(n.c.uuid.in_(uuids[i:i + 500]), n.c.lease_owner == owner, n.c.state.in_(_LEASED))
                        .values(lease_until=lease_until)
                    ).rowcount
        return renewed

    def thd_release_leases(self, owner, now, uuids=None):
        """End the leases ``owner`` holds (of ``uuids``, or all) now: any instance may resume those nodes."""
        n = schema.nodes
        query = n.update().where(n.c.lease_owner == owner, n.c.state.in_(_LEASED))
        if uuids is not None:
            query = query.where(n.c.uuid.in_(sorted(uuids)))
        with self.engine.begin() as conn:
            return conn.execute(query.values(lease_until=now, lease_owner=None)).rowcount

    def thd_list(self, limit, marker=None, states=None, brief=False, active_ports=False):
        """Newest first; ``marker`` is the UUID the previous page ended with.

        ``brief``: records without the Ironic node, the options and the
        ports (their ``node``, ``options`` and ``ports`` are empty), what a
        status needs: a page of a thousand statuses then decodes no node's
        JSON.  With ``active_ports`` too, the ports of a node under
        introspection are read (the DHCP diagnosis compares their MACs with
        the DHCP requests seen); a finished node's never are.

        :raises errors.NotFound: ``marker`` is not a node's UUID.
        """
        n = schema.nodes
        if brief:
            query = sa.select(*(_BRIEF_COLUMNS_PORTS if active_ports else _BRIEF_COLUMNS))
            make = functools.partial(_brief_records, ports=active_ports)
        else:
            query = sa.select(n)

            def make(rows):
                return [_record(r) for r in rows]
        if states:
            query = query.where(n.c.state.in_(list(states)))
        query = query.order_by(n.c.started_at.desc(), n.c.uuid.desc()).limit(limit)
        with self.engine.connect() as conn:
            if marker is not None:
                m = conn.execute(_LIST_MARKER, {"uuid": marker}).first()
                if m is None:
                    raise errors.NotFound("Node {} was not found in inspectord's records".format(marker))
                # The leading ``started_at <=`` is a range every engine
                # reads from the (started_at, uuid) index; the OR alone
                # would make some of them scan and sort the table.
                query = query.where(
                    n.c.started_at <= m.started_at,
                    sa.or_(n.c.started_at < m.started_at, n.c.uuid < m.uuid),
                )
            return make(conn.execute(query).all())

    def thd_filter_macs(self):
        """For the PXE filter: ``(MACs of nodes under introspection, how many such nodes)``."""
        a, n = schema.attributes, schema.nodes
        with self.engine.connect() as conn:
            macs = conn.execute(
                sa.select(a.c.value).join(n, n.c.uuid == a.c.node_uuid).where(n.c.state.in_(_ACTIVE), a.c.name == "mac")
            ).scalars().all()
            count = conn.execute(sa.select(sa.func.count()).select_from(n).where(n.c.state.in_(_ACTIVE))).scalar()
        return list(macs), count

    def thd_dhcp_leases(self):
        """Leases of the builtin DHCP server: ``[(mac, ip, expires_at)]``."""
        t = schema.dhcp_leases
        with self.engine.connect() as conn:
            return [(r.mac, r.ip, r.expires_at) for r in conn.execute(sa.select(t)).all()]

    def thd_put_dhcp_lease(self, mac, ip, expires_at):
        """Lease ``ip`` to ``mac``, replacing its previous lease and any other holder of ``ip``.

        Two instances leasing at once: the one whose insert collides runs
        again and replaces the other's lease.
        """
        t = schema.dhcp_leases
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    conn.execute(t.delete().where(sa.or_(t.c.mac == mac, t.c.ip == ip)))
                    conn.execute(t.insert().values(mac=mac, ip=ip, expires_at=expires_at))
                return
            except sa.exc.IntegrityError:
                if attempt == TRANSIENT_ATTEMPTS:
                    raise

    # -- changes other instances must learn of -------------------------------

    def thd_bump(self, name):
        """Count one change of ``name`` (other instances poll :meth:`thd_generation`); the new count."""
        c = schema.changes
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    updated = conn.execute(
                        c.update().where(c.c.name == name).values(generation=c.c.generation + 1)
                    ).rowcount
                    if not updated:  # a database created at head has no row yet
                        conn.execute(c.insert().values(name=name, generation=1))
                    return conn.execute(sa.select(c.c.generation).where(c.c.name == name)).scalar()
            except sa.exc.IntegrityError:  # another instance inserted it first
                if attempt == TRANSIENT_ATTEMPTS:
                    raise

    def thd_generation(self, name):
        """How many changes of ``name`` were counted (0 if none)."""
        c = schema.changes
        with self.engine.connect() as conn:
            return conn.execute(sa.select(c.c.generation).where(c.c.name == name)).scalar() or 0

    # -- DHCP requests seen ----------------------------------------------------

    def thd_put_dhcp_seen(self, rows):
        """Record ``[(mac, when, message, allowed)]`` in one transaction; a newer row already there wins."""
        if not rows:
            return 0
        latest = {}
        for mac, when, message, allowed in rows:
            if mac not in latest or latest[mac][0] <= when:
                latest[mac] = (when, message, allowed)
        values = [
            {"p_mac": mac, "p_last": when, "p_message": message, "p_allowed": bool(allowed)}
            for mac, (when, message, allowed) in sorted(latest.items())
        ]
        with self.engine.begin() as conn:
            statement = _upsert_seen(conn.dialect.name)
            conn.execute(statement, values)
        return len(values)

    def thd_dhcp_seen_since(self, since):
        """``[(mac, when, message, allowed)]`` of requests seen at or after ``since`` (None: all)."""
        t = schema.dhcp_seen
        query = sa.select(t.c.mac, t.c.last_request, t.c.message, t.c.allowed)
        if since is not None:
            query = query.where(t.c.last_request >= since)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query).all()]

    def thd_prune_dhcp_seen(self, before):
        """Forget requests seen before ``before``; how many rows went."""
        t = schema.dhcp_seen
        with self.engine.begin() as conn:
            return conn.execute(t.delete().where(t.c.last_request < before)).rowcount

    # -- rules ---------------------------------------------------------------

    def thd_create_rule(self, rule, now):
        r = schema.rules
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(r.c.uuid).where(r.c.uuid == rule["uuid"])).first()
            if exists is not None:
                raise errors.NodeBusy("Rule with UUID {} already exists".format(rule["uuid"]))
            try:
                conn.execute(
                    r.insert().values(
                        uuid=rule["uuid"],
                        description=rule.get("description"),
                        scope=rule.get("scope"),
                        conditions=rule["conditions"],
                        actions=rule["actions"],
                        created_at=now,
                    )
                )
            except sa.exc.IntegrityError:
                # Created by another request since the SELECT.
                raise errors.NodeBusy("Rule with UUID {} already exists".format(rule["uuid"])) from None
        return rule

    @staticmethod
    def _rule(row):
        return {
            "uuid": row.uuid,
            "description": row.description,
            "scope": row.scope,
            "conditions": row.conditions,
            "actions": row.actions,
        }

    def thd_list_rules(self):
        with self.engine.connect() as conn:
            return self._thd_rules(conn)

    def _thd_rules(self, conn):
        return [self._rule(row) for row in conn.execute(_LIST_RULES).all()]

    def thd_get_rule(self, uuid):
        r = schema.rules
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(r).where(r.c.uuid == uuid)).first()
        if row is None:
            raise errors.NotFound("Rule {} was not found".format(uuid))
        return self._rule(row)

    def thd_delete_rule(self, uuid):
        r = schema.rules
        with self.engine.begin() as conn:
            if not conn.execute(r.delete().where(r.c.uuid == uuid)).rowcount:
                raise errors.NotFound("Rule {} was not found".format(uuid))

    def thd_delete_all_rules(self):
        with self.engine.begin() as conn:
            conn.execute(schema.rules.delete())

    # -- discovery (node_not_found_hook=enroll), see inspectord.store.enrollment

    def thd_enroll(self, uuid, now, manage_boot, node, attributes, source, limits, owner=None, lease_until=None):
        enrollment.thd_enroll(self.engine, uuid, now, manage_boot, node, attributes, source, limits, owner,
                              lease_until)
        return self.thd_get_node(uuid)

    def thd_enrolled(self, uuid, node):
        enrollment.thd_enrolled(self.engine, uuid, node)
        return self.thd_get_node(uuid)

    # -- asynchronous interface ---------------------------------------------

    def upgrade(self):
        """Migrate, and adopt ironic-inspector's data the first time it is found.

        Fires with the :class:`~inspectord.store.adopt.AdoptionReport`, or
        None.  A database not reachable yet is retried with backoff: fails
        with :class:`DatabaseUnreachable` after ``connect_retries`` attempts
        (never with -1); each failed attempt is logged.
        """
        if self._clock is None or not self._connect_retries:
            return self._run(thd_upgrade_and_adopt, self.engine, self._now())
        return defer.Deferred.fromCoroutine(self._upgrade_when_reachable())

    async def _upgrade_when_reachable(self):
        url = self.engine.url.render_as_string(hide_password=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._run(thd_upgrade_and_adopt, self.engine, self._now())
            except sa.exc.DBAPIError as e:
                if not unreachable(e):
                    raise
                reason = str(e.orig)
            if 0 <= self._connect_retries <= attempt:
                raise DatabaseUnreachable(
                    "database {} not reachable after {} attempts: {}".format(url, attempt, reason)
                )
            delay = min(self._connect_retry_interval, 0.5 * 2 ** (attempt - 1))
            self.log.warn(
                "database {url} not reachable (attempt {attempt}): {reason}; retrying in {delay} s",
                url=url, attempt=attempt, reason=reason, delay=delay,
            )
            await task.deferLater(self._clock, delay, lambda: None)

    def _now(self):
        return utc(self._clock.seconds()) if self._clock is not None else None

    def get_node(self, uuid):
        return self._run(self.thd_get_node, uuid).addCallback(self._remember)

    def get_node_recent(self, uuid):
        """Like :meth:`get_node`, but a record at most ``status_cache_time`` old will do.

        For status reads: another instance's change shows within that
        time; this instance's own changes show at once.
        """
        entry = self._recent.get(uuid)
        if entry is not None and self._clock.seconds() - entry[0] <= self._cache_time:
            return defer.succeed(entry[1])
        return self.get_node(uuid)

    def _remember(self, record):
        if self._cache_time and isinstance(record, NodeRecord):
            now = self._clock.seconds()
            if len(self._recent) >= self._recent_sweep_at:
                # Only a cache time's worth of records can be served: keep
                # those, not one record (and its Ironic node) per node ever
                # touched.  Amortized: the next sweep waits for twice the size.
                self._recent = {u: e for u, e in self._recent.items() if now - e[0] <= self._cache_time}
                if len(self._recent) >= _RECENT_MAX:
                    self._recent.clear()
                self._recent_sweep_at = max(_RECENT_SWEEP, 2 * len(self._recent))
            self._recent[record.uuid] = (now, record)
        return record

    def start(self, uuid, now, manage_boot, node, ports, attributes, options=None, owner=None, lease_until=None):
        d = self._run(self.thd_start, uuid, now, manage_boot, node, ports, attributes, options, owner, lease_until)
        return d.addCallback(self._remember)

    def started(self, uuid, now, owner, lease_until):
        d = self._run(self.thd_started, uuid, now, owner, lease_until)

        def remember(result):
            self._remember(result[0])
            return result

        return d.addCallback(remember)

    def transition(self, uuid, event, now, error=None, expected=None, lease_until=None, processed=None,
                   delete_data=False, raw=None, owner=None, **fields):
        d = self._run(
            self.thd_transition, uuid, event, now, error=error, expected=expected, lease_until=lease_until,
            processed=processed, delete_data=delete_data, raw=raw, owner=owner, **fields
        )
        return d.addCallback(self._remember)

    def lookup(self, macs, bmc_addresses):
        return self._run(self.thd_lookup, macs, bmc_addresses)

    def accept(self, macs, bmc_addresses, raw, now, lease_until, process=True, owner=None):
        d = self._run(self.thd_accept, macs, bmc_addresses, raw, now, lease_until, process, owner)

        def remember(result):
            self._remember(result[1])
            return result

        return d.addCallback(remember)

    def store_data(self, uuid, data, processed, now):
        return self._run(self.thd_store_data, uuid, data, processed, now)

    def get_data(self, uuid, processed):
        return self._run(self.thd_get_data, uuid, processed)

    def delete_data(self, uuid):
        return self._run(self.thd_delete_data, uuid)

    def timed_out(self, threshold):
        return self._run(self.thd_timed_out, threshold)

    def expired_leases(self, now):
        return self._run(self.thd_expired_leases, now)

    def renew_leases(self, owner, renewals):
        return self._run(self.thd_renew_leases, owner, renewals)

    def release_leases(self, owner, now, uuids=None):
        return self._run(self.thd_release_leases, owner, now, uuids)

    def claim(self, record, now, lease_until, owner=None):
        return self._run(self.thd_claim, record, now, lease_until, owner).addCallback(self._remember)

    def list_nodes(self, limit, marker=None, states=None, brief=False, active_ports=False):
        return self._run(self.thd_list, limit, marker, states, brief, active_ports)

    def filter_macs(self):
        return self._run(self.thd_filter_macs)

    def dhcp_leases(self):
        return self._run(self.thd_dhcp_leases)

    def put_dhcp_lease(self, mac, ip, expires_at):
        return self._run(self.thd_put_dhcp_lease, mac, ip, expires_at)

    def bump(self, name):
        return self._run(self.thd_bump, name)

    def generation(self, name):
        return self._run(self.thd_generation, name)

    def put_dhcp_seen(self, rows):
        return self._run(self.thd_put_dhcp_seen, rows)

    def dhcp_seen_since(self, since):
        return self._run(self.thd_dhcp_seen_since, since)

    def prune_dhcp_seen(self, before):
        return self._run(self.thd_prune_dhcp_seen, before)

    def create_rule(self, rule, now):
        return self._run(self.thd_create_rule, rule, now)

    def list_rules(self):
        return self._run(self.thd_list_rules)

    def get_rule(self, uuid):
        return self._run(self.thd_get_rule, uuid)

    def delete_rule(self, uuid):
        return self._run(self.thd_delete_rule, uuid)

    def delete_all_rules(self):
        return self._run(self.thd_delete_all_rules)

    def enroll(self, uuid, now, manage_boot, node, attributes, source, limits, owner=None, lease_until=None):
        return self._run(self.thd_enroll, uuid, now, manage_boot, node, attributes, source, limits, owner, lease_until)

    def enrolled(self, uuid, node):
        return self._run(self.thd_enrolled, uuid, node)

    def forget_enrollment(self, uuid, reason):
        return self._run(enrollment.thd_forget_enrollment, self.engine, uuid, reason)

    def discoveries(self, since=None):
        return self._run(enrollment.thd_discoveries, self.engine, since)


def _states(expected):
    if isinstance(expected, (str, st.State)):
        expected = [expected]
    return [st.State(s).value for s in expected]
