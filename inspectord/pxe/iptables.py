"""``[pxe_filter]driver=iptables``: one chain, rebuilt in one ``iptables-restore``.

DHCP requests arriving on ``[iptables]dnsmasq_interface`` (UDP 67, or 547
with ``ip_version=6``) jump to ``[iptables]firewall_chain``.  Every sync
rewrites that chain in a single ``iptables-restore --noflush``: declaring an
existing chain in a restore file flushes it, and the whole file is
committed at once, so the chain is swapped atomically and a 100,000-MAC
filter costs one process instead of ironic-inspector's one per MAC.

The chain, for a state with ``allow_unknown`` false::

    -A CHAIN -m mac --mac-source 52:54:00:00:00:01 -j ACCEPT   (each allowed MAC)
    -A CHAIN -j DROP

and with ``allow_unknown`` true::

    -A CHAIN -m mac --mac-source 52:54:00:00:00:01 -j ACCEPT   (each allowed MAC)
    -A CHAIN -m mac --mac-source 52:54:00:00:00:02 -j DROP     (each denied MAC)
    -A CHAIN -j ACCEPT

The jump from ``INPUT`` is looked for (``-S INPUT``) and inserted if missing
on every full sync, so a flushed ``INPUT`` heals by itself.  The rules stay in
place when inspectord stops: a stopped filter keeps refusing what it
refused rather than opening DHCP to every machine.
"""

import re

from twisted.logger import Logger

from inspectord import errors

_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,28}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")


def check_names(chain, interface):
    if not _NAME.match(chain or ""):
        raise errors.ConfigError("[iptables]firewall_chain={!r} is not a valid chain name".format(chain))
    if not _INTERFACE.match(interface or ""):
        raise errors.ConfigError("[iptables]dnsmasq_interface={!r} is not a valid interface name".format(interface))


def dhcp_port(ip_version):
    return "67" if str(ip_version) == "4" else "547"


def commands(ip_version):
    """``(iptables, iptables-restore)`` for the IP version."""
    if str(ip_version) == "4":
        return "iptables", "iptables-restore"
    return "ip6tables", "ip6tables-restore"


def _mac_rules(chain, macs, target):
    # One join instead of one format per MAC: 100,000 rules render in tens of ms.
    if not macs:
        return ""
    head = "-A {} -m mac --mac-source ".format(chain)
    tail = " -j {}\n".format(target)
    return head + (tail + head).join(sorted(macs)) + tail


def chain_rules(chain, state):
    """The ``-A`` lines of the chain for ``state`` (a :class:`~inspectord.pxe.decisions.FilterState`)."""
    text = _mac_rules(chain, state.allowed, "ACCEPT")
    if state.allow_unknown:
        text += _mac_rules(chain, state.denied, "DROP")
        text += "-A {} -j ACCEPT\n".format(chain)
    else:
        text += "-A {} -j DROP\n".format(chain)
    return text.splitlines()


def restore_input(chain, state):
    """The whole ``iptables-restore --noflush`` input replacing the chain."""
    text = "*filter\n:{} - [0:0]\n".format(chain) + _mac_rules(chain, state.allowed, "ACCEPT")
    if state.allow_unknown:
        text += _mac_rules(chain, state.denied, "DROP") + "-A {} -j ACCEPT\n".format(chain)
    else:
        text += "-A {} -j DROP\n".format(chain)
    return (text + "COMMIT\n").encode("ascii")


def jump_rule(chain, interface, ip_version):
    """The ``INPUT`` rule sending DHCP requests to the chain (without -I/-C/-D)."""
    return ("INPUT", "-i", interface, "-p", "udp", "--dport", dhcp_port(ip_version), "-j", chain)


def restore_argv(ip_version):
    return (commands(ip_version)[1], "-w", "--noflush")


def list_input_argv(ip_version):
    # Not ``-C``: with the nf_tables backend, -C loads the whole table
    # (a second per 100,000 rules); -S INPUT lists one chain.
    return (commands(ip_version)[0], "-w", "-S", "INPUT")


def has_jump(listing, chain, interface, ip_version):
    """Whether ``iptables -S INPUT`` output has the jump to ``chain``."""
    wanted = {"-i": interface, "--dport": dhcp_port(ip_version), "-j": chain, "-p": "udp"}
    for line in listing.splitlines():
        fields = line.split()
        if fields[:2] != ["-A", "INPUT"]:
            continue
        values = {f: fields[i + 1] for i, f in enumerate(fields[:-1]) if f in wanted}
        if values == wanted:
            return True
    return False


def insert_jump_argv(chain, interface, ip_version):
    return (commands(ip_version)[0], "-w", "-I") + jump_rule(chain, interface, ip_version)


def counters_argv(chain, ip_version):
    return (commands(ip_version)[0], "-w", "-L", chain, "-v", "-x", "-n")


def parse_counters(text):
    """``[(packets, target, mac or None)]`` of ``iptables -L CHAIN -v -x -n`` output."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        mac = None
        if "MAC" in fields:
            mac = fields[fields.index("MAC") + 1].lower()
        rows.append((int(fields[0]), fields[2], mac))
    return rows


class IptablesDriver:
    """Applies a :class:`~inspectord.pxe.decisions.FilterState` with iptables."""

    name = "iptables"
    log = Logger()

    def __init__(self, runner, chain, interface, ip_version="4"):
        check_names(chain, interface)
        self._runner = runner
        self.chain = chain
        self.interface = interface
        self.ip_version = str(ip_version)

    @classmethod
    def from_config(cls, iptables, runner):
        """The driver ``[iptables]`` describes; ConfigError naming a bad chain or interface."""
        if iptables.ethoib_interfaces:
            cls.log.warn("[iptables]ethoib_interfaces is not implemented by inspectord and is ignored")
        return cls(runner, iptables.firewall_chain, iptables.dnsmasq_interface, iptables.ip_version)

    async def apply(self, state, previous=None):
        """Rewrite the chain; on a full sync (``previous`` None) also heal the jump."""
        await self._runner.run(restore_argv(self.ip_version), stdin=restore_input(self.chain, state))
        if previous is None:
            await self._ensure_jump()

    async def _ensure_jump(self):
        result = await self._runner.run(list_input_argv(self.ip_version))
        if not has_jump(result.stdout.decode("ascii", "replace"), self.chain, self.interface, self.ip_version):
            self.log.info(
                "Adding the jump from INPUT on {interface} to chain {chain}", interface=self.interface, chain=self.chain
            )
            await self._runner.run(insert_jump_argv(self.chain, self.interface, self.ip_version))

    async def counters(self):
        """``[(packets, target, mac)]`` of the chain's rules."""
        result = await self._runner.run(counters_argv(self.chain, self.ip_version))
        return parse_counters(result.stdout.decode("ascii", "replace"))

    async def stop(self):
        """Leave the rules in place (see the module docstring)."""
