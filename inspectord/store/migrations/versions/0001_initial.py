"""Initial schema: nodes, lookup attributes, introspection data.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "nodes",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("manage_boot", sa.Boolean, nullable=False),
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("node", sa.JSON, nullable=False),
        sa.Column("ports", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
    )
    op.create_index("nodes_state_started_idx", "nodes", ["state", "started_at"])
    op.create_table(
        "attributes",
        sa.Column("node_uuid", sa.String(36), sa.ForeignKey("nodes.uuid", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("node_uuid", "name", "value"),
    )
    op.create_index("attributes_name_value_idx", "attributes", ["name", "value"])
    op.create_table(
        "introspection_data",
        sa.Column("node_uuid", sa.String(36), sa.ForeignKey("nodes.uuid", ondelete="CASCADE"), nullable=False),
        sa.Column("processed", sa.Boolean, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("stored_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("node_uuid", "processed"),
    )
