"""MySQL/MariaDB: utf8mb4 with exact comparisons (binary, no padding), long text, timestamps with microseconds.

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
# Short texts stay TEXT (the conversion may have widened them to MEDIUMTEXT).
_TEXT = {("rules", "description", True), ("discoveries", "outcome", True)}
_TIMESTAMPS = {
    ("nodes", "started_at", False),
    ("nodes", "finished_at", True),
    ("nodes", "lease_until", True),
    ("introspection_data", "stored_at", False),
    ("rules", "created_at", False),
    ("discoveries", "attempted_at", False),
    ("dhcp_leases", "expires_at", False),
}


def _binary_collation(bind):
    """Byte-wise comparison where trailing spaces count, as on SQLite and PostgreSQL."""
    if bind.dialect.is_mariadb:
        return "utf8mb4_nopad_bin"  # MariaDB 10.2+
    if bind.dialect.server_version_info >= (8,):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"  # MySQL 5.7 (pads trailing spaces)


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "mysql":
        return
    # MariaDB refuses to change the character set of a column a foreign
    # key uses (even with foreign_key_checks off): drop those keys, convert
    # both sides, create the keys again.
    inspector = sa.inspect(bind)
    foreign_keys = [(table, fk) for table in _TABLES for fk in inspector.get_foreign_keys(table)]
    for table, fk in foreign_keys:
        op.drop_constraint(fk["name"], table, type_="foreignkey")
    collation = _binary_collation(bind)
    for table in _TABLES:
        # DYNAMIC rows allow index keys up to 3072 bytes: the lookup
        # index (name, value) is 1148 bytes in utf8mb4.
        op.execute(
            "ALTER TABLE {} ROW_FORMAT=DYNAMIC, CONVERT TO CHARACTER SET utf8mb4 COLLATE {}".format(table, collation)
        )
    for table, fk in foreign_keys:
        op.create_foreign_key(
            fk["name"],
            table,
            fk["referred_table"],
            fk["constrained_columns"],
            fk["referred_columns"],
            ondelete=fk.get("options", {}).get("ondelete"),
        )
    for table, column, nullable in sorted(_LONG_TEXT):
        op.alter_column(table, column, type_=mysql.LONGTEXT(), existing_type=sa.Text(), existing_nullable=nullable)
    for table, column, nullable in sorted(_TEXT):
        op.alter_column(table, column, type_=sa.Text(), existing_nullable=nullable)
    for table, column, nullable in sorted(_TIMESTAMPS):
        op.alter_column(
            table, column, type_=mysql.DATETIME(fsp=6), existing_type=sa.DateTime(), existing_nullable=nullable
        )
