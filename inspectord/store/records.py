"""Plain records that cross the database thread boundary."""

import dataclasses
import datetime

from inspectord import state as _state


#: The values of :data:`inspectord.state.ACTIVE`: a record's state is compared as stored, without an enum lookup.
_ACTIVE_VALUES = frozenset(s.value for s in _state.ACTIVE)


@dataclasses.dataclass(frozen=True)
class NodeRecord:
    """One node's introspection as stored.

    ``node`` is what inspectord recorded of the Ironic node when the
    introspection started (name, driver, provision_state, properties and
    driver_info with secrets removed); ``ports`` maps each port MAC to
    ``{"uuid": ..., "pxe_enabled": ...}``.  Processing works from these
    instead of reading Ironic again.
    """

    uuid: str
    state: str
    started_at: datetime.datetime
    finished_at: datetime.datetime = None
    error: str = None
    manage_boot: bool = True
    version_id: str = None
    node: dict = dataclasses.field(default_factory=dict, compare=False)
    ports: dict = dataclasses.field(default_factory=dict, compare=False)
    options: dict = dataclasses.field(default_factory=dict, compare=False)
    lease_until: datetime.datetime = None
    lease_owner: str = None
    data_pending: bool = False

    @property
    def finished(self):
        return self.finished_at is not None

    @property
    def active(self):
        return self.state in _ACTIVE_VALUES

    @property
    def name(self):
        return self.node.get("name")

    @property
    def properties(self):
        return self.node.get("properties") or {}

    @property
    def provision_state(self):
        return self.node.get("provision_state")


@dataclasses.dataclass(frozen=True)
class Match:
    """Result of a lookup: the best node and how many attributes matched."""

    uuid: str
    score: int
    record: NodeRecord
