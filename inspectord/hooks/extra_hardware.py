"""The extra_hardware hook: python-hardware's data into a nested ``extra`` dictionary."""

from twisted.logger import Logger

from inspectord.processing.hooks import ProcessingHook, processing_hook

EDEPLOY_ITEM_SIZE = 4


@processing_hook
class ExtraHardwareHook(ProcessingHook):
    """``data: [[category, item, key, value], ...]`` becomes ``extra[category][item][key] = value``.

    Values that are integers in text become integers.  The incoming
    ``data`` is dropped once converted (introspection rules use ``extra``,
    e.g. ``data://extra.disk.vda.size``).  Data in another shape is left
    alone, or dropped with ``[extra_hardware]strict``, which also refuses
    items that are not exactly 4 long.
    """

    name = "extra_hardware"
    log = Logger()

    def _is_edeploy(self, items):
        strict = self.config.extra_hardware.strict
        return isinstance(items, list) and all(
            isinstance(item, list) and (not strict or len(item) == EDEPLOY_ITEM_SIZE) for item in items
        )

    def before_update(self, data, node):
        if "data" not in data:
            self.log.warn("Node {node}: no extra hardware information was received from the ramdisk",
                          node=node.uuid)
            return
        items = data["data"]
        if not self._is_edeploy(items):
            self.log.warn("Node {node}: extra hardware data is not in the eDeploy format, not converted",
                          node=node.uuid)
            if self.config.extra_hardware.strict:
                del data["data"]
            return
        converted = {}
        for item in items:
            if not item:
                continue
            try:
                category, name, key, value = item[0], item[1], item[2], item[3]
                level = converted.setdefault(category, {}).setdefault(name, {})
            except (IndexError, TypeError) as e:
                self.log.warn("Node {node}: ignoring invalid extra data item {item}: {error}",
                              node=node.uuid, item=item, error=str(e))
                continue
            try:
                value = int(value)
            except (TypeError, ValueError):
                pass
            try:
                level[key] = value
            except TypeError as e:
                self.log.warn("Node {node}: ignoring invalid extra data item {item}: {error}",
                              node=node.uuid, item=item, error=str(e))
        data["extra"] = converted
        del data["data"]
