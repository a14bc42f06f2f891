"""Processing hooks: what inspectord learns from ramdisk data.

A hook has ``before_processing(data)`` (runs before the node is looked up;
may only change the data) and ``before_update(data, node)`` (runs with a
:class:`NodeContext`; records changes on ``node.update``).  Either may
return a Deferred.  Names and behaviour are ironic-inspector's default set.
"""

import copy
import ipaddress
import json

from twisted.logger import Logger

from inspectord import errors
from inspectord.processing import data as ramdisk_data
from inspectord.processing import hints
from inspectord.processing.update import NodeUpdate

GiB = 1024**3
ACTIVE_PROVISION_STATES = ("active", "rescue")


class NodeContext:
    """What hooks see of the node being processed, and what they change.

    Built from what inspectord recorded when the introspection started, so
    hooks read no Ironic state.
    """

    def __init__(self, record, config):
        self.uuid = record.uuid
        self.record = record
        self.config = config
        self.node = record.node
        self.properties = dict(record.node.get("properties") or {})
        self.ports = dict(record.ports)  # mac -> {"uuid", "pxe_enabled"}
        self.update = NodeUpdate()

    def update_properties(self, **properties):
        self.update.properties.update(properties)
        self.properties.update(properties)

    def patch(self, operations):
        """Record JSON-patch operations on the node (sent with the properties)."""
        self.update.node_patch.extend(operations)

    def add_trait(self, trait):
        self.update.removed_traits.discard(trait)
        self.update.added_traits.add(trait)

    def remove_trait(self, trait):
        self.update.added_traits.discard(trait)
        self.update.removed_traits.add(trait)

    def view(self):
        """The node as it will be once the recorded changes are applied."""
        node = copy.deepcopy(self.node)
        node["uuid"] = self.uuid
        node["properties"] = copy.deepcopy(self.properties)
        apply_json_patch(node, self.update.node_patch)
        traits = (set(node.get("traits") or []) | self.update.added_traits) - self.update.removed_traits
        node["traits"] = sorted(traits)
        return node

    def update_capabilities(self, **caps):
        current = parse_capabilities(self.properties.get("capabilities"))
        current.update({k: str(v) for k, v in caps.items()})
        self.update_properties(capabilities=",".join("{}:{}".format(k, v) for k, v in current.items()))

    def create_ports(self, interfaces):
        for iface in interfaces:
            if iface["mac"] in self.ports:
                continue
            port = {"address": iface["mac"], "pxe_enabled": iface.get("pxe", True)}
            if iface.get("client_id"):
                port["extra"] = {"client-id": iface["client_id"]}
            self.update.new_ports.append(port)

    def delete_port(self, mac):
        port = self.ports.pop(mac)
        self.update.deleted_ports.append(port["uuid"])

    def patch_port(self, mac, patch):
        self.update.port_patches.setdefault(self.ports[mac]["uuid"], []).extend(patch)


def apply_json_patch(target, patch):
    """Apply JSON-patch ``add``/``replace``/``remove`` on object paths, in place."""
    for op in patch:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        parent = target
        for part in parts[:-1]:
            child = parent.get(part)
            if not isinstance(child, dict):
                child = parent[part] = {}
            parent = child
        if op["op"] in ("add", "replace"):
            parent[parts[-1]] = op["value"]
        elif op["op"] == "remove":
            parent.pop(parts[-1], None)
        else:
            raise ValueError("unsupported JSON-patch operation {!r}".format(op["op"]))


def parse_capabilities(value):
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    caps = {}
    for item in (value or "").split(","):
        if ":" in item:
            key, val = item.split(":", 1)
            caps[key.strip()] = val.strip()
    return caps


def get_inventory(data):
    inventory = data.get("inventory")
    if not inventory:
        raise errors.ProcessingError("Hardware inventory is empty or missing")
    if not inventory.get("interfaces"):
        raise errors.ProcessingError("No network interfaces provided in the inventory")
    inventory.setdefault("disks", [])
    if inventory["disks"] is None:
        inventory["disks"] = []
    return inventory


class Hook:
    name = None
    #: Names of hooks that must run before this one.
    requires = ()

    def __init__(self, config):
        self.config = config

    def before_processing(self, data):
        pass

    def before_update(self, data, node):
        pass


class RamdiskErrorHook(Hook):
    name = "ramdisk_error"

    def before_processing(self, data):
        if data.get("error"):
            raise errors.ProcessingError("Ramdisk reported error: {}".format(data["error"]))


class RootDiskSelectionHook(Hook):
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
        if data.get("legacy_format") and not root_disk and data.get("local_gb") is not None:
            try:
                local_gb = int(data["local_gb"])
            except (TypeError, ValueError):
                raise errors.ProcessingError("Invalid local_gb {!r}".format(data["local_gb"])) from None
        elif root_disk and root_disk.get("size"):
            local_gb = int(root_disk["size"]) // GiB
            if local_gb and self.config.processing.disk_partitioning_spacing:
                local_gb -= 1
        else:
            local_gb = 0
        data["local_gb"] = local_gb
        if self.config.processing.overwrite_existing or not node.properties.get("local_gb"):
            node.update_properties(local_gb=str(local_gb))


class SchedulerHook(Hook):
    """cpus, cpu_arch and memory_mb for the scheduler."""

    name = "scheduler"
    KEYS = ("cpus", "cpu_arch", "memory_mb")
    log = Logger()

    def before_update(self, data, node):
        inventory = get_inventory(data)
        cpu = inventory.get("cpu") or {}
        try:
            data["cpus"] = int(cpu["count"])
            data["cpu_arch"] = str(cpu["architecture"])
        except (KeyError, TypeError, ValueError):
            self.log.warn("Node {node}: malformed or missing CPU information", node=node.uuid)
        try:
            data["memory_mb"] = int((inventory.get("memory") or {})["physical_mb"])
        except (KeyError, TypeError, ValueError):
            self.log.warn("Node {node}: malformed or missing memory information", node=node.uuid)
        overwrite = self.config.processing.overwrite_existing
        properties = {
            key: str(data[key])
            for key in self.KEYS
            if data.get(key) and (overwrite or not node.properties.get(key))
        }
        if properties:
            node.update_properties(**properties)


class ValidateInterfacesHook(Hook):
    """Which interfaces are real, which get ports; creates and prunes ports."""

    name = "validate_interfaces"
    log = Logger()

    def _interfaces(self, data):
        result = {}
        boot_mac = ramdisk_data.pxe_mac(data)
        for iface in get_inventory(data)["interfaces"]:
            name, mac = iface.get("name"), iface.get("mac_address")
            if not name or not mac or not ramdisk_data.is_valid_mac(mac):
                continue
            ip = iface.get("ipv4_address") or iface.get("ipv6_address")
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
        addresses = ramdisk_data.bmc_addresses(data)
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


class CapabilitiesHook(Hook):
    """Boot mode and CPU-flag capabilities."""

    name = "capabilities"

    def before_update(self, data, node):
        inventory = get_inventory(data)
        caps = {}
        if self.config.capabilities.boot_mode:
            mode = (inventory.get("boot") or {}).get("current_boot_mode")
            if mode:
                caps["boot_mode"] = mode
        flags = set((inventory.get("cpu") or {}).get("flags") or [])
        for flag, name in sorted(self.config.capabilities.cpu_flags.items()):
            if flag in flags:
                caps[name] = "true"
        if caps:
            node.update_capabilities(**caps)


def parse_pci_alias(text):
    """``{"vendor_id", "product_id", "name"}`` from a ``[pci_devices]alias`` value."""
    try:
        alias = json.loads(text)
    except ValueError as e:
        raise ValueError("not JSON: {}".format(e)) from None
    if not isinstance(alias, dict) or not all(isinstance(alias.get(k), str) for k in ("vendor_id", "product_id", "name")):
        raise ValueError('expected {"vendor_id": ..., "product_id": ..., "name": ...}')
    return alias


class PciDevicesHook(Hook):
    """Counts of aliased PCI devices as capabilities."""

    name = "pci_devices"

    def __init__(self, config):
        super().__init__(config)
        self.aliases = {}
        for text in config.pci_devices.alias:
            alias = parse_pci_alias(text)
            self.aliases[(alias["vendor_id"].lower(), alias["product_id"].lower())] = alias["name"]

    def before_update(self, data, node):
        if not self.aliases:
            return
        counts = {}
        for device in data.get("pci_devices") or []:
            key = (str(device.get("vendor_id", "")).lower(), str(device.get("product_id", "")).lower())
            if key in self.aliases:
                counts[self.aliases[key]] = counts.get(self.aliases[key], 0) + 1
        if counts:
            node.update_capabilities(**counts)


HOOKS = {
    h.name: h
    for h in (
        RamdiskErrorHook,
        RootDiskSelectionHook,
        SchedulerHook,
        ValidateInterfacesHook,
        CapabilitiesHook,
        PciDevicesHook,
    )
}


def resolve(names):
    """Hook classes for ``names``, in order; KeyError names an unknown one."""
    classes = []
    for name in names:
        if name not in HOOKS:
            raise KeyError(name)
        classes.append(HOOKS[name])
    seen = set()
    for cls in classes:
        missing = [r for r in cls.requires if r not in seen]
        if missing:
            raise KeyError("{} (needed before {})".format(missing[0], cls.name))
        seen.add(cls.name)
    return classes


def load(config):
    return [cls(config) for cls in resolve(config.processing_hooks)]
