"""Fakes shipped with inspectord, for its tests and for tests of code using it.

:class:`FakeIronic` is a Klein app speaking the part of Ironic's REST API
inspectord uses, with in-memory nodes and ports, a request log and fault
injection.  Use it through treq's ``StubTreq(FakeIronic().app.resource())``.
"""

import functools
import json
import uuid as uuidlib

from klein import Klein

from inspectord import errors
from inspectord.processing.hooks import apply_json_patch


def _apply_patch(target, patch):
    for op in patch:
        if op["op"] == "remove" and op["path"].strip("/").split("/")[-1] not in _parent(target, op["path"]):
            raise errors.BadRequest("cannot remove missing {}".format(op["path"]))
    try:
        apply_json_patch(target, patch)
    except ValueError as e:
        raise errors.BadRequest(str(e)) from None


def _parent(target, path):
    for part in path.strip("/").split("/")[:-1]:
        target = target.get(part) or {}
    return target


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
        self.ports[port_uuid] = {"uuid": port_uuid, "node_uuid": node_uuid, "address": address.lower(),
                                 "pxe_enabled": pxe_enabled, "extra": {}}
        return port_uuid

    def node_ports(self, node_uuid):
        return sorted((p for p in self.ports.values() if p["node_uuid"] == node_uuid), key=lambda p: p["address"])

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
        except errors.BadRequest as e:
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
        ports = sorted(self.ports.values(), key=lambda p: p["uuid"])
        if "node_uuid" in args:
            ports = [p for p in ports if p["node_uuid"] == args["node_uuid"]]
        if "address" in args:
            ports = [p for p in ports if p["address"] == args["address"].lower()]
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
        if any(p["address"] == address for p in self.ports.values()):
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
        _apply_patch(self.ports[port_uuid], json.loads(request.content.read()))
        return self._json(request, self.ports[port_uuid])

    @app.route("/v1/ports/<port_uuid>", methods=["DELETE"])
    @_recorded
    def delete_port(self, request, port_uuid):
        if self.ports.pop(port_uuid, None) is None:
            return self._error(request, 404, "Port {} could not be found.".format(port_uuid))
        request.setResponseCode(204)
        return b""
