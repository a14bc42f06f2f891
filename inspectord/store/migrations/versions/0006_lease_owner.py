"""Lease owners for every transient state; ramdisk data held for a starting node.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("data_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.create_index("nodes_lease_idx", ["lease_until"])


def downgrade():
    with op.batch_alter_table("nodes") as batch:
        batch.drop_index("nodes_lease_idx")
        batch.drop_column("data_pending")
        batch.drop_column("lease_owner")
