"""Change counters polled by every instance; DHCP requests seen, per MAC.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    changes = op.create_table(
        "inspectord_changes",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(changes, [{"name": "pxe_filter", "generation": 0}])
    op.create_table(
        "inspectord_dhcp_seen",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("last_request", Timestamp, nullable=False),
        sa.Column("message", sa.String(16), nullable=True),
        sa.Column("allowed", sa.Boolean, nullable=False),
    )
    op.create_index("dhcp_seen_last_idx", "inspectord_dhcp_seen", ["last_request"])
    bind = op.get_bind()
    if bind.dialect.name == "mysql":
        # As migration 0005 left the other tables: exact, case-sensitive comparisons.
        collation = _binary_collation(bind)
        for table in ("inspectord_changes", "inspectord_dhcp_seen"):
            op.execute("ALTER TABLE {} CONVERT TO CHARACTER SET utf8mb4 COLLATE {}".format(table, collation))


def downgrade():
    op.drop_table("inspectord_dhcp_seen")
    op.drop_table("inspectord_changes")


def _binary_collation(bind):
    if bind.dialect.is_mariadb:
        return "utf8mb4_nopad_bin"
    if bind.dialect.server_version_info >= (8,):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"
