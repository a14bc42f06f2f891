"""An index for the list of introspections: newest first, by start time then UUID.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    # GET /v1/introspection pages ORDER BY started_at DESC, uuid DESC from a
    # marker: with this index every engine reads one page of it instead of
    # sorting the whole table.  A plain CREATE INDEX (no batch operation: on
    # SQLite that would copy and drop the table the other tables reference).
    op.create_index("nodes_started_uuid_idx", "inspectord_nodes", ["started_at", "uuid"])


def downgrade():
    op.drop_index("nodes_started_uuid_idx", "inspectord_nodes")
