"""Adopting the database of the ironic-inspector that inspectord replaces.

An operator swapping ironic-inspector for inspectord keeps the configuration
file and with it ``[database]connection``.  inspectord's tables are its own
(``inspectord_*``, revision in ``inspectord_alembic_version``), so
ironic-inspector's tables and its ``alembic_version`` are never written:
adoption *copies* their rows into inspectord's tables, and ironic-inspector
can be started on the database again (it then sees its data as it was at
the swap; what inspectord did since is in inspectord's tables only).

What is copied, from ironic-inspector 12.5.0's schema (every revision from
:data:`OLDEST_ADOPTABLE` to its head ``b55109d5063a``):

* every rule (``rules``, ``rule_conditions``, ``rule_actions``): UUID,
  description, scope, creation time, conditions and actions as
  ironic-inspector's API serves them, in its order (creation time);
* every node's introspection record (``nodes``): state, start and finish
  times, error, ``manage_boot``, and the lookup attributes
  (``attributes``: MACs, BMC addresses) ironic-inspector still holds for
  nodes under introspection;
* the stored introspection data (``introspection_data``), processed and
  unprocessed, byte for byte.

Nodes caught in flight by the swap: ``waiting`` ones stay waiting (their
ramdisk's callback is served by inspectord, which reads the node from
Ironic then); ``processing`` ones with their unprocessed data stored are
processed again from it, as after an inspectord crash; every other
transient state ends in ``error`` with a reason saying what to do.

Adoption is idempotent: a rule or node already in inspectord's tables is
left alone, unless ironic-inspector's record of the node is newer (it
introspected the node again after a way back).  Each run is recorded in
``inspectord_adoptions``; inspectord's start adopts only when no run is
recorded, ``inspectord-dbsync adopt`` whenever it is asked.
"""

import dataclasses
import json
import uuid as uuidlib

import sqlalchemy as sa

from inspectord import errors
from inspectord import state as st
from inspectord.store import schema

#: ironic-inspector's Alembic revisions, oldest first; the last is 12.5.0's head.
UPSTREAM_REVISIONS = (
    "578f84f38d",
    "d588418040d",
    "e169a4a81d88",
    "d2e48801c8ef",
    "d00d6e3f38c4",
    "882b2d84cb1b",
    "18440d0834af",
    "2970d2d44edc",
    "bf8dec16023c",
    "b55109d5063a",
)
#: The oldest one adopted directly: it has node states, date-time columns
#: and attributes keyed by node (ironic-inspector 6.0, Pike, and later).
OLDEST_ADOPTABLE = "882b2d84cb1b"
ADOPTABLE_REVISIONS = UPSTREAM_REVISIONS[UPSTREAM_REVISIONS.index(OLDEST_ADOPTABLE):]
#: inspectord revisions kept in ``alembic_version`` before inspectord had its own version table.
LEGACY_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
UPSTREAM_VERSION_TABLE = "alembic_version"

# Rows copied per INSERT: bounds memory with large introspection data.
_BATCH = 200

_INTERRUPTED = {
    st.State.starting.value: (
        "Introspection was still starting when ironic-inspector stopped and inspectord adopted its "
        "database; start the introspection again"
    ),
    st.State.processing.value: (
        "Processing was interrupted when ironic-inspector stopped and inspectord adopted its "
        "database, and no unprocessed data was stored to resume from; start the introspection again"
    ),
    st.State.reapplying.value: (
        "Reapplying was interrupted when ironic-inspector stopped and inspectord adopted its "
        "database; reapply again"
    ),
    st.State.enrolling.value: (
        "Enrolling a discovered node was interrupted when ironic-inspector stopped and inspectord "
        "adopted its database; boot the node into the ramdisk again"
    ),
    # The operator asked for the abort: it ends the way an abort does.
    st.State.aborting.value: "Canceled by operator",
}

# ironic-inspector's tables, with the columns read (types for decoding).
_NODES = sa.table(
    "nodes",
    sa.column("uuid", sa.String),
    sa.column("state", sa.String),
    sa.column("started_at", sa.DateTime),
    sa.column("finished_at", sa.DateTime),
    sa.column("error", sa.Text),
)
_MANAGE_BOOT = sa.column("manage_boot", sa.Boolean)
_ATTRIBUTES = sa.table(
    "attributes", sa.column("node_uuid", sa.String), sa.column("name", sa.String), sa.column("value", sa.String)
)
_DATA = sa.table(
    "introspection_data", sa.column("uuid", sa.String), sa.column("processed", sa.Boolean), sa.column("data", sa.Text)
)
_RULES = sa.table(
    "rules", sa.column("uuid", sa.String), sa.column("created_at", sa.DateTime), sa.column("description", sa.Text)
)
_SCOPE = sa.column("scope", sa.String)
_CONDITIONS = sa.table(
    "rule_conditions",
    sa.column("id", sa.Integer),
    sa.column("rule", sa.String),
    sa.column("op", sa.String),
    sa.column("multiple", sa.String),
    sa.column("field", sa.Text),
    sa.column("params", sa.Text),
)
_INVERT = sa.column("invert", sa.Boolean)
_ACTIONS = sa.table(
    "rule_actions",
    sa.column("id", sa.Integer),
    sa.column("rule", sa.String),
    sa.column("action", sa.String),
    sa.column("params", sa.Text),
)


@dataclasses.dataclass(frozen=True)
class DatabaseShape:
    """Whose schemas a database holds, by their Alembic revisions."""

    #: inspectord's revision (its own version table), or None.
    revision: str = None
    #: inspectord's revision found in ``alembic_version`` (before its own table), or None.
    legacy_revision: str = None
    #: ironic-inspector's revision, or None.
    upstream_revision: str = None


@dataclasses.dataclass(frozen=True)
class AdoptionReport:
    """What one adoption copied."""

    upstream_revision: str
    rules: int
    nodes: int
    data: int
    #: Nodes left ``waiting`` by ironic-inspector, now waiting for inspectord.
    waiting: tuple = ()
    #: Nodes to be processed again from their stored unprocessed data.
    resumed: tuple = ()
    #: Nodes in a transient state that could not be continued, now in ``error``.
    failed: tuple = ()

    def summary(self):
        return (
            "adopted ironic-inspector's database (revision {}): {} rule(s), {} node(s), "
            "{} introspection data record(s); {} node(s) waiting, {} to process again, "
            "{} interrupted ones failed".format(
                self.upstream_revision,
                self.rules,
                self.nodes,
                self.data,
                len(self.waiting),
                len(self.resumed),
                len(self.failed),
            )
        )


def thd_examine(conn):
    """The :class:`DatabaseShape` of the database behind ``conn``.

    Raises :class:`~inspectord.errors.SchemaError` naming the revision when
    ``alembic_version`` holds one that is neither ironic-inspector's (from
    :data:`OLDEST_ADOPTABLE` on) nor an old inspectord's.
    """
    tables = set(sa.inspect(conn).get_table_names())
    revision = legacy = upstream = None
    if schema.VERSION_TABLE in tables:
        revision = conn.execute(sa.text("SELECT version_num FROM " + schema.VERSION_TABLE)).scalar()
    if UPSTREAM_VERSION_TABLE in tables:
        found = conn.execute(sa.text("SELECT version_num FROM " + UPSTREAM_VERSION_TABLE)).scalars().all()
        for value in found:
            if value in LEGACY_REVISIONS and revision is None:
                legacy = value
            elif value in ADOPTABLE_REVISIONS:
                upstream = value
            elif value in UPSTREAM_REVISIONS:
                raise errors.SchemaError(
                    "The database holds ironic-inspector's schema at revision {!r}, older than inspectord "
                    "adopts (revisions {} to {}, ironic-inspector 6.0 to 12.5.0): upgrade it with "
                    "ironic-inspector's own 'ironic-inspector-dbsync upgrade' first".format(
                        value, OLDEST_ADOPTABLE, UPSTREAM_REVISIONS[-1]
                    )
                )
            else:
                raise errors.SchemaError(
                    "The database's alembic_version holds revision {!r}, which is neither ironic-inspector's "
                    "(inspectord adopts {} to {}, ironic-inspector 6.0 to 12.5.0) nor inspectord's: "
                    "check [database]connection".format(value, OLDEST_ADOPTABLE, UPSTREAM_REVISIONS[-1])
                )
    return DatabaseShape(revision=revision, legacy_revision=legacy, upstream_revision=upstream)


def thd_adopted_before(conn):
    """Whether an adoption has been recorded."""
    t = schema.adoptions
    return conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() > 0


def thd_adopt(engine, now, first_only=False):
    """Copy ironic-inspector's rules, nodes and data into inspectord's tables.

    Blocking; one transaction.  Returns an :class:`AdoptionReport`, or None
    when the database holds no ironic-inspector schema (or, with
    ``first_only``, when an adoption was recorded already).  inspectord's
    schema must be at its head (:func:`inspectord.store.sql.thd_upgrade`).
    """
    with engine.begin() as conn:
        shape = thd_examine(conn)
        if shape.upstream_revision is None:
            return None
        if first_only and thd_adopted_before(conn):
            return None
        columns = {t: {c["name"] for c in sa.inspect(conn).get_columns(t)} for t in ("nodes", "rules")}
        columns["rule_conditions"] = {c["name"] for c in sa.inspect(conn).get_columns("rule_conditions")}
        has_data = "introspection_data" in sa.inspect(conn).get_table_names()
        rules = _thd_adopt_rules(conn, columns)
        nodes, waiting, resumed, failed, data = _thd_adopt_nodes(conn, now, columns["nodes"], has_data)
        report = AdoptionReport(
            upstream_revision=shape.upstream_revision,
            rules=rules,
            nodes=nodes,
            data=data,
            waiting=tuple(waiting),
            resumed=tuple(resumed),
            failed=tuple(failed),
        )
        conn.execute(
            schema.adoptions.insert().values(
                upstream_revision=report.upstream_revision,
                adopted_at=now,
                rules=report.rules,
                nodes=report.nodes,
                data=report.data,
            )
        )
        return report


def _params(text):
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _thd_adopt_rules(conn, columns):
    r = schema.rules
    known = set(conn.execute(sa.select(r.c.uuid)).scalars())
    query = sa.select(_RULES.c.uuid, _RULES.c.created_at, _RULES.c.description)
    if "scope" in columns["rules"]:
        query = query.add_columns(_SCOPE)
    rows = [row for row in conn.execute(query) if row.uuid not in known]
    if not rows:
        return 0
    conditions, actions, first_id = {}, {}, {}
    cond_query = sa.select(_CONDITIONS)
    if "invert" in columns["rule_conditions"]:
        cond_query = cond_query.add_columns(_INVERT)
    for c in conn.execute(cond_query.order_by(_CONDITIONS.c.id)):
        first_id.setdefault(c.rule, (0, c.id))
        conditions.setdefault(c.rule, []).append(
            {
                "op": c.op,
                "field": c.field,
                "multiple": c.multiple,
                "invert": bool(getattr(c, "invert", False)),
                **_params(c.params),
            }
        )
    for a in conn.execute(sa.select(_ACTIONS).order_by(_ACTIONS.c.id)):
        first_id.setdefault(a.rule, (1, a.id))
        actions.setdefault(a.rule, []).append({"action": a.action, **_params(a.params)})
    # Creation order: rules created within one second (MySQL keeps whole
    # seconds) are told apart by the ids of their conditions, which
    # ironic-inspector numbered as it created them.
    rows.sort(key=lambda row: (row.created_at, first_id.get(row.uuid, (2, 0)), row.uuid))
    conn.execute(
        r.insert(),
        [
            {
                "uuid": row.uuid,
                "description": row.description,
                "scope": getattr(row, "scope", None),
                "conditions": conditions.get(row.uuid, []),
                "actions": actions.get(row.uuid, []),
                "created_at": row.created_at,
            }
            for row in rows
        ],
    )
    return len(rows)


def _thd_adopt_nodes(conn, now, columns, has_data):
    n = schema.nodes
    mine = {row.uuid: row.started_at for row in conn.execute(sa.select(n.c.uuid, n.c.started_at))}
    query = sa.select(_NODES)
    if "manage_boot" in columns:
        query = query.add_columns(_MANAGE_BOOT)
    rows = []
    for row in conn.execute(query):
        started = row.started_at or row.finished_at or now
        if row.uuid in mine and mine[row.uuid] is not None and mine[row.uuid] >= started:
            continue  # adopted before, or introspected by inspectord since
        rows.append((row, started))
    if not rows:
        return 0, [], [], [], 0
    adopted = [row.uuid for row, _ in rows]
    replaced = [u for u in adopted if u in mine]
    raw_stored = set()
    if has_data:
        raw_stored = set(
            conn.execute(sa.select(_DATA.c.uuid).where(_DATA.c.processed == sa.false())).scalars()
        )
    for chunk in _chunks(replaced):
        for t in (schema.attributes, schema.introspection_data):
            conn.execute(t.delete().where(t.c.node_uuid.in_(chunk)))
        conn.execute(n.delete().where(n.c.uuid.in_(chunk)))
    waiting, resumed, failed, values = [], [], [], []
    for row, started in rows:
        state, error, finished, lease = row.state, row.error, row.finished_at, None
        if state == st.State.waiting.value:
            waiting.append(row.uuid)
        elif state == st.State.processing.value and row.uuid in raw_stored:
            # An expired lease: the next periodic pass processes it again.
            lease = now
            resumed.append(row.uuid)
        elif state in _INTERRUPTED:
            state, error, finished = st.State.error.value, _INTERRUPTED[state], now
            failed.append(row.uuid)
        elif state not in {s.value for s in st.State}:
            state, finished = st.State.error.value, finished or now
            error = "Unknown ironic-inspector state {!r} at adoption by inspectord".format(row.state)
            failed.append(row.uuid)
        manage_boot = getattr(row, "manage_boot", None)
        values.append(
            {
                "uuid": row.uuid,
                "state": state,
                "started_at": started,
                "finished_at": finished,
                "error": error,
                "manage_boot": True if manage_boot is None else bool(manage_boot),
                "version_id": uuidlib.uuid4().hex,
                "lease_until": lease,
                # Unknown until the node is read from Ironic again (processing does).
                "node": {},
                "ports": {},
                "options": {},
            }
        )
    for chunk in _chunks(values):
        conn.execute(n.insert(), chunk)
    adopted_set = set(adopted)
    attributes = {
        (a.node_uuid, a.name, a.value if a.name != "mac" else a.value.lower())
        for a in conn.execute(sa.select(_ATTRIBUTES).where(_ATTRIBUTES.c.value.is_not(None)))
        if a.node_uuid in adopted_set
    }
    for chunk in _chunks(sorted(attributes)):
        conn.execute(schema.attributes.insert(), [{"node_uuid": u, "name": k, "value": v} for u, k, v in chunk])
    data = 0
    if has_data:
        stored_at = {row.uuid: row.finished_at or started for row, started in rows}
        data = _thd_adopt_data(conn, adopted, stored_at)
    return len(values), waiting, resumed, failed, data


def _thd_adopt_data(conn, adopted, stored_at):
    count = 0
    for uuids in _chunks(adopted):
        batch = [
            {"node_uuid": d.uuid, "processed": bool(d.processed), "data": d.data, "stored_at": stored_at[d.uuid]}
            for d in conn.execute(
                sa.select(_DATA).where(_DATA.c.uuid.in_(uuids), _DATA.c.data.is_not(None))
            )
        ]
        if batch:
            conn.execute(schema.introspection_data.insert(), batch)
            count += len(batch)
    return count


def _chunks(items):
    items = list(items)
    for i in range(0, len(items), _BATCH):
        yield items[i:i + _BATCH]
