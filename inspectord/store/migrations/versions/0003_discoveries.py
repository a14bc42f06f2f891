"""Discovery attempts, for the rate limits of node_not_found_hook=enroll.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "discoveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("node_uuid", sa.String(36), nullable=False),
        sa.Column("attempted_at", sa.DateTime, nullable=False),
        sa.Column("outcome", sa.Text, nullable=True),
    )
    op.create_index("discoveries_attempted_idx", "discoveries", ["attempted_at"])
    op.create_index("discoveries_source_idx", "discoveries", ["source", "attempted_at"])
