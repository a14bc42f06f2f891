"""Processing hooks as plugins: discovery, configuration checks, and the optional hooks.

LLDP (lldp_basic, local_link_connection) is in test_hooks_lldp.py.
"""

import copy
import datetime
import importlib
import importlib.metadata
import json
import os
import sys
import textwrap
import uuid as uuidlib

from twisted.internet import defer, task
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import inspectord.hooks
from inspectord import errors
from inspectord.processing import data as ramdisk_data
from inspectord.processing import hooks as hooks_mod
from inspectord.processing.update import apply as apply_update
from inspectord.store.records import NodeRecord
from tests.unit.helpers import Harness, fixture, make_config

GiB = 1024**3
UUID = "5b5f6b42-7f0e-4a0c-8a3b-3c1d2b6c0a11"
T0 = datetime.datetime(2027, 3, 1, 9, 30)
DEFAULT = "ramdisk_error,root_disk_selection,scheduler,validate_interfaces,capabilities,pci_devices"
# ironic-inspector 12.5.0's [ironic_inspector.hooks.processing] entry points.
UPSTREAM_NAMES = {
    "accelerators", "capabilities", "example", "extra_hardware", "lldp_basic", "local_link_connection",
    "pci_devices", "physnet_cidr_map", "raid_device", "ramdisk_error", "root_disk_selection", "scheduler",
    "validate_interfaces",
}
FIXTURE_MAC = "02:fc:00:00:00:01"


def all_collectors():
    """The real IPA payload with pci, numa, usb and extra-hardware data."""
    return fixture("ipa-payload-all-collectors.json")


def make_record(properties=None, ports=None, extra=None, provision_state="manageable", driver_info=None):
    return NodeRecord(
        uuid=UUID,
        state="processing",
        started_at=T0,
        node={
            "name": "n1",
            "driver": "ipmi",
            "provision_state": provision_state,
            "properties": dict(properties or {}),
            "extra": dict(extra or {}),
            "driver_info": dict(driver_info or {}),
        },
        ports={mac.lower(): dict(p) for mac, p in (ports or {}).items()},
    )


def run_hooks(data, hooks=DEFAULT, record=None, **overrides):
    """Run ``hooks`` (a processing_hooks value) as Introspection does; ``(data, node)``."""
    config = make_config(processing__processing_hooks=hooks, **overrides)
    data = ramdisk_data.normalize(copy.deepcopy(data))
    loaded = hooks_mod.load(config)
    for hook in loaded:
        hook.before_processing(data)
    node = hooks_mod.NodeContext(record or make_record(), config)
    for hook in loaded:
        hook.before_update(data, node)
    return data, node


def write_file(case, name, text):
    path = os.path.join(case.mktemp(), name)
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return path


class FakeConfig:
    """Just what load() and check() read."""

    def __init__(self, names, alias=()):
        self.processing_hooks = tuple(names)
        self.pci_devices = type("PciOptions", (), {"alias": tuple(alias)})()


def plugin(name, dependencies=(), factory=None):
    factory = factory or type(name, (hooks_mod.ProcessingHook,), {"name": name, "dependencies": dependencies})
    return hooks_mod.HookPlugin(name, factory, "tests." + name)


def registry(*plugins):
    found = {}
    for p in plugins:
        found.setdefault(p.name, []).append(p)
    return hooks_mod.Registry(lambda: found)


class BuiltinPluginTests(SynchronousTestCase):
    def test_every_hook_of_ironic_inspector_is_a_twisted_plugin(self):
        found = {f.name: f for f in getPlugins(hooks_mod.IProcessingHook, inspectord.hooks)}
        self.assertEqual(set(found), UPSTREAM_NAMES)
        for factory in found.values():
            self.assertTrue(hooks_mod.IProcessingHook.providedBy(factory), factory)

    def test_registry_knows_them_and_each_loads(self):
        self.assertTrue(UPSTREAM_NAMES <= set(hooks_mod.HOOKS))
        config = make_config(processing__processing_hooks=",".join(sorted(UPSTREAM_NAMES - {
            "local_link_connection", "physnet_cidr_map"})) + ",local_link_connection,physnet_cidr_map")
        loaded = hooks_mod.load(config)
        self.assertEqual([h.name for h in loaded], list(config.processing_hooks))

    def test_default_hooks_are_ironic_inspectors(self):
        self.assertEqual(make_config().processing_hooks, tuple(DEFAULT.split(",")))

    def test_order_follows_configuration(self):
        hooks = hooks_mod.load(make_config(processing__processing_hooks="example,scheduler,ramdisk_error"))
        self.assertEqual([h.name for h in hooks], ["example", "scheduler", "ramdisk_error"])


class DropInTests(SynchronousTestCase):
    """Hooks of other packages: a plugin package on sys.path, entry points."""

    def make_package(self, modules):
        """An importable package in a temp dir holding ``modules`` {name: source}."""
        root = os.path.abspath(self.mktemp())
        name = "hookpkg_" + uuidlib.uuid4().hex[:8]
        os.makedirs(os.path.join(root, name))
        with open(os.path.join(root, name, "__init__.py"), "w") as f:
            f.write("")
        for module, source in modules.items():
            with open(os.path.join(root, name, module + ".py"), "w") as f:
                f.write(textwrap.dedent(source))
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(lambda: [sys.modules.pop(m) for m in list(sys.modules) if m.startswith(name)])
        return importlib.import_module(name)

    def test_plugin_module_found_and_run(self):
        package = self.make_package({"acme": """
            from inspectord.processing.hooks import ProcessingHook, processing_hook

            @processing_hook
            class AcmeHook(ProcessingHook):
                name = "acme_asset_tag"
                dependencies = ("validate_interfaces",)

                def before_update(self, data, node):
                    node.update_properties(asset_tag="acme-" + data["inventory"]["hostname"])
            """})
        found = hooks_mod.discover(packages=[package], entry_points=[])
        self.assertEqual(list(found), ["acme_asset_tag"])
        self.assertEqual(found["acme_asset_tag"][0].origin, package.__name__ + ".acme.AcmeHook")
        reg = hooks_mod.Registry(lambda: hooks_mod.discover(packages=[inspectord.hooks, package], entry_points=[]))
        self.patch(hooks_mod, "HOOKS", reg)
        _, node = run_hooks(all_collectors(), DEFAULT + ",acme_asset_tag")
        self.assertEqual(node.update.properties["asset_tag"], "acme-vm")

    def test_imported_hook_class_counts_once(self):
        package = self.make_package({
            "first": """
                from inspectord.processing.hooks import ProcessingHook, processing_hook

                @processing_hook
                class Shared(ProcessingHook):
                    name = "shared"
                """,
            "second": "from {pkg}.first import Shared  # noqa\n",
        })
        # The second module names its package: rewrite it now that the name is known.
        path = os.path.join(os.path.dirname(package.__file__), "second.py")
        with open(path) as f:
            text = f.read().replace("{pkg}", package.__name__)
        with open(path, "w") as f:
            f.write(text)
        found = hooks_mod.discover(packages=[package], entry_points=[])
        self.assertEqual(len(found["shared"]), 1)

    def test_broken_plugin_module_is_logged_and_skipped(self):
        package = self.make_package({"broken": "raise RuntimeError('plugin import fails')\n"})
        self.assertEqual(hooks_mod.discover(packages=[package], entry_points=[]), {})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_entry_point(self):
        ep = importlib.metadata.EntryPoint(
            name="ep_hook", value="tests.unit.test_hooks:EntryPointHook", group=hooks_mod.ENTRY_POINT_GROUP
        )
        found = hooks_mod.discover(packages=[], entry_points=[ep])
        self.assertIs(found["ep_hook"][0].factory, EntryPointHook)
        hook = hooks_mod.load(FakeConfig(["ep_hook"]), hooks_mod.Registry(lambda: found))[0]
        # The entry point's name is the hook's name.
        self.assertEqual(hook.name, "ep_hook")

    def test_broken_entry_point_is_logged_and_skipped(self):
        ep = importlib.metadata.EntryPoint(name="gone", value="no_such_module_x:Hook", group=hooks_mod.ENTRY_POINT_GROUP)
        self.assertEqual(hooks_mod.discover(packages=[], entry_points=[ep]), {})
        self.assertEqual(len(self.flushLoggedErrors(ModuleNotFoundError)), 1)

    def test_installed_entry_points_are_read(self):
        seen = []
        real = importlib.metadata.entry_points

        def entry_points(**kwargs):
            seen.append(kwargs)
            return real(**kwargs)

        self.patch(importlib.metadata, "entry_points", entry_points)
        hooks_mod.discover(packages=[])
        self.assertEqual(seen, [{"group": "inspectord.hooks"}])


class EntryPointHook(hooks_mod.ProcessingHook):
    """Loaded through an entry point in DropInTests (no name of its own)."""


class CheckTests(SynchronousTestCase):
    """Start-up checks: every problem is a ConfigError saying what to change."""

    def check(self, names, reg, alias=()):
        with self.assertRaises(errors.ConfigError) as caught:
            hooks_mod.check(FakeConfig(names, alias), reg)
        return str(caught.exception)

    def test_unknown_hooks_listed_with_known_ones(self):
        message = self.check(["a", "nope", "zzz"], registry(plugin("a")))
        self.assertIn("unknown hook(s) nope, zzz (known: a)", message)
        self.assertIn("[processing]processing_hooks", message)
        self.assertIn("inspectord.hooks", message)

    def test_missing_dependency(self):
        reg = registry(plugin("base"), plugin("needs_base", dependencies=("base",)))
        message = self.check(["needs_base"], reg)
        self.assertIn("hook needs_base requires the following hooks to be enabled before it: base", message)

    def test_dependency_listed_after(self):
        reg = registry(plugin("base"), plugin("needs_base", dependencies=("base",)))
        self.assertIn("Missing or listed after it: base", self.check(["needs_base", "base"], reg))
        hooks_mod.check(FakeConfig(["base", "needs_base"]), reg)

    def test_check_returns_the_hooks_it_built_once_each(self):
        """The start-up check's hooks are the ones the lifecycle runs: each factory is called once."""
        built = []

        def factory(config):
            hook = hooks_mod.ProcessingHook(config)
            built.append(hook)
            return hook

        reg = registry(plugin("base"), plugin("counted", factory=factory))
        hooks = hooks_mod.check(FakeConfig(["base", "counted"]), reg)
        self.assertEqual([h.name for h in hooks], ["base", "counted"])
        self.assertEqual(built, [hooks[1]])

    def test_ambiguous_name(self):
        reg = registry(plugin("dup"), plugin("dup"))
        message = self.check(["dup"], reg)
        self.assertIn("more than one plugin provides hook dup: tests.dup; tests.dup", message)

    def test_ambiguous_name_not_enabled_is_fine(self):
        hooks_mod.check(FakeConfig(["a"]), registry(plugin("a"), plugin("dup"), plugin("dup")))

    def test_hook_refusing_its_options(self):
        def refuse(config):
            raise ValueError("option x must be y")

        refuse.name = "picky"
        message = self.check(["picky"], registry(plugin("picky", factory=refuse)))
        self.assertIn("hook picky cannot be set up: option x must be y", message)

    def test_bad_pci_alias(self):
        self.assertIn("[pci_devices]alias", self.check(["a"], registry(plugin("a")), alias=["not json"]))

    def test_real_configuration_errors(self):
        cases = [
            ({"processing__processing_hooks": "local_link_connection," + DEFAULT}, "validate_interfaces"),
            ({"processing__processing_hooks": DEFAULT + ",lldp_magic"}, "unknown hook(s) lldp_magic"),
            ({"processing__processing_hooks": DEFAULT + ",physnet_cidr_map",
              "port_physnet__cidr_map": ["10.0.0.1/24:physnet1"]}, "[port_physnet]cidr_map"),
            ({"processing__processing_hooks": DEFAULT + ",physnet_cidr_map",
              "port_physnet__cidr_map": ["physnet1"]}, "is not CIDR:physical_network"),
            ({"processing__processing_hooks": DEFAULT + ",accelerators",
              "accelerators__known_devices": "/nonexistent/devices.yaml"}, "[accelerators]known_devices"),
        ]
        for overrides, expected in cases:
            with self.assertRaises(errors.ConfigError) as caught:
                make_config(**overrides)
            self.assertIn(expected, str(caught.exception), overrides)


class DeferredHookTests(SynchronousTestCase):
    def test_processing_waits_for_deferreds_of_both_methods(self):
        clock = task.Clock()
        calls = []

        @hooks_mod.processing_hook
        class SlowHook(hooks_mod.ProcessingHook):
            name = "slow"

            def before_processing(self, data):
                calls.append("before_processing")
                return task.deferLater(clock, 5, data.__setitem__, "slow", "yes")

            def before_update(self, data, node):
                calls.append("before_update")
                return task.deferLater(clock, 5, node.update_properties, slow=data["slow"])

        reg = hooks_mod.Registry(lambda: dict(hooks_mod.discover(entry_points=[]), slow=[plugin("slow", factory=SlowHook)]))
        self.patch(hooks_mod, "HOOKS", reg)
        h = Harness(processing__processing_hooks=DEFAULT + ",slow")
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        self.assertEqual(h.request("POST", "/v1/introspection/" + uuid)[0], 202)
        h.flush()
        d = defer.Deferred.fromCoroutine(h.introspection.process(all_collectors()))
        h.flush()
        self.assertNoResult(d)
        self.assertEqual(calls, ["before_processing"])
        clock.advance(5)
        h.flush()
        self.assertNoResult(d)
        self.assertEqual(calls, ["before_processing", "before_update"])
        clock.advance(5)
        h.flush()
        self.assertEqual(self.successResultOf(d)["uuid"], uuid)
        self.assertEqual(h.fake.nodes[uuid]["properties"]["slow"], "yes")


class NodeContextPortTests(SynchronousTestCase):
    """Port changes of several hooks become one request per port."""

    def setUp(self):
        self.node = hooks_mod.NodeContext(
            make_record(ports={"52:54:00:00:00:01": {"uuid": "p1", "pxe_enabled": True,
                                                      "local_link_connection": {"switch_id": "aa:bb:cc:dd:ee:ff"}}}),
            make_config(),
        )

    def test_patches_of_an_existing_port_accumulate(self):
        self.node.patch_port("52:54:00:00:00:01", [{"op": "add", "path": "/physical_network", "value": "a"}])
        self.node.patch_port("52:54:00:00:00:01", [{"op": "add", "path": "/local_link_connection/port_id",
                                                    "value": "Ethernet1"}])
        self.assertEqual(len(self.node.update.port_patches["p1"]), 2)
        self.assertEqual(
            self.node.port("52:54:00:00:00:01"),
            {"uuid": "p1", "pxe_enabled": True, "physical_network": "a",
             "local_link_connection": {"switch_id": "aa:bb:cc:dd:ee:ff", "port_id": "Ethernet1"}},
        )

    def test_patches_of_a_new_port_join_its_creation(self):
        self.node.create_ports([{"mac": "52:54:00:00:00:02", "pxe": False, "client_id": "ff:00:00:00:00:00:02"}])
        self.node.patch_port("52:54:00:00:00:02", [{"op": "add", "path": "/physical_network", "value": "b"}])
        self.assertEqual(self.node.update.port_patches, {})
        self.assertEqual(
            self.node.update.new_ports,
            [{"address": "52:54:00:00:00:02", "pxe_enabled": False, "physical_network": "b",
              "extra": {"client-id": "ff:00:00:00:00:00:02"}}],
        )

    def test_unknown_port(self):
        self.assertIsNone(self.node.port("52:54:00:00:00:09"))

    def test_one_request_per_port(self):
        h = Harness()
        node_uuid = h.fake.add_node(macs=["52:54:00:00:00:01"])
        port_uuid = h.fake.node_ports(node_uuid)[0]["uuid"]
        node = hooks_mod.NodeContext(
            make_record(ports={"52:54:00:00:00:01": {"uuid": port_uuid, "pxe_enabled": True}}), make_config()
        )
        node.create_ports([{"mac": "52:54:00:00:00:02", "pxe": True}])
        for mac in ("52:54:00:00:00:01", "52:54:00:00:00:02"):
            node.patch_port(mac, [{"op": "add", "path": "/physical_network", "value": "a"}])
            node.patch_port(mac, [{"op": "add", "path": "/local_link_connection/port_id", "value": "Eth1"},
                                  {"op": "add", "path": "/local_link_connection/switch_id", "value": "52:54:00:5e:00:01"}])
        node.update_properties(cpus="2")
        node.patch([{"op": "add", "path": "/extra/x", "value": 1}])
        d = defer.Deferred.fromCoroutine(apply_update(h.ironic, node_uuid, node.update))
        h.flush()
        self.successResultOf(d)
        self.assertEqual(
            [r for r in h.fake.requests],
            [("PATCH", "/v1/nodes/" + node_uuid), ("POST", "/v1/ports"), ("PATCH", "/v1/ports/" + port_uuid)],
        )
        for port in h.fake.node_ports(node_uuid):
            self.assertEqual(port["physical_network"], "a")
            self.assertEqual(port["local_link_connection"], {"port_id": "Eth1", "switch_id": "52:54:00:5e:00:01"})


class ExtraHardwareTests(SynchronousTestCase):
    HOOKS = DEFAULT + ",extra_hardware"

    def test_real_extra_hardware_data(self):
        data, node = run_hooks(all_collectors(), self.HOOKS)
        self.assertNotIn("data", data)
        extra = data["extra"]
        self.assertEqual(extra["disk"]["vda"]["size"], 274)
        self.assertEqual(extra["disk"]["vda"]["scheduler"], "mq-deadline")
        self.assertEqual(extra["memory"]["total"]["size"], 25769803776)
        self.assertEqual(extra["network"]["eth0"]["ipv4"], "192.0.2.2")
        self.assertEqual(extra["network"]["eth0"]["serial"], FIXTURE_MAC)
        self.assertEqual(extra["cpu"]["physical_0"]["cores"], 2)
        self.assertEqual(extra["numa"]["node_0"]["cpu_mask"], 3)
        self.assertEqual(extra["disk"]["vda"]["vendor"], "0x1af4")  # not an integer in base 10
        self.assertEqual(sum(len(items) for cat in extra.values() for items in cat.values()), 49)
        self.assertNotIn("extra", node.update.properties)

    def test_rules_can_use_it(self):
        h = Harness(processing__processing_hooks=self.HOOKS)
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        rule = {"conditions": [{"op": "ge", "field": "data://extra.disk.vda.size", "value": 200}],
                "actions": [{"action": "set-capability", "name": "big_disk", "value": "true"}]}
        self.assertEqual(h.request("POST", "/v1/rules", rule)[0], 201)
        h.request("POST", "/v1/introspection/" + uuid)
        self.assertEqual(h.request("POST", "/v1/continue", all_collectors())[0], 200)
        self.assertIn("big_disk:true", h.fake.nodes[uuid]["properties"]["capabilities"])

    def test_no_data(self):
        payload = all_collectors()
        del payload["data"]
        data, _ = run_hooks(payload, self.HOOKS)
        self.assertNotIn("extra", data)

    def test_not_edeploy_kept_unless_strict(self):
        payload = all_collectors()
        payload["data"] = {"not": "a list"}
        data, _ = run_hooks(payload, self.HOOKS)
        self.assertEqual(data["data"], {"not": "a list"})
        self.assertNotIn("extra", data)
        data, _ = run_hooks(payload, self.HOOKS, extra_hardware__strict=True)
        self.assertNotIn("data", data)
        self.assertNotIn("extra", data)

    def test_short_items(self):
        payload = all_collectors()
        payload["data"] = [["disk", "sda", "size", "10"], [], ["disk", "sdb"], [["x"], "y", "z", "1"]]
        data, _ = run_hooks(payload, self.HOOKS)
        self.assertEqual(data["extra"], {"disk": {"sda": {"size": 10}}})
        data, _ = run_hooks(payload, self.HOOKS, extra_hardware__strict=True)
        self.assertNotIn("data", data)
        self.assertNotIn("extra", data)


class AcceleratorsTests(SynchronousTestCase):
    HOOKS = DEFAULT + ",accelerators"

    def known_devices(self):
        return write_file(self, "devices.yaml", """\
            pci_devices:
              - vendor_id: "1af4"
                device_id: "1045"
                type: balloon
                device_info: Virtio memory balloon
              - vendor_id: "10de"
                device_id: "1eb8"
                type: GPU
                device_info: NVIDIA Corporation Tesla T4
            """)

    def test_shipped_list_knows_nothing_in_a_virtual_machine(self):
        _, node = run_hooks(all_collectors(), self.HOOKS)
        self.assertNotIn("accelerators", node.update.properties)

    def test_shipped_list_finds_a_tesla_t4(self):
        payload = all_collectors()
        payload["pci_devices"].append({"bus": "0000:3b:00.0", "class": "030200", "numa_node_id": "0",
                                       "product_id": "1eb8", "revision": "a1", "vendor_id": "10de"})
        _, node = run_hooks(payload, self.HOOKS)
        self.assertEqual(node.update.properties["accelerators"], [
            {"vendor_id": "10de", "device_id": "1eb8", "type": "GPU",
             "device_info": "NVIDIA Corporation Tesla T4", "pci_address": "0000:3b:00.0"}])

    def test_own_list(self):
        _, node = run_hooks(all_collectors(), self.HOOKS, accelerators__known_devices=self.known_devices())
        self.assertEqual(node.update.properties["accelerators"], [
            {"vendor_id": "1af4", "device_id": "1045", "type": "balloon",
             "device_info": "Virtio memory balloon", "pci_address": "0000:00:01.0"}])

    def test_no_pci_devices(self):
        payload = all_collectors()
        del payload["pci_devices"]
        _, node = run_hooks(payload, self.HOOKS)
        self.assertNotIn("accelerators", node.update.properties)

    def test_bad_lists(self):
        for text, expected in [
            ("pci_devices: {}\n", "expected a pci_devices list"),
            ("pci_devices:\n  - vendor_id: '10de'\n", "needs vendor_id and device_id"),
            ("[unbalanced\n", "known_devices"),
        ]:
            path = write_file(self, "devices.yaml", text)
            with self.assertRaises(errors.ConfigError) as caught:
                make_config(processing__processing_hooks=self.HOOKS, accelerators__known_devices=path)
            self.assertIn(expected, str(caught.exception))


class PciDevicesTests(SynchronousTestCase):
    def test_real_pci_devices(self):
        alias = ['{"vendor_id": "1af4", "product_id": "1045", "name": "balloon"}',
                 '{"vendor_id": "8086", "product_id": "0D57", "name": "host_bridge"}']
        _, node = run_hooks(all_collectors(), pci_devices__alias=alias)
        caps = hooks_mod.parse_capabilities(node.update.properties["capabilities"])
        self.assertEqual((caps["balloon"], caps["host_bridge"]), ("1", "1"))


class PhysnetCidrMapTests(SynchronousTestCase):
    HOOKS = DEFAULT + ",physnet_cidr_map"

    def run_map(self, cidr_map, record=None, payload=None, **overrides):
        return run_hooks(payload or all_collectors(), self.HOOKS, record=record,
                         port_physnet__cidr_map=cidr_map, **overrides)

    def test_new_port_gets_the_physical_network(self):
        _, node = self.run_map(["198.51.100.0/24:other", "192.0.2.0/24:physnet1"])
        self.assertEqual(node.update.new_ports[0]["physical_network"], "physnet1")

    def test_ipv6_address_used_when_ipv4_is_not_mapped(self):
        _, node = self.run_map(["10.0.0.0/8:v4net", "fd00::/64:v6net"])
        self.assertEqual(node.update.new_ports[0]["physical_network"], "v6net")

    def test_no_mapping(self):
        _, node = self.run_map(["10.0.0.0/8:v4net"])
        self.assertNotIn("physical_network", node.update.new_ports[0])

    def test_existing_port(self):
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True, "physical_network": "old"}}
        _, node = self.run_map(["192.0.2.0/24:physnet1"], make_record(ports=ports))
        self.assertEqual(node.update.port_patches,
                         {"p1": [{"op": "add", "path": "/physical_network", "value": "physnet1"}]})
        _, node = self.run_map(["192.0.2.0/24:physnet1"], make_record(ports=ports),
                               processing__overwrite_existing=False)
        self.assertEqual(node.update.port_patches, {})

    def test_unset_physnet_set_even_without_overwrite(self):
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True}}
        _, node = self.run_map(["192.0.2.0/24:physnet1"], make_record(ports=ports),
                               processing__overwrite_existing=False)
        self.assertEqual(node.update.port_patches["p1"][0]["value"], "physnet1")

    def test_unchanged_physnet_not_sent(self):
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True, "physical_network": "physnet1"}}
        _, node = self.run_map(["192.0.2.0/24:physnet1"], make_record(ports=ports))
        self.assertTrue(node.update.empty or not node.update.port_patches)

    def test_nothing_without_a_map(self):
        _, node = self.run_map([])
        self.assertNotIn("physical_network", node.update.new_ports[0])


def serials_payload(*serials, legacy=False):
    if legacy:
        data = fixture("legacy-ramdisk.json")
        data["block_devices"] = {"serials": list(serials)}
        return data
    data = all_collectors()
    data["inventory"]["disks"] = [
        {"name": "/dev/sd" + chr(ord("a") + i), "size": (100 + i) * GiB, "serial": s, "model": "PERC H730P",
         "rotational": False}
        for i, s in enumerate(serials)
    ]
    data.pop("root_disk", None)
    return data


class RaidDeviceTests(SynchronousTestCase):
    HOOKS = "ramdisk_error,raid_device,root_disk_selection,scheduler,validate_interfaces"

    def test_first_run_saves_serials(self):
        _, node = run_hooks(serials_payload("S1", "S2"), self.HOOKS)
        self.assertEqual(node.update.node_patch,
                         [{"op": "add", "path": "/extra/block_devices", "value": {"serials": ["S1", "S2"]}}])
        self.assertNotIn("root_device", node.update.properties)

    def test_second_run_finds_the_new_volume_and_root_disk_selection_uses_it(self):
        record = make_record(extra={"block_devices": {"serials": ["S1", "S2"]}})
        data, node = run_hooks(serials_payload("S1", "S2", "RAID1"), self.HOOKS, record=record)
        self.assertEqual(node.update.properties["root_device"], {"serial": "RAID1"})
        self.assertEqual(node.update.node_patch, [{"op": "remove", "path": "/extra/block_devices"}])
        self.assertEqual(data["root_disk"]["serial"], "RAID1")
        self.assertEqual(node.update.properties["local_gb"], str(102 - 1))

    def test_several_or_no_new_devices(self):
        record = make_record(extra={"block_devices": {"serials": ["S1"]}})
        for serials in (("S1", "N1", "N2"), ("S1",)):
            _, node = run_hooks(serials_payload(*serials), self.HOOKS, record=record)
            self.assertEqual(node.update.node_patch, [])
            self.assertNotIn("root_device", node.update.properties)

    def test_root_device_known(self):
        record = make_record(properties={"root_device": {"serial": "S2"}}, extra={"block_devices": {"serials": ["S1"]}})
        _, node = run_hooks(serials_payload("S1", "S2"), self.HOOKS, record=record)
        self.assertEqual(node.update.node_patch, [])

    def test_no_disks(self):
        payload = all_collectors()
        payload["inventory"]["disks"] = []
        payload.pop("root_disk")
        data, node = run_hooks(payload, self.HOOKS)
        self.assertEqual(node.update.node_patch, [])
        self.assertEqual(node.update.properties["local_gb"], "0")

    def test_real_payload_without_serials(self):
        _, node = run_hooks(all_collectors(), self.HOOKS)
        self.assertEqual(node.update.node_patch, [])

    def test_legacy_serials(self):
        _, node = run_hooks(serials_payload("L1", legacy=True), self.HOOKS)
        self.assertEqual(node.update.node_patch[0]["value"], {"serials": ["L1"]})

    def test_fake_local_gb_before_processing(self):
        data = {"inventory": {"interfaces": []}}
        config = make_config(processing__processing_hooks=self.HOOKS)
        hook = [h for h in hooks_mod.load(config) if h.name == "raid_device"][0]
        hook.before_processing(data)
        self.assertEqual(data["local_gb"], 1)
        data = {"local_gb": 20}
        hook.before_processing(data)
        self.assertEqual(data["local_gb"], 20)


class ExampleHookTests(SynchronousTestCase):
    def test_logs_and_changes_nothing(self):
        data, node = run_hooks(all_collectors(), "example")
        self.assertTrue(node.update.empty)
        self.assertEqual(data["inventory"], ramdisk_data.normalize(all_collectors())["inventory"])


class EveryHookTests(SynchronousTestCase):
    """The real payload through every hook at once, then a payload with no disks."""

    EVERY = DEFAULT + ",extra_hardware,lldp_basic,local_link_connection,physnet_cidr_map,raid_device,accelerators,example"

    def test_real_payload(self):
        data, node = run_hooks(all_collectors(), self.EVERY, port_physnet__cidr_map=["192.0.2.0/24:physnet1"])
        props = node.update.properties
        self.assertEqual((props["cpus"], props["cpu_arch"], props["memory_mb"], props["local_gb"]),
                         ("2", "x86_64", "24576", "255"))
        self.assertEqual(node.update.new_ports, [{"address": FIXTURE_MAC, "pxe_enabled": True,
                                                  "physical_network": "physnet1"}])
        self.assertIn("extra", data)
        self.assertEqual(json.loads(json.dumps(data))["all_interfaces"]["eth0"]["mac"], FIXTURE_MAC)

    def test_no_disks(self):
        payload = all_collectors()
        payload["inventory"]["disks"] = None
        payload.pop("root_disk")
        _, node = run_hooks(payload, self.EVERY)
        self.assertEqual(node.update.properties["local_gb"], "0")


class ApplyJsonPatchTests(SynchronousTestCase):
    """RFC 6902 as Ironic applies it: what it refuses, the fake Ironic and the node view refuse."""

    def apply(self, target, *ops):
        hooks_mod.apply_json_patch(target, list(ops))
        return target

    def test_add_replace_remove(self):
        node = {"properties": {"a": 1, "b": 2}, "extra": {}}
        self.apply(node, {"op": "add", "path": "/properties/c", "value": 3},
                   {"op": "replace", "path": "/properties/a", "value": 9},
                   {"op": "remove", "path": "/properties/b"},
                   {"op": "add", "path": "/extra/x~1y", "value": "slash"})
        self.assertEqual(node, {"properties": {"a": 9, "c": 3}, "extra": {"x/y": "slash"}})

    def test_missing_parent_refused(self):
        with self.assertRaises(ValueError):
            self.apply({"extra": {}}, {"op": "add", "path": "/extra/a/b", "value": 1})

    def test_removing_a_missing_member_refused(self):
        with self.assertRaises(ValueError):
            self.apply({"properties": {}}, {"op": "remove", "path": "/properties/nothing"})

    def test_new_root_attribute_refused(self):
        with self.assertRaises(ValueError):
            self.apply({"properties": {}}, {"op": "add", "path": "/surprise", "value": 1})

    def test_unknown_operation_refused(self):
        with self.assertRaises(ValueError):
            self.apply({"properties": {}}, {"op": "merge", "path": "/properties", "value": {}})

    def test_fake_ironic_answers_400_like_ironic(self):
        h = Harness()
        uuid = h.fake.add_node()
        port = h.fake.add_port(uuid, "52:54:00:00:00:01")
        bad = [
            ("/v1/nodes/" + uuid, {"op": "add", "path": "/extra/a/b", "value": 1}),
            ("/v1/nodes/" + uuid, {"op": "remove", "path": "/properties/nothing"}),
            ("/v1/ports/" + port, {"op": "add", "path": "/surprise", "value": 1}),
        ]
        for path, op in bad:
            d = h.ironic_http.request("PATCH", "http://ironic.test:6385" + path, data=json.dumps([op]).encode())
            h.flush()
            response = h._result(d)
            self.assertEqual(response.code, 400, op)
        # What Ironic accepts on any port: fields every port has.
        d = h.ironic_http.request("PATCH", "http://ironic.test:6385/v1/ports/" + port, data=json.dumps(
            [{"op": "add", "path": "/local_link_connection/port_id", "value": "Ethernet1"},
             {"op": "add", "path": "/local_link_connection/switch_id", "value": "52:54:00:5e:00:01"},
             {"op": "add", "path": "/physical_network", "value": "physnet1"}]).encode())
        h.flush()
        self.assertEqual(h._result(d).code, 200)
        self.assertEqual(h.fake.ports[port]["local_link_connection"],
                         {"port_id": "Ethernet1", "switch_id": "52:54:00:5e:00:01"})
        # Ironic's schema: a port_id without the switch it is on is refused, and nothing changes.
        d = h.ironic_http.request("PATCH", "http://ironic.test:6385/v1/ports/" + port, data=json.dumps(
            [{"op": "remove", "path": "/local_link_connection/switch_id"}]).encode())
        h.flush()
        self.assertEqual(h._result(d).code, 400)
        self.assertIn("switch_id", h.fake.ports[port]["local_link_connection"])
