"""What inspectord's components depend on, and nothing more.

Each interface has a real implementation and a fake in
:mod:`inspectord.testing`; one contract test per interface runs against both
(``tests/unit/test_contracts.py`` in memory, and the Ironic contract again
against a real Ironic in ``tests/integration/test_contracts.py``), so a fake
cannot drift from what it stands for.  (The real run found the fake Ironic
accepting a ``local_link_connection`` Ironic's schema refuses.)

:class:`IStore` has no fake: the unit tests use the real
:class:`inspectord.store.SQLStore` on an in-memory SQLite database with a
synchronous pool (``tests/unit/helpers.py``), which is as fast as a fake and
one fake fewer to drift.  Its contract (``tests/unit/test_store.py``) calls
only :class:`IStore` methods and runs again on MariaDB and PostgreSQL
(``tests/integration/test_store_engines.py``).
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


class IStore(Interface):
    """The persisted introspections, rules and DHCP observations, as the components use them.

    Every method returns a Deferred (the work runs in the database thread
    pool); what it fires with is a plain record, never an ORM object:
    :class:`~inspectord.store.records.NodeRecord` ("a record" below),
    :class:`~inspectord.store.records.Match`, dicts, lists, tuples.  Times
    are naive UTC ``datetime``\ s.  Failures are :mod:`inspectord.errors`
    (``NotFound``, ``InvalidTransition``, ``StateChanged``, ``InvalidInput``,
    ``NodeBusy``: the API maps each to its status) or the database's own
    error when it cannot be reached.
    """

    def upgrade():
        """Migrate the database to the current schema (adopting ironic-inspector's data the first time).

        Fires with the adoption report or None; fails with
        :class:`inspectord.store.sql.DatabaseUnreachable` when the database
        stays out of reach for the configured attempts.
        """

    # -- one node's introspection -------------------------------------------

    def get_node(uuid):
        """The record of ``uuid``; ``NotFound`` if inspectord has none."""

    def get_node_recent(uuid):
        """Like :meth:`get_node`, but a record up to ``[DEFAULT]status_cache_time`` old will do (status reads)."""

    def start(uuid, now, manage_boot, node, ports, attributes, options=None, owner=None, lease_until=None):
        """Record the start of an introspection: the node's new record, state ``starting``.

        :param node: what to keep of the Ironic node (a dict, no secrets).
        :param ports: ``{mac: {"uuid": ..., "pxe_enabled": ...}}``.
        :param attributes: ``[(name, value)]`` lookup attributes (``mac``,
            ``bmc_address``); they replace the node's previous ones.
        :param options: per-introspection options (may hold secrets, dropped
            when the introspection ends).
        :param owner: the instance holding the lease until ``lease_until``.
        :raises InvalidTransition: the node's state cannot be started from.
        :raises InvalidInput: another node under introspection has one of the MACs.
        :raises StateChanged: another request changed or created the node meanwhile.
        """

    def started(uuid, now, owner, lease_until):
        """The start is done: ``(record, rules)``.

        The node moves to ``waiting``, or on to ``processing`` (leased to
        ``owner``) if the ramdisk's data arrived while it was starting;
        ``rules`` is the list of introspection rules then, else None.
        :raises StateChanged: the node is no longer ``starting``.
        """

    def transition(uuid, event, now, error=None, expected=None, lease_until=None, processed=None,
                   delete_data=False, raw=None, owner=None, **fields):
        """Apply ``event`` (compare-and-set): the node's new record.

        :param error: the error to record (kept in final states).
        :param expected: a state or states the caller believes the node in.
        :param processed: processed data to store in the same transaction;
            ``raw`` likewise for unprocessed data; ``delete_data`` drops both.
        :param lease_until: the lease of the new state, held by ``owner``.
        :param fields: other values of the record to set (``started_at``,
            ``node``, ``ports`` when a reapply starts over).
        :raises NotFound: no such node.
        :raises InvalidTransition: ``event`` is not allowed from the node's state.
        :raises StateChanged: the node is not in ``expected``, or changed meanwhile.
        """

    def claim(record, now, lease_until, owner=None):
        """Take over ``record``'s node, whose lease expired: its new record.

        :raises StateChanged: the node changed since ``record`` was read
            (another instance claimed it first).
        """

    def lookup(macs, bmc_addresses):
        """The :class:`~inspectord.store.records.Match` of the unique best-matching node, or None.

        Nodes under introspection are preferred over finished ones.
        :raises NotFound: several nodes match equally well.
        """

    def accept(macs, bmc_addresses, raw, now, lease_until, process=True, owner=None):
        """Look the node up and take the ramdisk's data, in one transaction: ``(match, record, rules)``.

        ``match`` is as :meth:`lookup`; ``record`` is None when the node was
        neither ``waiting`` nor ``starting`` (nothing stored); a ``waiting``
        node moves to ``processing`` leased to ``owner`` (unless ``process``
        is false) and ``rules`` is the list of rules then, else None; a
        ``starting`` node gets its data marked pending.
        :raises NotFound: several nodes match equally well.
        :raises StateChanged: the node changed meanwhile.
        """

    # -- introspection data ----------------------------------------------------

    def store_data(uuid, data, processed, now):
        """Keep ``data`` (JSON-able) as the node's processed or unprocessed data, replacing the previous."""

    def get_data(uuid, processed):
        """The node's processed or unprocessed data; ``NotFound`` if none is stored."""

    def delete_data(uuid):
        """Drop both kinds of data of the node (none stored is no error)."""

    # -- periodic work and leases -----------------------------------------------

    def timed_out(threshold):
        """UUIDs of the nodes under introspection started before ``threshold``, oldest first."""

    def expired_leases(now):
        """Records of nodes in a leased state whose lease ended by ``now`` (or that have none), oldest first."""

    def renew_leases(owner, renewals):
        """Extend the leases ``owner`` still holds; ``renewals`` maps ``lease_until`` to UUIDs. How many."""

    def release_leases(owner, now, uuids=None):
        """End ``owner``'s leases (of ``uuids``, or all) at ``now``. How many."""

    def list_nodes(limit, marker=None, states=None, brief=False, active_ports=False):
        """Up to ``limit`` records, newest first, after the UUID ``marker``, in ``states`` if given.

        ``brief`` records have an empty ``node``, ``options`` and ``ports``;
        with ``active_ports``, a node under introspection has its ``ports``.
        :raises NotFound: ``marker`` is not a known node.
        """

    # -- PXE filter and DHCP ---------------------------------------------------

    def filter_macs():
        """``(MACs of the nodes under introspection, how many such nodes)``."""

    def dhcp_leases():
        """The builtin DHCP server's leases: ``[(mac, ip, expires_at)]``."""

    def put_dhcp_lease(mac, ip, expires_at):
        """Lease ``ip`` to ``mac``, replacing its previous lease and any other holder of ``ip``."""

    def put_dhcp_seen(rows):
        """Record DHCP requests ``[(mac, when, message, allowed)]``; a newer record wins. How many MACs."""

    def dhcp_seen_since(since):
        """``[(mac, when, message, allowed)]`` seen at or after ``since`` (None: all)."""

    def prune_dhcp_seen(before):
        """Forget the requests seen before ``before``. How many."""

    def bump(name):
        """Count one change of ``name`` for the other instances: the new count."""

    def generation(name):
        """How many changes of ``name`` were counted (0 if none)."""

    # -- introspection rules -----------------------------------------------------

    def create_rule(rule, now):
        """Store ``rule`` (a dict with ``uuid``, ``conditions``, ``actions``, optional
        ``description`` and ``scope``): the rule. ``NodeBusy`` if its UUID exists."""

    def list_rules():
        """Every rule as a dict, in the order they were created."""

    def get_rule(uuid):
        """One rule as a dict; ``NotFound`` if none has this UUID."""

    def delete_rule(uuid):
        """Delete one rule; ``NotFound`` if none has this UUID."""

    def delete_all_rules():
        """Delete every rule."""

    # -- discovery (node_not_found_hook = enroll) -------------------------------

    def enroll(uuid, now, manage_boot, node, attributes, source, limits, owner=None, lease_until=None):
        """Record a discovery from ``source`` and the node it will create: its record, state ``enrolling``.

        :raises DiscoveryLimited: one of ``limits`` is reached.
        :raises NodeBusy: a node under introspection has one of the MACs.
        """

    def enrolled(uuid, node):
        """Ironic created the node: keep ``node`` (compare-and-set), the new record.
        ``StateChanged`` if it is no longer ``enrolling``."""

    def forget_enrollment(uuid, reason):
        """Ironic did not create the node: drop its record, keep the attempt with ``reason``."""

    def discoveries(since=None):
        """Recorded discovery attempts, oldest first: ``[(source, node_uuid, attempted_at, outcome)]``."""
