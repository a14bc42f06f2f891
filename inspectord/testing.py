"""Fakes shipped with inspectord, for its tests and for tests of code using it.

:class:`FakeIronic` is a Klein app speaking the part of Ironic's REST API
inspectord uses, with in-memory nodes and ports, a request log and fault
injection.  Use it through treq's ``StubTreq(FakeIronic().app.resource())``.
:class:`FakeSwift` does the same for the part of Swift's object API that
``[processing]store_data=swift`` uses.  :class:`FakePXEFilter` and
:class:`FakeVerifier` stand for the PXE filter and the BMC credentials check.
Each fake passes the contract test of its interface
(:mod:`inspectord.interfaces`) that the real implementation passes.
"""

import copy
import functools
import json
import uuid as uuidlib

from klein import Klein
from twisted.internet import defer
from zope.interface import implementer

from inspectord import errors, interfaces
from inspectord.processing.hooks import apply_json_patch


def _apply_patch(target, patch):
    try:
        apply_json_patch(target, patch)
    except ValueError as e:
        raise errors.InvalidInput(str(e)) from None


def _local_link_connection_problem(llc):
    """What Ironic's schema says of a port's ``local_link_connection``: None if valid."""
    if not llc:
        return None
    if llc.get("network_type") == "unmanaged":
        return None
    if "port_id" in llc and ("switch_id" in llc or "hostname" in llc):
        return None
    return "Schema error for local_link_connection: {} is not valid: 'switch_id' is a required property".format(llc)


def _recorded(route):
    """Log the request and answer with an injected fault if one matches."""

    @functools.wraps(route)
    def wrapper(self, request, *args, **kwargs):
        fault = self._enter(request)
        if fault is not None:
            return fault
        return route(self, request, *args, **kwargs)

    return wrapper


class FakeIronic:
    app = Klein()

    def __init__(self):
        self.nodes = {}
        self.ports = {}
        #: (method, path) of every request, in order.
        self.requests = []
        #: PATCH bodies sent to nodes, in order: (uuid, patch).
        self.patches = []
        self._faults = []
        self.validate_power = {}
        # Ports by node and by address, rebuilt when a port is added or
        # removed or its address or node changes: the benchmark serves
        # tens of thousands of ports.
        self._port_index = None

    # -- test helpers -----------------------------------------------------

    def add_node(self, name=None, uuid=None, provision_state="manageable", macs=(), driver="fake-hardware",
                 driver_info=None, properties=None, power_state="power off"):
        uuid = uuid or str(uuidlib.uuid4())
        self.nodes[uuid] = {
            "uuid": uuid,
            "name": name,
            "driver": driver,
            "provision_state": provision_state,
            "power_state": power_state,
            "driver_info": dict(driver_info or {}),
            "properties": dict(properties or {}),
            "extra": {},
            "traits": [],
            "boot_device": None,
        }
        for mac in macs:
            self.add_port(uuid, mac)
        return uuid

    def add_port(self, node_uuid, address, pxe_enabled=True):
        port_uuid = str(uuidlib.uuid4())
        # The fields every Ironic port has, so JSON patches apply as on Ironic.
        self.ports[port_uuid] = {"uuid": port_uuid, "node_uuid": node_uuid, "address": address.lower(),
                                 "pxe_enabled": pxe_enabled, "extra": {}, "local_link_connection": {},
                                 "physical_network": None}
        self._port_index = None
        return port_uuid

    def _ports_by(self):
        if self._port_index is None:
            by_node, by_address = {}, {}
            for port in self.ports.values():
                by_node.setdefault(port["node_uuid"], []).append(port)
                by_address.setdefault(port["address"], []).append(port)
            self._port_index = (by_node, by_address, sorted(self.ports.values(), key=lambda p: p["uuid"]))
        return self._port_index

    def node_ports(self, node_uuid):
        return sorted(self._ports_by()[0].get(node_uuid, ()), key=lambda p: p["address"])

    def fail(self, method, path_prefix, code, times=1, body=None):
        """Answer the next ``times`` matching requests with ``code``."""
        self._faults.append([method, path_prefix, code, times, body])

    def calls(self, method=None):
        return [r for r in self.requests if method is None or r[0] == method]

    # -- plumbing ---------------------------------------------------------

    def _error(self, request, code, message):
        request.setResponseCode(code)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"error_message": json.dumps({"faultstring": message, "debuginfo": None})})

    def _json(self, request, body, code=200):
        request.setResponseCode(code)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(body)

    def _enter(self, request):
        method, path = request.method.decode(), request.path.decode()
        self.requests.append((method, path))
        for fault in self._faults:
            if fault[0] == method and path.startswith(fault[1]) and fault[3] > 0:
                fault[3] -= 1
                return self._error(request, fault[2], fault[4] or "injected fault")
        return None

    def _node(self, node_id):
        if node_id in self.nodes:
            return self.nodes[node_id]
        for node in self.nodes.values():
            if node["name"] == node_id:
                return node
        return None

    # -- routes -----------------------------------------------------------

    @app.route("/", methods=["GET"])
    @_recorded
    def root(self, request):
        version = {"id": "v1", "status": "CURRENT", "min_version": "1.1", "version": "1.96"}
        return self._json(request, {"name": "OpenStack Ironic API", "versions": [version], "default_version": version})

    @app.route("/v1/nodes/<node_id>", methods=["GET"])
    @_recorded
    def get_node(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        return self._json(request, node)

    @app.route("/v1/nodes", methods=["GET"])
    @_recorded
    def list_nodes(self, request):
        return self._json(request, {"nodes": list(self.nodes.values())})

    @app.route("/v1/nodes", methods=["POST"])
    @_recorded
    def create_node(self, request):
        body = json.loads(request.content.read())
        uuid = body.get("uuid") or str(uuidlib.uuid4())
        if uuid in self.nodes:
            return self._error(request, 409, "A node with UUID {} already exists.".format(uuid))
        self.add_node(name=body.get("name"), uuid=uuid, provision_state="enroll", driver=body.get("driver"),
                      driver_info=body.get("driver_info"), properties=body.get("properties"))
        node = self.nodes[uuid]
        node.update({k: v for k, v in body.items() if k not in node or k in ("extra",)})
        return self._json(request, node, code=201)

    @app.route("/v1/nodes/<node_id>", methods=["DELETE"])
    @_recorded
    def delete_node(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        del self.nodes[node["uuid"]]
        for port_uuid in [u for u, p in self.ports.items() if p["node_uuid"] == node["uuid"]]:
            del self.ports[port_uuid]
        self._port_index = None
        request.setResponseCode(204)
        return b""

    @app.route("/v1/nodes/<node_id>", methods=["PATCH"])
    @_recorded
    def patch_node(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        patch = json.loads(request.content.read())
        self.patches.append((node["uuid"], patch))
        try:
            _apply_patch(node, patch)
        except errors.InvalidInput as e:
            return self._error(request, 400, str(e))
        return self._json(request, node)

    @app.route("/v1/nodes/<node_id>/validate", methods=["GET"])
    @_recorded
    def validate(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        reason = self.validate_power.get(node["uuid"])
        return self._json(request, {"power": {"result": reason is None, "reason": reason}})

    @app.route("/v1/nodes/<node_id>/management/boot_device", methods=["PUT"])
    @_recorded
    def boot_device(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        node["boot_device"] = json.loads(request.content.read())["boot_device"]
        request.setResponseCode(204)
        return b""

    @app.route("/v1/nodes/<node_id>/states/power", methods=["PUT"])
    @_recorded
    def power(self, request, node_id):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        target = json.loads(request.content.read())["target"]
        node["power_state"] = "power on" if target == "rebooting" else target
        request.setResponseCode(202)
        return b""

    @app.route("/v1/nodes/<node_id>/traits/<trait>", methods=["PUT", "DELETE"])
    @_recorded
    def trait(self, request, node_id, trait):
        node = self._node(node_id)
        if node is None:
            return self._error(request, 404, "Node {} could not be found.".format(node_id))
        if request.method == b"PUT":
            if trait not in node["traits"]:
                node["traits"].append(trait)
        elif trait in node["traits"]:
            node["traits"].remove(trait)
        else:
            return self._error(request, 404, "Node {} has no trait {}".format(node_id, trait))
        request.setResponseCode(204)
        return b""

    @app.route("/v1/ports", methods=["GET"])
    @_recorded
    def list_ports(self, request):
        args = {k.decode(): v[-1].decode() for k, v in request.args.items()}
        by_node, by_address, ports = self._ports_by()
        if "node_uuid" in args:
            ports = sorted(by_node.get(args["node_uuid"], ()), key=lambda p: p["uuid"])
        if "address" in args:
            node_uuid = args.get("node_uuid")
            ports = sorted((p for p in by_address.get(args["address"].lower(), ())
                            if node_uuid is None or p["node_uuid"] == node_uuid), key=lambda p: p["uuid"])
        if "marker" in args:
            ports = [p for p in ports if p["uuid"] > args["marker"]]
        limit = int(args.get("limit", 1000))
        page = ports[:limit]
        body = {"ports": page}
        if len(ports) > limit:
            body["next"] = "http://fake/v1/ports?marker=" + page[-1]["uuid"]
        return self._json(request, body)

    @app.route("/v1/ports", methods=["POST"])
    @_recorded
    def create_port(self, request):
        body = json.loads(request.content.read())
        address = body["address"].lower()
        problem = _local_link_connection_problem(body.get("local_link_connection"))
        if problem is not None:
            return self._error(request, 400, problem)
        if self._ports_by()[1].get(address):
            return self._error(request, 409, "A port with MAC address {} already exists.".format(address))
        port_uuid = self.add_port(body["node_uuid"], address, body.get("pxe_enabled", True))
        self.ports[port_uuid]["extra"] = body.get("extra", {})
        for field in ("local_link_connection", "physical_network"):
            if field in body:
                self.ports[port_uuid][field] = body[field]
        return self._json(request, self.ports[port_uuid], code=201)

    @app.route("/v1/ports/<port_uuid>", methods=["PATCH"])
    @_recorded
    def patch_port(self, request, port_uuid):
        if port_uuid not in self.ports:
            return self._error(request, 404, "Port {} could not be found.".format(port_uuid))
        port = self.ports[port_uuid]
        keys = (port["address"], port["node_uuid"])
        patched = copy.deepcopy(port)
        try:
            _apply_patch(patched, json.loads(request.content.read()))
        except errors.InvalidInput as e:
            return self._error(request, 400, str(e))
        problem = _local_link_connection_problem(patched.get("local_link_connection"))
        if problem is not None:
            return self._error(request, 400, problem)
        port.clear()
        port.update(patched)
        if (port["address"], port["node_uuid"]) != keys:
            self._port_index = None
        return self._json(request, port)

    @app.route("/v1/ports/<port_uuid>", methods=["DELETE"])
    @_recorded
    def delete_port(self, request, port_uuid):
        if self.ports.pop(port_uuid, None) is None:
            return self._error(request, 404, "Port {} could not be found.".format(port_uuid))
        self._port_index = None
        request.setResponseCode(204)
        return b""


class FakeSwift:
    """Swift's object API for containers and objects under ``/v1/<account>``.

    :param token: if set, requests without ``X-Auth-Token: token`` get 401.
    """

    app = Klein()

    def __init__(self, token=None):
        self.token = token
        #: {(account, container): {name: (body bytes, headers dict)}}
        self.containers = {}
        #: (method, path, headers dict) of every request, in order.
        self.requests = []
        self._faults = []

    def fail(self, method, path_prefix, code, times=1):
        """Answer the next ``times`` matching requests with ``code``."""
        self._faults.append([method, path_prefix, code, times])

    def calls(self, method=None):
        return [(m, p) for m, p, _ in self.requests if method is None or m == method]

    def _enter(self, request):
        method, path = request.method.decode(), request.path.decode()
        headers = {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append((method, path, headers))
        for fault in self._faults:
            if fault[0] == method and path.startswith(fault[1]) and fault[3] > 0:
                fault[3] -= 1
                request.setResponseCode(fault[2])
                return b"injected fault"
        if self.token is not None and headers.get("x-auth-token") != self.token:
            request.setResponseCode(401)
            return b"<html><h1>Unauthorized</h1></html>"
        return None

    @app.route("/v1/<account>/<container>", methods=["PUT"])
    def put_container(self, request, account, container):
        fault = self._enter(request)
        if fault is not None:
            return fault
        created = (account, container) not in self.containers
        self.containers.setdefault((account, container), {})
        request.setResponseCode(201 if created else 202)
        return b""

    @app.route("/v1/<account>/<container>/<name>", methods=["PUT"])
    def put_object(self, request, account, container, name):
        fault = self._enter(request)
        if fault is not None:
            return fault
        if (account, container) not in self.containers:
            request.setResponseCode(404)
            return b"<html><h1>Not Found</h1></html>"
        self.containers[(account, container)][name] = (request.content.read(), dict(self.requests[-1][2]))
        request.setResponseCode(201)
        return b""

    @app.route("/v1/<account>/<container>/<name>", methods=["GET"])
    def get_object(self, request, account, container, name):
        fault = self._enter(request)
        if fault is not None:
            return fault
        stored = self.containers.get((account, container), {}).get(name)
        if stored is None:
            request.setResponseCode(404)
            return b"<html><h1>Not Found</h1></html>"
        request.setHeader("Content-Type", stored[1].get("content-type", "application/octet-stream"))
        return stored[0]


@implementer(interfaces.IPXEFilter)
class FakePXEFilter:
    """A PXE filter with no firewall: it allows the MACs the store has under introspection.

    :param store: read on every sync, like the real filter (None: nothing
        is ever allowed).
    ``notified`` counts :meth:`notify` calls.  ``seen`` is None (the
    filter records no DHCP requests, like one without a sniffer) or a dict
    mapping a MAC to what :meth:`dhcp_seen` returns.
    """

    def __init__(self, store=None):
        self.store = store
        self.notified = 0
        self.allowed = frozenset()
        self.seen = None
        self.syncs = 0

    def notify(self):
        self.notified += 1
        self.sync(full=False)

    def sync(self, full=True):
        if self.store is None:
            return defer.succeed(True)
        d = defer.maybeDeferred(self.store.filter_macs)

        def applied(result):
            macs, _count = result
            self.allowed = frozenset(m.lower() for m in macs)
            self.syncs += 1
            return True

        return d.addCallback(applied)

    def allows(self, mac):
        return mac.lower() in self.allowed

    def dhcp_seen(self, mac):
        return None if self.seen is None else self.seen.get(mac.lower())

    def health(self):
        return {"driver": "fake", "state": "ok", "last_error": None, "syncs": self.syncs}


@implementer(interfaces.ICredentialsVerifier)
class FakeVerifier:
    """BMCs as a table: ``bmcs[(address, port)] = (username, password)``.

    A BMC not in the table is unreachable; other credentials are rejected.
    ``calls`` records ``(address, username, password, port)``; ``fail_with``
    makes every call fail with that exception.
    """

    def __init__(self, bmcs=None, window=60.0):
        self.bmcs = dict(bmcs or {})
        self.window = window
        self.calls = []
        self.fail_with = None

    def verify(self, address, username, password, port=623):
        from inspectord.ipmi import BMCUnreachable, CredentialsRejected

        self.calls.append((address, username, password, port))
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        accepted = self.bmcs.get((address, port))
        if self.bmcs and accepted is None:
            return defer.fail(BMCUnreachable(address, port, username=username, reason="no answer", attempts=1,
                                             elapsed=self.window))
        if accepted is not None and accepted != (username, password):
            return defer.fail(CredentialsRejected(address, port, username=username, reason="unauthorized",
                                                  attempts=1, elapsed=self.window))
        return defer.succeed(None)

    def stop(self):
        self.stopped = True
