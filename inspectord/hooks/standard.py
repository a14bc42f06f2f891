"""The standard hooks: ramdisk_error, root_disk_selection, scheduler, validate_interfaces."""

import ipaddress

from twisted.logger import Logger

from inspectord import errors
from inspectord import bmc_address
from inspectord.processing import data as ramdisk_data
from inspectord.processing import hints
from inspectord.processing.hooks import GiB, ProcessingHook, get_inventory, processing_hook

ACTIVE_PROVISION_STATES = ("active", "rescue")

# Ranges of the ramdisk's numbers inspectord accepts; anything outside
# (including NaN and infinities) is refused, naming the field.
MAX_CPUS = 65536
MAX_MEMORY_MB = 2 ** 32  # 4 PiB
MAX_DISK_BYTES = 2 ** 60  # 1 EiB


def checked_int(value, field, low, high):
    """``value`` as an int within ``[low, high]``; ProcessingError naming ``field`` if not.

    Whole floats (``2.0``) are accepted, as the ramdisk's JSON may carry them.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.ProcessingError(
            "Invalid {} {!r}: expected an integer from {} to {}".format(field, _short(value), low, high)
        )
    if not (low <= value <= high) or value != int(value):
        raise errors.ProcessingError(
            "Invalid {} {}: expected an integer from {} to {}".format(field, _short(value), low, high)
        )
    return int(value)


def _numeric(value):
    """A number, or a short string of ASCII digits as one; None for anything else."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 20:
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@processing_hook
class RamdiskErrorHook(ProcessingHook):
    """Fail processing when the ramdisk reported an error."""

    name = "ramdisk_error"

    def before_processing(self, data):
        if data.get("error"):
            raise errors.ProcessingError("Ramdisk reported error: {}".format(data["error"]))


@processing_hook
class RootDiskSelectionHook(ProcessingHook):
    """Root disk from Ironic root device hints; ``local_gb`` from its size."""

    name = "root_disk_selection"
    log = Logger()

    def _apply_hints(self, data, node, inventory):
        root_hints = node.properties.get("root_device")
        if not root_hints:
            return
        disks = inventory["disks"]
        skip = set()
        for hint in node.properties.get("skip_block_devices") or []:
            skip.update(d.get("name") for d in hints.find_devices(disks, hint))
        if skip:
            disks = [d for d in disks if d.get("name") not in skip]
        try:
            device = hints.match_root_device(disks, root_hints)
        except ValueError as e:
            raise errors.ProcessingError(
                "No disks could be found using the root device hints {} because they failed to validate: {}".format(
                    root_hints, e
                )
            ) from None
        if device is None:
            raise errors.ProcessingError("No disks satisfied root device hints {}".format(root_hints))
        data["root_disk"] = device

    def before_update(self, data, node):
        inventory = get_inventory(data)
        self._apply_hints(data, node, inventory)
        root_disk = data.get("root_disk")
        if root_disk is not None and not isinstance(root_disk, dict):
            raise errors.ProcessingError("Invalid root_disk {!r}: expected an object".format(_short(root_disk)))
        if data.get("legacy_format") and not root_disk and data.get("local_gb") is not None:
            try:
                local_gb = int(data["local_gb"])
            except (TypeError, ValueError):
                raise errors.ProcessingError("Invalid local_gb {!r}".format(data["local_gb"])) from None
        elif root_disk and root_disk.get("size"):
            local_gb = checked_int(root_disk["size"], "root_disk.size", 0, MAX_DISK_BYTES) // GiB
            if local_gb and self.config.processing.disk_partitioning_spacing:
                local_gb -= 1
        else:
            local_gb = 0
        data["local_gb"] = local_gb
        if self.config.processing.overwrite_existing or not node.properties.get("local_gb"):
            node.update_properties(local_gb=str(local_gb))


@processing_hook
class SchedulerHook(ProcessingHook):
    """cpus, cpu_arch and memory_mb for the scheduler."""

    name = "scheduler"
    KEYS = ("cpus", "cpu_arch", "memory_mb")
    log = Logger()

    def before_update(self, data, node):
        inventory = get_inventory(data)
        cpu = inventory.get("cpu") or {}
        memory = inventory.get("memory") or {}
        # Numbers out of range are refused; missing or non-numeric ones are
        # left out with a warning (as before).
        count, physical_mb = _numeric(cpu.get("count")), _numeric(memory.get("physical_mb"))
        if count is not None:
            data["cpus"] = checked_int(count, "cpu.count", 1, MAX_CPUS)
        if physical_mb is not None:
            data["memory_mb"] = checked_int(physical_mb, "memory.physical_mb", 1, MAX_MEMORY_MB)
        if isinstance(cpu.get("architecture"), str) and cpu["architecture"]:
            data["cpu_arch"] = cpu["architecture"]
        if "cpus" not in data or "cpu_arch" not in data:
            self.log.warn("Node {node}: malformed or missing CPU information", node=node.uuid)
        if "memory_mb" not in data:
            self.log.warn("Node {node}: malformed or missing memory information", node=node.uuid)
        overwrite = self.config.processing.overwrite_existing
        properties = {
            key: str(data[key])
            for key in self.KEYS
            if data.get(key) and (overwrite or not node.properties.get(key))
        }
        if properties:
            node.update_properties(**properties)


@processing_hook
class ValidateInterfacesHook(ProcessingHook):
    """Which interfaces are real, which get ports; creates and prunes ports."""

    name = "validate_interfaces"
    log = Logger()

    def _interfaces(self, data):
        result = {}
        boot_mac = ramdisk_data.pxe_mac(data)
        for iface in get_inventory(data)["interfaces"]:
            name, mac = iface.get("name"), iface.get("mac_address")
            if not name or not isinstance(name, str) or not mac or not ramdisk_data.is_valid_mac(mac):
                continue
            ip = iface.get("ipv4_address") or iface.get("ipv6_address")
            if not isinstance(ip, str):
                ip = None
            if ip and "%" in ip:
                ip = ip.split("%")[0]
            mac = mac.lower()
            result[name] = {"ip": ip, "mac": mac, "client_id": iface.get("client_id"), "pxe": mac == boot_mac}
        return result

    def _validate(self, interfaces, data):
        if not interfaces:
            raise errors.ProcessingError("No interfaces supplied by the ramdisk")
        add_ports = self.config.processing.add_ports
        boot_mac = ramdisk_data.pxe_mac(data)
        result = {}
        for name, iface in interfaces.items():
            ip = iface.get("ip")
            if name == "lo" or (ip and _is_loopback(ip)):
                continue
            if add_ports == "pxe" and boot_mac and not iface["pxe"]:
                continue
            if add_ports != "all" and not ip:
                continue
            result[name] = iface
        if not result:
            raise errors.ProcessingError(
                "No suitable interfaces found in {}".format(", ".join(sorted(interfaces)) or "the data")
            )
        if not boot_mac:
            # No boot interface known: every chosen interface counts as PXE.
            for iface in result.values():
                iface["pxe"] = True
        return result

    def before_processing(self, data):
        addresses = bmc_address.from_ramdisk(data)
        data["ipmi_address"] = next((a for a in addresses if ":" not in a), None)
        data["ipmi_v6address"] = next((a for a in addresses if ":" in a), None)
        all_interfaces = self._interfaces(data)
        interfaces = self._validate(all_interfaces, data)
        data["all_interfaces"] = all_interfaces
        data["interfaces"] = interfaces
        data["macs"] = [iface["mac"] for iface in interfaces.values()]

    def before_update(self, data, node):
        processing = self.config.processing
        interfaces = data.get("interfaces") or {}
        if processing.add_ports != "disabled":
            node.create_ports(interfaces.values())
        if node.node.get("provision_state") in ACTIVE_PROVISION_STATES:
            return
        if processing.keep_ports != "all":
            if processing.keep_ports == "present":
                expected = {i["mac"] for i in (data.get("all_interfaces") or {}).values()}
            else:
                expected = set(data.get("macs") or [])
            for mac in sorted(node.ports):
                if mac not in expected:
                    self.log.info("Node {node}: deleting port {mac}, not in the data", node=node.uuid, mac=mac)
                    node.delete_port(mac)
        if processing.overwrite_existing and processing.update_pxe_enabled:
            for iface in interfaces.values():
                port = node.ports.get(iface["mac"])
                if port is not None and port.get("pxe_enabled") != iface["pxe"]:
                    node.patch_port(iface["mac"], [{"op": "replace", "path": "/pxe_enabled", "value": iface["pxe"]}])


def _is_loopback(ip):
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
