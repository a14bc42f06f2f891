"""The introspection lifecycle: one async method per transition.

Every state change is a compare-and-set in the store, so the API, periodic
tasks and other inspectord instances sharing the database never apply the
same transition twice.  Nothing here keeps state another instance needs.
"""

import copy
import datetime
import ipaddress
import socket
import urllib.parse

from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from inspectord import errors
from inspectord import secrets
from inspectord import state as st
from inspectord.processing import data as ramdisk_data
from inspectord.processing import discovery as discovery_mod
from inspectord.processing import hooks as hooks_mod
from inspectord.processing import ramdisk_logs
from inspectord.processing import rules as rules_mod
from inspectord.processing.update import apply as apply_update
from inspectord.store.sql import utc

VALID_PROVISION_STATES = ("enroll", "manageable", "inspecting", "inspect wait", "inspect failed")
ACTIVE_PROVISION_STATES = ("active", "rescue")
# How long an instance holds a node it is processing before another
# instance may take the work over from the stored raw data.
PROCESSING_LEASE = datetime.timedelta(seconds=300)
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


class _Lease:
    def __init__(self, call):
        self._call = call

    def stop(self):
        if self._call.running:
            self._call.stop()


class Introspection:
    """Starts introspections, processes ramdisk data, enforces timeouts.

    :param store: :class:`inspectord.store.SQLStore`.
    :param ironic: :class:`inspectord.ironic.client.IronicClient`.
    :param config: the frozen :class:`inspectord.config.Config`.
    :param clock: ``IReactorTime``.
    :param io_pool: thread pool for blocking host work (resolving BMC
        host names, writing ramdisk logs).
    :param pxe_filter: told whenever the set of nodes under introspection
        changes (``notify()``).
    :param verifier: checks new BMC credentials
        (:class:`inspectord.ipmi.CredentialsVerifier`); needed only with
        ``[processing]enable_setting_ipmi_credentials``.
    """

    log = Logger()

    def __init__(self, store, ironic, config, clock, io_pool=None, pxe_filter=None, reactor=None, verifier=None):
        self.verifier = verifier
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
        # Background work (Deferreds) in flight, for orderly shutdown and tests.
        self._pending = set()

    def now(self):
        return utc(self.clock.seconds())

    def _background(self, coro, what):
        d = defer.Deferred.fromCoroutine(coro)
        self._pending.add(d)

        def done(result):
            self._pending.discard(d)
            return result

        def failed(f):
            if f.check(defer.CancelledError):
                self.log.info("Interrupted while {what}", what=what)
            else:
                self.log.failure("Unexpected failure while {what}", f, what=what)

        d.addBoth(done)
        d.addErrback(failed)
        return d

    def wait_idle(self):
        """A Deferred that fires when no background work is in flight."""
        return defer.DeferredList(list(self._pending), consumeErrors=True)

    async def stop(self, grace=10.0):
        """Let background work finish for ``grace`` seconds, then interrupt it.

        Interrupted nodes keep their processing lease; once it ends, the
        periodic scan of this or another instance processes them again from
        the stored raw data.
        """
        if not self._pending:
            return
        idle = self.wait_idle()
        idle.addTimeout(grace, self.clock)
        try:
            await idle
        except defer.TimeoutError:
            self.log.warn("Stopped with work in flight; interrupted nodes resume when their lease ends")

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
        config = self.config
        setting_credentials = new_ipmi_username is not None or new_ipmi_password is not None
        if setting_credentials and not config.processing.enable_setting_ipmi_credentials:
            raise errors.BadRequest(
                "Setting IPMI credentials is disabled; enable it with "
                "[processing]enable_setting_ipmi_credentials"
            )
        if manage_boot is None:
            manage_boot = config.default.can_manage_boot
        elif manage_boot and not config.default.can_manage_boot:
            raise errors.BadRequest(
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
                raise errors.BadRequest("Failed validation of power interface for node {}: {}".format(uuid, reason))
        port_map = _port_map(await self.ironic.list_ports(uuid, fields=PORT_FIELDS))
        attributes = [("mac", mac) for mac in port_map]
        attributes += [("bmc_address", a) for a in await self._bmc_addresses(node)]
        snapshot = node_snapshot(node)
        record = await self.store.start(uuid, self.now(), manage_boot, snapshot, port_map, attributes, options)
        self.log.info(
            "Node {node}: introspection started ({ports} port(s), manage_boot={manage_boot}, "
            "setting IPMI credentials: {setting})",
            node=uuid,
            ports=len(port_map),
            manage_boot=manage_boot,
            setting=setting_credentials,
        )
        self._filter_changed()
        self._background(self._boot(record), "starting introspection of node " + uuid)
        return record

    def _new_credentials(self, node, username, password):
        from inspectord.ipmi import validate_new_credentials

        if node.get("provision_state") != "enroll":
            raise errors.BadRequest(
                "Node {} is in provision state {!r}: IPMI credentials can only be set on a node "
                "in the enroll state".format(node["uuid"], node.get("provision_state"))
            )
        if username is None:
            username = (node.get("driver_info") or {}).get("ipmi_username")
        if not username:
            raise errors.BadRequest(
                "new_ipmi_username is required: node {} has no driver_info.ipmi_username".format(node["uuid"])
            )
        if not password:
            raise errors.BadRequest("new_ipmi_password is required to set IPMI credentials")
        try:
            validate_new_credentials(username, password)
        except ValueError as e:
            raise errors.BadRequest(str(e)) from None
        return {"username": username, "password": password}

    def _check_provision_state(self, node):
        state = node.get("provision_state")
        valid = VALID_PROVISION_STATES
        if self.config.processing.permit_active_introspection:
            valid = valid + ACTIVE_PROVISION_STATES
        if state not in valid:
            raise errors.BadRequest(
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
            infos = await deferToThreadPool(self._reactor, self._io_pool, socket.getaddrinfo, host, None)
        except OSError as e:
            self.log.warn("Cannot resolve BMC address {host}: {error}", host=host, error=str(e))
            return []
        return sorted({ramdisk_data.canonical_address(info[4][0].split("%")[0]) for info in infos})

    async def _boot(self, record):
        uuid = record.uuid
        try:
            if record.manage_boot:
                await self._wait_for_turn()
                try:
                    await self.ironic.set_boot_device_pxe(uuid)
                except errors.IronicError as e:
                    self.log.warn("Node {node}: failed to set boot device to PXE: {error}", node=uuid, error=str(e))
                try:
                    await self.ironic.set_power_state(uuid, "rebooting")
                except errors.IronicError as e:
                    raise errors.ProcessingError("Failed to power on the node, check its power management: {}".format(e))
            await self.store.transition(uuid, st.Event.wait, self.now(), expected=st.State.starting)
            self.log.info("Node {node}: waiting for the ramdisk", node=uuid)
        except errors.StateChanged:
            self.log.info("Node {node}: changed by another request while starting", node=uuid)
        except errors.InspectordError as e:
            await self._fail(uuid, str(e), expected=st.State.starting)

    async def _wait_for_turn(self):
        delay = self.config.default.introspection_delay
        if not delay:
            return
        now = self.clock.seconds()
        slot = max(now, self._next_power_on)
        self._next_power_on = slot + delay
        if slot > now:
            await task.deferLater(self.clock, slot - now, lambda: None)

    async def _fail(self, uuid, message, expected=None, processed=None):
        self.log.error("Node {node}: introspection failed: {error}", node=uuid, error=message)
        try:
            record = await self.store.transition(
                uuid, st.Event.error, self.now(), error=message, expected=expected, processed=processed
            )
        except (errors.StateChanged, errors.InvalidTransition) as e:
            self.log.warn("Node {node}: could not record the error: {reason}", node=uuid, reason=str(e))
            return None
        self._filter_changed()
        return record

    # -- ramdisk data -----------------------------------------------------

    async def process(self, raw, source=None):
        """Handle data posted by the ramdisk; returns the response body.

        :param source: the client IP address of the ramdisk's request: what
            discovery (``node_not_found_hook=enroll``) rate-limits by.
        """
        data = ramdisk_data.normalize(raw)
        failures = []
        for hook in self.hooks:
            try:
                await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                failures.append("Preprocessing hook {}: {}".format(hook.name, e))
            except Exception:
                # Logged with its traceback; the client is told which hook, not how it broke.
                self.log.failure("Hook {hook} failed", hook=hook.name)
                failures.append("Preprocessing hook {}: could not use the ramdisk data".format(hook.name))
        macs = ramdisk_data.all_macs(data)
        bmcs = ramdisk_data.bmc_addresses(data)
        # One transaction: lookup, the raw data stored (nothing accepted is
        # lost), the move to processing with a lease, and the rules.
        match, record, rules = await self.store.accept(
            macs, bmcs, raw, self.now(), self.now() + PROCESSING_LEASE, process=not failures
        )
        if match is None:
            lookup = "Could not find a node for attributes {}".format(
                ", ".join(["mac " + m for m in macs] + ["bmc_address " + b for b in bmcs]) or "(none in the data)"
            )
            if failures:
                await self._store_logs(data, None)
                raise errors.BadRequest(
                    "The following failures happened during running pre-processing hooks:\n"
                    + "\n".join(failures + ["Look up error: " + lookup])
                )
            if self._discovery is None:
                raise errors.NotFound(lookup)
            record, rules = await self._accept_discovered(raw, data, source)
        elif record is None:
            self._refuse(match.record)
        uuid = record.uuid
        if failures:
            message = "\n".join(failures)
            await self._fail(uuid, message, expected=record.state)
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
        lease = self._hold_lease(uuid)
        try:
            processed = await self._process_node(record, data, rules)
        except BaseException:
            lease.stop()
            raise
        # Like ironic-inspector, answer the ramdisk before powering it off.
        finishing = self._background(self._finish(record, data, processed), "finishing node " + uuid)
        finishing.addBoth(lambda result: lease.stop() or result)
        response = {"uuid": uuid}
        if credentials:
            response.update(
                ipmi_setup_credentials=True,
                ipmi_username=credentials["username"],
                ipmi_password=credentials["password"],
            )
        return response

    def _hold_lease(self, uuid):
        """Renew the processing lease of ``uuid`` until ``stop()`` is called."""
        period = PROCESSING_LEASE.total_seconds() / 3

        def renew():
            d = self.store.renew_lease(uuid, self.now() + PROCESSING_LEASE)
            d.addErrback(lambda f: self.log.failure("Node {node}: renewing the processing lease failed", f, node=uuid))
            return d

        call = task.LoopingCall(renew)
        call.clock = self.clock
        call.start(period, now=False).addErrback(
            lambda f: self.log.failure("Node {node}: lease renewal stopped", f, node=uuid)
        )
        return _Lease(call)

    async def _accept_discovered(self, raw, data, source):
        """Enroll a machine no node matched (discovery); ``(record, rules)``."""
        record = await self._discovery.enroll(data, source)
        self._filter_changed()
        await self.store.store_data(record.uuid, raw, False, self.now())
        try:
            record = await self.store.transition(
                record.uuid,
                st.Event.process,
                self.now(),
                expected=st.State.enrolling,
                lease_until=self.now() + PROCESSING_LEASE,
            )
        except errors.StateChanged:
            raise errors.Conflict("Node {} is already being processed".format(record.uuid)) from None
        return record, None

    @staticmethod
    def _refuse(record):
        """Raise why ramdisk data for ``record`` (not waiting) is refused."""
        uuid = record.uuid
        if record.state in (st.State.processing.value, st.State.reapplying.value, st.State.enrolling.value):
            raise errors.Conflict("Node {} is already being processed".format(uuid))
        if record.state == st.State.starting.value:
            raise errors.Conflict("Node {} is still starting introspection; try again".format(uuid))
        raise errors.Forbidden(
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
            if self.config.processing.store_data == "database":
                return {k: v for k, v in data.items() if k != "logs"}
            return None
        except errors.InspectordError as e:
            await self._store_logs(data, uuid)
            await self._fail(uuid, str(e), expected=record.state)
            raise
        except defer.CancelledError:
            raise  # stopping: the lease lets another run take the node over
        except Exception:
            # Bad ramdisk data a hook did not expect: logged with its
            # traceback here; the node and the client get which step failed.
            self.log.failure("Node {node}: unexpected failure in {stage}", node=uuid, stage=stage)
            await self._store_logs(data, uuid)
            message = "Invalid ramdisk data: {} could not use it".format(stage)
            await self._fail(uuid, message, expected=record.state)
            raise errors.ProcessingError(message) from None

    async def _finish(self, record, data, processed=None, power_off=True, verify_credentials=True):
        """Verify credentials, power off, and finish (storing ``processed`` with it)."""
        uuid = record.uuid
        try:
            if self.config.processing.always_store_ramdisk_logs:
                await self._store_logs(data, uuid)
            if verify_credentials and record.options.get("ipmi_credentials"):
                await self._verify_credentials(record, data)
            if power_off:
                await self._power_off(record)
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
            await self._fail(uuid, str(e), expected=record.state, processed=processed)
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
            )
            return
        self.log.info("Node {node}: introspection finished", node=uuid)
        self._filter_changed()

    async def _store_logs(self, data, uuid):
        if self._io_pool is None:
            return
        await deferToThreadPool(
            self._reactor, self._io_pool, ramdisk_logs.thd_store, self.config.processing, data, uuid, self.now()
        )

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
            raise errors.BadRequest(
                "Introspection of node {} already ended ({}); nothing to abort".format(uuid, record.state)
            )
        if record.state != st.State.waiting.value:
            raise errors.Conflict("Node {} is {}; try to abort again later".format(uuid, record.state))
        try:
            record = await self.store.transition(uuid, st.Event.abort, self.now(), expected=st.State.waiting)
        except errors.StateChanged:
            raise errors.Conflict("Node {} changed state while aborting; try again".format(uuid)) from None
        self._background(self._end_abort(record), "aborting node " + uuid)

    async def _end_abort(self, record):
        if record.manage_boot:
            try:
                await self.ironic.set_power_state(record.uuid, "power off")
            except errors.IronicError as e:
                self.log.warn("Node {node}: power off after abort failed: {error}", node=record.uuid, error=str(e))
        await self.store.transition(
            record.uuid, st.Event.abort_end, self.now(), error="Canceled by operator", expected=st.State.aborting
        )
        self.log.info("Node {node}: introspection aborted", node=record.uuid)
        self._filter_changed()

    async def reapply(self, uuid, raw=None):
        """Process stored (or given) raw data again; no power actions."""
        record = await self.store.get_node(uuid)
        if record.state not in (st.State.finished.value, st.State.error.value):
            raise errors.Conflict("Node {} is {}; reapply once it is finished".format(uuid, record.state))
        if raw is None:
            try:
                raw = await self.store.get_data(uuid, False)
            except errors.NotFound:
                raise errors.BadRequest(
                    "No unprocessed data is stored for node {} (set [processing]store_data=database, "
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
            )
        except errors.StateChanged:
            raise errors.Conflict("Node {} is locked, please, try again later".format(uuid)) from None
        await self.store.store_data(uuid, raw, False, self.now())
        self._background(self._reapply(record, data), "reapplying node " + uuid)

    async def _reapply(self, record, data):
        for hook in self.hooks:
            try:
                await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                await self._fail(record.uuid, "Pre-processing failures detected reapplying: {}".format(e),
                                 expected=record.state)
                return
        try:
            processed = await self._process_node(record, data)
        except errors.InspectordError:
            return
        await self._finish(record, data, processed, power_off=False, verify_credentials=False)

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
        """Process again, from the stored raw data, what a stopped instance left."""
        resumed = []
        for record in await self.store.expired_leases(self.now()):
            try:
                record = await self.store.claim(record, self.now(), self.now() + PROCESSING_LEASE)
                raw = await self.store.get_data(record.uuid, False)
            except (errors.StateChanged, errors.NotFound):
                continue
            self.log.warn("Node {node}: resuming processing left unfinished", node=record.uuid)
            data = ramdisk_data.normalize(copy.deepcopy(raw))
            try:
                for hook in self.hooks:
                    await defer.maybeDeferred(hook.before_processing, data)
            except errors.InspectordError as e:
                await self._fail(record.uuid, str(e), expected=st.State.processing)
                continue
            resumed.append(record.uuid)
            lease = self._hold_lease(record.uuid)
            resuming = self._background(self._resume(record, data), "resuming node " + record.uuid)
            resuming.addBoth(lambda result, lease=lease: lease.stop() or result)
        return resumed

    async def _resume(self, record, data):
        try:
            processed = await self._process_node(record, data)
        except errors.InspectordError:
            return
        await self._finish(record, data, processed)

    async def periodic(self):
        """One pass of the periodic work; never raises."""
        try:
            await self.check_timeouts()
            await self.resume_abandoned()
        except Exception:
            self.log.failure("Periodic introspection check failed")
