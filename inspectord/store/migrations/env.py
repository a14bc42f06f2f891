"""Alembic environment: runs on the connection inspectord hands over.

inspectord's revision lives in :data:`~inspectord.store.schema.VERSION_TABLE`,
never in ``alembic_version``, which belongs to ironic-inspector when the
two share a database.  (inspectord 0.1 used ``alembic_version``:
:func:`inspectord.store.sql.thd_upgrade` moves such a revision first.)
"""

from alembic import context

from inspectord.store import schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    render_as_batch=True,
    version_table=context.config.attributes.get("version_table", schema.VERSION_TABLE),
)
with context.begin_transaction():
    context.run_migrations()
