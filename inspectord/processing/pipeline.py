"""The ramdisk's data, from its callback to the finished node.

:meth:`Pipeline.process` takes what the ramdisk posts: pre-processing
hooks, the lookup (by MACs and BMC addresses) that stores the raw data and
moves the node to processing in one transaction, discovery of machines no
node matches, then :meth:`Pipeline.process_data`'s processing hooks,
introspection rules and the update of the node in Ironic; the finish
verifies new BMC credentials, copies the data to Swift, powers the node
off, and records the end.  Reapplying and resuming run the same steps on
stored data (:meth:`Pipeline.process_stored`).

The lifecycle (:class:`inspectord.introspection.Introspection`) owns the
pipeline and its transitions: the pipeline ends a node in error, takes and
renews leases and starts background work through it.
"""

import copy
import dataclasses
import uuid as uuidlib

from twisted.internet import defer

from inspectord import bmc_address, errors, nodes
from inspectord import secrets
from inspectord import state as st
from inspectord.logs import NodeLogFields
from inspectord.processing import data as ramdisk_data
from inspectord.processing import discovery as discovery_mod
from inspectord.processing import hooks as hooks_mod
from inspectord.processing import ramdisk_logs
from inspectord.processing import rules as rules_mod
from inspectord.processing.update import apply as apply_update


def requested_credentials(node, username, password):
    """The BMC credentials the ramdisk is asked to set on ``node``: checked, defaults filled in."""
    from inspectord.ipmi import validate_new_credentials

    if node.get("provision_state") != "enroll":
        raise errors.InvalidInput(
            "Node {} is in provision state {!r}: IPMI credentials can only be set on a node "
            "in the enroll state".format(node["uuid"], node.get("provision_state"))
        )
    if username is None:
        username = (node.get("driver_info") or {}).get("ipmi_username")
    if not username:
        raise errors.InvalidInput(
            "new_ipmi_username is required: node {} has no driver_info.ipmi_username".format(node["uuid"])
        )
    if not password:
        raise errors.InvalidInput("new_ipmi_password is required to set IPMI credentials")
    try:
        validate_new_credentials(username, password)
    except ValueError as e:
        raise errors.InvalidInput(str(e)) from None
    return {"username": username, "password": password}


class Pipeline:
    """Processes ramdisk data for the lifecycle that owns it.

    :param life: the :class:`inspectord.introspection.Introspection` owning
        this pipeline.  Its collaborators (store, Ironic client, config,
        hooks, verifier, Swift, sealer, metrics) are read through it when
        used, so one replaced on the lifecycle is the one used here; its
        public transitions end nodes (``fail``), hold leases (``hold``,
        ``lease_until``), run background work (``background``) and tell the
        PXE filter (``filter_changed``).
    :param io_pool: ``run(f, *args) -> Deferred`` for writing ramdisk logs
        (None: they are not written).
    :param log_fields: the lifecycle's :class:`inspectord.logs.NodeLogFields`,
        told the MACs and BMC address of each node the ramdisk's data matches.
    """

    def __init__(self, life, io_pool=None, log_fields=None):
        self._life = life
        self._io_pool = io_pool
        self._log_fields = log_fields if log_fields is not None else NodeLogFields()
        self._discovery = None
        if life.config.processing.node_not_found_hook == "enroll":
            self._discovery = discovery_mod.Discovery(
                life.store, life.ironic, life.config.discovery, life.config.discovery_limits, life.config.default,
                life.clock, nodes.node_snapshot,
            )

    # The lifecycle's collaborators, as it has them now.
    log = property(lambda self: self._life.log)
    store = property(lambda self: self._life.store)
    ironic = property(lambda self: self._life.ironic)
    config = property(lambda self: self._life.config)
    hooks = property(lambda self: self._life.hooks)
    verifier = property(lambda self: self._life.verifier)
    swift = property(lambda self: self._life.swift)
    sealer = property(lambda self: self._life.sealer)
    metrics = property(lambda self: self._life.metrics)
    owner = property(lambda self: self._life.owner)

    async def process(self, raw, source):
        """The ramdisk posted ``raw`` (from ``source``, its IP address); the answer to send it.

        Called by :meth:`inspectord.introspection.Introspection.process`,
        which counts the work in flight and turns a stop into ``Stopping``.
        """
        data = ramdisk_data.normalize(raw)
        failures = []
        for hook in self.hooks:
            try:
                await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                failures.append("Preprocessing hook {}: {}".format(hook.name, e))
            except defer.CancelledError:
                raise
            except Exception:
                # Logged with its traceback; the client is told which hook, not how it broke.
                self.log.failure("Hook {hook} failed", hook=hook.name)
                failures.append("Preprocessing hook {}: could not use the ramdisk data".format(hook.name))
        macs = ramdisk_data.all_macs(data)
        bmcs = bmc_address.from_ramdisk(data)
        # One transaction: lookup, the raw data stored (nothing accepted is
        # lost), the move to processing with a lease, and the rules.
        match, record, rules = await self.store.accept(
            macs, bmcs, raw, self._life.now(), self._life.lease_until(st.State.processing), process=not failures,
            owner=self.owner,
        )
        if match is None:
            lookup = "Could not find a node for attributes {}".format(
                ", ".join(["mac " + m for m in macs] + ["bmc_address " + b for b in bmcs]) or "(none in the data)"
            )
            if failures:
                await self._store_logs(data, None)
                raise errors.InvalidInput(
                    "The following failures happened during running pre-processing hooks:\n"
                    + "\n".join(failures + ["Look up error: " + lookup])
                )
            if self._discovery is None:
                raise errors.NotFound(lookup)
            record, rules = await self._accept_discovered(raw, data, source)
        elif record is None:
            self._refuse(match.record)
        uuid = record.uuid
        self._log_fields.remember_record(record)
        if failures:
            message = "\n".join(failures)
            await self._life.fail(uuid, message, expected=record.state, reason="ramdisk")
            await self._store_logs(data, uuid)
            raise errors.ProcessingError(
                "The following failures happened during running pre-processing hooks:\n" + message
            )
        credentials = None
        if record.options.get("ipmi_credentials"):
            try:
                credentials = self.sealer.unseal(record.options["ipmi_credentials"])
            except secrets.SecretLost as e:
                await self._life.fail(uuid, str(e), expected=record.state)
                raise
        if record.state == st.State.starting.value:
            self.log.info("Node {node}: ramdisk data stored while starting; processed once the start ends", node=uuid)
            return self._answer(uuid, credentials)
        hold = self._life.hold(uuid, st.State.processing)
        try:
            processed = await self._process_node(record, data, rules)
        except BaseException:
            hold.stop()
            raise
        # Like ironic-inspector, answer the ramdisk before powering it off.
        finishing = self._life.background(self._finish(record, data, processed), "finishing node " + uuid, node=uuid)
        finishing.addBoth(lambda result: hold.stop() or result)
        return self._answer(uuid, credentials)

    @staticmethod
    def _answer(uuid, credentials):
        """The ramdisk's answer: the UUID, and the BMC credentials to set if asked."""
        response = {"uuid": uuid}
        if credentials:
            response.update(
                ipmi_setup_credentials=True,
                ipmi_username=credentials["username"],
                ipmi_password=credentials["password"],
            )
        return response

    async def _accept_discovered(self, raw, data, source):
        """Enroll a machine no node matched (discovery); ``(record, rules)``."""
        uuid = str(uuidlib.uuid4())
        hold = self._life.hold(uuid, st.State.enrolling)
        try:
            record = await self._discovery.enroll(
                data, source, uuid=uuid, owner=self.owner, lease_until=self._life.lease_until(st.State.enrolling)
            )
            self._life.filter_changed()
            try:
                record = await self.store.transition(
                    record.uuid,
                    st.Event.process,
                    self._life.now(),
                    expected=st.State.enrolling,
                    raw=raw,
                    lease_until=self._life.lease_until(st.State.processing),
                    owner=self.owner,
                )
            except errors.StateChanged:
                raise errors.NodeBusy("Node {} is already being processed".format(record.uuid)) from None
        finally:
            hold.stop()
        return record, None

    @staticmethod
    def _refuse(record):
        """Raise why ramdisk data for ``record`` (not waiting) is refused."""
        uuid = record.uuid
        if record.state in (st.State.processing.value, st.State.reapplying.value, st.State.enrolling.value):
            raise errors.NodeBusy("Node {} is already being processed".format(uuid))
        if record.state == st.State.starting.value:
            raise errors.NodeBusy("Node {} is still starting introspection; try again".format(uuid))
        raise errors.NotUnderIntrospection(
            "Node {} is not under introspection (state {}{})".format(
                uuid, record.state, ", error: " + record.error if record.error else ""
            )
        )

    async def _process_node(self, record, data, rules=None):
        """Run the hooks and rules and write the result to Ironic; errors end the node.

        Returns the processed data to store ([processing]store_data), or None.
        """
        uuid = record.uuid
        stage = "processing"
        try:
            if not record.node:
                record = await self._read_from_ironic(record)
            node = hooks_mod.NodeContext(record, self.config)
            for hook in self.hooks:
                stage = "processing hook " + hook.name
                await defer.maybeDeferred(hook.before_update, data, node)
            stage = "introspection rules"
            if rules is None:
                rules = await self.store.list_rules()
            applied = rules_mod.apply_all(rules, node, data)
            if applied:
                self.log.info("Node {node}: applied rule(s) {rules}", node=uuid, rules=", ".join(applied))
            await apply_update(self.ironic, uuid, node.update)
            if self.config.processing.store_data != "none":
                return {k: v for k, v in data.items() if k != "logs"}
            return None
        except errors.InspectordError as e:
            await self._store_logs(data, uuid)
            reason = "ironic" if isinstance(e, errors.IronicError) else "processing"
            await self._life.fail(uuid, str(e), expected=record.state, reason=reason)
            raise
        except defer.CancelledError:
            raise  # stopping: the lease lets another run take the node over
        except Exception:
            # Bad ramdisk data a hook did not expect: logged with its
            # traceback here; the node and the client get which step failed.
            self.log.failure("Node {node}: unexpected failure in {stage}", node=uuid, stage=stage)
            await self._store_logs(data, uuid)
            message = "Invalid ramdisk data: {} could not use it".format(stage)
            await self._life.fail(uuid, message, expected=record.state, reason="processing")
            raise errors.ProcessingError(message) from None

    async def _read_from_ironic(self, record):
        """``record`` with the node and its ports as Ironic has them now.

        For introspections inspectord did not start: adopted from
        ironic-inspector's database, which keeps no copy of the node.
        """
        try:
            node = await self.ironic.get_node(record.uuid)
            ports = await self.ironic.list_ports(record.uuid, fields=nodes.PORT_FIELDS)
        except errors.IronicNotFound:
            raise errors.NotFound("Node {} was not found in Ironic".format(record.uuid)) from None
        return dataclasses.replace(record, node=nodes.node_snapshot(node), ports=nodes.port_map(ports))

    async def _finish(self, record, data, processed=None, power_off=True, verify_credentials=True):
        """Verify credentials, power off, and finish (storing ``processed`` with it)."""
        uuid = record.uuid
        reason = "processing"
        try:
            if self.config.processing.always_store_ramdisk_logs:
                await self._store_logs(data, uuid)
            if verify_credentials and record.options.get("ipmi_credentials"):
                reason = "bmc_credentials"
                await self._verify_credentials(record, data)
            if self.swift is not None:
                await self._store_in_swift(uuid, processed)
            if power_off:
                reason = "power"
                await self._power_off(record)
            reason = "processing"
            await self.store.transition(
                uuid,
                st.Event.finish,
                self._life.now(),
                expected=record.state,
                processed=processed,
                delete_data=self.config.processing.store_data != "database",
            )
        except errors.StateChanged as e:
            self.log.warn("Node {node}: changed while finishing: {reason}", node=uuid, reason=str(e))
            return
        except errors.InspectordError as e:
            await self._life.fail(uuid, str(e), expected=record.state, processed=processed, reason=reason)
            return
        except defer.CancelledError:
            raise  # stopping: the lease lets another run take the node over
        except Exception as e:
            self.log.failure("Node {node}: unexpected failure while finishing", node=uuid)
            await self._life.fail(
                uuid,
                "Unexpected exception {} while finishing: {}".format(type(e).__name__, e),
                expected=record.state,
                processed=processed,
                reason="internal",
            )
            return
        self.log.info("Node {node}: introspection finished", node=uuid)
        self._log_fields.forget(uuid)  # ended: no per-node memory kept for it
        self.metrics.introspection_finished()
        self._life.filter_changed()

    async def _store_in_swift(self, uuid, processed):
        """Copy the node's data to Swift; the finish transition then drops the database copy."""
        raw = await self.store.get_data(uuid, False)
        await self.swift.save(uuid, raw, False)
        await self.swift.save(uuid, processed, True)

    async def get_data(self, uuid, processed):
        """Stored data of ``uuid``: the database copy (introspection running or
        failed), else Swift's (finished, with store_data=swift).

        :raises errors.NotFound: nothing stored.
        """
        try:
            return await self.store.get_data(uuid, processed)
        except errors.NotFound:
            if self.swift is None:
                raise
        return await self.swift.get(uuid, processed)

    async def _store_logs(self, data, uuid):
        if self._io_pool is None:
            return
        await self._io_pool.run(ramdisk_logs.thd_store, self.config.processing, data, uuid, self._life.now())

    async def _verify_credentials(self, record, data):
        """Log in to the BMC with the credentials the ramdisk set; record them in Ironic."""
        credentials = self.sealer.unseal(record.options["ipmi_credentials"])
        info = record.node.get("driver_info") or {}
        address = info.get("ipmi_address") or (data.get("ipmi_address") or data.get("ipmi_v6address"))
        if not address:
            raise errors.ProcessingError(
                "Cannot verify the new IPMI credentials: neither driver_info.ipmi_address nor the ramdisk "
                "gives a BMC address"
            )
        try:
            port = int(info.get("ipmi_port") or 623)
        except (TypeError, ValueError):
            raise errors.ProcessingError(
                "Invalid driver_info.ipmi_port {!r}: expected a UDP port number".format(info.get("ipmi_port"))
            ) from None
        if self.verifier is None:
            raise errors.ProcessingError("Setting IPMI credentials needs pyghmi, which is not available")
        await self.verifier.verify(address, credentials["username"], credentials["password"], port=port)
        patch = [
            {"op": "add", "path": "/driver_info/ipmi_username", "value": credentials["username"]},
            {"op": "add", "path": "/driver_info/ipmi_password", "value": credentials["password"]},
        ]
        if not info.get("ipmi_address"):
            patch.append({"op": "add", "path": "/driver_info/ipmi_address", "value": address})
        await self.ironic.patch_node(record.uuid, patch)
        self.log.info("Node {node}: new IPMI credentials verified on {address}", node=record.uuid, address=address)

    async def _power_off(self, record):
        manages_power = record.manage_boot or bool(record.options.get("ipmi_credentials"))
        if not manages_power or not self.config.processing.power_off:
            return
        if record.provision_state in nodes.ACTIVE_PROVISION_STATES:
            return
        try:
            await self.ironic.set_power_state(record.uuid, "power off")
        except errors.IronicError as e:
            if record.provision_state == "enroll":
                self.log.info("Node {node}: power off failed in enroll state, ignored: {error}", node=record.uuid, error=str(e))
                return
            raise errors.ProcessingError(
                "Failed to power off node {}, check its power management configuration: {}".format(record.uuid, e)
            ) from None

    async def process_data(self, record, data, rules=None, reapplying=False):
        """Pre-processing hooks, processing, finish; every failure ends the node."""
        for hook in self.hooks:
            try:
                await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                prefix = "Pre-processing failures detected reapplying: " if reapplying else ""
                await self._life.fail(record.uuid, prefix + str(e), expected=record.state, reason="ramdisk")
                return
        try:
            processed = await self._process_node(record, data, rules)
        except errors.InspectordError:
            return
        if reapplying:
            await self._finish(record, data, processed, power_off=False, verify_credentials=False)
        else:
            await self._finish(record, data, processed)

    async def process_stored(self, record, rules=None, reapplying=False, extra=None):
        """Process the raw data stored for ``record`` (leased to this instance)."""
        try:
            raw = await self.store.get_data(record.uuid, False)
        except errors.NotFound:
            await self._life.fail(
                record.uuid,
                "Processing was interrupted and no ramdisk data is stored to process again",
                expected=record.state,
            )
            return
        data = ramdisk_data.normalize(copy.deepcopy(raw))
        data.update(extra or {})
        await self.process_data(record, data, rules, reapplying=reapplying)

    async def resume_enrollment(self, record):
        """Complete an enrollment whose owner died, or undo it.

        The ramdisk's data is stored with the move to processing, after
        Ironic created the node: without it, the enrollment was interrupted
        around ``POST /v1/nodes``.  The node Ironic may have created then is
        deleted and the record dropped, so the machine is discovered afresh
        when its ramdisk calls back again.
        """
        uuid = record.uuid
        try:
            node = await self.ironic.get_node(uuid)
        except errors.IronicNotFound:
            node = None
        if node is not None:
            if not (node.get("extra") or {}).get("auto_discovered") or node.get("provision_state") != "enroll":
                # Not the empty node discovery creates: someone uses it; keep it.
                record = await self.store.enrolled(uuid, nodes.node_snapshot(node))
                await self._life.fail(uuid, "Discovery was interrupted; the node exists in Ironic but was not "
                                       "processed: introspect it", expected=st.State.enrolling)
                return
            await self.ironic.delete_node(uuid)
            reason = "abandoned: the instance enrolling it stopped; the node it created in Ironic was deleted"
        else:
            reason = "abandoned: the instance enrolling it stopped before Ironic created the node"
        await self.store.forget_enrollment(uuid, reason)
        self.log.warn("Discovery: node {node} {reason}; the machine can be discovered again", node=uuid, reason=reason)
        self._life.filter_changed()
