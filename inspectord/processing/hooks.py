"""Processing hooks: the plugin interface, the registry, and what hooks see.

A hook has ``before_processing(data)`` (runs before the node is looked up;
may only change the data) and ``before_update(data, node)`` (runs with a
:class:`NodeContext` once the node is known; records changes on
``node.update``).  Either may return a Deferred.  Hooks never call Ironic
themselves: every change of a run is collected on the NodeContext and sent
at once (one PATCH for the node, one request per port created, changed or
deleted; see :mod:`inspectord.processing.update`).

Kinds of hook are plugins providing :class:`IProcessingHook`, found in
three places:

* inspectord's own, in the :mod:`inspectord.hooks` package;
* third-party Twisted plugin drop-ins: any module in a ``twisted/plugins/``
  directory on ``sys.path`` (``twisted.plugin.getPlugins``);
* the ``inspectord.hooks`` entry point group of installed distributions
  (the entry point's name is the hook's name).

``[processing]processing_hooks`` (default ``$default_processing_hooks``)
chooses and orders them by name; the names of ironic-inspector's hooks are
kept.  :func:`check` runs at start-up and turns every problem (unknown or
ambiguous name, missing dependency, bad option of a hook) into a
:class:`~inspectord.errors.ConfigError`.
"""

import collections.abc
import copy
import dataclasses
import importlib
import importlib.metadata
import json

from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from zope.interface import Attribute, Interface, provider

from inspectord import errors
from inspectord.processing.update import NodeUpdate

ENTRY_POINT_GROUP = "inspectord.hooks"
GiB = 1024**3

log = Logger(namespace="inspectord.processing.hooks")


class IProcessingHook(Interface):
    """A kind of processing hook: what a hook plugin provides.

    Hook classes provide it themselves (decorate them with
    :data:`processing_hook`); calling one with the configuration gives the
    hook.  Any other callable with these attributes works as well.
    """

    name = Attribute("The name [processing]processing_hooks uses for this hook.")
    dependencies = Attribute(
        "Names of the hooks that must be enabled, and listed before this one, for it to work."
    )

    def __call__(config):
        """A hook for the frozen :class:`inspectord.config.Config`.

        The hook has ``before_processing(data)`` and
        ``before_update(data, node)``; either may return a Deferred.
        Raise :class:`~inspectord.errors.ConfigError` (or ValueError) for
        an option the hook cannot use: inspectord then refuses to start.
        """


#: Class decorator making a hook class a Twisted plugin providing IProcessingHook.
processing_hook = provider(IPlugin, IProcessingHook)


class ProcessingHook:
    """Base class of hooks: both methods do nothing; ``config`` is kept."""

    name = None
    dependencies = ()

    def __init__(self, config):
        self.config = config

    def before_processing(self, data):
        pass

    def before_update(self, data, node):
        pass


Hook = ProcessingHook  # the name the first hooks used


# -- what hooks see of the node -------------------------------------------


class NodeContext:
    """What hooks see of the node being processed, and what they change.

    Built from what inspectord recorded when the introspection started, so
    hooks read no Ironic state.  ``ports`` maps each MAC of an existing
    Ironic port to ``{"uuid", "pxe_enabled", ...}`` (and
    ``local_link_connection``, ``physical_network`` when recorded); ports
    a hook asked to create are in ``update.new_ports`` until applied.
    """

    def __init__(self, record, config):
        self.uuid = record.uuid
        self.record = record
        self.config = config
        self.node = record.node
        self.properties = dict(record.node.get("properties") or {})
        self.ports = {mac: dict(port) for mac, port in record.ports.items()}
        self.update = NodeUpdate()

    def update_properties(self, **properties):
        self.update.properties.update(properties)
        self.properties.update(properties)

    def patch(self, operations):
        """Record JSON-patch operations on the node (sent with the properties)."""
        self.update.node_patch.extend(operations)

    def add_trait(self, trait):
        self.update.removed_traits.discard(trait)
        self.update.added_traits.add(trait)

    def remove_trait(self, trait):
        self.update.added_traits.discard(trait)
        self.update.removed_traits.add(trait)

    def view(self):
        """The node as it will be once the recorded changes are applied."""
        node = copy.deepcopy(self.node)
        node["uuid"] = self.uuid
        node["properties"] = copy.deepcopy(self.properties)
        apply_json_patch(node, self.update.node_patch)
        traits = (set(node.get("traits") or []) | self.update.added_traits) - self.update.removed_traits
        node["traits"] = sorted(traits)
        return node

    def update_capabilities(self, **caps):
        current = parse_capabilities(self.properties.get("capabilities"))
        current.update({k: str(v) for k, v in caps.items()})
        self.update_properties(capabilities=",".join("{}:{}".format(k, v) for k, v in current.items()))

    def create_ports(self, interfaces):
        for iface in interfaces:
            if iface["mac"] in self.ports or self._new_port(iface["mac"]) is not None:
                continue
            port = {"address": iface["mac"], "pxe_enabled": iface.get("pxe", True)}
            if iface.get("client_id"):
                port["extra"] = {"client-id": iface["client_id"]}
            self.update.new_ports.append(port)

    def _new_port(self, mac):
        return next((p for p in self.update.new_ports if p["address"] == mac), None)

    def port(self, mac):
        """The port with ``mac`` as it will be (existing or to be created), or None."""
        mac = mac.lower()
        new = self._new_port(mac)
        if new is not None:
            return new
        port = self.ports.get(mac)
        if port is None:
            return None
        view = _with_port_defaults(port)
        apply_json_patch(view, self.update.port_patches.get(port["uuid"], []))
        return _without_untouched_defaults(view, port)

    def delete_port(self, mac):
        port = self.ports.pop(mac)
        self.update.deleted_ports.append(port["uuid"])

    def patch_port(self, mac, patch):
        """Record JSON-patch operations on a port.

        A port still to be created gets them in its creation request; an
        existing one gets one PATCH with every hook's operations.
        """
        mac = mac.lower()
        new = self._new_port(mac)
        if new is not None:
            # The operations become fields of the creation request: applied
            # to the port as Ironic would create it, only what differs from
            # Ironic's defaults is sent.
            body = _with_port_defaults(new)
            apply_json_patch(body, patch)
            body = _without_untouched_defaults(body, new)
            new.clear()
            new.update(body)
            return
        self.update.port_patches.setdefault(self.ports[mac]["uuid"], []).extend(patch)


# Fields every Ironic port has, with the values of a port created without
# them: JSON-patch paths below them are valid on any port.
PORT_DEFAULTS = {"extra": {}, "local_link_connection": {}, "physical_network": None}


def _with_port_defaults(port):
    result = copy.deepcopy(PORT_DEFAULTS)
    result.update(copy.deepcopy(port))
    return result


def _without_untouched_defaults(port, original):
    """``port`` less the default fields ``original`` did not have and that kept their default."""
    return {k: v for k, v in port.items() if k in original or k not in PORT_DEFAULTS or v != PORT_DEFAULTS[k]}


def apply_json_patch(target, patch):
    """Apply ``patch`` (RFC 6902) to ``target`` in place, as Ironic applies a PATCH body.

    One operation at a time, so the error names the one that failed; like
    Ironic, a missing parent, removing a missing member or adding a new
    attribute at the root is refused.

    :raises ValueError: the patch cannot be applied.
    """
    import jsonpatch  # only rules and plugins patch; not imported by an idle service
    import jsonpointer

    for op in patch:
        path = op.get("path", "") if isinstance(op, dict) else ""
        if isinstance(op, dict) and op.get("op") == "add" and path.count("/") == 1:
            if path.lstrip("/") not in target:
                raise ValueError("adding a new attribute ({}) to the root is not allowed".format(path))
        try:
            jsonpatch.apply_patch(target, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as e:
            raise ValueError("cannot apply {!r}: {}".format(op, e)) from None


def parse_capabilities(value):
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    caps = {}
    for item in (value or "").split(","):
        if ":" in item:
            key, val = item.split(":", 1)
            caps[key.strip()] = val.strip()
    return caps


def get_inventory(data):
    inventory = data.get("inventory")
    if not inventory:
        raise errors.ProcessingError("Hardware inventory is empty or missing")
    if not inventory.get("interfaces"):
        raise errors.ProcessingError("No network interfaces provided in the inventory")
    inventory.setdefault("disks", [])
    if inventory["disks"] is None:
        inventory["disks"] = []
    return inventory


def interfaces_with_ports(data, node):
    """``(inventory interface, name, mac, port or None)`` for every valid interface.

    Valid means ``validate_interfaces`` kept it in ``data["all_interfaces"]``.
    """
    all_interfaces = data.get("all_interfaces") or {}
    for iface in get_inventory(data)["interfaces"]:
        name = iface.get("name")
        if name not in all_interfaces:
            continue
        mac = all_interfaces[name]["mac"]
        yield iface, name, mac, node.port(mac)


def parse_pci_alias(text):
    """``{"vendor_id", "product_id", "name"}`` from a ``[pci_devices]alias`` value."""
    try:
        alias = json.loads(text)
    except ValueError as e:
        raise ValueError("not JSON: {}".format(e)) from None
    if not isinstance(alias, dict) or not all(isinstance(alias.get(k), str) for k in ("vendor_id", "product_id", "name")):
        raise ValueError('expected {"vendor_id": ..., "product_id": ..., "name": ...}')
    return alias


# -- finding hooks ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HookPlugin:
    """One kind of hook found, and where it was found."""

    name: str
    factory: object
    origin: str


def _origin(obj):
    return "{}.{}".format(getattr(obj, "__module__", "?"), getattr(obj, "__qualname__", repr(obj)))


def _from_packages(packages):
    found = []
    for package in packages:
        for factory in getPlugins(IProcessingHook, package):
            name = getattr(factory, "name", None)
            if not isinstance(name, str) or not name:
                log.warn("Ignoring processing hook plugin {origin}: it has no name", origin=_origin(factory))
                continue
            found.append(HookPlugin(name, factory, _origin(factory)))
    return found


def _from_entry_points(entry_points):
    found = []
    for ep in entry_points:
        try:
            factory = ep.load()
        except Exception:
            log.failure("Cannot load processing hook entry point {name} = {value}", name=ep.name, value=ep.value)
            continue
        found.append(HookPlugin(ep.name, factory, "entry point {} = {}".format(ep.name, ep.value)))
    return found


def default_packages():
    """inspectord's own hook package, then Twisted's plugin package (drop-ins)."""
    return [importlib.import_module("inspectord.hooks"), importlib.import_module("twisted.plugins")]


def discover(packages=None, entry_points=None):
    """Every kind of hook installed: ``{name: [HookPlugin, ...]}``.

    Several plugins under one name (different objects) make that name
    ambiguous; the same object found twice (a drop-in importing a class)
    counts once.

    :param packages: plugin packages to search (default
        :func:`default_packages`).
    :param entry_points: entry points to load (default: the
        ``inspectord.hooks`` group of installed distributions).
    """
    if packages is None:
        packages = default_packages()
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    result = {}
    for plugin in _from_packages(packages) + _from_entry_points(entry_points):
        same = result.setdefault(plugin.name, [])
        if not any(p.factory is plugin.factory for p in same):
            same.append(plugin)
    return result


class UnknownHook(KeyError):
    """No plugin has this name."""


class AmbiguousHook(KeyError):
    """Several plugins have this name."""


class MissingDependency(KeyError):
    """A hook is enabled without a hook it needs before it."""


class Registry(collections.abc.Mapping):
    """Name -> hook factory, discovered on first use (then kept).

    :param finder: returns ``{name: [HookPlugin, ...]}`` (:func:`discover`).
    """

    def __init__(self, finder=discover):
        self._finder = finder
        self._found = None

    def plugins(self):
        if self._found is None:
            self._found = self._finder()
        return self._found

    def refresh(self):
        """Forget what was found: the next use searches again."""
        self._found = None

    def origins(self, name):
        return [p.origin for p in self.plugins().get(name, [])]

    def __getitem__(self, name):
        found = self.plugins().get(name)
        if not found:
            raise UnknownHook(name)
        if len(found) > 1:
            raise AmbiguousHook(name)
        return found[0].factory

    def __iter__(self):
        return iter(sorted(self.plugins()))

    def __len__(self):
        return len(self.plugins())


#: Every kind of hook installed, by name.
HOOKS = Registry()


def resolve(names, registry=None):
    """Hook factories for ``names``, in order.

    :raises UnknownHook: (a KeyError) a name no plugin has.
    :raises AmbiguousHook: a name several plugins have.
    :raises MissingDependency: a hook needs another listed before it.
    """
    registry = HOOKS if registry is None else registry
    factories = [registry[name] for name in names]
    seen = set()
    for name, factory in zip(names, factories):
        missing = [d for d in getattr(factory, "dependencies", None) or () if d not in seen]
        if missing:
            raise MissingDependency(name, tuple(missing))
        seen.add(name)
    return factories


def load(config, registry=None):
    """The hooks ``[processing]processing_hooks`` enables, in order."""
    names = config.processing_hooks
    hooks = []
    for name, factory in zip(names, resolve(names, registry)):
        hook = factory(config)
        if getattr(hook, "name", None) != name:
            hook.name = name
        hooks.append(hook)
    return hooks


def check(config, registry=None):
    """Start-up check of the hook configuration; the hooks, built once, in order (as :func:`load`).

    :raises errors.ConfigError: naming the unknown or ambiguous hook, the
        missing dependency or the option a hook refuses.
    """
    registry = HOOKS if registry is None else registry
    option = "[processing]processing_hooks"
    for alias in config.pci_devices.alias:
        try:
            parse_pci_alias(alias)
        except ValueError as e:
            raise errors.ConfigError("[pci_devices]alias {!r}: {}".format(alias, e)) from None
    names = config.processing_hooks
    unknown = [name for name in names if not registry.origins(name)]
    if unknown:
        raise errors.ConfigError(
            "{} names unknown hook(s) {} (known: {}). Third-party hooks are found as twisted/plugins "
            "drop-ins and '{}' entry points; a plugin module that fails to import is logged and "
            "skipped".format(option, ", ".join(unknown), ", ".join(registry), ENTRY_POINT_GROUP)
        )
    try:
        factories = resolve(names, registry)
    except AmbiguousHook as e:
        name = e.args[0]
        raise errors.ConfigError(
            "{}: more than one plugin provides hook {}: {}".format(option, name, "; ".join(registry.origins(name)))
        ) from None
    except MissingDependency as e:
        name, missing = e.args
        needed = getattr(registry[name], "dependencies", ())
        raise errors.ConfigError(
            "{}: hook {} requires the following hooks to be enabled before it: {}. "
            "Missing or listed after it: {}".format(option, name, ", ".join(needed), ", ".join(missing))
        ) from None
    built = []
    for name, factory in zip(names, factories):
        try:
            hook = factory(config)
        except (errors.ConfigError, ValueError, TypeError, OSError) as e:
            raise errors.ConfigError("{}: hook {} cannot be set up: {}".format(option, name, e)) from None
        if getattr(hook, "name", None) != name:
            hook.name = name
        built.append(hook)
    return built
