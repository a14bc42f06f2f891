"""The pci_devices hook: counts of aliased PCI devices as capabilities."""

from twisted.logger import Logger

from inspectord.processing.hooks import ProcessingHook, parse_pci_alias, processing_hook


@processing_hook
class PciDevicesHook(ProcessingHook):
    """``{name}:{count}`` capabilities for every ``[pci_devices]alias`` found."""

    name = "pci_devices"
    log = Logger()

    def __init__(self, config):
        super().__init__(config)
        self.aliases = {}
        for text in config.pci_devices.alias:
            alias = parse_pci_alias(text)
            self.aliases[(alias["vendor_id"].lower(), alias["product_id"].lower())] = alias["name"]

    def before_update(self, data, node):
        if not self.aliases:
            return
        if "pci_devices" not in data:
            self.log.warn("Node {node}: no PCI devices information was received from the ramdisk", node=node.uuid)
            return
        counts = {}
        for device in data.get("pci_devices") or []:
            key = (str(device.get("vendor_id", "")).lower(), str(device.get("product_id", "")).lower())
            if key in self.aliases:
                counts[self.aliases[key]] = counts.get(self.aliases[key], 0) + 1
        if counts:
            node.update_capabilities(**counts)
