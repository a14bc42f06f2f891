"""Leases of the builtin DHCP server.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dhcp_leases",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("ip", sa.String(45), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade():
    op.drop_table("dhcp_leases")
