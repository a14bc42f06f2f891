"""The accelerators hook: known accelerator PCI devices into ``properties/accelerators``."""

import os

from twisted.logger import Logger

from inspectord import errors
from inspectord.processing.hooks import ProcessingHook, processing_hook

SHIPPED_DEVICES = os.path.join(os.path.dirname(__file__), "known_accelerators.yaml")


def load_known_devices(path):
    """The ``pci_devices`` list of a known-devices YAML file, checked.

    :raises errors.ConfigError: the file cannot be read or has the wrong shape.
    """
    import yaml  # only when the hook is enabled; the plugin scan imports this module in every service

    where = "[accelerators]known_devices {}".format(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise errors.ConfigError("{}: {}".format(where, e)) from None
    devices = content.get("pci_devices") if isinstance(content, dict) else None
    if not isinstance(devices, list):
        raise errors.ConfigError("{}: expected a pci_devices list".format(where))
    for device in devices:
        if not isinstance(device, dict) or not device.get("vendor_id") or not device.get("device_id"):
            raise errors.ConfigError("{}: every device needs vendor_id and device_id, got {!r}".format(where, device))
    return devices


@processing_hook
class AcceleratorsHook(ProcessingHook):
    """Sets ``properties/accelerators`` to the known devices found among ``pci_devices``.

    Each entry is the known device's description (vendor_id, device_id,
    type, device_info...) plus its ``pci_address``.
    """

    name = "accelerators"
    log = Logger()

    def __init__(self, config):
        super().__init__(config)
        self.known = {}
        for device in load_known_devices(config.accelerators.known_devices or SHIPPED_DEVICES):
            key = (str(device["vendor_id"]).lower(), str(device["device_id"]).lower())
            self.known.setdefault(key, device)

    def before_update(self, data, node):
        devices = data.get("pci_devices")
        if not devices:
            self.log.warn("Node {node}: cannot find accelerator devices, no PCI devices information "
                          "was received from the ramdisk", node=node.uuid)
            return
        accelerators = []
        for device in devices:
            if not isinstance(device, dict):
                continue
            known = self.known.get((str(device.get("vendor_id")).lower(), str(device.get("product_id")).lower()))
            if known is not None:
                accelerators.append(dict(known, pci_address=device.get("bus")))
        if accelerators:
            node.update_properties(accelerators=accelerators)
            self.log.info("Node {node}: accelerator devices found: {devices}", node=node.uuid,
                          devices=", ".join("{} at {}".format(a.get("device_info") or a["device_id"], a["pci_address"])
                                            for a in accelerators))
        else:
            self.log.info("Node {node}: no known accelerator devices found", node=node.uuid)
