"""Who may get a DHCP answer: a pure function of what the store and Ironic know.

DESIGN §5 (ironic-inspector's semantics): MACs of nodes under
introspection are allowed; every other MAC an Ironic port has is denied;
a MAC no port has (an *unknown* MAC) is allowed only while discovery is
possible: ``[pxe_filter]deny_unknown_macs=false`` and either a node is
under introspection or ``[processing]node_not_found_hook`` is set.  With
nothing under introspection and no discovery, nobody gets an answer.
"""

import dataclasses
import re

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalize_mac(value):
    """``value`` as lower-case ``aa:bb:cc:dd:ee:ff``, or None if it is not a MAC.

    Every MAC ends up in firewall rules, nft files and file names: anything
    but the canonical form is refused here, so nothing else can slip in.
    """
    if not isinstance(value, str):
        return None
    mac = value.strip().lower().replace("-", ":")
    return mac if _MAC.match(mac) else None


def normalize_macs(values):
    """``(set of valid MACs, list of refused values)``."""
    good, bad = set(), []
    for value in values:
        mac = normalize_mac(value)
        if mac is None:
            bad.append(value)
        else:
            good.add(mac)
    return good, bad


@dataclasses.dataclass(frozen=True)
class FilterState:
    """What a driver enforces.

    :ivar allowed: MACs that get an answer.
    :ivar denied: MACs that get none (disjoint from ``allowed``).
    :ivar allow_unknown: what happens to every other MAC.
    """

    allowed: frozenset = frozenset()
    denied: frozenset = frozenset()
    allow_unknown: bool = False

    def allows(self, mac):
        if mac in self.allowed:
            return True
        if mac in self.denied:
            return False
        return self.allow_unknown

    def summary(self):
        return {"allowed": len(self.allowed), "denied": len(self.denied), "allow_unknown": self.allow_unknown}


#: Nothing known yet, nothing allowed: the state before the first sync.
CLOSED = FilterState()


def decide(active_macs, introspection_active, known_macs, deny_unknown_macs, discovery):
    """The :class:`FilterState` for the given facts.

    :param active_macs: MACs of nodes under introspection.
    :param introspection_active: whether any node is under introspection
        (a node may have no MAC recorded).
    :param known_macs: MACs of every Ironic port, or None when Ironic's
        ports could not be read yet: then unknown MACs are refused,
        since a denied MAC could not be told from an unknown one.
    :param deny_unknown_macs: ``[pxe_filter]deny_unknown_macs``.
    :param discovery: whether ``[processing]node_not_found_hook`` is set.
    """
    allowed = frozenset(active_macs)
    denied = frozenset(known_macs or ()) - allowed
    allow_unknown = (
        known_macs is not None and not deny_unknown_macs and bool(introspection_active or discovery)
    )
    return FilterState(allowed=allowed, denied=denied, allow_unknown=allow_unknown)


@dataclasses.dataclass(frozen=True)
class Change:
    """How a state differs from the one before it (for drivers that apply diffs)."""

    allowed_added: frozenset
    allowed_removed: frozenset
    denied_added: frozenset
    denied_removed: frozenset
    unknown_changed: bool

    @property
    def empty(self):
        return not (
            self.allowed_added or self.allowed_removed or self.denied_added or self.denied_removed
            or self.unknown_changed
        )


def diff(previous, current):
    return Change(
        allowed_added=current.allowed - previous.allowed,
        allowed_removed=previous.allowed - current.allowed,
        denied_added=current.denied - previous.denied,
        denied_removed=previous.denied - current.denied,
        unknown_changed=previous.allow_unknown != current.allow_unknown,
    )
