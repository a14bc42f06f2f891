"""The PXE filter: which machines may get a DHCP answer (DESIGN §5).

:func:`make_filter` builds the service for ``[pxe_filter]driver``; the
introspection lifecycle calls its ``notify()`` whenever the set of nodes
under introspection changes, and its ``health()`` says how it is doing.

* :mod:`inspectord.pxe.decisions`: who is allowed (pure).
* :mod:`inspectord.pxe.service`: when to sync, retries, health.
* :mod:`inspectord.pxe.iptables`, :mod:`~inspectord.pxe.nftables`,
  :mod:`~inspectord.pxe.dnsmasq`: drivers (rules and files built by pure
  functions, commands run by :mod:`inspectord.pxe.process`);
  :mod:`~inspectord.pxe.builtin`: inspectord's own DHCP server
  (:mod:`inspectord.dhcp.server`).
"""

from twisted.application import service as app_service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from inspectord import errors, interfaces
from inspectord.dhcp.shared import SharedDHCPSeen
from inspectord.dhcp.sniffer import DHCPSeen, DHCPSniffer
from inspectord.pxe.builtin import BuiltinDriver
from inspectord.pxe.dnsmasq import DnsmasqDriver
from inspectord.pxe.iptables import IptablesDriver
from inspectord.pxe.nftables import NftablesDriver
from inspectord.pxe.process import Runner
from inspectord.pxe.service import PXEFilterService

__all__ = ["DRIVERS", "NoopFilter", "PXEFilterService", "check", "make_driver", "make_filter"]


@implementer(interfaces.IPXEFilter)
class NoopFilter(app_service.Service):
    """``[pxe_filter]driver=noop``: DHCP is left to whatever serves it."""

    log = Logger()
    name = "pxe-filter"
    seen = None  # nothing records DHCP requests

    def startService(self):
        super().startService()
        self.log.warn("PXE filter driver is noop: every machine on the provisioning network can get a DHCP answer")

    def notify(self):
        """The set of nodes under introspection changed."""

    def sync(self, full=True):
        return defer.succeed(True)

    def allows(self, mac):
        return True  # nothing is filtered

    def dhcp_seen(self, mac):
        return None  # nothing records DHCP requests

    def health(self):
        return {"driver": "noop", "state": "ok"}


#: The values of ``[pxe_filter]driver``.
DRIVERS = ("noop", "iptables", "nftables", "dnsmasq", "builtin")


def check(pxe_filter):
    """Refuse a ``[pxe_filter]driver`` inspectord does not have."""
    if pxe_filter.driver not in DRIVERS:
        raise errors.ConfigError(
            "[pxe_filter]driver={} is not a PXE filter driver of inspectord "
            "(available: {})".format(pxe_filter.driver, ", ".join(DRIVERS))
        )


def make_driver(config, reactor, io_pool=None, runner=None, store=None, seen=None):
    """The driver object for ``[pxe_filter]driver`` (not noop).

    :param runner: a :class:`~inspectord.pxe.process.Runner` (tests pass one
        running commands in a network namespace).
    :param store: for the builtin driver's leases.
    :raises errors.ConfigError: unknown driver or invalid names.
    """
    name = config.pxe_filter.driver
    runner = runner or Runner(reactor)
    if name == "iptables":
        return IptablesDriver.from_config(config.iptables, runner)
    if name == "nftables":
        return NftablesDriver.from_config(config.nftables, config.iptables, runner)
    if name == "dnsmasq":
        if io_pool is None:
            raise ValueError("the dnsmasq PXE filter driver needs a thread pool for its file work")
        return DnsmasqDriver.from_config(config.dnsmasq_pxe_filter, runner, io_pool.run)
    if name == "builtin":
        return BuiltinDriver.from_config(config.builtin_dhcp, config.iptables, reactor, store, seen=seen)
    raise errors.ConfigError("[pxe_filter]driver={} is not a PXE filter driver".format(name))


def make_filter(config, store=None, ironic=None, reactor=None, io_pool=None, runner=None, metrics=None):
    """The PXE filter service for ``config``: a Service with ``notify()`` and ``health()``.

    :param store: :class:`inspectord.store.SQLStore` (``filter_macs()``).
    :param ironic: :class:`inspectord.ironic.client.IronicClient`.
    :param reactor: ``IReactorTime`` + ``IReactorProcess``.
    :param io_pool: ``run(f, *args) -> Deferred`` for the dnsmasq driver's file work.
    :param metrics: :class:`inspectord.metrics.Metrics` (syncs, DHCP requests).
    """
    if config.pxe_filter.driver == "noop":
        return NoopFilter()
    sniff = config.dhcp_sniffer.enabled
    seen = None
    if sniff or config.pxe_filter.driver == "builtin":
        driver_name = config.pxe_filter.driver
        observe = None if metrics is None else (lambda allowed: metrics.dhcp_request(driver_name, allowed))
        seen = DHCPSeen(observe=observe)
    driver = make_driver(config, reactor, io_pool=io_pool, runner=runner, store=store, seen=seen)
    filt = PXEFilterService(
        driver,
        store,
        ironic,
        reactor,
        sync_period=config.pxe_filter.sync_period,
        deny_unknown_macs=config.pxe_filter.deny_unknown_macs,
        discovery=bool(config.processing.node_not_found_hook),
        seen=seen,
        metrics=metrics,
    )
    filt.setName("pxe-filter")
    if seen is not None and store is not None:
        # Every instance's status and timeout messages see the same requests.
        SharedDHCPSeen(store, seen, reactor).setServiceParent(filt)
    if sniff and config.pxe_filter.driver != "builtin":
        interface = config.dhcp_sniffer.interface or config.iptables.dnsmasq_interface
        DHCPSniffer(reactor, interface, filt.allows, seen=seen).setServiceParent(filt)
    return filt
