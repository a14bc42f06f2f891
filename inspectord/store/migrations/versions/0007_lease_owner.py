"""Lease owners for every transient state; ramdisk data held for a starting node.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE ADD COLUMN, which every engine (SQLite included) has:
    # a batch operation would copy and drop the table on SQLite, and dropping
    # it deletes the rows that reference it (ON DELETE CASCADE).
    op.add_column("inspectord_nodes", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column(
        "inspectord_nodes", sa.Column("data_pending", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_index("nodes_lease_idx", "inspectord_nodes", ["lease_until"])


def downgrade():
    with op.batch_alter_table("inspectord_nodes") as batch:
        batch.drop_index("nodes_lease_idx")
        batch.drop_column("data_pending")
        batch.drop_column("lease_owner")
