"""``[pxe_filter]driver=nftables``: named sets of ``ether_addr``, one ``nft -f`` per sync.

inspectord owns one table (``[nftables]table``, family ``inet``)::

    table inet inspectord {
        set allowed_macs { type ether_addr; }
        set denied_macs { type ether_addr; }
        counter allowed / denied / other
        chain input {
            type filter hook input priority filter; policy accept;
            iifname "br-ctlplane" meta nfproto ipv4 udp dport 67 jump pxe
        }
        chain pxe {
            ether saddr @allowed_macs counter name "allowed" accept
            ether saddr @denied_macs counter name "denied" drop
            counter name "other" drop        (accept while unknown MACs are allowed)
        }
    }

A full sync declares everything (``add`` is idempotent), flushes both sets
and chains and refills them; an incremental sync only deletes and adds the
elements that changed.  Either is one ``nft -f`` transaction: the kernel
applies all of it or none of it.  The named counters survive syncs and
tell how many DHCP requests were let through or dropped.  The table stays
when inspectord stops, so DHCP does not open up to every machine.
"""

import json
import re

from twisted.logger import Logger

from inspectord import errors
from inspectord.pxe import decisions

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")
COUNTERS = ("allowed", "denied", "other")


def check_names(table, interface):
    if not _NAME.match(table or ""):
        raise errors.ConfigError("[nftables]table={!r} is not a valid nftables table name".format(table))
    if not _INTERFACE.match(interface or ""):
        raise errors.ConfigError("[iptables]dnsmasq_interface={!r} is not a valid interface name".format(interface))


def _match(ip_version):
    if str(ip_version) == "4":
        return "meta nfproto ipv4 udp dport 67"
    return "meta nfproto ipv6 udp dport 547"


def _elements(verb, table, set_name, macs):
    if not macs:
        return []
    return ["{} element inet {} {} {{ {} }}".format(verb, table, set_name, ", ".join(sorted(macs)))]


def _pxe_rules(table, state):
    return [
        'add rule inet {} pxe ether saddr @allowed_macs counter name "allowed" accept'.format(table),
        'add rule inet {} pxe ether saddr @denied_macs counter name "denied" drop'.format(table),
        'add rule inet {} pxe counter name "other" {}'.format(table, "accept" if state.allow_unknown else "drop"),
    ]


def full_ruleset(table, interface, ip_version, state):
    """The ``nft -f`` input that (re)creates the whole table for ``state``."""
    t = table
    lines = [
        "add table inet {}".format(t),
        "add set inet {} allowed_macs {{ type ether_addr; }}".format(t),
        "add set inet {} denied_macs {{ type ether_addr; }}".format(t),
    ]
    lines += ["add counter inet {} {}".format(t, c) for c in COUNTERS]
    lines += [
        "add chain inet {} input {{ type filter hook input priority filter; policy accept; }}".format(t),
        "add chain inet {} pxe".format(t),
        "flush chain inet {} input".format(t),
        "flush chain inet {} pxe".format(t),
        "flush set inet {} allowed_macs".format(t),
        "flush set inet {} denied_macs".format(t),
    ]
    lines += _elements("add", t, "allowed_macs", state.allowed)
    lines += _elements("add", t, "denied_macs", state.denied)
    lines.append('add rule inet {} input iifname "{}" {} jump pxe'.format(t, interface, _match(ip_version)))
    lines += _pxe_rules(t, state)
    return "\n".join(lines) + "\n"


def incremental_ruleset(table, previous, state):
    """The ``nft -f`` input turning ``previous`` into ``state``; None if nothing changed.

    Deleting an element the set does not have fails the whole transaction,
    so a table changed behind inspectord's back shows up as a failed sync,
    which the service repairs with a full one.
    """
    change = decisions.diff(previous, state)
    if change.empty:
        return None
    t = table
    lines = []
    lines += _elements("delete", t, "allowed_macs", change.allowed_removed)
    lines += _elements("delete", t, "denied_macs", change.denied_removed)
    lines += _elements("add", t, "allowed_macs", change.allowed_added)
    lines += _elements("add", t, "denied_macs", change.denied_added)
    if change.unknown_changed:
        lines.append("flush chain inet {} pxe".format(t))
        lines += _pxe_rules(t, state)
    return "\n".join(lines) + "\n"


def parse_counters(text):
    """``{name: packets}`` from ``nft -j list counters table inet T``."""
    found = {}
    for item in json.loads(text).get("nftables", []):
        counter = item.get("counter")
        if counter:
            found[counter["name"]] = counter.get("packets", 0)
    return found


class NftablesDriver:
    name = "nftables"
    log = Logger()

    def __init__(self, runner, table, interface, ip_version="4"):
        check_names(table, interface)
        self._runner = runner
        self.table = table
        self.interface = interface
        self.ip_version = str(ip_version)

    @classmethod
    def from_config(cls, nftables, iptables, runner):
        """The driver ``[nftables]table`` and ``[iptables]`` (interface, IP version) describe."""
        return cls(runner, nftables.table, iptables.dnsmasq_interface, iptables.ip_version)

    async def apply(self, state, previous=None):
        if previous is None:
            text = full_ruleset(self.table, self.interface, self.ip_version, state)
        else:
            text = incremental_ruleset(self.table, previous, state)
            if text is None:
                return
        await self._runner.run(("nft", "-f", "-"), stdin=text.encode("ascii"))

    async def counters(self):
        result = await self._runner.run(("nft", "-j", "list", "counters", "table", "inet", self.table))
        return parse_counters(result.stdout)

    async def stop(self):
        """Leave the table in place (see the module docstring)."""
