"""``[pxe_filter]driver=builtin``: inspectord answers DHCP itself, only for allowed MACs.

The driver holds the filter state the :class:`~inspectord.dhcp.server.DHCPResponder`
consults for every request, so a sync costs nothing but an assignment.  The
first apply opens the UDP socket (port 67 of ``[builtin_dhcp]interface``)
and loads the leases from the store; if that fails (address in use,
permission denied) the sync fails and the filter service retries it with
backoff like any other driver failure.
"""

import socket

from twisted.internet import defer
from twisted.logger import Logger

from inspectord import errors
from inspectord.dhcp import packets, server
from inspectord.dhcp.sniffer import DHCPSeen
from inspectord.pxe import decisions
from inspectord.timeutil import posix, utc


def server_options(o):
    """:class:`~inspectord.dhcp.server.ServerOptions` from ``[builtin_dhcp]``; ConfigError naming what is wrong."""
    if not o.server_address:
        raise errors.ConfigError("[pxe_filter]driver=builtin needs [builtin_dhcp]server_address")
    if o.mode == "dhcp" and not (o.range_start and o.range_end):
        raise errors.ConfigError("[builtin_dhcp]mode=dhcp needs range_start and range_end")
    try:
        return server.ServerOptions(
            server_address=o.server_address,
            mode=o.mode,
            range_start=o.range_start,
            range_end=o.range_end,
            netmask=o.netmask,
            router=o.router,
            dns_servers=tuple(o.dns_servers),
            lease_time=o.lease_time,
            next_server=o.next_server,
            bios_boot_file=o.bios_boot_file,
            uefi_boot_file=o.uefi_boot_file,
            arm64_boot_file=o.arm64_boot_file,
            ipxe_boot_file=o.ipxe_boot_file,
        )
    except ValueError as e:
        raise errors.ConfigError("invalid [builtin_dhcp] options: {}".format(e)) from None


class BuiltinDriver:
    """Runs the builtin DHCP server.

    :param lease_store: :class:`inspectord.store.SQLStore` (``dhcp_leases()``,
        ``put_dhcp_lease(mac, ip, expires_at)``).
    :param open_socket: ``open_socket(interface) -> socket`` (tests open it
        in a network namespace).
    """

    name = "builtin"
    log = Logger()

    def __init__(self, reactor, options, interface, lease_store, open_socket=server.open_socket, seen=None):
        self._reactor = reactor
        self.options = options
        self.interface = interface
        self._lease_store = lease_store
        self._open_socket = open_socket
        self.state = decisions.CLOSED
        self.responder = None
        self.port = None
        #: The last request seen from each MAC, and the verdict (diagnosis).
        self.seen = seen if seen is not None else DHCPSeen()

    @classmethod
    def from_config(cls, builtin_dhcp, iptables, reactor, lease_store, seen=None):
        """The server ``[builtin_dhcp]`` describes, on its interface or ``[iptables]dnsmasq_interface``."""
        interface = builtin_dhcp.interface or iptables.dnsmasq_interface
        return cls(reactor, server_options(builtin_dhcp), interface, lease_store, seen=seen)

    def allows(self, mac):
        return self.state.allows(mac)

    def _seen(self, mac, kind, allowed):
        self.seen.record(mac, kind, allowed, self._reactor.seconds())
        if not allowed:
            self.log.debug("DHCP {kind} from {mac} refused by the PXE filter", kind=kind, mac=mac)

    def _persist(self, mac, ip, expires):
        d = self._lease_store.put_dhcp_lease(mac, ip, utc(expires))
        d.addErrback(lambda f: self.log.failure("Cannot record the DHCP lease of {mac}", f, mac=mac))

    async def _start(self):
        # Before listening: the first DISCOVER must not wait for the import.
        packets.preload()
        leases = None
        if self.options.mode == "dhcp":
            rows = await self._lease_store.dhcp_leases()
            leases = server.Leases(
                self.options.range_start,
                self.options.range_end,
                self.options.lease_time,
                {mac: (ip, posix(expires)) for mac, ip, expires in rows},
                persist=self._persist,
            )
        self.responder = server.DHCPResponder(self.options, leases, self.allows, self._reactor, seen=self._seen)
        sock = self._open_socket(self.interface)
        try:
            self.port = self._reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, server.DHCPProtocol(self.responder))
        finally:
            sock.close()  # the port has its own copy of the descriptor
        self.log.info(
            "Builtin DHCP server ({mode}) listening on {interface}", mode=self.options.mode, interface=self.interface
        )

    async def apply(self, state, previous=None):
        self.state = state
        if self.port is None:
            await self._start()

    async def stop(self):
        self.state = decisions.CLOSED
        if self.port is not None:
            port, self.port = self.port, None
            await defer.maybeDeferred(port.stopListening)
