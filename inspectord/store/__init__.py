"""The node store: introspection state, lookup attributes and data in SQL."""

from inspectord.store.records import NodeRecord  # noqa: F401
from inspectord.store.sql import SQLStore, make_engine  # noqa: F401
