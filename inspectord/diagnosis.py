"""Why a node under introspection has not called back: what DHCP saw of it.

The PXE filter records the DHCP requests it sees (the sniffer, or the
builtin DHCP server) through :class:`inspectord.interfaces.IPXEFilter`:
``seen`` is None when nothing records them, and ``dhcp_seen(mac)`` gives
the latest request from a MAC.  :func:`reports` asks the filter;
:func:`dhcp_status` and :func:`describe` are pure functions of a node
record and those reports, for the status API, the status page and the
timeout's error message.
"""

from inspectord.timeutil import utc


def recording(pxe_filter):
    """Whether ``pxe_filter`` records DHCP requests: without it, no node has a diagnosis.

    The status API asks this once per request, so a page of statuses reads
    no node's ports when there is nothing to compare them with.
    """
    return pxe_filter is not None and pxe_filter.seen is not None


def reports(pxe_filter, macs):
    """``{mac: dhcp_seen(mac)}`` for ``macs``, or None if nothing records DHCP requests."""
    if not recording(pxe_filter):
        return None
    return {mac: pxe_filter.dhcp_seen(mac) for mac in macs}


def dhcp_status(record, seen):
    """What DHCP saw of the node of ``record``, or None.

    :param seen: :func:`reports` of the node's MACs (None: nothing records).
    :returns: None when nothing records DHCP requests;
        ``{"seen": False, "macs": [...]}`` when nothing came from the
        node's MACs; otherwise the latest request (``seen``, ``mac``,
        ``last_dhcp_request`` as ISO 8601, ``dhcp_message``,
        ``allowed_by_filter``).
    """
    if seen is None:
        return None
    macs = sorted(record.ports)
    latest, latest_mac = None, None
    for mac in macs:
        report = seen.get(mac)
        if report and (latest is None or report["last_dhcp_request"] > latest["last_dhcp_request"]):
            latest, latest_mac = report, mac
    if latest is None:
        return {"seen": False, "macs": macs}
    return {
        "seen": True,
        "mac": latest_mac,
        "last_dhcp_request": utc(latest["last_dhcp_request"]).isoformat(),
        "dhcp_message": latest.get("dhcp_message"),
        "allowed_by_filter": latest.get("allowed_by_filter"),
    }


def describe(status):
    """An operator's sentence from :func:`dhcp_status`, or None."""
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
