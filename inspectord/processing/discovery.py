"""Discovery: enrolling machines no node matches (``node_not_found_hook=enroll``).

When ramdisk data matches no node, :meth:`Discovery.enroll`

1. records the attempt and the node-to-be (state ``enrolling``) in the store,
   refused past the ``[discovery_limits]`` rate limits (per source IP and in
   total, counted in the database so they hold across instances) or when a
   node under introspection already has one of the machine's MACs;
2. asks Ironic whether a port already has one of the machine's MACs, or a
   node its BMC address: such a machine is not new, and is refused;
3. creates the node in Ironic (``[discovery]enroll_node_driver``,
   ``enroll_node_fields``, ``driver_info/ipmi_address`` chosen per
   ``enabled_bmc_address_version``, ``extra/auto_discovered=true``).

The caller then processes the node like any other: hooks create its ports,
introspection rules (``data://auto_discovered``) fill in its driver and
credentials.  Every enrollment and every refusal is logged.
"""

import uuid as uuidlib

from twisted.internet import defer
from twisted.logger import Logger

from inspectord import bmc_address, errors
from inspectord.processing import data as ramdisk_data
from inspectord.store.enrollment import Limits
from inspectord.timeutil import utc

SUPPORTED_HOOKS = ("enroll",)
# Node fields inspectord sets itself; enroll_node_fields may not name them.
_RESERVED_FIELDS = ("uuid", "driver", "driver_info", "extra", "provision_state")
_NO_MAC = "00:00:00:00:00:00"


def check(processing, pxe_filter, discovery):
    """Start-up checks of ``[processing]node_not_found_hook`` and ``[discovery]``."""
    hook = processing.node_not_found_hook
    if not hook:
        return
    if hook not in SUPPORTED_HOOKS:
        raise errors.ConfigError(
            "[processing]node_not_found_hook={} is not available in inspectord (available: {})".format(
                hook, ", ".join(SUPPORTED_HOOKS)
            )
        )
    if pxe_filter.deny_unknown_macs:
        raise errors.ConfigError(
            "[processing]node_not_found_hook=enroll cannot work with [pxe_filter]deny_unknown_macs=true: "
            "unknown machines would never get DHCP to boot the ramdisk; unset one of them"
        )
    versions = discovery.enabled_bmc_address_version
    if not versions or any(v not in ("4", "6") for v in versions) or len(set(versions)) != len(versions):
        raise errors.ConfigError(
            "[discovery]enabled_bmc_address_version={} must be 4, 6, 4,6 or 6,4".format(",".join(versions))
        )
    if not discovery.enroll_node_driver:
        raise errors.ConfigError("[discovery]enroll_node_driver must name an Ironic hardware type")
    reserved = sorted(set(discovery.enroll_node_fields) & set(_RESERVED_FIELDS))
    if reserved:
        raise errors.ConfigError(
            "[discovery]enroll_node_fields may not set {}: inspectord sets them (the driver comes from "
            "enroll_node_driver; use introspection rules for driver_info and extra)".format(", ".join(reserved))
        )


def machine_macs(data):
    """The MACs a discovered machine is known by: every real interface's."""
    interfaces = data.get("all_interfaces")
    if isinstance(interfaces, dict):
        macs = [i.get("mac") for name, i in interfaces.items() if name != "lo"]
    else:
        macs = [
            (i.get("mac_address") or "").lower()
            for i in (data.get("inventory") or {}).get("interfaces") or []
            if i.get("name") != "lo"
        ]
    return sorted({m for m in macs if ramdisk_data.is_valid_mac(m) and m != _NO_MAC})



class Discovery:
    """Enrolls unknown machines in Ironic.

    :param store: :class:`inspectord.store.SQLStore`.
    :param ironic: :class:`inspectord.ironic.client.IronicClient`.
    :param discovery, limits, default: the ``[discovery]``,
        ``[discovery_limits]`` and ``[DEFAULT]`` sections (can_manage_boot,
        ipmi_address_fields).
    :param clock: ``IReactorTime``.
    :param snapshot: turns an Ironic node into what the store keeps of it
        (:func:`inspectord.nodes.node_snapshot`).
    """

    log = Logger()

    def __init__(self, store, ironic, discovery, limits, default, clock, snapshot):
        self.store = store
        self.ironic = ironic
        self.discovery = discovery
        self.default = default
        self.clock = clock
        self._snapshot = snapshot
        self._limits = Limits.from_config(limits)

    def node_body(self, uuid, data):
        """The ``POST /v1/nodes`` body for a discovered machine."""
        discovery = self.discovery
        body = dict(discovery.enroll_node_fields)
        driver_info = {}
        address = bmc_address.preferred(data, discovery.enabled_bmc_address_version)
        if address:
            driver_info["ipmi_address"] = address
        body.update(
            uuid=uuid,
            driver=discovery.enroll_node_driver,
            driver_info=driver_info,
            extra={"auto_discovered": True},
        )
        return body

    async def enroll(self, data, source=None, uuid=None, owner=None, lease_until=None):
        """Enroll the machine ``data`` describes; its record, state ``enrolling``.

        Sets ``data["auto_discovered"] = True`` for introspection rules.

        :param source: the client IP address the data came from.
        :param uuid: the UUID the node gets (a new one if not given).
        :param owner: the instance enrolling it, leasing the record until
            ``lease_until``; interrupted (cancelled), the record is kept for
            whoever takes the lease over to complete or undo.
        :raises DiscoveryLimited: (503) past a rate limit; the ramdisk retries.
        :raises errors.NodeBusy: the machine is being enrolled already.
        :raises errors.InvalidInput: Ironic already knows the machine.
        """
        source = source or "unknown"
        macs = machine_macs(data)
        bmcs = bmc_address.from_ramdisk(data)
        if not macs and not bmcs:
            raise errors.InvalidInput("Cannot enroll the machine: the data has neither a MAC nor a BMC address")
        uuid = uuid or str(uuidlib.uuid4())
        body = self.node_body(uuid, data)
        attributes = [("mac", m) for m in macs] + [("bmc_address", b) for b in bmcs]
        provisional = dict(body, provision_state="enroll", properties={})
        try:
            await self.store.enroll(
                uuid,
                utc(self.clock.seconds()),
                self.default.can_manage_boot,
                self._snapshot(provisional),
                attributes,
                source,
                self._limits,
                owner=owner,
                lease_until=lease_until,
            )
        except errors.InspectordError as e:
            self._refused(source, macs, bmcs, e)
            raise
        try:
            await self._check_ironic(macs, bmcs)
            node = await self._create(body)
        except defer.CancelledError:
            # Ironic may have created the node: the lease's next holder finds out.
            raise
        except Exception as e:
            await self.store.forget_enrollment(uuid, str(e))
            self._refused(source, macs, bmcs, e)
            raise
        record = await self.store.enrolled(uuid, self._snapshot(node))
        data["auto_discovered"] = True
        self.log.info(
            "Discovery: enrolled node {node} (driver {driver}, BMC {bmc}, MACs {macs}) for a machine at {source}",
            node=uuid,
            driver=body["driver"],
            bmc=body["driver_info"].get("ipmi_address") or "none",
            macs=", ".join(macs) or "none",
            source=source,
        )
        return record

    def _refused(self, source, macs, bmcs, error):
        self.log.warn(
            "Discovery: machine at {source} (MACs {macs}, BMC {bmc}) not enrolled: {reason}",
            source=source,
            macs=", ".join(macs) or "none",
            bmc=", ".join(bmcs) or "none",
            reason=str(error),
        )

    async def _check_ironic(self, macs, bmcs):
        """Refuse a machine Ironic knows: a port has one of its MACs, a node its BMC address."""
        try:
            ports = await defer.gatherResults(
                [defer.Deferred.fromCoroutine(self.ironic.find_port(mac)) for mac in macs], consumeErrors=True
            )
        except defer.FirstError as e:
            e.subFailure.raiseException()
        for mac, port in zip(macs, ports):
            if port is not None:
                raise errors.InvalidInput(
                    "Cannot enroll the machine: port {} with MAC {} already exists in Ironic (node {}); "
                    "introspect that node instead".format(port.get("uuid"), mac, port.get("node_uuid"))
                )
        if not bmcs:
            return
        wanted = {bmc_address.host(b) for b in bmcs}
        fields = self.default.ipmi_address_fields
        for node in await self.ironic.list_nodes("uuid,driver,driver_info"):
            shared = sorted(bmc_address.node_hosts(node, fields) & wanted)
            if shared:
                raise errors.InvalidInput(
                    "Cannot enroll the machine: Ironic node {} already has BMC address {}; "
                    "introspect that node instead".format(node.get("uuid"), shared[0])
                )

    async def _create(self, body):
        try:
            return await self.ironic.create_node(body)
        except errors.IronicError as e:
            if e.status != 409:
                raise
            # A retried POST whose first attempt went through: the node is ours.
            try:
                return await self.ironic.get_node(body["uuid"])
            except errors.IronicNotFound:
                raise e from None
