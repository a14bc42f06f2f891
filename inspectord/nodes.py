"""What inspectord keeps of an Ironic node and its ports (no secrets)."""

from inspectord import errors

#: Provision states a node may be introspected in.
VALID_PROVISION_STATES = ("enroll", "manageable", "inspecting", "inspect wait", "inspect failed")
# Provision states of nodes in use, introspected only with [processing]permit_active_introspection.
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


def port_map(ports):
    """``{mac: port}`` of Ironic ports: what the store keeps of a node's ports."""
    result = {}
    for p in ports:
        if not p.get("address"):
            continue
        port = {"uuid": p["uuid"], "pxe_enabled": p.get("pxe_enabled", True)}
        port.update({k: p[k] for k in ("local_link_connection", "physical_network") if p.get(k)})
        result[p["address"].lower()] = port
    return result


def check_provision_state(node, permit_active=False):
    """Refuse to introspect ``node`` in its provision state, unless valid
    (``permit_active``: ``[processing]permit_active_introspection``)."""
    state = node.get("provision_state")
    valid = VALID_PROVISION_STATES
    if permit_active:
        valid = valid + ACTIVE_PROVISION_STATES
    if state not in valid:
        raise errors.InvalidInput(
            'Invalid provision state for introspection: "{}", valid states are "{}"'.format(state, '", "'.join(valid))
        )
