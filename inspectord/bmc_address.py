"""BMC addresses: what Ironic's ``driver_info`` names and what the ramdisk reports.

A node is looked up by its BMC address when the ramdisk's MACs do not
single it out, so both sides must spell an address the same way:

* :func:`node_hosts`: the hosts in a node's ``driver_info`` address fields
  (``ipmi_address``, the ``[DEFAULT]ipmi_address_fields``, and
  ``<driver>_address``), each a bare IP, a host name or a URL;
  :func:`node_addresses` resolves the names through a :class:`Resolver`,
  whose ``getaddrinfo`` runs in a thread pool, never on the reactor;
* :func:`from_ramdisk`: the ``bmc_address`` and ``bmc_v6address`` the
  ramdisk reports (``ipmi_address``/``ipmi_v6address`` in the flat format),
  unset values (``0.0.0.0``, ``::/0``) dropped;
* :func:`preferred` chooses one of those for a node discovery enrolls.

IP addresses get one spelling (:func:`canonical`): ``FD00:0::0200`` and
``fd00::200`` match.
"""

import ipaddress
import socket
import urllib.parse

from twisted.logger import Logger

log = Logger()

#: Values the ramdisk reports for a BMC without an address.
_UNSET_V4 = ("", "0.0.0.0")
_UNSET_V6 = ("", "::/0", "::")


def canonical(value):
    """One spelling per IP address; anything else unchanged."""
    try:
        return ipaddress.ip_address(value.strip().strip("[]")).compressed
    except ValueError:
        return value


def is_ip(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


# -- the ramdisk's view ------------------------------------------------------


def from_ramdisk(data):
    """BMC IPv4 and IPv6 addresses the ramdisk reported (unset ones dropped)."""
    inventory = data.get("inventory") or {}
    v4 = inventory.get("bmc_address", data.get("ipmi_address"))
    v6 = inventory.get("bmc_v6address", data.get("ipmi_v6address"))
    result = []
    if isinstance(v4, str) and v4 not in _UNSET_V4:
        result.append(canonical(v4))
    if isinstance(v6, str) and v6 not in _UNSET_V6:
        result.append(canonical(v6))
    return result


def preferred(data, versions):
    """The ramdisk's BMC address of the first IP version in ``versions`` ("4", "6") it has, or None."""
    addresses = from_ramdisk(data)
    by_version = {
        "4": next((a for a in addresses if ":" not in a), None),
        "6": next((a for a in addresses if ":" in a), None),
    }
    for version in versions:
        if by_version.get(version):
            return by_version[version]
    return None


# -- Ironic's view -----------------------------------------------------------


def host(value):
    """The host of a ``driver_info`` address (an IP, a name, or a URL): IPs
    canonical without a zone, names in lower case."""
    value = value.strip()
    if "://" in value:
        value = urllib.parse.urlsplit(value).hostname or ""
    value = value.strip("[]")
    try:
        return str(ipaddress.ip_address(value.split("%")[0]))
    except ValueError:
        return value.lower()


def address_fields(node, ipmi_address_fields):
    """The ``driver_info`` fields that may hold the node's BMC address."""
    driver = (node.get("driver") or "").replace("-", "_")
    return ["ipmi_address"] + list(ipmi_address_fields) + ["{}_address".format(driver)]


def hosts_in(driver_info, fields):
    """The BMC hosts in ``fields`` of ``driver_info``; names are not resolved."""
    info = driver_info or {}
    return {host(info[f]) for f in fields if isinstance(info.get(f), str) and info[f].strip()}


def node_hosts(node, ipmi_address_fields):
    """BMC hosts in an Ironic node's driver_info (``ipmi_address``, the
    ``[DEFAULT]ipmi_address_fields`` and ``<driver>_address``); names are not resolved."""
    return hosts_in(node.get("driver_info"), address_fields(node, ipmi_address_fields))


async def node_addresses(node, ipmi_address_fields, resolver):
    """The node's BMC IP addresses, sorted; host names resolved by ``resolver``."""
    found = set()
    for name in node_hosts(node, ipmi_address_fields):
        if not name:
            continue
        if is_ip(name):
            found.add(name)
        else:
            found.update(await resolver.resolve(name))
    return sorted(found)


class Resolver:
    """Resolves BMC host names in a thread pool.

    :param pool: ``run(f, *args) -> Deferred`` running blocking calls off
        the reactor thread; None: names are not resolved (no addresses).
    :param getaddrinfo: ``socket.getaddrinfo`` (tests give a fake).
    """

    def __init__(self, pool, getaddrinfo=socket.getaddrinfo):
        self._pool = pool
        self._getaddrinfo = getaddrinfo

    async def resolve(self, name):
        """The IP addresses of ``name``, sorted; none if it cannot be resolved (logged)."""
        if self._pool is None:
            return []
        try:
            infos = await self._pool.run(self._getaddrinfo, name, None)
        except OSError as e:
            log.warn("Cannot resolve BMC address {host}: {error}", host=name, error=str(e))
            return []
        return sorted({canonical(info[4][0].split("%")[0]) for info in infos})
