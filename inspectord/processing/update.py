"""What a processing run changes in Ironic, collected and applied at once.

Hooks do not call Ironic: they record changes on a :class:`NodeUpdate`.
:func:`apply` then sends one PATCH for every node property together and
one request per port really created, changed or deleted.
"""

import dataclasses


@dataclasses.dataclass
class NodeUpdate:
    properties: dict = dataclasses.field(default_factory=dict)
    # Other JSON-patch operations on the node (driver_info, extra...).
    node_patch: list = dataclasses.field(default_factory=list)
    # New ports: {"address", "pxe_enabled", optional extra fields}.
    new_ports: list = dataclasses.field(default_factory=list)
    # port uuid -> JSON-patch operations.
    port_patches: dict = dataclasses.field(default_factory=dict)
    deleted_ports: list = dataclasses.field(default_factory=list)
    added_traits: set = dataclasses.field(default_factory=set)
    removed_traits: set = dataclasses.field(default_factory=set)

    def node_operations(self):
        ops = [
            {"op": "add", "path": "/properties/" + name, "value": value}
            for name, value in sorted(self.properties.items())
        ]
        return ops + list(self.node_patch)

    @property
    def empty(self):
        return not (
            self.properties
            or self.node_patch
            or self.new_ports
            or self.port_patches
            or self.deleted_ports
            or self.added_traits
            or self.removed_traits
        )


async def apply(ironic, uuid, update):
    """Send ``update`` to Ironic.  Returns the ports created."""
    created = []
    for port_uuid in update.deleted_ports:
        await ironic.delete_port(port_uuid)
    ops = update.node_operations()
    if ops:
        await ironic.patch_node(uuid, ops)
    for port in update.new_ports:
        extra = {k: v for k, v in port.items() if k not in ("address", "pxe_enabled")}
        port = await ironic.create_port(uuid, port["address"], port.get("pxe_enabled", True), extra)
        if port is not None:  # None: another node has that MAC
            created.append(port)
    for port_uuid, patch in sorted(update.port_patches.items()):
        await ironic.patch_port(port_uuid, patch)
    for trait in sorted(update.added_traits):
        await ironic.add_trait(uuid, trait)
    for trait in sorted(update.removed_traits):
        await ironic.remove_trait(uuid, trait)
    return created
