"""inspectord's own table names, beside ironic-inspector's; adoptions.

Revision ID: 0006
Revises: 0005

Databases made by this revision's predecessors hold inspectord's tables
under the names ironic-inspector uses too (``nodes``, ``rules``...); they
become ``inspectord_*``, so that inspectord can share the database of the
ironic-inspector it replaces.  A new database is created at the head
directly and never runs this.

``inspectord_adoptions`` records each adoption of ironic-inspector's data.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("attributes", "introspection_data", "rules", "discoveries", "dhcp_leases", "nodes")


def upgrade():
    for name in _TABLES:
        op.rename_table(name, "inspectord_" + name)
    op.create_table(
        "inspectord_adoptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("upstream_revision", sa.String(32), nullable=False),
        sa.Column("adopted_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"), nullable=False),
        sa.Column("rules", sa.Integer, nullable=False),
        sa.Column("nodes", sa.Integer, nullable=False),
        sa.Column("data", sa.Integer, nullable=False),
    )


def downgrade():
    op.drop_table("inspectord_adoptions")
    for name in _TABLES:
        op.rename_table("inspectord_" + name, name)
