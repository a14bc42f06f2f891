"""Database tables (SQLAlchemy Core).  Changes need an Alembic migration.

Every table name starts with ``inspectord_`` and Alembic keeps inspectord's
revision in its own ``inspectord_alembic_version`` table: inspectord shares
the database of the ironic-inspector it replaces (the same
``[database]connection``) and leaves that service's tables (``nodes``,
``rules``, ``alembic_version``...) as they are; see
:mod:`inspectord.store.adopt`.

The same tables serve SQLite, PostgreSQL and MariaDB/MySQL.  Where MySQL's
types are narrower than the others', a variant widens them: ``TEXT`` holds
64 KiB there (introspection data is larger: ``LONGTEXT``) and ``DATETIME``
keeps whole seconds (``DATETIME(6)``).  On MySQL every table is
``utf8mb4`` with a binary collation without padding (migration 0005 for databases made before, table options for new ones), so comparisons
are exact and case-sensitive as on the other engines, whatever character
set the database was created with.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: Unbounded text: LONGTEXT on MySQL, where TEXT stops at 64 KiB.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: A naive UTC timestamp with microseconds on every engine.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = sa.MetaData()

#: Where Alembic records inspectord's schema revision (ironic-inspector
#: keeps its own in ``alembic_version``).
VERSION_TABLE = "inspectord_alembic_version"

#: The revision of the newest migration (``migrations/versions``): a
#: database found at it is used without importing Alembic.  A unit test
#: keeps it equal to Alembic's own head.
HEAD_REVISION = "0009"

nodes = sa.Table(
    "inspectord_nodes",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("error", LongText, nullable=True),
    sa.Column("manage_boot", sa.Boolean, nullable=False, default=True),
    # Changes with every update: compare-and-set guard.
    sa.Column("version_id", sa.String(36), nullable=False),
    # Until when the instance processing this node holds it; past that,
    # another instance may resume processing from the stored raw data.
    sa.Column("lease_until", Timestamp, nullable=True),
    # The instance holding the lease of a transient state (None: nobody).
    sa.Column("lease_owner", sa.String(64), nullable=True),
    # Ramdisk data arrived while the node was still starting: it is stored,
    # and processed as soon as the start ends.
    sa.Column("data_pending", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("node", sa.JSON, nullable=False),
    sa.Column("ports", sa.JSON, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Index("nodes_state_started_idx", "state", "started_at"),
    sa.Index("nodes_lease_idx", "lease_until"),
    # The list of introspections, newest first (GET /v1/introspection).
    sa.Index("nodes_started_uuid_idx", "started_at", "uuid"),
)

attributes = sa.Table(
    "inspectord_attributes",
    metadata,
    sa.Column("node_uuid", sa.String(36), sa.ForeignKey("inspectord_nodes.uuid", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.PrimaryKeyConstraint("node_uuid", "name", "value"),
    sa.Index("attributes_name_value_idx", "name", "value"),
)

introspection_data = sa.Table(
    "inspectord_introspection_data",
    metadata,
    sa.Column("node_uuid", sa.String(36), sa.ForeignKey("inspectord_nodes.uuid", ondelete="CASCADE"), nullable=False),
    sa.Column("processed", sa.Boolean, nullable=False),
    sa.Column("data", LongText, nullable=False),
    sa.Column("stored_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("node_uuid", "processed"),
)

rules = sa.Table(
    "inspectord_rules",
    metadata,
    # Creation order: rules are applied in it.
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("scope", sa.String(255), nullable=True),
    sa.Column("conditions", sa.JSON, nullable=False),
    sa.Column("actions", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Discovery attempts (node_not_found_hook=enroll), counted for the rate
# limits of [discovery_limits]; rows older than the period are pruned.
discoveries = sa.Table(
    "inspectord_discoveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Client IP address of the ramdisk's request ("unknown" if not known).
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("node_uuid", sa.String(36), nullable=False),
    sa.Column("attempted_at", Timestamp, nullable=False),
    # NULL while in progress, then "enrolled" or why it was refused.
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Index("discoveries_attempted_idx", "attempted_at"),
    sa.Index("discoveries_source_idx", "source", "attempted_at"),
)

# Leases of the builtin DHCP server ([pxe_filter]driver=builtin), kept across restarts.
dhcp_leases = sa.Table(
    "inspectord_dhcp_leases",
    metadata,
    sa.Column("mac", sa.String(17), primary_key=True),
    sa.Column("ip", sa.String(45), nullable=False, unique=True),
    sa.Column("expires_at", Timestamp, nullable=False),
)

# Adoptions of an ironic-inspector database (inspectord.store.adopt), one row per run.
adoptions = sa.Table(
    "inspectord_adoptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("upstream_revision", sa.String(32), nullable=False),
    sa.Column("adopted_at", Timestamp, nullable=False),
    sa.Column("rules", sa.Integer, nullable=False),
    sa.Column("nodes", sa.Integer, nullable=False),
    sa.Column("data", sa.Integer, nullable=False),
)

# Change counters several instances poll to learn of each other's changes
# within a second (one row per subject; "pxe_filter": the set of nodes
# under introspection changed).
changes = sa.Table(
    "inspectord_changes",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

# The last DHCP request seen from each MAC (sniffer or builtin server), so
# every instance, and this one after a restart, can tell "never booted"
# from "blocked" from "answered".
dhcp_seen = sa.Table(
    "inspectord_dhcp_seen",
    metadata,
    sa.Column("mac", sa.String(17), primary_key=True),
    sa.Column("last_request", Timestamp, nullable=False),
    sa.Column("message", sa.String(16), nullable=True),
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Index("dhcp_seen_last_idx", "last_request"),
)
