"""The introspection lifecycle: one async method per transition.

Every state change is a compare-and-set in the store, so the API, periodic
tasks and other inspectord instances sharing the database never apply the
same transition twice.  Nothing here keeps state another instance needs.

Here: start and boot, abort, the reapply entry, timeouts, leases and the
resumption of abandoned nodes, stop.  What happens to the ramdisk's data
is :mod:`inspectord.processing.pipeline`'s; the DHCP diagnosis of waiting
nodes :mod:`inspectord.diagnosis`'s; BMC addresses
:mod:`inspectord.bmc_address`'s.
"""

import copy
import datetime
import os
import uuid as uuidlib

from twisted.internet import defer, task

from inspectord import bmc_address, diagnosis, errors
from inspectord import secrets
from inspectord import state as st
from inspectord.logs import NodeLogFields, NodeLogger
from inspectord.metrics import NO_METRICS
from inspectord.nodes import PORT_FIELDS, check_provision_state, node_snapshot
from inspectord.nodes import port_map as _port_map
from inspectord.processing import data as ramdisk_data
from inspectord.processing import hooks as hooks_mod
from inspectord.processing.pipeline import Pipeline, requested_credentials
from inspectord.background import Background
from inspectord.timeutil import utc


def instance_owner(host):
    """A name for this process's leases: unique across instances and restarts."""
    return "{}:{}:{}".format(host[:40], os.getpid(), uuidlib.uuid4().hex[:8])


class _Hold:
    """This instance's hold of a node's lease, renewed until :meth:`stop`."""

    def __init__(self, introspection, uuid, state):
        self._introspection = introspection
        self.uuid = uuid
        self.state = st.State(state)

    def stop(self):
        self._introspection._unhold(self)


class Introspection:
    """Starts introspections, takes the ramdisk's data (processed by its
    :class:`~inspectord.processing.pipeline.Pipeline`), enforces timeouts and leases.

    :param store: :class:`inspectord.store.SQLStore`.
    :param ironic: :class:`inspectord.ironic.client.IronicClient`.
    :param config: the frozen :class:`inspectord.config.Config`.
    :param clock: ``IReactorTime``.
    :param io_pool: ``run(f, *args) -> Deferred`` for blocking host work (resolving BMC
        host names, writing ramdisk logs).
    :param pxe_filter: told whenever the set of nodes under introspection
        changes (``notify()``).
    :param verifier: checks new BMC credentials
        (:class:`inspectord.ipmi.CredentialsVerifier`); needed only with
        ``[processing]enable_setting_ipmi_credentials``.
    :param swift: where finished introspections' data goes with
        ``[processing]store_data=swift``
        (:class:`inspectord.store.swift.SwiftDataStore`).
    :param hooks: the processing hooks, already built (by the start-up
        check); None builds them from ``config``.
    :param metrics: :class:`inspectord.metrics.Metrics` counting starts,
        ends and failures.
    """

    # Adds the node's MACs and BMC addresses to every line naming a node.
    log = NodeLogger()

    def __init__(self, store, ironic, config, clock, io_pool=None, pxe_filter=None, reactor=None, verifier=None,
                 swift=None, metrics=None, owner=None, hooks=None):
        self.verifier = verifier
        self.swift = swift
        self.metrics = metrics or NO_METRICS
        # The mac and bmc_address fields of log lines about each node.
        self._log_fields = NodeLogFields()
        # New IPMI credentials reach the database sealed with a key held here only.
        self.sealer = secrets.Sealer()
        self.store = store
        self.ironic = ironic
        self.config = config
        self.clock = clock
        self._reactor = reactor or clock
        self._resolver = bmc_address.Resolver(io_pool)
        self._pxe_filter = pxe_filter
        # Built by the start-up check (inspectord.service.check), else here.
        self.hooks = hooks_mod.load(config) if hooks is None else list(hooks)
        # Ramdisk data, from the callback to the finish.
        self._pipeline = Pipeline(self, io_pool, self._log_fields)
        # Earliest time this instance may power on the next node.
        self._next_power_on = 0.0
        # Background work and requests in flight, for orderly shutdown and tests.
        self._work = Background(self.log)
        #: Who holds the leases this instance takes ([lifecycle]).
        self.owner = owner or instance_owner(config.default.host)
        lifecycle = config.lifecycle
        self._lease_lengths = {
            state: datetime.timedelta(seconds=getattr(lifecycle, state.value + "_lease"))
            for state in st.LEASED
        }
        # uuid -> _Hold: leases this instance renews; the renewal loop runs while any is held.
        self._held = {}
        self._renewal = None
        # uuid -> Deferred: starts waiting for their turn (introspection_delay).
        self._queued = {}
        self._stopping = False

    def now(self):
        return utc(self.clock.seconds())

    def node_log_fields(self, uuid):
        """The ``mac`` and ``bmc_address`` fields of log lines about ``uuid``, where known."""
        return self._log_fields.get(uuid)

    def background(self, coro, what, node):
        return self._work.start(coro, what, node=node)

    def _track(self, coro):
        """Run a request's work, counted as in flight until it ends; its Deferred."""
        return self._work.track(coro)

    def _check_running(self):
        if self._stopping:
            raise errors.Stopping("inspectord is stopping; retry in a moment")

    def wait_idle(self):
        """A Deferred that fires when no background work is in flight."""
        return self._work.idle()

    async def stop(self, grace=None):
        """Stop taking work, drain what is in flight, release the leases of the rest.

        Starts still waiting for their turn (``introspection_delay``) are
        released at once.  Ramdisk callbacks, Ironic calls and processing in
        flight get ``grace`` seconds (``[lifecycle]stop_grace``) to finish;
        then they are interrupted.  Every lease this instance still holds is
        then ended, so another instance, or this one restarted, resumes
        those nodes at its next lease scan instead of after the lease.
        """
        if grace is None:
            grace = self.config.lifecycle.stop_grace
        self._stopping = True
        # Waiting for an unreachable Ironic or BMC cannot end within any
        # grace: those waits end now, and their nodes resume elsewhere.
        if self.ironic is not None:
            self.ironic.stop_retrying()
        if self.verifier is not None:
            self.verifier.stop()
        queued = list(self._queued.values())
        if queued:
            self.log.info("Stopping: releasing {count} start(s) waiting for their turn", count=len(queued))
        for waiting in queued:
            waiting.cancel()
        while self._work:
            idle = self.wait_idle()
            idle.addTimeout(grace, self.clock)
            try:
                await idle
            except defer.TimeoutError:
                self.log.warn(
                    "Stopped with work in flight after {grace} s; its nodes are released to other instances",
                    grace=grace,
                )
                self._work.cancel_all()
                break
        if self._renewal is not None:
            self._renewal.stop()
            self._renewal = None
        self._held.clear()
        try:
            released = await self.store.release_leases(self.owner, self.now())
        except Exception:
            self.log.failure("Could not release the leases of {owner}; they end on their own", owner=self.owner)
            return
        if released:
            self.log.info("Released {count} lease(s): those nodes resume on any instance now", count=released)

    # -- leases -------------------------------------------------------------

    def lease_until(self, state):
        """When a lease on a node in ``state`` taken now ends."""
        return self.now() + self._lease_lengths[st.State(state)]

    def hold(self, uuid, state):
        """Renew the lease of ``uuid`` (in ``state``) until the hold is stopped."""
        hold = self._held.get(uuid)
        if hold is not None:
            hold.state = st.State(state)
            return hold
        hold = self._held[uuid] = _Hold(self, uuid, state)
        if self._renewal is None:
            period = min(self._lease_lengths.values()).total_seconds() / 3
            self._renewal = task.LoopingCall(self._renew)
            self._renewal.clock = self.clock
            self._renewal.start(period, now=False).addErrback(
                lambda f: self.log.failure("Lease renewal stopped", f)
            )
        return hold

    def _unhold(self, hold):
        if self._held.get(hold.uuid) is hold:
            del self._held[hold.uuid]
        if not self._held and self._renewal is not None:
            self._renewal.stop()
            self._renewal = None

    def _renew(self):
        # One reading of the clock: every lease in the same state ends at the
        # same moment, so the store renews them all with one statement.
        now = self.now()
        ends = {state: now + length for state, length in self._lease_lengths.items()}
        renewals = {}
        for hold in self._held.values():
            renewals.setdefault(ends[hold.state], []).append(hold.uuid)
        d = self.store.renew_leases(self.owner, renewals)
        d.addErrback(lambda f: self.log.failure("Renewing {count} lease(s) failed", f, count=len(self._held)))
        return d

    def filter_changed(self):
        if self._pxe_filter is not None:
            self._pxe_filter.notify()

    # -- start ------------------------------------------------------------

    async def start(self, node_id, manage_boot=None, new_ipmi_username=None, new_ipmi_password=None):
        """Start introspection of a node (UUID or name).

        Returns once the start is recorded; booting the node continues in
        the background.  With ``new_ipmi_*`` the ramdisk is asked to set
        those BMC credentials, which inspectord then verifies itself.
        """
        self._check_running()
        return await self._track(self._start(node_id, manage_boot, new_ipmi_username, new_ipmi_password))

    async def _start(self, node_id, manage_boot, new_ipmi_username, new_ipmi_password):
        config = self.config
        setting_credentials = new_ipmi_username is not None or new_ipmi_password is not None
        if setting_credentials and not config.processing.enable_setting_ipmi_credentials:
            raise errors.InvalidInput(
                "Setting IPMI credentials is disabled; enable it with "
                "[processing]enable_setting_ipmi_credentials"
            )
        if manage_boot is None:
            manage_boot = config.default.can_manage_boot
        elif manage_boot and not config.default.can_manage_boot:
            raise errors.InvalidInput(
                "Managed boot is requested, but this installation cannot manage boot "
                "([DEFAULT]can_manage_boot is false)"
            )
        try:
            node = await self.ironic.get_node(node_id)
        except errors.IronicNotFound:
            raise errors.NotFound("Node {} was not found in Ironic".format(node_id)) from None
        uuid = node["uuid"]
        options = {}
        if setting_credentials:
            options["ipmi_credentials"] = self.sealer.seal(
                requested_credentials(node, new_ipmi_username, new_ipmi_password)
            )
            # The BMC cannot be used yet: the operator powers the node on.
            manage_boot = False
        else:
            check_provision_state(node, config.processing.permit_active_introspection)
        if manage_boot:
            ok, reason = await self.ironic.validate_power(uuid)
            if not ok:
                raise errors.InvalidInput("Failed validation of power interface for node {}: {}".format(uuid, reason))
        port_map = _port_map(await self.ironic.list_ports(uuid, fields=PORT_FIELDS))
        attributes = [("mac", mac) for mac in port_map]
        attributes += [
            ("bmc_address", a)
            for a in await bmc_address.node_addresses(node, config.default.ipmi_address_fields, self._resolver)
        ]
        snapshot = node_snapshot(node)
        record = await self.store.start(
            uuid, self.now(), manage_boot, snapshot, port_map, attributes, options,
            owner=self.owner, lease_until=self.lease_until(st.State.starting),
        )
        hold = self.hold(uuid, st.State.starting)
        self._log_fields.remember(uuid, port_map, [a for kind, a in attributes if kind == "bmc_address"])
        self.metrics.introspection_started()
        self.log.info(
            "Node {node}: introspection started ({ports} port(s), manage_boot={manage_boot}, "
            "setting IPMI credentials: {setting})",
            node=uuid,
            ports=len(port_map),
            manage_boot=manage_boot,
            setting=setting_credentials,
        )
        self.filter_changed()
        self.background(self._boot(record, hold), "starting introspection of node " + uuid, node=uuid)
        return record

    async def _boot(self, record, hold):
        """Boot the node, then wait for the ramdisk, or process the data it already sent."""
        uuid = record.uuid
        try:
            if record.manage_boot and not record.data_pending:
                try:
                    waited = await self._wait_for_turn(uuid)
                except defer.CancelledError:
                    # Stopping: the start is released, another instance (or
                    # this one, restarted) powers the node on.
                    await self.store.release_leases(self.owner, self.now(), [uuid])
                    self.log.info("Node {node}: start released before power-on (stopping)", node=uuid)
                    return
                if waited:
                    record = await self.store.get_node(uuid)
                if not record.data_pending:
                    await self._power_on(record)
            record, rules = await self.store.started(
                uuid, self.now(), self.owner, self.lease_until(st.State.processing)
            )
            if rules is None:
                self.log.info("Node {node}: waiting for the ramdisk", node=uuid)
                return
            hold.state = st.State.processing
            self.log.info("Node {node}: processing the data its ramdisk sent while it was starting", node=uuid)
            await self._pipeline.process_stored(record, rules)
        except errors.StateChanged:
            self.log.info("Node {node}: changed by another request while starting", node=uuid)
        except errors.InspectordError as e:
            await self.fail(uuid, str(e), expected=st.State.starting, reason="boot")
        finally:
            hold.stop()

    async def _power_on(self, record):
        uuid = record.uuid
        try:
            await self.ironic.set_boot_device_pxe(uuid)
        except errors.IronicError as e:
            self.log.warn("Node {node}: failed to set boot device to PXE: {error}", node=uuid, error=str(e))
        try:
            await self.ironic.set_power_state(uuid, "rebooting")
        except errors.IronicError as e:
            if (await self.store.get_node(uuid)).data_pending:
                self.log.warn(
                    "Node {node}: power on failed, but its ramdisk already sent its data: {error}",
                    node=uuid, error=str(e),
                )
                return
            raise errors.ProcessingError("Failed to power on the node, check its power management: {}".format(e))

    async def _wait_for_turn(self, uuid):
        """Space power-ons by ``introspection_delay``; True if this start had to wait."""
        delay = self.config.default.introspection_delay
        if not delay:
            return False
        now = self.clock.seconds()
        slot = max(now, self._next_power_on)
        self._next_power_on = slot + delay
        if slot <= now:
            return False
        waiting = self._queued[uuid] = task.deferLater(self.clock, slot - now, lambda: None)
        try:
            await waiting
        finally:
            self._queued.pop(uuid, None)
        return True

    async def fail(self, uuid, message, expected=None, processed=None, reason="processing"):
        """End the introspection in error; ``reason`` is the class counted in metrics."""
        self.log.error("Node {node}: introspection failed: {error}", node=uuid, error=message, reason=reason)
        try:
            record = await self.store.transition(
                uuid, st.Event.error, self.now(), error=message, expected=expected, processed=processed
            )
        except (errors.StateChanged, errors.InvalidTransition) as e:
            self.log.warn("Node {node}: could not record the error: {reason}", node=uuid, reason=str(e))
            return None
        self.metrics.introspection_failed(reason)
        self._log_fields.forget(uuid)  # ended: no per-node memory kept for it
        self.filter_changed()
        return record

    # -- ramdisk data -----------------------------------------------------

    async def process(self, raw, source=None):
        """Handle data posted by the ramdisk; returns the response body.

        Data for a node still ``starting`` is stored and answered at once;
        the start processes it as soon as it ends.

        :param source: the client IP address of the ramdisk's request: what
            discovery (``node_not_found_hook=enroll``) rate-limits by.
        """
        self._check_running()
        try:
            return await self._track(self._pipeline.process(raw, source))
        except defer.CancelledError:
            raise errors.Stopping(
                "inspectord stopped while processing; the data is stored and will be processed again"
            ) from None

    async def get_data(self, uuid, processed):
        """Stored data of ``uuid`` (:meth:`inspectord.processing.pipeline.Pipeline.get_data`)."""
        return await self._pipeline.get_data(uuid, processed)

    # -- abort and reapply ---------------------------------------------------

    async def abort(self, uuid):
        """Stop a waiting introspection: power the node off, end in error."""
        record = await self.store.get_node(uuid)
        if record.state in (st.State.finished.value, st.State.error.value):
            raise errors.InvalidInput(
                "Introspection of node {} already ended ({}); nothing to abort".format(uuid, record.state)
            )
        if record.state != st.State.waiting.value:
            raise errors.NodeBusy("Node {} is {}; try to abort again later".format(uuid, record.state))
        self._check_running()
        try:
            record = await self.store.transition(
                uuid, st.Event.abort, self.now(), expected=st.State.waiting,
                lease_until=self.lease_until(st.State.aborting), owner=self.owner,
            )
        except errors.StateChanged:
            raise errors.NodeBusy("Node {} changed state while aborting; try again".format(uuid)) from None
        hold = self.hold(uuid, st.State.aborting)
        self.background(self._end_abort(record, hold), "aborting node " + uuid, node=uuid)

    async def _end_abort(self, record, hold):
        try:
            if record.manage_boot:
                try:
                    await self.ironic.set_power_state(record.uuid, "power off")
                except errors.IronicError as e:
                    self.log.warn("Node {node}: power off after abort failed: {error}", node=record.uuid, error=str(e))
            await self.store.transition(
                record.uuid, st.Event.abort_end, self.now(), error="Canceled by operator", expected=st.State.aborting
            )
        except errors.StateChanged as e:
            self.log.warn("Node {node}: changed while aborting: {reason}", node=record.uuid, reason=str(e))
            return
        finally:
            hold.stop()
        self.log.info("Node {node}: introspection aborted", node=record.uuid)
        self.metrics.introspection_failed("aborted")
        self.filter_changed()

    async def reapply(self, uuid, raw=None):
        """Process stored (or given) raw data again; no power actions."""
        self._check_running()
        record = await self.store.get_node(uuid)
        if record.state not in (st.State.finished.value, st.State.error.value):
            raise errors.NodeBusy("Node {} is {}; reapply once it is finished".format(uuid, record.state))
        if raw is None:
            try:
                raw = await self.get_data(uuid, False)
            except errors.NotFound:
                raise errors.InvalidInput(
                    "No unprocessed data is stored for node {} (set [processing]store_data=database or swift, "
                    "or post the data to reapply)".format(uuid)
                ) from None
        data = ramdisk_data.normalize(copy.deepcopy(raw))
        try:
            node = await self.ironic.get_node(uuid)
            ports = await self.ironic.list_ports(uuid, fields=PORT_FIELDS)
        except errors.IronicNotFound:
            raise errors.NotFound("Node {} was not found in Ironic".format(uuid)) from None
        try:
            record = await self.store.transition(
                uuid,
                st.Event.reapply,
                self.now(),
                expected=record.state,
                started_at=self.now(),
                node=node_snapshot(node),
                ports=_port_map(ports),
                raw=raw,
                lease_until=self.lease_until(st.State.reapplying),
                owner=self.owner,
            )
        except errors.StateChanged:
            raise errors.NodeBusy("Node {} is locked, please, try again later".format(uuid)) from None
        self.metrics.introspection_started()
        hold = self.hold(uuid, st.State.reapplying)
        self.background(self._reapply(record, data, hold), "reapplying node " + uuid, node=uuid)

    async def _reapply(self, record, data, hold):
        try:
            await self._pipeline.process_data(record, data, reapplying=True)
        finally:
            hold.stop()

    # -- periodic ---------------------------------------------------------

    async def check_timeouts(self):
        """Fail every introspection older than ``[DEFAULT]timeout``."""
        timeout = self.config.default.timeout
        if not timeout:
            return []
        threshold = self.now() - datetime.timedelta(seconds=timeout)
        failed = []
        for uuid in await self.store.timed_out(threshold):
            message = "Introspection timeout"
            try:
                why = diagnosis.describe(self.dhcp_status(await self.store.get_node(uuid)))
                if why:
                    message += ": " + why
                await self.store.transition(uuid, st.Event.timeout, self.now(), error=message)
            except (errors.StateChanged, errors.InvalidTransition):
                continue
            self.log.error("Node {node}: introspection timed out", node=uuid)
            self.metrics.introspection_failed("timeout")
            failed.append(uuid)
        if failed:
            self.filter_changed()
        return failed

    @property
    def records_dhcp(self):
        """Whether the PXE filter records DHCP requests (:func:`inspectord.diagnosis.recording`):
        without it, :meth:`dhcp_status` is None for every node and needs no ports."""
        return diagnosis.recording(self._pxe_filter)

    def dhcp_status(self, record):
        """What the PXE filter saw of the node's DHCP requests, or None
        (:func:`inspectord.diagnosis.dhcp_status`)."""
        return diagnosis.dhcp_status(record, diagnosis.reports(self._pxe_filter, record.ports))

    async def resume_abandoned(self):
        """Take over every node whose owner stopped renewing its lease; their UUIDs.

        Each is resumed where it was left: a start boots the node again (or
        processes the data its ramdisk already sent), an abort powers off
        and ends, processing and reapplying run again from the stored raw
        data, an enrollment is completed or undone.
        """
        if self._stopping:
            return []
        resumed = []
        for record in await self.store.expired_leases(self.now()):
            state = st.State(record.state)
            try:
                record = await self.store.claim(record, self.now(), self.lease_until(state), owner=self.owner)
            except errors.StateChanged:
                continue
            self.log.warn(
                "Node {node}: resuming {state} left by {owner}",
                node=record.uuid, state=state.value, owner=record_owner(record),
            )
            hold = self.hold(record.uuid, state)
            resumed.append(record.uuid)
            self.background(self._resume(record, hold), "resuming node " + record.uuid, node=record.uuid)
        return resumed

    async def _resume(self, record, hold):
        state = st.State(record.state)
        try:
            if state is st.State.starting:
                await self._boot(record, hold)
            elif state is st.State.aborting:
                await self._end_abort(record, hold)
            elif state is st.State.processing:
                await self._pipeline.process_stored(record)
            elif state is st.State.reapplying:
                await self._pipeline.process_stored(record, reapplying=True)
            elif state is st.State.enrolling:
                await self._pipeline.resume_enrollment(record)
        except errors.InspectordError as e:
            # Ironic unreachable, say: the lease ends and the next scan tries again.
            self.log.warn("Node {node}: resuming {state} failed, retried when the lease ends: {error}",
                          node=record.uuid, state=state.value, error=str(e))
        finally:
            hold.stop()

    async def lease_scan(self):
        """The periodic lease scan ([lifecycle]lease_check_period); never raises."""
        if self._stopping:
            return
        try:
            await self._track(self.resume_abandoned())
        except defer.CancelledError:
            self.log.info("Lease scan interrupted by the stop")
        except Exception:
            self.log.failure("Lease scan failed")

    async def periodic(self):
        """One pass of the periodic work; never raises."""
        if self._stopping:
            return
        try:
            await self._track(self.check_timeouts())
        except defer.CancelledError:
            self.log.info("Periodic introspection check interrupted by the stop")
        except Exception:
            self.log.failure("Periodic introspection check failed")


def record_owner(record):
    return record.lease_owner or "an unknown instance"
