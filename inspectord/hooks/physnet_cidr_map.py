"""The physnet_cidr_map hook: physical_network of ports from their interface's address."""

import ipaddress

from twisted.logger import Logger

from inspectord import errors
from inspectord.processing.hooks import ProcessingHook, interfaces_with_ports, processing_hook


def parse_cidr_map(entries):
    """``[(network, physnet)]`` from ``[port_physnet]cidr_map`` (``CIDR:physnet`` items)."""
    result = []
    for entry in entries:
        cidr, sep, physnet = entry.rpartition(":")
        if not sep or not cidr or not physnet:
            raise errors.ConfigError(
                "[port_physnet]cidr_map item {!r} is not CIDR:physical_network".format(entry)
            )
        try:
            result.append((ipaddress.ip_network(cidr), physnet))
        except ValueError as e:
            raise errors.ConfigError("[port_physnet]cidr_map item {!r}: {}".format(entry, e)) from None
    return result


def _addresses(iface):
    found = []
    for key in ("ipv4_address", "ipv6_address"):
        value = iface.get(key)
        if not isinstance(value, str):
            continue
        try:
            found.append(ipaddress.ip_address(value.split("%")[0]))
        except ValueError:
            continue
    return found


@processing_hook
class PhysnetCidrMapHook(ProcessingHook):
    """Set ``physical_network`` of a port whose interface has an address in a mapped CIDR.

    The first mapping matching the interface's IPv4 address, else its IPv6
    address, wins.  An existing physical network is kept unless
    ``[processing]overwrite_existing``.  (ironic-inspector only looked at
    the first address, and never set a physical network with
    overwrite_existing=false.)
    """

    name = "physnet_cidr_map"
    dependencies = ("validate_interfaces",)
    log = Logger()

    def __init__(self, config):
        super().__init__(config)
        self.cidr_map = parse_cidr_map(config.port_physnet.cidr_map)

    def physnet(self, iface):
        for address in _addresses(iface):
            for network, physnet in self.cidr_map:
                if address.version == network.version and address in network:
                    return physnet
        return None

    def before_update(self, data, node):
        if not self.cidr_map:
            return
        overwrite = self.config.processing.overwrite_existing
        for iface, name, mac, port in interfaces_with_ports(data, node):
            if port is None:
                continue
            physnet = self.physnet(iface)
            if physnet is None:
                self.log.debug("Node {node}: no physical network mapping for interface {iface}",
                               node=node.uuid, iface=name)
                continue
            current = port.get("physical_network")
            if current == physnet or (current and not overwrite):
                continue
            node.patch_port(mac, [{"op": "add", "path": "/physical_network", "value": physnet}])
