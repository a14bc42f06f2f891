"""The introspection lifecycle: one async method per transition.

Every state change is a compare-and-set in the store, so the API, periodic
tasks and other inspectord instances sharing the database never apply the
same transition twice.  Nothing here keeps state another instance needs.
"""

import copy
import dataclasses
import datetime
import ipaddress
import os
import socket
import urllib.parse
import uuid as uuidlib

from twisted.internet import defer, task

from inspectord import errors
from inspectord import secrets
from inspectord import state as st
from inspectord.logs import NodeLogger
from inspectord.metrics import NO_METRICS
from inspectord.processing import data as ramdisk_data
from inspectord.processing import discovery as discovery_mod
from inspectord.processing import hooks as hooks_mod
from inspectord.processing import ramdisk_logs
from inspectord.processing import rules as rules_mod
from inspectord.processing.update import apply as apply_update
from inspectord.background import Background
from inspectord.timeutil import utc

VALID_PROVISION_STATES = ("enroll", "manageable", "inspecting", "inspect wait", "inspect failed")
ACTIVE_PROVISION_STATES = ("active", "rescue")
_SNAPSHOT_SKIP = frozenset(
    {"links", "ports", "portgroups", "states", "volume", "instance_info", "driver_internal_info"}
)
# driver_info fields that must never be recorded.
_SECRET_MARKERS = ("password", "secret", "token", "key", "credential")


def _sanitize_driver_info(info):
    return {k: v for k, v in (info or {}).items() if not any(m in k.lower() for m in _SECRET_MARKERS)}


def node_snapshot(node):
    """What inspectord keeps of an Ironic node: everything but secrets and links."""
    snapshot = {k: v for k, v in node.items() if k not in _SNAPSHOT_SKIP}
    snapshot["driver_info"] = _sanitize_driver_info(node.get("driver_info"))
    snapshot["properties"] = node.get("properties") or {}
    return snapshot


# Port fields processing hooks compare with (local_link_connection, physnet_cidr_map).
PORT_FIELDS = "uuid,address,pxe_enabled,local_link_connection,physical_network"


def _port_map(ports):
    result = {}
    for p in ports:
        if not p.get("address"):
            continue
        port = {"uuid": p["uuid"], "pxe_enabled": p.get("pxe_enabled", True)}
        port.update({k: p[k] for k in ("local_link_connection", "physical_network") if p.get(k)})
        result[p["address"].lower()] = port
    return result


def _looks_like_ip(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def describe_dhcp(status):
    """An operator's sentence from :meth:`Introspection.dhcp_status`."""
    if status is None:
        return None
    if not status["seen"]:
        return "no DHCP request was seen from {}: the node probably never PXE-booted".format(
            ", ".join(status["macs"]) or "its MACs (it has no port)"
        )
    if not status["allowed_by_filter"]:
        return "its last DHCP request ({} from {} at {}) was blocked by the PXE filter".format(
            status["dhcp_message"], status["mac"], status["last_dhcp_request"]
        )
    return "it was answered DHCP ({} from {} at {}) but the ramdisk never called back".format(
        status["dhcp_message"], status["mac"], status["last_dhcp_request"]
    )


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
    """Starts introspections, processes ramdisk data, enforces timeouts.

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
    :param metrics: :class:`inspectord.metrics.Metrics` counting starts,
        ends and failures.
    """

    # Adds the node's MACs and BMC addresses to every line naming a node.
    log = NodeLogger()

    def __init__(self, store, ironic, config, clock, io_pool=None, pxe_filter=None, reactor=None, verifier=None,
                 swift=None, metrics=None, owner=None):
        self.verifier = verifier
        self.swift = swift
        self.metrics = metrics or NO_METRICS
        # uuid -> {"mac": ..., "bmc_address": ...} for log lines (see node_log_fields).
        self._log_fields = {}
        # New IPMI credentials reach the database sealed with a key held here only.
        self.sealer = secrets.Sealer()
        self.store = store
        self.ironic = ironic
        self.config = config
        self.clock = clock
        self._reactor = reactor or clock
        self._io_pool = io_pool
        self._pxe_filter = pxe_filter
        self.hooks = hooks_mod.load(config)
        self._discovery = None
        if config.processing.node_not_found_hook == "enroll":
            self._discovery = discovery_mod.Discovery(store, ironic, config, clock, node_snapshot)
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
        return self._log_fields.get(uuid, {})

    def _remember_log_fields(self, uuid, macs=(), bmc_addresses=()):
        fields = {}
        if macs:
            fields["mac"] = ",".join(sorted(macs))
        if bmc_addresses:
            fields["bmc_address"] = ",".join(sorted(bmc_addresses))
        if len(self._log_fields) >= 10_000:
            self._log_fields.clear()
        self._log_fields[uuid] = fields

    def _record_log_fields(self, record):
        info = record.node.get("driver_info") or {}
        bmc = [info["ipmi_address"]] if isinstance(info.get("ipmi_address"), str) else []
        if record.uuid not in self._log_fields:
            self._remember_log_fields(record.uuid, record.ports, bmc)

    def _background(self, coro, what, node):
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

    def _hold(self, uuid, state):
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
        renewals = {}
        for hold in self._held.values():
            renewals.setdefault(self.lease_until(hold.state), []).append(hold.uuid)
        d = self.store.renew_leases(self.owner, renewals)
        d.addErrback(lambda f: self.log.failure("Renewing {count} lease(s) failed", f, count=len(self._held)))
        return d

    def _filter_changed(self):
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
                self._new_credentials(node, new_ipmi_username, new_ipmi_password)
            )
            # The BMC cannot be used yet: the operator powers the node on.
            manage_boot = False
        else:
            self._check_provision_state(node)
        if manage_boot:
            ok, reason = await self.ironic.validate_power(uuid)
            if not ok:
                raise errors.InvalidInput("Failed validation of power interface for node {}: {}".format(uuid, reason))
        port_map = _port_map(await self.ironic.list_ports(uuid, fields=PORT_FIELDS))
        attributes = [("mac", mac) for mac in port_map]
        attributes += [("bmc_address", a) for a in await self._bmc_addresses(node)]
        snapshot = node_snapshot(node)
        record = await self.store.start(
            uuid, self.now(), manage_boot, snapshot, port_map, attributes, options,
            owner=self.owner, lease_until=self.lease_until(st.State.starting),
        )
        hold = self._hold(uuid, st.State.starting)
        self._remember_log_fields(uuid, port_map, [a for kind, a in attributes if kind == "bmc_address"])
        self.metrics.introspection_started()
        self.log.info(
            "Node {node}: introspection started ({ports} port(s), manage_boot={manage_boot}, "
            "setting IPMI credentials: {setting})",
            node=uuid,
            ports=len(port_map),
            manage_boot=manage_boot,
            setting=setting_credentials,
        )
        self._filter_changed()
        self._background(self._boot(record, hold), "starting introspection of node " + uuid, node=uuid)
        return record

    def _new_credentials(self, node, username, password):
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

    def _check_provision_state(self, node):
        state = node.get("provision_state")
        valid = VALID_PROVISION_STATES
        if self.config.processing.permit_active_introspection:
            valid = valid + ACTIVE_PROVISION_STATES
        if state not in valid:
            raise errors.InvalidInput(
                'Invalid provision state for introspection: "{}", valid states are "{}"'.format(state, '", "'.join(valid))
            )

    async def _bmc_addresses(self, node):
        info = node.get("driver_info") or {}
        driver = node.get("driver") or ""
        fields = ["ipmi_address"] + list(self.config.default.ipmi_address_fields)
        fields += ["{}_address".format(driver.replace("-", "_"))]
        found = []
        for field in fields:
            value = info.get(field)
            if not value or not isinstance(value, str):
                continue
            host = urllib.parse.urlsplit(value).hostname if "://" in value else value.strip("[]")
            if not host:
                continue
            if _looks_like_ip(host):
                found.append(ramdisk_data.canonical_address(host))
            else:
                found.extend(await self._resolve(host))
        return sorted(set(found))

    async def _resolve(self, host):
        if self._io_pool is None:
            return []
        try:
            infos = await self._io_pool.run(socket.getaddrinfo, host, None)
        except OSError as e:
            self.log.warn("Cannot resolve BMC address {host}: {error}", host=host, error=str(e))
            return []
        return sorted({ramdisk_data.canonical_address(info[4][0].split("%")[0]) for info in infos})

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
            await self._process_stored(record, rules)
        except errors.StateChanged:
            self.log.info("Node {node}: changed by another request while starting", node=uuid)
        except errors.InspectordError as e:
            await self._fail(uuid, str(e), expected=st.State.starting, reason="boot")
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

    async def _fail(self, uuid, message, expected=None, processed=None, reason="processing"):
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
        self._log_fields.pop(uuid, None)  # ended: no per-node memory kept for it
        self._filter_changed()
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
            return await self._track(self._process(raw, source))
        except defer.CancelledError:
            raise errors.Stopping(
                "inspectord stopped while processing; the data is stored and will be processed again"
            ) from None

    async def _process(self, raw, source):
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
        bmcs = ramdisk_data.bmc_addresses(data)
        # One transaction: lookup, the raw data stored (nothing accepted is
        # lost), the move to processing with a lease, and the rules.
        match, record, rules = await self.store.accept(
            macs, bmcs, raw, self.now(), self.lease_until(st.State.processing), process=not failures,
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
        self._record_log_fields(record)
        if failures:
            message = "\n".join(failures)
            await self._fail(uuid, message, expected=record.state, reason="ramdisk")
            await self._store_logs(data, uuid)
            raise errors.ProcessingError(
                "The following failures happened during running pre-processing hooks:\n" + message
            )
        credentials = None
        if record.options.get("ipmi_credentials"):
            try:
                credentials = self.sealer.unseal(record.options["ipmi_credentials"])
            except secrets.SecretLost as e:
                await self._fail(uuid, str(e), expected=record.state)
                raise
        if record.state == st.State.starting.value:
            self.log.info("Node {node}: ramdisk data stored while starting; processed once the start ends", node=uuid)
            return self._answer(uuid, credentials)
        hold = self._hold(uuid, st.State.processing)
        try:
            processed = await self._process_node(record, data, rules)
        except BaseException:
            hold.stop()
            raise
        # Like ironic-inspector, answer the ramdisk before powering it off.
        finishing = self._background(self._finish(record, data, processed), "finishing node " + uuid, node=uuid)
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
        hold = self._hold(uuid, st.State.enrolling)
        try:
            record = await self._discovery.enroll(
                data, source, uuid=uuid, owner=self.owner, lease_until=self.lease_until(st.State.enrolling)
            )
            self._filter_changed()
            try:
                record = await self.store.transition(
                    record.uuid,
                    st.Event.process,
                    self.now(),
                    expected=st.State.enrolling,
                    raw=raw,
                    lease_until=self.lease_until(st.State.processing),
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
            await self._fail(uuid, str(e), expected=record.state, reason=reason)
            raise
        except defer.CancelledError:
            raise  # stopping: the lease lets another run take the node over
        except Exception:
            # Bad ramdisk data a hook did not expect: logged with its
            # traceback here; the node and the client get which step failed.
            self.log.failure("Node {node}: unexpected failure in {stage}", node=uuid, stage=stage)
            await self._store_logs(data, uuid)
            message = "Invalid ramdisk data: {} could not use it".format(stage)
            await self._fail(uuid, message, expected=record.state, reason="processing")
            raise errors.ProcessingError(message) from None

    async def _read_from_ironic(self, record):
        """``record`` with the node and its ports as Ironic has them now.

        For introspections inspectord did not start: adopted from
        ironic-inspector's database, which keeps no copy of the node.
        """
        try:
            node = await self.ironic.get_node(record.uuid)
            ports = await self.ironic.list_ports(record.uuid, fields=PORT_FIELDS)
        except errors.IronicNotFound:
            raise errors.NotFound("Node {} was not found in Ironic".format(record.uuid)) from None
        return dataclasses.replace(record, node=node_snapshot(node), ports=_port_map(ports))

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
                self.now(),
                expected=record.state,
                processed=processed,
                delete_data=self.config.processing.store_data != "database",
            )
        except errors.StateChanged as e:
            self.log.warn("Node {node}: changed while finishing: {reason}", node=uuid, reason=str(e))
            return
        except errors.InspectordError as e:
            await self._fail(uuid, str(e), expected=record.state, processed=processed, reason=reason)
            return
        except defer.CancelledError:
            raise  # stopping: the lease lets another run take the node over
        except Exception as e:
            self.log.failure("Node {node}: unexpected failure while finishing", node=uuid)
            await self._fail(
                uuid,
                "Unexpected exception {} while finishing: {}".format(type(e).__name__, e),
                expected=record.state,
                processed=processed,
                reason="internal",
            )
            return
        self.log.info("Node {node}: introspection finished", node=uuid)
        self._log_fields.pop(uuid, None)  # ended: no per-node memory kept for it
        self.metrics.introspection_finished()
        self._filter_changed()

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
        await self._io_pool.run(ramdisk_logs.thd_store, self.config.processing, data, uuid, self.now())

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
        if record.provision_state in ACTIVE_PROVISION_STATES:
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
        hold = self._hold(uuid, st.State.aborting)
        self._background(self._end_abort(record, hold), "aborting node " + uuid, node=uuid)

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
        self._filter_changed()

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
        hold = self._hold(uuid, st.State.reapplying)
        self._background(self._reapply(record, data, hold), "reapplying node " + uuid, node=uuid)

    async def _reapply(self, record, data, hold):
        try:
            await self._process_data(record, data, reapplying=True)
        finally:
            hold.stop()

    async def _process_data(self, record, data, rules=None, reapplying=False):
        """Pre-processing hooks, processing, finish; every failure ends the node."""
        for hook in self.hooks:
            try:
                await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                prefix = "Pre-processing failures detected reapplying: " if reapplying else ""
                await self._fail(record.uuid, prefix + str(e), expected=record.state, reason="ramdisk")
                return
        try:
            processed = await self._process_node(record, data, rules)
        except errors.InspectordError:
            return
        if reapplying:
            await self._finish(record, data, processed, power_off=False, verify_credentials=False)
        else:
            await self._finish(record, data, processed)

    async def _process_stored(self, record, rules=None, reapplying=False, extra=None):
        """Process the raw data stored for ``record`` (leased to this instance)."""
        try:
            raw = await self.store.get_data(record.uuid, False)
        except errors.NotFound:
            await self._fail(
                record.uuid,
                "Processing was interrupted and no ramdisk data is stored to process again",
                expected=record.state,
            )
            return
        data = ramdisk_data.normalize(copy.deepcopy(raw))
        data.update(extra or {})
        await self._process_data(record, data, rules, reapplying=reapplying)

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
                diagnosis = describe_dhcp(self.dhcp_status(await self.store.get_node(uuid)))
                if diagnosis:
                    message += ": " + diagnosis
                await self.store.transition(uuid, st.Event.timeout, self.now(), error=message)
            except (errors.StateChanged, errors.InvalidTransition):
                continue
            self.log.error("Node {node}: introspection timed out", node=uuid)
            self.metrics.introspection_failed("timeout")
            failed.append(uuid)
        if failed:
            self._filter_changed()
        return failed

    def dhcp_status(self, record):
        """What the PXE filter saw of the node's DHCP requests, or None.

        None when nothing records DHCP requests (no sniffer, not the builtin
        server); ``{"seen": False, "macs": [...]}`` when nothing came from
        the node's MACs; otherwise the latest request.
        """
        pxe_filter = self._pxe_filter
        if pxe_filter is None or getattr(pxe_filter, "seen", None) is None:
            return None
        macs = sorted(record.ports)
        latest, latest_mac = None, None
        for mac in macs:
            seen = pxe_filter.dhcp_seen(mac)
            if seen and (latest is None or seen["last_dhcp_request"] > latest["last_dhcp_request"]):
                latest, latest_mac = seen, mac
        if latest is None:
            return {"seen": False, "macs": macs}
        return {
            "seen": True,
            "mac": latest_mac,
            "last_dhcp_request": utc(latest["last_dhcp_request"]).isoformat(),
            "dhcp_message": latest.get("dhcp_message"),
            "allowed_by_filter": latest.get("allowed_by_filter"),
        }

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
            hold = self._hold(record.uuid, state)
            resumed.append(record.uuid)
            self._background(self._resume(record, hold), "resuming node " + record.uuid, node=record.uuid)
        return resumed

    async def _resume(self, record, hold):
        state = st.State(record.state)
        try:
            if state is st.State.starting:
                await self._boot(record, hold)
            elif state is st.State.aborting:
                await self._end_abort(record, hold)
            elif state is st.State.processing:
                await self._process_stored(record)
            elif state is st.State.reapplying:
                await self._process_stored(record, reapplying=True)
            elif state is st.State.enrolling:
                await self._resume_enrollment(record, hold)
        except errors.InspectordError as e:
            # Ironic unreachable, say: the lease ends and the next scan tries again.
            self.log.warn("Node {node}: resuming {state} failed, retried when the lease ends: {error}",
                          node=record.uuid, state=state.value, error=str(e))
        finally:
            hold.stop()

    async def _resume_enrollment(self, record, hold):
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
                record = await self.store.enrolled(uuid, node_snapshot(node))
                await self._fail(uuid, "Discovery was interrupted; the node exists in Ironic but was not "
                                 "processed: introspect it", expected=st.State.enrolling)
                return
            await self.ironic.delete_node(uuid)
            reason = "abandoned: the instance enrolling it stopped; the node it created in Ironic was deleted"
        else:
            reason = "abandoned: the instance enrolling it stopped before Ironic created the node"
        await self.store.forget_enrollment(uuid, reason)
        self.log.warn("Discovery: node {node} {reason}; the machine can be discovered again", node=uuid, reason=reason)
        self._filter_changed()

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
