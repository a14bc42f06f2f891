"""Log observers for ``twistd --logger``.

``twistd --logger=inspectord.logs.json_to_stdout`` writes one JSON event per
line to standard output, which systemd hands to the journal.
"""

import sys

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import logfile


def json_to_stdout():
    return jsonFileLogObserver(sys.stdout)


def leveled_file_observer(path=None, debug=False, stdout=None):
    """twistd's text log to ``path`` (standard output if None), debug events only with ``debug``.

    What the ``ironic-inspector`` command's ``--log-file`` and ``--debug``
    ask for (:func:`inspectord.tap.ironic_inspector_exit`).
    """
    if path:
        out = logfile.LogFile.fromFullPath(path)
    else:
        out = stdout if stdout is not None else sys.stdout
    level = LogLevel.debug if debug else LogLevel.info
    return FilteringLogObserver(textFileLogObserver(out), [LogLevelFilterPredicate(defaultLogLevel=level)])


class NodeLogger(Logger):
    """A Logger whose lines about a node also carry its ``mac`` and ``bmc_address``.

    A line that names a node (``node=UUID``) gets the fields its source
    (the object the logger is a class attribute of) knows through
    ``node_log_fields(uuid) -> dict``, unless the line sets them itself.
    With the JSON observer one node's story is then a ``jq`` filter away.
    """

    def emit(self, level, format=None, **kwargs):
        node = kwargs.get("node")
        lookup = getattr(self.source, "node_log_fields", None)
        if node is not None and lookup is not None:
            for name, value in lookup(node).items():
                kwargs.setdefault(name, value)
        super().emit(level, format, **kwargs)


class NodeLogFields:
    """The ``mac`` and ``bmc_address`` log fields of nodes (for :class:`NodeLogger`), at most ``limit`` nodes."""

    def __init__(self, limit=10_000):
        self._limit = limit
        self._by_uuid = {}

    def get(self, uuid):
        return self._by_uuid.get(uuid, {})

    def remember(self, uuid, macs=(), bmc_addresses=()):
        fields = {}
        if macs:
            fields["mac"] = ",".join(sorted(macs))
        if bmc_addresses:
            fields["bmc_address"] = ",".join(sorted(bmc_addresses))
        if len(self._by_uuid) >= self._limit:
            self._by_uuid.clear()
        self._by_uuid[uuid] = fields

    def forget(self, uuid):
        """The node's introspection ended: keep nothing for it."""
        self._by_uuid.pop(uuid, None)

    def remember_record(self, record):
        """Fields of a node record, unless the node's are known already."""
        info = record.node.get("driver_info") or {}
        bmc = [info["ipmi_address"]] if isinstance(info.get("ipmi_address"), str) else []
        if record.uuid not in self._by_uuid:
            self.remember(record.uuid, record.ports, bmc)
