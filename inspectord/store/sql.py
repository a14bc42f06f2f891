"""The SQL node store.

Every ``thd_*`` method is blocking and runs in the database thread pool
(:class:`inspectord.store.pool.DatabasePool`); the public methods of
:class:`SQLStore` hand them to the pool and return Deferreds firing with
plain records.  State changes are compare-and-set on ``version_id``, so
several inspectord processes may share one database: whoever updates a row
first wins, the other gets :class:`~inspectord.errors.StateChanged`.
"""

import collections
import datetime
import json
import os
import types
import uuid as uuidlib

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy.pool import StaticPool
from twisted.internet import defer

from inspectord import errors
from inspectord import state as st
from inspectord.store import enrollment, schema
from inspectord.store.records import Match, NodeRecord

_MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")

_ACTIVE = tuple(s.value for s in st.ACTIVE)
# Bound on the records kept for status reads.
_RECENT_MAX = 100_000
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


def make_engine(url):
    """An engine for ``url``; SQLite gets WAL and a busy timeout."""
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
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
    return sa.create_engine(url, pool_pre_ping=True)


def thd_upgrade(engine):
    """Apply every Alembic migration (blocking)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _MIGRATIONS)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        alembic_command.upgrade(cfg, "head")


# Statements of the hot paths, built once: SQLAlchemy then reuses their
# cache keys and compiled forms instead of rebuilding them per call.
_GET_NODE = sa.select(schema.nodes).where(schema.nodes.c.uuid == sa.bindparam("uuid"))
# (Parameter names differ from column names, which UPDATE and INSERT reserve.)
_UPDATE_DATA = (
    schema.introspection_data.update()
    .where(
        schema.introspection_data.c.node_uuid == sa.bindparam("p_uuid"),
        schema.introspection_data.c.processed == sa.bindparam("p_processed"),
    )
    .values(data=sa.bindparam("p_data"), stored_at=sa.bindparam("p_at"))
)
_INSERT_DATA = schema.introspection_data.insert().values(
    node_uuid=sa.bindparam("p_uuid"),
    processed=sa.bindparam("p_processed"),
    data=sa.bindparam("p_data"),
    stored_at=sa.bindparam("p_at"),
)
_LIST_RULES = sa.select(schema.rules).order_by(schema.rules.c.position)
_LOOKUP = (
    sa.select(schema.attributes.c.node_uuid, schema.nodes.c.state)
    .join(schema.nodes, schema.nodes.c.uuid == schema.attributes.c.node_uuid)
    .where(
        sa.tuple_(schema.attributes.c.name, schema.attributes.c.value).in_(sa.bindparam("pairs", expanding=True))
    )
)


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
    )


def _new_version():
    return uuidlib.uuid4().hex


class SQLStore:
    """Asynchronous node store over a :class:`DatabasePool`.

    :param pool: has ``run(f, *args) -> Deferred`` running ``f`` in the
        database thread pool (a synchronous stand-in in unit tests).
    """

    def __init__(self, engine, pool, clock=None, status_cache_time=0.0):
        self.engine = engine
        self._pool = pool
        self._clock = clock
        self._cache_time = status_cache_time if clock is not None else 0.0
        # uuid -> (when, NodeRecord): what this instance last read or wrote.
        self._recent = {}

    def _run(self, f, *args, **kwargs):
        return self._pool.run(f, *args, **kwargs)

    # -- blocking helpers (database thread) ---------------------------------

    def _thd_get(self, conn, uuid):
        row = conn.execute(_GET_NODE, {"uuid": uuid}).first()
        if row is None:
            raise errors.NotFound("Node {} was not found in inspectord's records".format(uuid))
        return row

    def thd_get_node(self, uuid):
        with self.engine.connect() as conn:
            return _record(self._thd_get(conn, uuid))

    def thd_start(self, uuid, now, manage_boot, node, ports, attributes, options=None):
        """Record the start of an introspection (compare-and-set).

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
            lease_until=None,
            node=node,
            ports=ports,
            options=options or {},
        )
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(schema.nodes).where(schema.nodes.c.uuid == uuid)).first()
            if row is not None:
                st.next_state(row.state, st.Event.start)
            self._thd_check_conflicts(conn, uuid, attributes)
            if row is None:
                conn.execute(schema.nodes.insert().values(uuid=uuid, **values))
            else:
                updated = conn.execute(
                    schema.nodes.update()
                    .where(schema.nodes.c.uuid == uuid, schema.nodes.c.version_id == row.version_id)
                    .values(**values)
                ).rowcount
                if not updated:
                    raise errors.StateChanged("Node {} is being changed by another request".format(uuid))
                conn.execute(schema.attributes.delete().where(schema.attributes.c.node_uuid == uuid))
            if attributes:
                conn.execute(
                    schema.attributes.insert(),
                    [{"node_uuid": uuid, "name": n, "value": v} for n, v in sorted(set(attributes))],
                )
            return _record(self._thd_get(conn, uuid))

    def _thd_check_conflicts(self, conn, uuid, attributes):
        # Only MACs must be unique: nodes may share a BMC address (virtual
        # BMCs, chassis managers) and are told apart by MAC at lookup.
        attributes = [(n, v) for n, v in attributes if n == "mac"]
        if not attributes:
            return
        a, n = schema.attributes, schema.nodes
        pairs = sorted(set(attributes))
        rows = conn.execute(
            sa.select(a.c.name, a.c.value, a.c.node_uuid)
            .join(n, n.c.uuid == a.c.node_uuid)
            .where(
                a.c.node_uuid != uuid,
                n.c.state.in_(_ACTIVE),
                sa.tuple_(a.c.name, a.c.value).in_(pairs),
            )
        ).all()
        if rows:
            raise errors.BadRequest(
                "Node {} cannot be introspected: {} already under introspection".format(
                    uuid,
                    ", ".join("{} {} of node {}".format(r.name, r.value, r.node_uuid) for r in rows),
                )
            )

    def thd_transition(self, uuid, event, now, error=None, expected=None, lease_until=None, processed=None,
                       delete_data=False, **fields):
        """Apply ``event`` to the node's state (compare-and-set).

        :param expected: if given, the state the caller believes the node
            is in; anything else raises StateChanged.
        :param processed: processed data to store in the same transaction.
        :param delete_data: drop the node's stored data in the same transaction.
        """
        with self.engine.begin() as conn:
            if processed is not None:
                self._thd_put_data(conn, uuid, processed, True, now)
            if delete_data:
                conn.execute(schema.introspection_data.delete().where(schema.introspection_data.c.node_uuid == uuid))
            return self._thd_transition(conn, uuid, event, now, error, expected, lease_until, **fields)

    def _thd_transition(self, conn, uuid, event, now, error=None, expected=None, lease_until=None, **fields):
        row = self._thd_get(conn, uuid)
        if expected is not None and row.state not in _states(expected):
            raise errors.StateChanged(
                "Node {} is in state {}, not {}".format(uuid, row.state, "/".join(_states(expected)))
            )
        target = st.next_state(row.state, event)
        values = dict(state=target.value, version_id=_new_version(), lease_until=lease_until, **fields)
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
        updated = conn.execute(
            schema.nodes.update()
            .where(schema.nodes.c.uuid == uuid, schema.nodes.c.version_id == row.version_id)
            .values(**values)
        ).rowcount
        if not updated:
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

    def thd_accept(self, macs, bmc_addresses, raw, now, lease_until, process=True):
        """Look the node up and, if it is waiting, take the ramdisk's data.

        In one transaction: the lookup, storing the raw data, and (unless
        ``process`` is false) the move to ``processing`` with a lease, plus
        the introspection rules processing will apply.  Returns ``(match,
        record, rules)``: ``record`` is None when the node was not waiting
        (nothing is stored then), ``rules`` None unless it moved.
        """
        with self.engine.begin() as conn:
            match = self._thd_lookup(conn, macs, bmc_addresses)
            if match is None or match.record.state != st.State.waiting.value:
                return match, None, None
            self._thd_put_data(conn, match.uuid, raw, False, now)
            if not process:
                return match, match.record, None
            record = self._thd_transition(
                conn, match.uuid, st.Event.process, now, expected=st.State.waiting, lease_until=lease_until
            )
            return match, record, self._thd_rules(conn)

    def _thd_lookup(self, conn, macs, bmc_addresses):
        pairs = [("mac", m.lower()) for m in macs if m] + [("bmc_address", b) for b in bmc_addresses if b]
        if not pairs:
            return None
        rows = conn.execute(_LOOKUP, {"pairs": sorted(set(pairs))}).all()
        if not rows:
            return None
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
        return Match(uuid=best[0], score=ranked[0][1], record=_record(self._thd_get(conn, best[0])))

    def thd_store_data(self, uuid, data, processed, now):
        with self.engine.begin() as conn:
            self._thd_put_data(conn, uuid, data, processed, now)

    @staticmethod
    def _thd_put_data(conn, uuid, data, processed, now):
        values = {"p_uuid": uuid, "p_processed": processed, "p_data": json.dumps(data, sort_keys=True), "p_at": now}
        if not conn.execute(_UPDATE_DATA, values).rowcount:
            conn.execute(_INSERT_DATA, values)

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

    def thd_expired_leases(self, now):
        """Nodes left in ``processing`` by an instance that stopped."""
        n = schema.nodes
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(n).where(
                    n.c.state == st.State.processing.value,
                    n.c.lease_until.is_not(None),
                    n.c.lease_until < now,
                )
            ).all()
        return [_record(r) for r in rows]

    def thd_claim(self, record, now, lease_until):
        """Take over a node whose lease expired (compare-and-set)."""
        n = schema.nodes
        with self.engine.begin() as conn:
            updated = conn.execute(
                n.update()
                .where(n.c.uuid == record.uuid, n.c.version_id == record.version_id)
                .values(version_id=_new_version(), lease_until=lease_until)
            ).rowcount
            if not updated:
                raise errors.StateChanged("Node {} was claimed by another instance".format(record.uuid))
            return _record(self._thd_get(conn, record.uuid))

    def thd_renew_lease(self, uuid, lease_until):
        """Extend the lease of a node this instance is processing.

        Leaves ``version_id`` alone: renewing must not make the holder's own
        next transition look like a concurrent change.
        """
        n = schema.nodes
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    n.update()
                    .where(n.c.uuid == uuid, n.c.state == st.State.processing.value, n.c.lease_until.is_not(None))
                    .values(lease_until=lease_until)
                ).rowcount
            )

    def thd_list(self, limit, marker=None, states=None):
        """Newest first; ``marker`` is the UUID the previous page ended with."""
        n = schema.nodes
        query = sa.select(n)
        if states:
            query = query.where(n.c.state.in_(list(states)))
        if marker is not None:
            with self.engine.connect() as conn:
                m = self._thd_get(conn, marker)
            query = query.where(
                sa.or_(
                    n.c.started_at < m.started_at,
                    sa.and_(n.c.started_at == m.started_at, n.c.uuid < m.uuid),
                )
            )
        query = query.order_by(n.c.started_at.desc(), n.c.uuid.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).all()]

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
        """Lease ``ip`` to ``mac``, replacing its previous lease and any other holder of ``ip``."""
        t = schema.dhcp_leases
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(sa.or_(t.c.mac == mac, t.c.ip == ip)))
            conn.execute(t.insert().values(mac=mac, ip=ip, expires_at=expires_at))

    # -- rules ---------------------------------------------------------------

    def thd_create_rule(self, rule, now):
        r = schema.rules
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(r.c.uuid).where(r.c.uuid == rule["uuid"])).first()
            if exists is not None:
                raise errors.Conflict("Rule with UUID {} already exists".format(rule["uuid"]))
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

    def thd_enroll(self, uuid, now, manage_boot, node, attributes, source, limits):
        enrollment.thd_enroll(self.engine, uuid, now, manage_boot, node, attributes, source, limits)
        return self.thd_get_node(uuid)

    def thd_enrolled(self, uuid, node):
        enrollment.thd_enrolled(self.engine, uuid, node)
        return self.thd_get_node(uuid)

    # -- asynchronous interface ---------------------------------------------

    def upgrade(self):
        return self._run(thd_upgrade, self.engine)

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
            if len(self._recent) >= _RECENT_MAX:
                self._recent.clear()
            self._recent[record.uuid] = (self._clock.seconds(), record)
        return record

    def start(self, uuid, now, manage_boot, node, ports, attributes, options=None):
        d = self._run(self.thd_start, uuid, now, manage_boot, node, ports, attributes, options)
        return d.addCallback(self._remember)

    def transition(self, uuid, event, now, **kwargs):
        return self._run(self.thd_transition, uuid, event, now, **kwargs).addCallback(self._remember)

    def lookup(self, macs, bmc_addresses):
        return self._run(self.thd_lookup, macs, bmc_addresses)

    def accept(self, macs, bmc_addresses, raw, now, lease_until, process=True):
        d = self._run(self.thd_accept, macs, bmc_addresses, raw, now, lease_until, process)

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

    def renew_lease(self, uuid, lease_until):
        return self._run(self.thd_renew_lease, uuid, lease_until)

    def claim(self, record, now, lease_until):
        return self._run(self.thd_claim, record, now, lease_until).addCallback(self._remember)

    def list_nodes(self, limit, marker=None, states=None):
        return self._run(self.thd_list, limit, marker, states)

    def filter_macs(self):
        return self._run(self.thd_filter_macs)

    def dhcp_leases(self):
        return self._run(self.thd_dhcp_leases)

    def put_dhcp_lease(self, mac, ip, expires_at):
        return self._run(self.thd_put_dhcp_lease, mac, ip, expires_at)

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

    def enroll(self, uuid, now, manage_boot, node, attributes, source, limits):
        return self._run(self.thd_enroll, uuid, now, manage_boot, node, attributes, source, limits)

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


def utc(seconds):
    """A naive UTC datetime (as stored) from POSIX seconds."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
