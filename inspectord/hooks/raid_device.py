"""The raid_device hook: the root device of a node whose RAID volume was just created."""

from twisted.logger import Logger

from inspectord.processing.hooks import ProcessingHook, processing_hook


def _serials(data):
    inventory = data.get("inventory") or {}
    serials = [d.get("serial") for d in inventory.get("disks") or [] if isinstance(d, dict) and d.get("serial")]
    if serials:
        return serials
    block_devices = data.get("block_devices")
    if isinstance(block_devices, dict):
        return [s for s in block_devices.get("serials") or [] if s]
    return []


@processing_hook
class RaidDeviceHook(ProcessingHook):
    """Learn the root device in two introspections around the RAID set-up.

    The first run keeps the disk serials in ``extra/block_devices``; the
    next one takes the single new serial as ``properties/root_device`` and
    drops ``extra/block_devices``.  Nothing happens once ``root_device`` is
    known.  Before processing, a missing ``local_gb`` is set to 1 so data
    without any volume is not refused (list it before root_disk_selection).
    """

    name = "raid_device"
    log = Logger()

    def before_processing(self, data):
        if not data.get("local_gb"):
            self.log.info("No volume is found on the node; adding a fake value for local_gb")
            data["local_gb"] = 1

    def before_update(self, data, node):
        current = _serials(data)
        if not current:
            self.log.warn("Node {node}: no block device was received from the ramdisk", node=node.uuid)
            return
        view = node.view()
        if "root_device" in (view.get("properties") or {}):
            self.log.info("Node {node}: root device is already known", node=node.uuid)
            return
        saved = (view.get("extra") or {}).get("block_devices")
        if not isinstance(saved, dict):
            node.patch([{"op": "add", "path": "/extra/block_devices", "value": {"serials": current}}])
            return
        previous = saved.get("serials") or []
        new = [serial for serial in current if serial not in previous]
        if len(new) > 1:
            self.log.warn("Node {node}: root device cannot be identified, several new devices: {serials}",
                          node=node.uuid, serials=", ".join(new))
            return
        if not new:
            self.log.warn("Node {node}: no new block devices were found", node=node.uuid)
            return
        node.patch([{"op": "remove", "path": "/extra/block_devices"}])
        node.update_properties(root_device={"serial": new[0]})
