"""What inspectord's components depend on, and nothing more.

Each interface has a real implementation and a fake in
:mod:`inspectord.testing`; one contract test per interface runs against both
(``tests/unit/test_contracts.py`` in memory, and the Ironic contract again
against a real Ironic in ``tests/integration/test_contracts.py``), so a fake
cannot drift from what it stands for.  (The real run found the fake Ironic
accepting a ``local_link_connection`` Ironic's schema refuses.)
"""

from zope.interface import Attribute, Interface


class IIronic(Interface):
    """Ironic's REST API, as inspectord uses it.

    Every method returns a Deferred or is a coroutine; failures are
    :class:`inspectord.errors.IronicError` (``IronicNotFound`` for a 404).
    """

    def get_node(node_id):
        """The node with this UUID or name, as a dict."""

    def validate_power(uuid):
        """``(ok, reason)``: whether Ironic can manage the node's power."""

    def set_boot_device_pxe(uuid):
        """Boot the node from the network next time (not persistent)."""

    def set_power_state(uuid, target):
        """``power on``, ``power off`` or ``rebooting``."""

    def patch_node(uuid, patch):
        """Apply a JSON patch (RFC 6902) to the node; the patched node."""

    def create_node(body):
        """A new node (in the enroll state) from ``body``."""

    def list_nodes(fields):
        """Every node, with only ``fields`` (comma-separated)."""

    def find_node_by_bmc(addresses, fields):
        """UUIDs of the nodes whose ``driver_info`` ``fields`` hold one of ``addresses``."""

    def add_trait(uuid, trait):
        """Give the node a trait."""

    def remove_trait(uuid, trait):
        """Take a trait from the node; no error if it does not have it."""

    def list_ports(node_uuid, fields):
        """The node's ports, with ``fields``."""

    def stop_retrying():
        """inspectord is stopping: calls stuck retrying an unreachable Ironic end with ``CancelledError``."""

    def list_all_port_macs():
        """The address of every port."""

    def find_port(address):
        """The port with this MAC, or None."""

    def create_port(node_uuid, address, pxe_enabled, extra):
        """A new port; the existing one if this node already has it (a retried create);
        None if another node has that MAC (that node is left alone)."""

    def patch_port(port_uuid, patch):
        """Apply a JSON patch to a port."""

    def delete_port(port_uuid):
        """Delete a port."""


class IPXEFilter(Interface):
    """Who may get a DHCP answer, as the introspection lifecycle and diagnosis see it."""

    seen = Attribute(
        "What records the DHCP requests seen (the sniffer's or the builtin server's), "
        "or None when nothing records them: diagnosis (:mod:`inspectord.diagnosis`) then has nothing to say."
    )

    def notify():
        """The set of nodes under introspection changed: apply it within a second."""

    def sync(full=True):
        """A Deferred firing with True (applied) or False once a sync started now ends."""

    def allows(mac):
        """The verdict enforced now for ``mac``."""

    def dhcp_seen(mac):
        """``{"last_dhcp_request", "dhcp_message", "allowed_by_filter"}`` of ``mac``, or None if unknown."""

    def health():
        """The filter's state as a plain dict (``driver``, ``state``, ``last_error``...)."""


class ICredentialsVerifier(Interface):
    """Checks that a BMC accepts new IPMI credentials."""

    window = Attribute("Seconds the verifier keeps trying before it gives up.")

    def verify(address, username, password, port=623):
        """A Deferred firing once a login succeeds; failing with ``IPMIRejected`` or ``IPMIUnreachable``."""

    def stop():
        """inspectord is stopping: verifications in progress end with ``CancelledError`` at once."""
