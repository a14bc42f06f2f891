"""Discovered machines in the node store (``node_not_found_hook=enroll``).

Blocking functions for the database thread pool, used through
:meth:`SQLStore.enroll <inspectord.store.sql.SQLStore.enroll>` and its
siblings.  An enrollment is recorded *before* inspectord asks Ironic
anything, in one transaction that

* counts the discovery attempts of the last ``[discovery_limits]period``
  (per source IP and in total) and refuses past the limits,
* refuses when a node under introspection (or being enrolled) has one of
  the machine's MACs: the same machine posting twice is enrolled once,
* inserts the node in state ``enrolling`` with its lookup attributes.

The counts live in the database, so the limits hold across every
inspectord sharing it: on SQLite the attempt is written before the counts
are read (the write lock serializes writers); on PostgreSQL the table is
locked for the transaction.
"""

import dataclasses
import datetime
import uuid as uuidlib

import sqlalchemy as sa

from inspectord import errors
from inspectord import state as st
from inspectord.store import schema

_ACTIVE = tuple(s.value for s in st.ACTIVE)
ENROLLED = "enrolled"


class DiscoveryLimited(errors.InspectordError):
    """Too many discovery attempts from one place; a ramdisk retries later."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """``[discovery_limits]``: attempts allowed per ``period`` seconds (0: no limit)."""

    period: int
    per_source: int
    total: int

    @classmethod
    def from_config(cls, options):
        return cls(period=options.period, per_source=options.per_source, total=options.total)


def _count(conn, since, source=None):
    d = schema.discoveries
    query = sa.select(sa.func.count()).select_from(d).where(d.c.attempted_at >= since)
    if source is not None:
        query = query.where(d.c.source == source)
    return conn.execute(query).scalar()


def thd_enroll(engine, uuid, now, manage_boot, node, attributes, source, limits, owner=None, lease_until=None):
    """Record a discovery attempt and the node it will enroll (state ``enrolling``).

    :param attributes: ``[(name, value)]`` lookup attributes (``mac``,
        ``bmc_address``) the machine will be found by afterwards.
    :param owner: the instance enrolling it, holding the lease until
        ``lease_until``: past that, another instance completes or undoes
        the enrollment.
    :raises DiscoveryLimited: a limit of ``limits`` is reached.
    :raises errors.NodeBusy: a node under introspection has one of the MACs.
    """
    d, n, a = schema.discoveries, schema.nodes, schema.attributes
    since = now - datetime.timedelta(seconds=limits.period)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE".format(schema.discoveries.name)))
        conn.execute(d.insert().values(source=source, node_uuid=uuid, attempted_at=now))
        conn.execute(d.delete().where(d.c.attempted_at < since))
        if limits.total:
            count = _count(conn, since)
            if count > limits.total:
                raise DiscoveryLimited(
                    "Discovery refused: {} machines were discovered in the last {} s "
                    "([discovery_limits]total={}); retry later".format(count - 1, limits.period, limits.total)
                )
        if limits.per_source:
            count = _count(conn, since, source)
            if count > limits.per_source:
                raise DiscoveryLimited(
                    "Discovery refused: {} machines were discovered from {} in the last {} s "
                    "([discovery_limits]per_source={}); retry later".format(
                        count - 1, source, limits.period, limits.per_source
                    )
                )
        macs = sorted({v for name, v in attributes if name == "mac"})
        if macs:
            rows = conn.execute(
                sa.select(a.c.value, a.c.node_uuid)
                .join(n, n.c.uuid == a.c.node_uuid)
                .where(n.c.state.in_(_ACTIVE), a.c.name == "mac", a.c.value.in_(macs))
            ).all()
            if rows:
                raise errors.NodeBusy(
                    "Cannot enroll the machine: {} already being introspected or enrolled".format(
                        ", ".join("MAC {} of node {}".format(r.value, r.node_uuid) for r in rows)
                    )
                )
        conn.execute(
            n.insert().values(
                uuid=uuid,
                state=st.State.enrolling.value,
                started_at=now,
                finished_at=None,
                error=None,
                manage_boot=manage_boot,
                version_id=uuidlib.uuid4().hex,
                lease_until=lease_until,
                lease_owner=owner if lease_until is not None else None,
                node=node,
                ports={},
                options={"discovered_from": source},
            )
        )
        if attributes:
            conn.execute(
                a.insert(), [{"node_uuid": uuid, "name": k, "value": v} for k, v in sorted(set(attributes))]
            )


def thd_enrolled(engine, uuid, node):
    """The node now exists in Ironic: record what Ironic answered (compare-and-set)."""
    n, d = schema.nodes, schema.discoveries
    with engine.begin() as conn:
        updated = conn.execute(
            n.update()
            .where(n.c.uuid == uuid, n.c.state == st.State.enrolling.value)
            .values(node=node, version_id=uuidlib.uuid4().hex)
        ).rowcount
        if not updated:
            raise errors.StateChanged("Node {} is no longer being enrolled".format(uuid))
        conn.execute(d.update().where(d.c.node_uuid == uuid).values(outcome=ENROLLED))


def thd_forget_enrollment(engine, uuid, reason):
    """The node was not created in Ironic: drop its record, keep the attempt (and why)."""
    n, a, d = schema.nodes, schema.attributes, schema.discoveries
    with engine.begin() as conn:
        enrolling = sa.select(n.c.uuid).where(n.c.uuid == uuid, n.c.state == st.State.enrolling.value)
        conn.execute(a.delete().where(a.c.node_uuid.in_(enrolling)))
        conn.execute(n.delete().where(n.c.uuid == uuid, n.c.state == st.State.enrolling.value))
        conn.execute(d.update().where(d.c.node_uuid == uuid).values(outcome=reason[:2000]))


def thd_discoveries(engine, since=None):
    """Recorded attempts, oldest first: ``[(source, node_uuid, attempted_at, outcome)]``."""
    d = schema.discoveries
    query = sa.select(d.c.source, d.c.node_uuid, d.c.attempted_at, d.c.outcome).order_by(d.c.id)
    if since is not None:
        query = query.where(d.c.attempted_at >= since)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query).all()]
