"""MySQL/MariaDB: utf8mb4 with exact comparisons, long text, timestamps with microseconds.

The tables of 0001-0004 take the database's default character set and
collation on MySQL (often latin1 or a case-insensitive utf8mb4 one), its
64 KiB TEXT and whole-second DATETIME.  This converts them to what
``schema.py`` declares.  Nothing changes on SQLite or PostgreSQL.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("nodes", "attributes", "introspection_data", "rules", "discoveries", "dhcp_leases")
_LONG_TEXT = {("nodes", "error", True), ("introspection_data", "data", False)}
_TIMESTAMPS = {
    ("nodes", "started_at", False),
    ("nodes", "finished_at", True),
    ("nodes", "lease_until", True),
    ("introspection_data", "stored_at", False),
    ("rules", "created_at", False),
    ("discoveries", "attempted_at", False),
    ("dhcp_leases", "expires_at", False),
}


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "mysql":
        return
    # The key columns of attributes reference nodes.uuid: convert both sides
    # before the server checks the constraint again.
    op.execute("SET SESSION foreign_key_checks = 0")
    try:
        for table in _TABLES:
            # DYNAMIC rows allow index keys up to 3072 bytes: the lookup
            # index (name, value) is 1148 bytes in utf8mb4.
            op.execute(
                "ALTER TABLE {} ROW_FORMAT=DYNAMIC, CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin".format(table)
            )
    finally:
        op.execute("SET SESSION foreign_key_checks = 1")
    for table, column, nullable in sorted(_LONG_TEXT):
        op.alter_column(table, column, type_=mysql.LONGTEXT(), existing_type=sa.Text(), existing_nullable=nullable)
    for table, column, nullable in sorted(_TIMESTAMPS):
        op.alter_column(
            table, column, type_=mysql.DATETIME(fsp=6), existing_type=sa.DateTime(), existing_nullable=nullable
        )
