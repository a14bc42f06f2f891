"""Ramdisk data: validation and the two formats.

The ironic-python-agent format carries an ``inventory``; the original flat
format (``cpus``, ``cpu_arch``, ``memory_mb``, ``local_gb``,
``interfaces{name: {mac, ip}}``, ``ipmi_address``...) is turned into an
equivalent inventory here, so hooks see one shape.  Pure functions only.
"""

import ipaddress
import re

from inspectord import errors

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
# InfiniBand: 20-byte hardware address.
_MAC_IB = re.compile(r"^([0-9a-f]{2}:){19}[0-9a-f]{2}$")
LEGACY_KEYS = ("cpus", "cpu_arch", "memory_mb", "local_gb", "interfaces", "ipmi_address")


def is_valid_mac(value):
    return isinstance(value, str) and bool(_MAC.match(value.lower()) or _MAC_IB.match(value.lower()))


def pxe_mac(data):
    """The MAC the machine PXE-booted from, if the ramdisk said.

    ``boot_interface`` (or the inventory's ``boot.pxe_interface``) is either
    a MAC or PXELinux's ``01-aa-bb-cc-dd-ee-ff``.
    """
    value = data.get("boot_interface")
    if not value:
        boot = (data.get("inventory") or {}).get("boot") or {}
        value = boot.get("pxe_interface") if isinstance(boot, dict) else None
    if not isinstance(value, str) or not value:
        return None
    if "-" in value:
        value = value.split("-", 1)[1].replace("-", ":")
    return value.lower()



def _legacy_inventory(data):
    interfaces = data.get("interfaces")
    if not isinstance(interfaces, dict):
        raise errors.InvalidInput("Invalid data: 'interfaces' must be an object mapping names to {mac, ip}")
    ifaces = []
    for name, info in sorted(interfaces.items()):
        if not isinstance(info, dict):
            raise errors.InvalidInput("Invalid data: interface {!r} must be an object".format(name))
        ip = info.get("ip")
        version = _ip_version(ip)
        ifaces.append(
            {
                "name": name,
                "mac_address": info.get("mac"),
                "ipv4_address": ip if version == 4 else None,
                "ipv6_address": ip if version == 6 else None,
                "client_id": info.get("client_id"),
            }
        )
    inventory = {
        "interfaces": ifaces,
        "disks": [],
        "bmc_address": data.get("ipmi_address"),
        "bmc_v6address": data.get("ipmi_v6address"),
    }
    if "cpus" in data or "cpu_arch" in data:
        inventory["cpu"] = {"count": data.get("cpus"), "architecture": data.get("cpu_arch")}
    if "memory_mb" in data:
        inventory["memory"] = {"physical_mb": data.get("memory_mb")}
    serials = (data.get("block_devices") or {}).get("serials") if isinstance(data.get("block_devices"), dict) else None
    if serials:
        inventory["disks"] = [{"name": None, "serial": s, "size": None} for s in serials]
    return inventory


def _ip_version(ip):
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip.split("%")[0]).version
    except (ValueError, AttributeError):
        return None


def normalize(data):
    """Validate ramdisk data and give it an ``inventory``.

    :raises errors.InvalidInput: the data is not something a ramdisk sends.
    """
    if not isinstance(data, dict):
        raise errors.InvalidInput("Invalid data: expected a JSON object, got {}".format(type(data).__name__))
    data = dict(data)
    inventory = data.get("inventory")
    if inventory is None and isinstance(data.get("interfaces"), dict):
        data["inventory"] = _legacy_inventory(data)
        data["legacy_format"] = True
        return data
    if inventory is None:
        if data.get("error"):
            return data  # only an error: the ramdisk_error hook reports it
        raise errors.InvalidInput(
            "Invalid data: neither an 'inventory' (ironic-python-agent) nor 'interfaces' (original format) is present"
        )
    if not isinstance(inventory, dict):
        raise errors.InvalidInput("Invalid data: 'inventory' must be an object")
    for key, kind in (("interfaces", list), ("disks", list), ("cpu", dict), ("memory", dict)):
        if inventory.get(key) is not None and not isinstance(inventory[key], kind):
            raise errors.InvalidInput(
                "Invalid data: inventory '{}' must be {}".format(key, "a list" if kind is list else "an object")
            )
    for iface in inventory.get("interfaces") or []:
        if not isinstance(iface, dict):
            raise errors.InvalidInput("Invalid data: every inventory interface must be an object")
    for disk in inventory.get("disks") or []:
        if not isinstance(disk, dict):
            raise errors.InvalidInput("Invalid data: every inventory disk must be an object")
    return data


def all_macs(data):
    """Every valid MAC in the inventory, for lookup."""
    inventory = data.get("inventory") or {}
    macs = []
    for iface in inventory.get("interfaces") or []:
        mac = iface.get("mac_address")
        if is_valid_mac(mac):
            macs.append(mac.lower())
    return macs
